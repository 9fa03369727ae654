// The assistant form: JSON fields checked as you type, one API call on save (nothing half-saved), and the
// API's error shown beside the field its `param` names.
"use strict";

function fieldError(field, message) {
  let holder = field.closest("[data-function]")?.querySelector("[data-error]");
  if (!holder) {
    holder = field.nextElementSibling && field.nextElementSibling.classList.contains("field-error")
      ? field.nextElementSibling : null;
    if (!holder) {
      holder = Console.el("p", { class: "field-error", role: "alert" });
      field.after(holder);
    }
  }
  holder.textContent = message || "";
  holder.hidden = !message;
  if (message) field.setAttribute("aria-invalid", "true"); else field.removeAttribute("aria-invalid");
}

function checkJson(field) {
  const text = field.value.trim();
  if (!text) { fieldError(field, ""); return { ok: true, value: null }; }
  try {
    const value = JSON.parse(text);
    if (field.closest("[data-function]")) {
      if (typeof value !== "object" || value === null || Array.isArray(value)) throw new Error("a function is a JSON object");
      if (typeof value.name !== "string" || !value.name) throw new Error("the function needs a \"name\"");
      if (value.parameters !== undefined && (typeof value.parameters !== "object" || value.parameters === null || Array.isArray(value.parameters)))
        throw new Error("\"parameters\" must be a JSON Schema object");
    }
    fieldError(field, "");
    return { ok: true, value };
  } catch (e) {
    fieldError(field, "Invalid JSON: " + e.message);
    return { ok: false };
  }
}

function ids(text) { return text.split(",").map(s => s.trim()).filter(Boolean); }

document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("assistant-form");
  if (!form) return;
  const functions = document.getElementById("functions");
  const wire = (scope) => {
    for (const area of scope.querySelectorAll("textarea[data-json]")) area.addEventListener("input", () => checkJson(area));
    for (const button of scope.querySelectorAll("[data-remove]")) button.addEventListener("click", () => button.closest("[data-function]").remove());
  };
  wire(form);
  document.getElementById("add-function").addEventListener("click", () => {
    const node = document.getElementById("function-template").content.firstElementChild.cloneNode(true);
    functions.append(node);
    wire(node);
    node.querySelector("textarea").focus();
  });

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const formError = document.getElementById("form-error");
    formError.hidden = true;
    for (const f of form.querySelectorAll("[aria-invalid]")) fieldError(f, "");
    let valid = true;
    const tools = [];
    for (const editor of functions.querySelectorAll("[data-function] textarea")) {
      const parsed = checkJson(editor);
      if (!parsed.ok) { valid = false; continue; }
      if (parsed.value) tools.push({ type: "function", function: parsed.value });
    }
    if (document.getElementById("tool-code").checked) tools.push({ type: "code_interpreter" });
    if (document.getElementById("tool-search").checked) tools.push({ type: "file_search" });
    const metadata = checkJson(document.getElementById("metadata"));
    const schema = checkJson(document.getElementById("json_schema"));
    if (!metadata.ok || !schema.ok) valid = false;
    if (!valid) { formError.textContent = "Fix the fields marked above."; formError.hidden = false; return; }

    const body = { model: form.model.value.trim(), name: form.name.value, instructions: form.instructions.value, tools };
    for (const key of ["temperature", "top_p"]) {
      const raw = form[key].value.trim();
      if (raw !== "") body[key] = Number.isNaN(Number(raw)) ? raw : Number(raw);
    }
    const fmt = form.response_format.value;
    body.response_format = fmt === "auto" ? "auto" : fmt === "json_schema" ? { type: "json_schema", json_schema: schema.value } : { type: fmt };
    body.metadata = metadata.value || {};
    const resources = {};
    const stores = ids(document.getElementById("vector_store_ids").value);
    const files = ids(document.getElementById("code_file_ids").value);
    if (stores.length) resources.file_search = { vector_store_ids: stores };
    if (files.length) resources.code_interpreter = { file_ids: files };
    body.tool_resources = resources;

    const id = form.dataset.id;
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    const result = await Console.api("POST", id ? "/assistants/" + id : "/assistants", body);
    button.disabled = false;
    if (result.ok) { location.href = "/console/assistants/" + result.body.id + "?saved=1"; return; }
    const error = (result.body && result.body.error) || {};
    const param = error.param || "";
    const match = param.match(/^tools\[(\d+)\]/);
    let field = null;
    if (match) {
      const editor = functions.querySelectorAll("[data-function] textarea")[Number(match[1])];
      field = editor || null;
    }
    if (!field && param) {
      field = [...form.querySelectorAll("[data-param]")].find(f => param === f.dataset.param || param.startsWith(f.dataset.param + ".") || param.startsWith(f.dataset.param + "["));
    }
    if (field) fieldError(field, Console.errorText(result));
    formError.textContent = Console.errorText(result) + (param ? " (" + param + ")" : "");
    formError.hidden = false;
  });
});
