// Storage pages: uploads with progress, creating stores, adding files (their ingestion status followed
// live), and the search box. Everything goes through the API (the console's relay).
"use strict";

function showIn(id, message) { const box = document.getElementById(id); box.textContent = message || ""; box.hidden = !message; }

// Follow a vector store file's ingestion until it leaves in_progress (the API has no event stream for
// ingestion, so this reads the file object again).
async function followFile(storeId, row) {
  const fileId = row.dataset.file;
  for (let delay = 200; row.dataset.status === "in_progress"; delay = Math.min(delay * 1.5, 2000)) {
    await new Promise(r => setTimeout(r, delay));
    const result = await Console.api("GET", "/vector_stores/" + storeId + "/files/" + fileId);
    if (!result.ok) return;
    const f = result.body;
    row.dataset.status = f.status;
    const status = row.querySelector("[data-field=status]");
    status.textContent = f.status;
    status.className = "status s-" + f.status;
    row.querySelector("[data-field=usage_bytes]").textContent = f.usage_bytes;
    row.querySelector("[data-field=last_error]").textContent = f.last_error ? f.last_error.message : "";
  }
  if (row.dataset.status === "completed" && row.querySelector("[data-field=chunks]").textContent === "…") {
    const response = await fetch("/console/storage/vector_stores/" + storeId + "/chunk_counts?file_id=" + encodeURIComponent(fileId), { credentials: "same-origin" });
    if (response.ok) row.querySelector("[data-field=chunks]").textContent = String((await response.json())[fileId] ?? "");
  }
}

function fileRow(storeId, file, name) {
  const link = Console.el("a", { href: "/console/storage/vector_stores/" + storeId + "/files/" + file.id, text: name || file.id });
  return Console.el("tr", { "data-file": file.id, "data-status": file.status },
    Console.el("td", {}, link, Console.el("br"), Console.el("span", { class: "mono muted", text: file.id })),
    Console.el("td", {}, Console.el("span", { class: "status s-" + file.status, "data-field": "status", text: file.status })),
    Console.el("td", { "data-field": "chunks", text: "…" }),
    Console.el("td", { "data-field": "usage_bytes", text: String(file.usage_bytes) }),
    Console.el("td", { class: "error-message", "data-field": "last_error", text: file.last_error ? file.last_error.message : "" }));
}

document.addEventListener("DOMContentLoaded", () => {
  const uploadForm = document.getElementById("upload-form");
  if (uploadForm) uploadForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    showIn("upload-error", "");
    const file = document.getElementById("upload-file").files[0];
    if (!file) return;
    try {
      await Console.upload(file, document.getElementById("purpose").value, document.getElementById("upload-progress"));
      location.reload();
    } catch (e) { showIn("upload-error", e.message); }
  });

  const storeForm = document.getElementById("store-form");
  if (storeForm) storeForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const result = await Console.api("POST", "/vector_stores", { name: document.getElementById("store-name").value });
    if (result.ok) location.href = "/console/storage/vector_stores/" + result.body.id;
    else showIn("store-error", Console.errorText(result));
  });

  const store = document.getElementById("store");
  if (!store) return;
  const storeId = store.dataset.store;
  for (const row of document.querySelectorAll("#store-files tr[data-file]")) followFile(storeId, row);

  document.getElementById("add-file-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    showIn("add-error", "");
    let fileId = document.getElementById("add-existing")?.value || "";
    let name = "";
    const chosen = document.getElementById("add-upload").files[0];
    try {
      if (chosen) {
        const uploaded = await Console.upload(chosen, "assistants", document.getElementById("upload-progress"));
        fileId = uploaded.id;
        name = uploaded.filename;
      }
    } catch (e) { showIn("add-error", e.message); return; }
    if (!fileId) { showIn("add-error", "Choose a file to upload or one already uploaded."); return; }
    const result = await Console.api("POST", "/vector_stores/" + storeId + "/files", { file_id: fileId });
    if (!result.ok) { showIn("add-error", Console.errorText(result)); return; }
    document.getElementById("add-upload").value = "";
    const row = fileRow(storeId, result.body, name);
    document.querySelector("#store-files tbody").prepend(row);
    followFile(storeId, row);
  });

  document.getElementById("search-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    showIn("search-error", "");
    const body = { query: document.getElementById("q").value, rewrite_query: document.getElementById("rewrite").checked };
    const max = document.getElementById("max").value.trim();
    if (max) body.max_num_results = Number.isNaN(Number(max)) ? max : Number(max);
    const threshold = document.getElementById("threshold").value.trim();
    body.ranking_options = { ranker: document.getElementById("ranker").value };
    if (threshold) body.ranking_options.score_threshold = Number.isNaN(Number(threshold)) ? threshold : Number(threshold);
    const filters = document.getElementById("filters").value.trim();
    if (filters) {
      try { body.filters = JSON.parse(filters); } catch (e) { showIn("search-error", "Filters: invalid JSON: " + e.message); return; }
    }
    const result = await Console.api("POST", "/vector_stores/" + storeId + "/search", body);
    const list = document.getElementById("search-results");
    list.replaceChildren();
    if (!result.ok) { showIn("search-error", Console.errorText(result)); return; }
    for (const hit of result.body.data) {
      const item = Console.el("li", { class: "result" },
        Console.el("p", {}, Console.el("strong", { text: hit.filename || hit.file_id }), " ",
          Console.el("span", { class: "score", text: "score " + Number(hit.score).toFixed(4) })));
      for (const part of hit.content || []) item.append(Console.el("pre", { class: "chunk", text: part.text }));
      list.append(item);
    }
    if (!result.body.data.length) list.append(Console.el("li", { class: "empty", text: "No results." }));
  });
});
