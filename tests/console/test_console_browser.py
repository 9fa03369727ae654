"""The console in a real headless Chromium: sign-in, isolation, the assistant form, the Playground, the
live run timeline, file_search and code_interpreter details, hostile content."""

from __future__ import annotations

import json
from typing import Any

import pytest
from openai import OpenAI

from tests.conftest import KEY_B
from tests.console.conftest import browser_sign_in
from tests.run_helpers import require_sandbox
from tests.servers import LiveProcess

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the SDK's beta.* namespace

XSS = '<script>window.__xss=1</script><img src=x onerror="window.__xss=1">'


def _assistant(client: OpenAI, **kwargs: Any) -> Any:
    tools = kwargs.pop("tools", [{"type": "function", "function": {
        "name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}])
    return client.beta.assistants.create(model="gpt-4o-mini", tools=tools, **kwargs)


def test_sign_in_and_out(page_a: Any, server: LiveProcess) -> None:
    assert page_a.url.endswith("/console/threads")
    page_a.click("header button:has-text('Sign out')")
    page_a.wait_for_url("**/console/sign-in")
    page_a.goto(f"{server.url}/console/assistants")
    assert "/console/sign-in" in page_a.url  # signed out: sent back to sign in
    page_a.fill("#api_key", "sk-not-a-key-0000000")
    page_a.click("main button[type=submit]")
    assert "Incorrect API key provided" in page_a.inner_text("#signin-error")


def test_another_projects_run_by_deep_link_is_not_found(browser: Any, server: LiveProcess, client: OpenAI) -> None:
    assistant = _assistant(client)
    run = client.beta.threads.create_and_run_poll(assistant_id=assistant.id, thread={
        "messages": [{"role": "user", "content": "private to project A"}]}, poll_interval_ms=50)
    page = browser_sign_in(browser, server.url, KEY_B)
    response = page.goto(f"{server.url}/console/threads/{run.thread_id}/runs/{run.id}#step_x")
    assert response.status == 404
    assert page.inner_text("h1") == "Not found"
    assert "private to project A" not in page.content()
    page.context.close()


def test_create_an_assistant_with_a_function_tool(page_a: Any, server: LiveProcess, client: OpenAI) -> None:
    page_a.goto(f"{server.url}/console/assistants/new")
    page_a.fill("#name", "Forecaster")
    page_a.click("#add-function")
    editor = page_a.locator("[data-function] textarea").first
    editor.fill('{"name": "get_forecast", "parameters": ')  # invalid JSON: said in place, nothing saved
    assert "Invalid JSON" in page_a.inner_text("[data-function] [data-error]")
    page_a.click("#assistant-form button[type=submit]")
    assert page_a.is_visible("#form-error")
    editor.fill(json.dumps({"name": "get_forecast", "description": "days ahead",
                            "parameters": {"type": "object", "properties": {"days": {"type": "integer"}}}}))
    page_a.fill("#temperature", "9")  # the API refuses it: its message beside the field
    page_a.click("#assistant-form button[type=submit]")
    page_a.wait_for_selector("#temperature[aria-invalid=true]")
    assert "temperature" in page_a.inner_text("#form-error")
    page_a.fill("#temperature", "0.5")
    page_a.click("#assistant-form button[type=submit]")
    page_a.wait_for_url("**saved=1")
    assistant_id = page_a.url.split("/")[-1].split("?")[0]
    saved = client.beta.assistants.retrieve(assistant_id)
    assert saved.name == "Forecaster" and saved.temperature == 0.5
    assert saved.tools[0].function.name == "get_forecast"
    assert saved.tools[0].function.parameters["properties"]["days"] == {"type": "integer"}

    page_a.fill("#name", "Forecaster 2")  # edit, then delete
    page_a.click("#assistant-form button[type=submit]")
    page_a.wait_for_function("() => document.querySelector('h1').textContent.includes('Forecaster 2')")
    assert client.beta.assistants.retrieve(assistant_id).name == "Forecaster 2"
    page_a.on("dialog", lambda d: d.accept())
    with page_a.expect_navigation(url="**/console/assistants"):
        page_a.click("button:has-text('Delete')")
    assert assistant_id not in [a.id for a in client.beta.assistants.list(limit=100).data]


def test_playground_streams_text_in_pieces_and_answers_a_function_call(
        page_a: Any, server: LiveProcess, client: OpenAI) -> None:
    assistant = _assistant(client, name="Weather")
    page_a.goto(f"{server.url}/console/playground?assistant_id={assistant.id}")
    # Every text the answer shows on its way, recorded by the page itself.
    page_a.evaluate("""() => { window.__seen = [];
      new MutationObserver(() => { const t = document.querySelector('#chat-log .role-assistant .text');
        if (t) window.__seen.push(t.textContent); }).observe(document.getElementById('chat-log'),
        {childList: true, subtree: true, characterData: true}); }""")
    page_a.fill("#prompt", "[chunk-delay: 0.2] [reply: alpha beta gamma delta epsilon]")  # pieces 0.2 s apart
    page_a.click("#send")
    page_a.wait_for_selector("#run-state[data-status=completed]")
    assert page_a.inner_text("#chat-log .role-assistant .text") == "alpha beta gamma delta epsilon"
    seen = [s for s in page_a.evaluate("window.__seen") if s]
    assert len(set(seen)) >= 3 and "alpha beta gamma delta epsilon".startswith(seen[0]), seen
    assert page_a.locator("#live-steps li").count() >= 1
    page_a.wait_for_selector("#timing:has-text('first token')")  # written once the stream has ended

    page_a.fill("#prompt", '[tool: get_weather {"city": "Paris"}]')
    page_a.click("#send")
    page_a.wait_for_selector("form.tool-outputs textarea")
    assert "Paris" in page_a.inner_text("form.tool-outputs")
    page_a.fill("form.tool-outputs textarea", "sunny, 21C")
    page_a.click("form.tool-outputs button[type=submit]")
    page_a.wait_for_selector("#run-state[data-status=completed]")
    assert page_a.locator("#chat-log .role-assistant .text").last.inner_text() == "tool results: sunny, 21C"
    assert page_a.locator("#live-steps li").count() == 2  # the function call, then the answer


def test_a_running_runs_steps_appear_live(page_a: Any, server: LiveProcess, client: OpenAI) -> None:
    assistant = _assistant(client)
    thread = client.beta.threads.create(messages=[{"role": "user", "content":
                                                   '[delay: 1.5] [tool: get_weather {"city": "Oslo"}]'}])
    run = client.beta.threads.runs.create(thread_id=thread.id, assistant_id=assistant.id)
    page_a.goto(f"{server.url}/console/threads/{thread.id}/runs/{run.id}")
    page_a.evaluate("window.__same_page = true")
    page_a.wait_for_selector("#run-live[data-live=on]")
    page_a.wait_for_selector(".step .step-type:has-text('function')")
    page_a.wait_for_selector("#run-status:has-text('requires_action')")
    assert page_a.evaluate("window.__same_page") is True  # updated in place, not reloaded
    page_a.fill("form.tool-outputs textarea", "cold")
    page_a.click("form.tool-outputs button[type=submit]")
    page_a.wait_for_selector("#run-status:has-text('completed')")
    page_a.click(".step:nth-child(1) summary")
    assert '"city": "Oslo"' in page_a.inner_text(".step:nth-child(1) .step-body")
    assert "cold" in page_a.inner_text(".step:nth-child(1) .step-body")


def test_file_search_results_show_their_chunk_text(page_a: Any, server: LiveProcess, client: OpenAI) -> None:
    store = client.vector_stores.create(name="docs")
    client.vector_stores.files.upload_and_poll(vector_store_id=store.id, file=(
        "reactor.txt", b"The zorblax reactor runs on helium and hums at night.", "text/plain"))
    assistant = _assistant(client, tools=[{"type": "file_search"}],
                           tool_resources={"file_search": {"vector_store_ids": [store.id]}})
    run = client.beta.threads.create_and_run_poll(assistant_id=assistant.id, thread={"messages": [
        {"role": "user", "content": '[tool: file_search {"query": "zorblax reactor"}] [cite]'}]},
        poll_interval_ms=50)
    assert run.status == "completed"
    steps = client.beta.threads.runs.steps.list(run.id, thread_id=run.thread_id, order="asc").data
    page_a.goto(f"{server.url}/console/threads/{run.thread_id}/runs/{run.id}#{steps[0].id}")
    body = page_a.locator(f"[id='{steps[0].id}'] .step-body")
    assert body.is_visible()  # the anchor opened it
    assert "zorblax reactor runs on helium" in body.locator("pre.chunk").first.inner_text()
    assert "score" in body.locator(".score").first.inner_text()
    assert "reactor.txt" in body.inner_text()
    page_a.goto(f"{server.url}/console/threads/{run.thread_id}")  # the answer's citation links the file
    cite = page_a.locator(".role-assistant a.cite-link").first
    assert cite.get_attribute("href").startswith("/console/files/file-")


def test_code_interpreter_step_shows_its_image(page_a: Any, server: LiveProcess, client: OpenAI) -> None:
    require_sandbox()
    assistant = _assistant(client, tools=[{"type": "code_interpreter"}])
    code = "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3])\nplt.show()"
    run = client.beta.threads.create_and_run_poll(assistant_id=assistant.id, thread={"messages": [
        {"role": "user", "content": f"[tool: code_interpreter {json.dumps({'code': code})}]"}]}, poll_interval_ms=50)
    assert run.status == "completed", run.last_error
    page_a.goto(f"{server.url}/console/threads/{run.thread_id}/runs/{run.id}")
    page_a.click(".step:nth-child(1) summary")
    image = page_a.locator(".step:nth-child(1) .call img")
    image.wait_for()
    assert "plt.plot" in page_a.inner_text(".step:nth-child(1) .step-body")
    page_a.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=image.element_handle())
    page_a.goto(f"{server.url}/console/threads/{run.thread_id}")  # the answer shows the image too
    answer_image = page_a.locator(".role-assistant img").first
    answer_image.wait_for()
    page_a.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=answer_image.element_handle())


def test_hostile_content_renders_inert(page_a: Any, server: LiveProcess, client: OpenAI) -> None:
    dialogs: list[str] = []
    page_a.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    assistant = _assistant(client, name=XSS[:200], instructions=XSS, metadata={"x": XSS[:200]},
                           tools=[{"type": "function", "function": {"name": "f", "description": XSS}}])
    thread = client.beta.threads.create(metadata={"m": XSS[:200]}, messages=[
        {"role": "user", "content": XSS},
        {"role": "user", "content": f'[tool: f {json.dumps({"a": XSS})}]'}])
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id,
                                                   poll_interval_ms=50)
    client.beta.threads.runs.submit_tool_outputs_and_poll(
        run_id=run.id, thread_id=thread.id, poll_interval_ms=50,
        tool_outputs=[{"tool_call_id": run.required_action.submit_tool_outputs.tool_calls[0].id, "output": XSS}])
    uploaded = client.files.create(file=(XSS[:100] + ".txt", b"x"), purpose="assistants")
    for path in (f"/console/threads/{thread.id}", f"/console/threads/{thread.id}/runs/{run.id}",
                 f"/console/assistants/{assistant.id}", "/console/assistants", "/console/threads",
                 f"/console/playground?thread_id={thread.id}", "/console/storage/files",
                 f"/console/threads?metadata_key=m&metadata_value={XSS[:50]}"):
        page_a.goto(server.url + path)
        for details in page_a.locator("details").all():
            details.evaluate("d => d.open = true")
        assert page_a.evaluate("window.__xss") is None, path
    assert dialogs == []
    assert uploaded.id


def test_upload_a_file_to_a_vector_store_and_see_it_complete(
        page_a: Any, server: LiveProcess, client: OpenAI, tmp_path: Any) -> None:
    path = tmp_path / "manual.txt"
    path.write_text("The flux capacitor needs 1.21 gigawatts. " * 40)
    page_a.goto(f"{server.url}/console/storage/vector_stores")
    page_a.fill("#store-name", "manuals")
    page_a.click("#store-form button[type=submit]")
    page_a.wait_for_url("**/console/storage/vector_stores/vs_*")
    store_id = page_a.url.rsplit("/", 1)[-1]
    page_a.set_input_files("#add-upload", str(path))
    page_a.click("#add-file-form button[type=submit]")
    row = page_a.locator("#store-files tr[data-file]").first
    row.wait_for()
    page_a.wait_for_selector("#store-files tr[data-status=completed]")  # followed live, no reload
    assert row.locator("[data-field=status]").inner_text() == "completed"
    page_a.wait_for_function("() => /^[0-9]+$/.test(document.querySelector('#store-files [data-field=chunks]')"
                             ".textContent)")
    assert int(row.locator("[data-field=chunks]").inner_text()) >= 1
    file_id = row.get_attribute("data-file")
    assert client.vector_stores.files.retrieve(file_id, vector_store_id=store_id).status == "completed"

    page_a.fill("#q", "flux capacitor gigawatts")
    page_a.click("#search-form button[type=submit]")
    page_a.wait_for_selector("#search-results li.result")
    assert "flux capacitor" in page_a.inner_text("#search-results li.result pre.chunk")
    assert "score" in page_a.inner_text("#search-results .score")
    page_a.fill("#filters", "{not json")
    page_a.click("#search-form button[type=submit]")
    assert "invalid JSON" in page_a.inner_text("#search-error")

    page_a.click(f"#store-files a[href$='/files/{file_id}']")
    page_a.wait_for_selector("pre.chunk")
    assert "flux capacitor" in page_a.inner_text("pre.chunk >> nth=0")
    assert "manual.txt" in page_a.inner_text("h1")


def test_files_upload_download_and_delete(page_a: Any, server: LiveProcess, client: OpenAI, tmp_path: Any) -> None:
    path = tmp_path / "notes.md"
    path.write_bytes(b"# notes\n" * 1000)
    page_a.goto(f"{server.url}/console/storage/files")
    page_a.set_input_files("#upload-file", str(path))
    page_a.select_option("#purpose", "user_data")  # purpose=assistants files are not downloadable
    with page_a.expect_navigation():
        page_a.click("#upload-form button[type=submit]")
    row = page_a.locator("tr", has_text="notes.md").first
    file_id = row.locator(".mono").inner_text()
    with page_a.expect_download() as download:
        row.locator("a:has-text('Download')").click()
    assert download.value.suggested_filename == "notes.md"
    page_a.on("dialog", lambda d: d.accept())
    with page_a.expect_navigation():
        row.locator("button:has-text('Delete')").click()
    assert file_id not in page_a.content()
    assert file_id not in [f.id for f in client.files.list(limit=100).data]


def test_playground_attaches_a_file_and_cancels_a_run(
        page_a: Any, server: LiveProcess, client: OpenAI, tmp_path: Any) -> None:
    assistant = _assistant(client, name="Slow")
    path = tmp_path / "brief.txt"
    path.write_text("a brief")
    page_a.goto(f"{server.url}/console/playground?assistant_id={assistant.id}")
    page_a.set_input_files("#attach", str(path))
    page_a.fill("#prompt", "[delay: 30] take your time")
    page_a.click("#send")
    page_a.wait_for_selector("#run-state[data-status=in_progress]")
    page_a.click("#cancel")
    page_a.wait_for_selector("#run-state[data-status=cancelled]")
    thread_id = page_a.inner_text("#thread-id")
    [message] = client.beta.threads.messages.list(thread_id).data
    assert message.attachments and client.files.retrieve(message.attachments[0].file_id).filename == "brief.txt"
