"""The console over plain HTTP: session cookie, CSRF, project isolation, escaping, headers, downloads."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import KEY_A
from tests.console.conftest import csrf_of, sign_in
from tests.servers import LiveProcess, free_port

XSS = '<script>alert("x")</script>'
JS_URL = "javascript:alert(1)"


def _relay(client: httpx.Client, method: str, path: str, **kwargs: object) -> httpx.Response:
    headers = {"X-CSRF-Token": client.csrf}  # type: ignore[attr-defined]
    return client.request(method, f"/console/api/v1{path}", headers=headers, **kwargs)  # type: ignore[arg-type]


def _wait_run(client: httpx.Client, thread_id: str, run_id: str) -> dict:
    for _ in range(400):
        run = _relay(client, "GET", f"/threads/{thread_id}/runs/{run_id}").json()
        if run["status"] not in ("queued", "in_progress", "cancelling"):
            return run
        time.sleep(0.05)
    raise AssertionError(run)


def test_sign_in_sets_a_strict_http_only_expiring_cookie(server: LiveProcess) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        page = client.get("/console/threads", follow_redirects=False)
        assert page.status_code == 303 and page.headers["location"].startswith("/console/sign-in")
        token = csrf_of(client.get("/console/sign-in").text)
        response = client.post("/console/sign-in", data={"api_key": KEY_A, "csrf_token": token},
                               headers={"X-Forwarded-Proto": "https"})
        assert response.status_code == 303
        cookie = response.headers["set-cookie"].lower()
        for flag in ("httponly", "samesite=strict", "secure", "max-age=", "path=/console"):
            assert flag in cookie, cookie
    with httpx.Client(base_url=server.url, timeout=30) as client:
        plain = client.post("/console/sign-in", data={"api_key": KEY_A, "csrf_token": csrf_of(
            client.get("/console/sign-in").text)})
        assert "secure" not in plain.headers["set-cookie"].lower()  # plain http: a Secure cookie would be lost


def test_wrong_key_is_refused_with_the_api_message(server: LiveProcess) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        token = csrf_of(client.get("/console/sign-in").text)
        response = client.post("/console/sign-in", data={"api_key": "sk-wrong-key-000000", "csrf_token": token})
        assert response.status_code == 401
        assert "Incorrect API key provided" in response.text
        assert client.get("/console/threads", follow_redirects=False).status_code == 303


def test_sign_out_ends_the_session(server: LiveProcess) -> None:
    client = sign_in(server.url, KEY_A)
    if True:
        refused = client.post("/console/sign-out", data={})
        assert refused.status_code == 403
        assert client.get("/console/threads").status_code == 200
        out = client.post("/console/sign-out", data={"csrf_token": client.csrf})  # type: ignore[attr-defined]
        assert out.status_code == 303
        assert client.get("/console/threads", follow_redirects=False).status_code == 303
    client.close()


def test_state_changing_requests_without_the_csrf_token_are_refused(console_a: httpx.Client) -> None:
    before = _relay(console_a, "GET", "/assistants?limit=100").json()["data"]
    for headers in ({}, {"X-CSRF-Token": "forged"}):
        response = console_a.post("/console/api/v1/assistants", json={"model": "gpt-4o-mini", "name": "csrf"},
                                  headers=headers)
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "csrf_failed"
    after = _relay(console_a, "GET", "/assistants?limit=100").json()["data"]
    assert len(after) == len(before)
    with httpx.Client(base_url=console_a.base_url, timeout=30) as anonymous:  # the sign-in form too
        response = anonymous.post("/console/sign-in", data={"api_key": KEY_A})
        assert response.status_code == 403 and "set-cookie" not in response.headers or "proj_" not in str(
            response.headers.get("set-cookie"))


def test_the_cookie_does_not_authenticate_the_v1_api(console_a: httpx.Client) -> None:
    response = console_a.get("/v1/assistants")  # the session cookie is scoped to /console, and /v1 ignores it
    cookies = {"assistd_console": console_a.cookies.get("assistd_console") or ""}
    direct = httpx.get(f"{console_a.base_url}/v1/assistants", cookies=cookies)
    assert response.status_code == 401 and direct.status_code == 401


def test_relay_errors_are_the_api_errors(console_a: httpx.Client) -> None:
    response = _relay(console_a, "POST", "/assistants", json={"model": "gpt-4o-mini", "temperature": 7})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "temperature"


def test_another_projects_run_is_not_found(console_a: httpx.Client, console_b: httpx.Client) -> None:
    assistant = _relay(console_a, "POST", "/assistants", json={"model": "gpt-4o-mini"}).json()
    run = _relay(console_a, "POST", "/threads/runs", json={
        "assistant_id": assistant["id"], "thread": {"messages": [{"role": "user", "content": "secret-of-a"}]}}).json()
    run = _wait_run(console_a, run["thread_id"], run["id"])
    url = f"/console/threads/{run['thread_id']}/runs/{run['id']}"
    assert console_a.get(url).status_code == 200
    for path in (url, f"/console/threads/{run['thread_id']}", url + "/timeline", url + "/events",
                 f"/console/assistants/{assistant['id']}"):
        page = console_b.get(path)
        assert page.status_code == 404, path
        assert "Not found" in page.text and "secret-of-a" not in page.text
    assert _relay(console_b, "GET", f"/threads/{run['thread_id']}/runs/{run['id']}").status_code == 404
    assert run["thread_id"] not in console_b.get("/console/threads").text


def test_run_page_shows_where_the_time_went_in_milliseconds(console_a: httpx.Client) -> None:
    assistant = _relay(console_a, "POST", "/assistants", json={"model": "gpt-4o-mini"}).json()
    run = _relay(console_a, "POST", "/threads/runs", json={
        "assistant_id": assistant["id"],
        "thread": {"messages": [{"role": "user", "content": "[reply: timed]"}]}}).json()
    run = _wait_run(console_a, run["thread_id"], run["id"])
    assert run["status"] == "completed"
    html = console_a.get(f"/console/threads/{run['thread_id']}/runs/{run['id']}").text
    phases = re.search(r'<table class="phases">.*?</table>', html, re.S)
    assert phases, html
    rows = re.findall(r"<tr><td>([^<]+)</td><td>[^<]*</td><td>[^<]*</td><td>([^<]+)</td></tr>", phases.group(0))
    assert [name for name, _ in rows] == [
        "queued", "started → first token", "first token → done", "total"], rows
    for _, took in rows:  # measured in milliseconds: never the whole-second "<1 s"
        assert re.fullmatch(r"\d+ ms|\d+\.\d\d s", took), rows
    step_durations = re.findall(r'<span class="muted">(\d+ ms|\d+\.\d\d s)', html)
    assert step_durations and "&lt;1 s" not in html and "<1 s" not in html, html


def test_user_content_is_escaped_everywhere(console_a: httpx.Client) -> None:
    assistant = _relay(console_a, "POST", "/assistants", json={
        "model": "gpt-4o-mini", "name": XSS, "instructions": XSS, "metadata": {XSS[:60]: XSS[:60]},
        "tools": [{"type": "function", "function": {"name": "f", "description": XSS}}]}).json()
    thread = _relay(console_a, "POST", "/threads", json={"metadata": {"k": XSS[:60]}, "messages": [
        {"role": "user", "content": [{"type": "text", "text": XSS},
                                     {"type": "image_url", "image_url": {"url": "https://example.com/x.png"}}]},
        {"role": "user", "content": f"[reply: {XSS}]"}]}).json()
    run = _relay(console_a, "POST", f"/threads/{thread['id']}/runs", json={
        "assistant_id": assistant["id"], "additional_instructions": XSS}).json()
    _wait_run(console_a, thread["id"], run["id"])
    pages = [f"/console/threads/{thread['id']}", f"/console/threads/{thread['id']}/runs/{run['id']}",
             f"/console/assistants/{assistant['id']}", "/console/assistants", "/console/threads",
             f"/console/playground?thread_id={thread['id']}"]
    for path in pages:
        html = console_a.get(path).text
        assert "<script>alert" not in html, path
        assert 'href="javascript:' not in html and "src=\"javascript:" not in html, path
    assert "&lt;script&gt;alert" in console_a.get(f"/console/threads/{thread['id']}").text


def test_javascript_urls_are_never_links(console_a: httpx.Client) -> None:
    thread = _relay(console_a, "POST", "/threads", json={}).json()
    # The API itself may refuse a javascript: image URL; if it stores one, the console shows it as text.
    response = _relay(console_a, "POST", f"/threads/{thread['id']}/messages", json={
        "role": "user", "content": [{"type": "image_url", "image_url": {"url": JS_URL}}]})
    html = console_a.get(f"/console/threads/{thread['id']}").text
    assert 'href="javascript:' not in html
    if response.status_code == 200:
        assert "javascript:alert(1)" in html  # shown, as inert text


def test_pages_carry_a_strict_csp_and_static_files_are_cached(console_a: httpx.Client) -> None:
    page = console_a.get("/console/threads")
    assert page.headers["content-security-policy"].startswith("default-src 'self'")
    assert page.headers["x-content-type-options"] == "nosniff"
    assert "<style" not in page.text and "<script>" not in page.text and " style=" not in page.text
    css = console_a.get("/console/static/console.css")
    assert css.status_code == 200 and "immutable" in css.headers["cache-control"]
    assert console_a.get("/console/static/..%2Fweb.py").status_code == 404


def test_downloads_are_attachments_and_images_only_raster(console_a: httpx.Client) -> None:
    html = b"<html><script>alert(1)</script></html>"
    uploaded = _relay(console_a, "POST", "/files", files={"file": ("x.html", html, "text/html")},
                      data={"purpose": "user_data"}).json()
    download = console_a.get(f"/console/files/{uploaded['id']}/download")
    assert download.status_code == 200 and download.content == html
    assert download.headers["content-type"] == "application/octet-stream"
    assert download.headers["content-disposition"].startswith("attachment")
    assert download.headers["x-content-type-options"] == "nosniff"
    assert console_a.get(f"/console/files/{uploaded['id']}/image").status_code == 415
    # The API's rule: what was uploaded for assistants is not given back, by the console either.
    kept = _relay(console_a, "POST", "/files", files={"file": ("k.txt", b"k")}, data={"purpose": "assistants"}).json()
    refused = console_a.get(f"/console/files/{kept['id']}/download")
    assert refused.status_code == 400 and "Not allowed to download files of purpose: assistants" in refused.text
    assert console_a.get(f"/console/files/{kept['id']}").status_code == 200  # its page still shows what it is


def test_thread_filters(console_a: httpx.Client) -> None:
    assistant = _relay(console_a, "POST", "/assistants", json={"model": "gpt-4o-mini"}).json()
    tagged = _relay(console_a, "POST", "/threads", json={"metadata": {"team": "blue"}}).json()
    run = _relay(console_a, "POST", "/threads/runs", json={
        "assistant_id": assistant["id"], "thread": {"messages": [{"role": "user", "content": "hi"}]}}).json()
    _wait_run(console_a, run["thread_id"], run["id"])
    assert tagged["id"] in console_a.get("/console/threads?metadata_key=team&metadata_value=blue").text
    assert tagged["id"] not in console_a.get("/console/threads?metadata_key=team&metadata_value=red").text
    by_assistant = console_a.get(f"/console/threads?assistant_id={assistant['id']}&run_status=completed").text
    assert run["thread_id"] in by_assistant and tagged["id"] not in by_assistant
    assert run["thread_id"] not in console_a.get(f"/console/threads?assistant_id={assistant['id']}"
                                                 "&run_status=failed").text
    found = console_a.get(f"/console/threads?id={tagged['id']}", follow_redirects=True)
    assert found.status_code == 200 and f"Thread <span class=\"mono\">{tagged['id']}" in found.text
    assert console_a.get('/console/threads?metadata_key=a"b').status_code == 400


@pytest.fixture(scope="module")
def keyless_server(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveProcess]:
    """A server with no keys and no upstream configured: dev mode, scripted model in-process."""
    if not database_url.startswith("sqlite"):
        pytest.skip("one database is enough for the newcomer's path")
    tmp = tmp_path_factory.mktemp("keyless")
    env = {"ASSISTD_DATABASE_URL": f"sqlite:///{tmp / 'db.sqlite'}", "ASSISTD_DATA_DIR": str(tmp),
           "ASSISTD_API_KEYS": "", "ASSISTD_EMBEDDINGS": "upstream:text-embedding-3-small"}
    port = free_port()
    proc = LiveProcess(["serve", "--port", str(port)], port, env=env)
    for name in ("ASSISTD_LLM_BASE_URL", "ASSISTD_MODELS_FILE"):  # nothing configured, whatever the shell has
        proc.env.pop(name, None)
    with proc:
        yield proc


def test_dev_mode_opens_without_sign_in_and_runs_on_the_scripted_model(keyless_server: LiveProcess) -> None:
    with httpx.Client(base_url=keyless_server.url, timeout=30) as client:
        page = client.get("/console/threads")
        assert page.status_code == 200
        assert "Local dev mode" in page.text and "Scripted model" in page.text
        client.csrf = csrf_of(page.text)  # type: ignore[attr-defined]
        assistant = _relay(client, "POST", "/assistants", json={"model": "gpt-4o-mini"}).json()
        run = _relay(client, "POST", "/threads/runs", json={
            "assistant_id": assistant["id"], "thread": {"messages": [{"role": "user", "content": "hello"}]}}).json()
        assert _wait_run(client, run["thread_id"], run["id"])["status"] == "completed"
    # The whole log: log() keeps only its tail, which the access lines have filled by now.
    assert "serving the scripted dev model in-process" in keyless_server.log()


def test_usage_counts_the_projects_runs(console_a: httpx.Client, console_b: httpx.Client) -> None:
    assistant = _relay(console_b, "POST", "/assistants", json={"model": "usage-model-b"}).json()
    run = _relay(console_b, "POST", "/threads/runs", json={
        "assistant_id": assistant["id"], "thread": {"messages": [{"role": "user", "content": "[usage: prompt=7 "
                                                                                  "completion=5] hi"}]}}).json()
    done = _wait_run(console_b, run["thread_id"], run["id"])
    assert done["usage"]["total_tokens"] == 12
    page = console_b.get("/console/usage?days=1").text  # read from usage_daily, recorded as the run ended
    assert "usage-model-b" in page and "completed" in page
    assert "<td>7</td><td>5</td><td>12</td>" in page
    assert "usage-model-b" not in console_a.get("/console/usage").text
    assert console_a.get("/console/usage?days=abc").status_code == 400


def test_oversized_or_odd_console_requests_are_refused_not_crashed(console_a: httpx.Client) -> None:
    with httpx.Client(base_url=console_a.base_url, timeout=30) as anonymous:
        token = csrf_of(anonymous.get("/console/sign-in").text)
        body = b"api_key=" + b"a" * 100_000 + b"&csrf_token=" + token.encode()
        big = anonymous.post("/console/sign-in", content=body,
                             headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert big.status_code == 413
    assert console_a.get("/console/threads?after=thread_nope").status_code == 400  # the API's cursor message
    assert "no object found with id" in console_a.get("/console/threads?after=thread_nope").text
    assert console_a.get("/console/threads?limit=1000").status_code == 400
    assert console_a.get("/console/threads/thread_%00x").status_code == 404
    assert console_a.get("/console/threads/thread_x/runs/run_y").status_code == 404
    assert _relay(console_a, "GET", "/../healthz").status_code in (400, 404)
