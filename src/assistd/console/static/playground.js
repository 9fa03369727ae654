// The Playground: a chat that streams through the API's own SSE (relayed for the session).
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const root = document.getElementById("playground");
  if (!root) return;
  const log = document.getElementById("chat-log");
  const steps = document.getElementById("live-steps");
  const state = document.getElementById("run-state");
  const errorBox = document.getElementById("chat-error");
  const cancel = document.getElementById("cancel");
  const send = document.getElementById("send");
  let threadId = root.dataset.thread || null;
  let runId = null;
  const bubbles = {};  // message id → text element

  function showError(message) { errorBox.textContent = message; errorBox.hidden = !message; }

  function bubble(role, id, text) {
    const body = Console.el("div", { class: "text", "data-deltas": "0" });
    body.textContent = text || "";
    const node = Console.el("article", { class: "message role-" + role },
      Console.el("header", {}, Console.el("strong", { text: role }), " ", Console.el("span", { class: "mono muted", text: id || "" })), body);
    log.append(node);
    if (id) bubbles[id] = body;
    node.scrollIntoView({ block: "end" });
    return body;
  }

  function stepRow(step) {
    let row = document.getElementById("live-" + step.id);
    if (!row) {
      row = Console.el("li", { class: "step", id: "live-" + step.id });
      steps.append(row);
    }
    const kind = step.type === "message_creation" ? "message" :
      ((step.step_details && step.step_details.tool_calls) || []).map(c => c.type === "function" ? "function " + c.function.name : c.type).join(", ") || "tool_calls";
    row.replaceChildren(Console.el("a", { href: "/console/threads/" + step.thread_id + "/runs/" + step.run_id + "#" + step.id, text: kind }),
      " ", Console.el("span", { class: "status s-" + step.status, text: step.status }));
  }

  function toolForm(run) {
    const slot = document.getElementById("tool-outputs-slot");
    const section = Console.el("section", { class: "card" }, Console.el("h3", { text: "Answer the function calls" }));
    const form = Console.el("form", { class: "tool-outputs", "data-action": "/console/api/v1/threads/" + run.thread_id + "/runs/" + run.id + "/submit_tool_outputs" });
    for (const call of run.required_action.submit_tool_outputs.tool_calls) {
      const id = "out-" + call.id;
      form.append(Console.el("label", { for: id }, Console.el("strong", { text: call.function.name }), " ", Console.el("code", { text: call.function.arguments })));
      form.append(Console.el("textarea", { id, name: call.id, rows: "2" }));
    }
    form.append(Console.el("p", { class: "field-error", "data-error": "", hidden: "" }));
    form.append(Console.el("button", { type: "submit", class: "primary", text: "Submit tool outputs" }));
    section.append(form);
    slot.replaceChildren(section);
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const outputs = [...form.querySelectorAll("textarea")].map(t => ({ tool_call_id: t.name, output: t.value }));
      const response = await post("/threads/" + run.thread_id + "/runs/" + run.id + "/submit_tool_outputs", { tool_outputs: outputs, stream: true });
      if (response) { slot.replaceChildren(); await follow(response); }
    }, { once: false });
  }

  async function post(path, body) {
    const response = await fetch("/console/api/v1" + path, {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": Console.csrf() }, body: JSON.stringify(body) });
    if (!response.ok) {
      let message = "HTTP " + response.status;
      try { message = (await response.json()).error.message; } catch (e) { /* not JSON */ }
      showError(message);
      return null;
    }
    return response;
  }

  async function follow(response) {
    cancel.disabled = false;
    send.disabled = true;
    // Measured here, in milliseconds (stored times are whole seconds): this page's view of where time went.
    const started = performance.now();
    let firstToken = null;
    const timing = document.getElementById("timing");
    timing.textContent = "";
    try {
      await Console.readEvents(response, (name, data) => {
        if (name === "thread.created") {
          threadId = data.id;
          document.getElementById("thread-id").textContent = threadId;
          history.replaceState(null, "", "/console/playground?thread_id=" + encodeURIComponent(threadId) + "&assistant_id=" + encodeURIComponent(document.getElementById("assistant").value));
        } else if (name.startsWith("thread.run.step.") && name !== "thread.run.step.delta") {
          stepRow(data);
        } else if (name === "thread.message.created") {
          bubble(data.role, data.id, "");
        } else if (name === "thread.message.delta") {
          const body = bubbles[data.id] || bubble("assistant", data.id, "");
          if (firstToken === null) firstToken = performance.now() - started;
          for (const part of data.delta.content || []) {
            if (part.type === "text" && part.text && part.text.value) {
              body.append(document.createTextNode(part.text.value));
              body.dataset.deltas = String(Number(body.dataset.deltas) + 1);
            }
          }
        } else if (name === "thread.message.completed") {
          const body = bubbles[data.id];
          if (body) body.dataset.complete = "true";
        } else if (name.startsWith("thread.run.") && data && data.object === "thread.run") {
          runId = data.id;
          state.textContent = data.status;
          state.dataset.status = data.status;
          document.getElementById("run-link").replaceChildren(Console.el("a", { href: "/console/threads/" + data.thread_id + "/runs/" + data.id, text: "Open run " + data.id }));
          if (data.status === "requires_action") toolForm(data);
        } else if (name === "error") {
          showError((data && data.message) || "stream error");
        }
      });
    } catch (e) {
      showError("The stream broke off (" + e.message + "); the run goes on: see its page.");
    }
    send.disabled = false;
    const total = Math.round(performance.now() - started);
    timing.textContent = (firstToken !== null ? "first token " + Math.round(firstToken) + " ms · " : "") + "stream " + total + " ms";
    if (["completed", "failed", "cancelled", "expired", "incomplete", "requires_action"].includes(state.dataset.status)) cancel.disabled = true;
  }

  document.getElementById("composer").addEventListener("submit", async (event) => {
    event.preventDefault();
    showError("");
    const prompt = document.getElementById("prompt");
    const text = prompt.value;
    if (!text.trim()) return;
    const attachments = [];
    try {
      for (const file of document.getElementById("attach").files) {
        const uploaded = await Console.upload(file, "assistants", document.getElementById("upload-progress"));
        attachments.push({ file_id: uploaded.id, tools: [{ type: "file_search" }, { type: "code_interpreter" }] });
      }
    } catch (e) { showError(e.message); return; }
    const message = { role: "user", content: text };
    if (attachments.length) message.attachments = attachments;
    const assistant = document.getElementById("assistant").value;
    prompt.value = "";
    document.getElementById("attach").value = "";
    steps.replaceChildren();
    let response;
    if (!threadId) {
      bubble("user", "", text);
      response = await post("/threads/runs", { assistant_id: assistant, thread: { messages: [message] }, stream: true });
    } else {
      const added = await post("/threads/" + threadId + "/messages", message);
      if (!added) return;
      const created = await added.json();
      bubble("user", created.id, text);
      response = await post("/threads/" + threadId + "/runs", { assistant_id: assistant, stream: true });
    }
    if (response) await follow(response);
  });

  cancel.addEventListener("click", async () => {
    if (!threadId || !runId) return;
    const result = await Console.api("POST", "/threads/" + threadId + "/runs/" + runId + "/cancel");
    if (!result.ok) showError(Console.errorText(result));
  });
});
