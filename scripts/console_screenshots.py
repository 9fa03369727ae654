"""Seed a throwaway server and take screenshots of the console's main pages (see scripts/screenshots)."""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.servers import LiveProcess, free_port  # noqa: E402

KEY = "sk-screenshots-0123456789"
OUT = ROOT / "docs" / "screenshots"
WIDTHS = {"desktop": 1280, "phone": 360}
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]


def _wait(api: httpx.Client, run: dict) -> dict:
    while run["status"] in ("queued", "in_progress", "cancelling"):
        time.sleep(0.1)
        run = api.get(f"/threads/{run['thread_id']}/runs/{run['id']}").json()
    return run


def seed(api: httpx.Client) -> dict[str, str]:
    store = api.post("/vector_stores", json={"name": "Product manuals"}).json()
    doc = api.post("/files", files={"file": ("reactor-manual.txt", (
        "The zorblax reactor runs on helium-3 and must be vented every 40 hours. "
        "Warm-up takes 12 minutes; never open the coolant valve while the core hums.\n") * 8)},
        data={"purpose": "assistants"}).json()
    api.post(f"/vector_stores/{store['id']}/files", json={"file_id": doc["id"]})
    while api.get(f"/vector_stores/{store['id']}/files/{doc['id']}").json()["status"] == "in_progress":
        time.sleep(0.1)
    assistant = api.post("/assistants", json={
        "model": "gpt-4o-mini", "name": "Reactor support", "instructions": "Answer from the manuals; cite them.",
        "tools": [{"type": "file_search"}, {"type": "function", "function": {
            "name": "get_reactor_status", "description": "Live telemetry of one reactor",
            "parameters": {"type": "object", "properties": {"reactor": {"type": "string"}}}}}],
        "tool_resources": {"file_search": {"vector_store_ids": [store["id"]]}}, "metadata": {"team": "support"}}).json()
    run = api.post("/threads/runs", json={"assistant_id": assistant["id"], "thread": {
        "metadata": {"customer": "acme", "channel": "email"}, "messages": [
            {"role": "user", "content": "How often must the reactor be vented? "
                                        '[tool: file_search {"query": "reactor venting interval"}] [cite]'}]}}).json()
    run = _wait(api, run)
    thread_id = run["thread_id"]
    api.post(f"/threads/{thread_id}/messages", json={
        "role": "user", "content": 'And is reactor 7 healthy? [tool: get_reactor_status {"reactor": "7"}]'})
    second = _wait(api, api.post(f"/threads/{thread_id}/runs", json={"assistant_id": assistant["id"]}).json())
    call = second["required_action"]["submit_tool_outputs"]["tool_calls"][0]
    second = _wait(api, api.post(f"/threads/{thread_id}/runs/{second['id']}/submit_tool_outputs", json={
        "tool_outputs": [{"tool_call_id": call["id"], "output": json.dumps({"core_temp_c": 412, "ok": True})}]}
    ).json())
    for i in range(3):
        api.post("/threads", json={"metadata": {"customer": f"customer-{i}"}})
    return {"assistant": assistant["id"], "thread": thread_id, "run": run["id"], "store": store["id"],
            "file": doc["id"], "second": second["id"]}


def main() -> None:
    from playwright.sync_api import sync_playwright

    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="assistd-shots-") as tmp:
        port = free_port()
        env = {"ASSISTD_DATABASE_URL": f"sqlite:///{tmp}/db.sqlite", "ASSISTD_DATA_DIR": tmp,
               "ASSISTD_API_KEYS": f"{KEY}:demo", "ASSISTD_EMBEDDINGS": "upstream:text-embedding-3-small"}
        server = LiveProcess(["serve", "--port", str(port)], port, env=env)
        for name in ("ASSISTD_LLM_BASE_URL", "ASSISTD_MODELS_FILE"):
            server.env.pop(name, None)
        with server, httpx.Client(base_url=f"{server.url}/v1", timeout=60,
                                  headers={"Authorization": f"Bearer {KEY}"}) as api:
            ids = seed(api)
            pages = {
                "playground": f"/console/playground?thread_id={ids['thread']}&assistant_id={ids['assistant']}",
                "assistants": "/console/assistants",
                "assistant-edit": f"/console/assistants/{ids['assistant']}",
                "threads": "/console/threads",
                "thread": f"/console/threads/{ids['thread']}",
                "run": f"/console/threads/{ids['thread']}/runs/{ids['run']}",
                "vector-store": f"/console/storage/vector_stores/{ids['store']}",
                "usage": "/console/usage",
            }
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=os.environ.get(
                    "ASSISTD_TEST_CHROMIUM", "/usr/bin/chromium"), args=ARGS)
                for label, width in WIDTHS.items():
                    context = browser.new_context(viewport={"width": width, "height": 900})
                    page = context.new_page()
                    page.goto(f"{server.url}/console/sign-in")
                    page.fill("#api_key", KEY)
                    page.click("main button[type=submit]")
                    page.wait_for_url("**/console/threads")
                    for name, path in pages.items():
                        page.goto(server.url + path)
                        if name == "run":  # the file_search step open, as someone reading it would
                            page.click(".step:nth-child(1) summary")
                        page.screenshot(path=str(OUT / f"{name}-{label}.png"), full_page=True)
                        print(OUT / f"{name}-{label}.png")
                    context.close()
                # The system's dark setting, followed by the console (prefers-color-scheme).
                context = browser.new_context(viewport={"width": 1280, "height": 900}, color_scheme="dark")
                page = context.new_page()
                page.goto(f"{server.url}/console/sign-in")
                page.fill("#api_key", KEY)
                page.click("main button[type=submit]")
                page.wait_for_url("**/console/threads")
                page.goto(server.url + pages["run"])
                page.click(".step:nth-child(1) summary")
                page.screenshot(path=str(OUT / "run-dark.png"), full_page=True)
                print(OUT / "run-dark.png")
                context.close()
                browser.close()


if __name__ == "__main__":
    main()
