// assistd console: the little JavaScript every page shares. No inline script (the CSP forbids it): pages
// mark elements with data- attributes and this file wires them up.
"use strict";

const Console = (() => {
  const csrf = () => document.querySelector('meta[name="csrf-token"]').content;

  // A call to the API through the console's relay (/console/api/v1/...): the session's project, the
  // page's CSRF token. Resolves to {ok, status, body}; body is the API's JSON (its error envelope too).
  async function api(method, path, body, extraHeaders) {
    const headers = { "X-CSRF-Token": csrf(), ...(extraHeaders || {}) };
    let payload = body;
    if (body !== undefined && !(body instanceof FormData)) {
      headers["Content-Type"] = "application/json";
      payload = JSON.stringify(body);
    }
    const response = await fetch("/console/api/v1" + path, { method, headers, body: payload, credentials: "same-origin" });
    let data = null;
    try { data = await response.json(); } catch (e) { data = null; }
    return { ok: response.ok, status: response.status, body: data };
  }

  function errorText(result) {
    const err = result.body && result.body.error;
    return err ? err.message : "Request failed (HTTP " + result.status + ")";
  }

  // Read an SSE response body (the API's run stream): calls onEvent(name, data) per event.
  async function readEvents(response, onEvent) {
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        let name = "message", data = "";
        for (const line of block.split("\n")) {
          if (line.startsWith("event: ")) name = line.slice(7);
          else if (line.startsWith("data: ")) data += line.slice(6);
        }
        if (!data) continue;
        let parsed = data;
        try { parsed = JSON.parse(data); } catch (e) { /* [DONE] */ }
        onEvent(name, parsed);
      }
    }
  }

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") node.className = v; else if (k === "text") node.textContent = v; else node.setAttribute(k, v);
    }
    for (const c of children) node.append(c);
    return node;
  }

  // Upload a file through the relay; XMLHttpRequest for its upload progress events.
  function upload(file, purpose, bar) {
    return new Promise((resolve, reject) => {
      const form = new FormData();
      form.append("purpose", purpose);
      form.append("file", file);
      const xhr = new XMLHttpRequest();
      if (bar) { bar.hidden = false; bar.value = 0; }
      xhr.upload.addEventListener("progress", (e) => { if (bar && e.lengthComputable) bar.value = (e.loaded / e.total) * 100; });
      xhr.addEventListener("load", () => {
        if (bar) bar.hidden = true;
        let body = null;
        try { body = JSON.parse(xhr.responseText); } catch (e) { /* not JSON */ }
        if (xhr.status === 200) resolve(body);
        else reject(new Error(body && body.error ? body.error.message : "upload failed (HTTP " + xhr.status + ")"));
      });
      xhr.addEventListener("error", () => { if (bar) bar.hidden = true; reject(new Error("upload failed")); });
      xhr.open("POST", "/console/api/v1/files");
      xhr.setRequestHeader("X-CSRF-Token", csrf());
      xhr.send(form);
    });
  }

  return { api, errorText, readEvents, el, csrf, upload };
})();

// Open the step a #step_… link points at.
function openAnchoredStep() {
  if (!location.hash) return;
  const target = document.getElementById(decodeURIComponent(location.hash.slice(1)));
  if (target && target.classList.contains("step")) {
    const details = target.querySelector("details");
    if (details) details.open = true;
    target.scrollIntoView({ block: "center" });
  }
}

// The run page: while the run is active, its events (the API's own stream, relayed for the session)
// make the page fetch its timeline again; open steps stay open.
function liveRun(root) {
  if (root.dataset.active !== "true") return;
  let pending = null;
  let finished = false;
  async function refresh() {
    pending = null;
    const open = [...root.querySelectorAll(".step details[open]")].map(d => d.closest(".step").id);
    const response = await fetch(root.dataset.timeline, { credentials: "same-origin" });
    if (!response.ok) return;
    root.innerHTML = await response.text();
    for (const id of open) {
      const step = document.getElementById(id);
      if (step) step.querySelector("details").open = true;
    }
    wireToolOutputs(root);
  }
  const schedule = () => { if (!pending) pending = setTimeout(refresh, 150); };
  const source = new EventSource(root.dataset.events);
  const names = ["thread.run.queued", "thread.run.in_progress", "thread.run.requires_action", "thread.run.completed",
    "thread.run.incomplete", "thread.run.failed", "thread.run.cancelling", "thread.run.cancelled", "thread.run.expired",
    "thread.run.step.created", "thread.run.step.in_progress", "thread.run.step.completed", "thread.run.step.failed",
    "thread.run.step.cancelled", "thread.run.step.expired", "thread.message.completed", "thread.run.step.delta"];
  for (const name of names) source.addEventListener(name, schedule);
  source.addEventListener("done", () => { finished = true; source.close(); schedule(); });
  source.addEventListener("error", () => { if (finished) source.close(); });
  root.dataset.live = "on";
}

// A form answering a run's function calls by hand (run page and Playground).
function wireToolOutputs(scope, onStream) {
  for (const form of scope.querySelectorAll("form.tool-outputs")) {
    if (form.dataset.wired) continue;
    form.dataset.wired = "1";
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const outputs = [...form.querySelectorAll("textarea")].map(t => ({ tool_call_id: t.name, output: t.value }));
      const error = form.querySelector("[data-error]");
      const path = form.dataset.action.replace("/console/api/v1", "");
      form.querySelector("button").disabled = true;
      const result = await Console.api("POST", path, { tool_outputs: outputs });
      form.querySelector("button").disabled = false;
      if (!result.ok) { error.textContent = Console.errorText(result); error.hidden = false; return; }
      form.closest("section").remove();
      if (onStream) onStream(result.body); else location.reload();
    });
  }
}

// Buttons that delete an object through the API, then go somewhere.
function wireDeletes() {
  for (const button of document.querySelectorAll("button[data-delete]")) {
    button.addEventListener("click", async () => {
      if (!confirm(button.dataset.confirm || "Delete?")) return;
      const result = await Console.api("DELETE", button.dataset.delete);
      if (result.ok) location.href = button.dataset.then || location.href;
      else alert(Console.errorText(result));
    });
  }
}

document.addEventListener("DOMContentLoaded", () => {
  openAnchoredStep();
  window.addEventListener("hashchange", openAnchoredStep);
  const live = document.getElementById("run-live");
  if (live) liveRun(live);
  wireToolOutputs(document);
  wireDeletes();
});
