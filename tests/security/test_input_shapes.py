"""Shapes an attacker (or a conformance fuzzer) sends that a client never would: image urls of other
schemes, explicit nulls where the spec allows none, empty query parameters, oversized id lists — all 400s
naming the param; and the shapes real clients do send (../shared/spec/clients.md) still accepted."""

from __future__ import annotations

import contextlib

import openai
import pytest

PNG = ("data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9a"
       "wAAAABJRU5ErkJggg==")


@pytest.fixture(scope="module")
def thread(client) -> str:
    return client.beta.threads.create().id


def image_url(url: str) -> dict:
    return {"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}


@pytest.mark.parametrize("url", [
    "file:///etc/passwd", "FILE:///etc/shadow", "ftp://example.com/a.png", "gopher://127.0.0.1:6379/_x",
    "javascript:alert(1)", "data:text/html;base64,PGgxPg==", "data:image/svg+xml;base64,PHN2Zz4=",
    "data:image/png,rawbytes", "http://", "https:///a.png", "//example.com/a.png", "/etc/passwd",
    "https://exa mple.com/a.png", " https://example.com/a.png", "https://example.com/a.png\nHost: x",
    "jar:http://example.com/a.zip!/a.png", "dict://127.0.0.1:11211/",
])
def test_image_urls_of_other_schemes_are_400s(http, thread, url):
    r = http.post(f"/threads/{thread}/messages", json=image_url(url))
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == "content[0].image_url.url"
    r = http.post("/threads", json={"messages": [image_url(url)]})
    assert r.status_code == 400 and r.json()["error"]["param"] == "messages[0].content[0].image_url.url", r.text


@pytest.mark.parametrize("url", ["https://example.com/a.png", "http://example.com:8080/x?y=1#z",
                                 "HTTPS://EXAMPLE.COM/A.PNG", PNG, "data:image/jpeg;base64,/9j/4AAQ"])
def test_web_and_inline_image_urls_are_accepted(http, thread, url):
    r = http.post(f"/threads/{thread}/messages", json=image_url(url))
    assert r.status_code == 200, r.text
    assert r.json()["content"][0]["image_url"]["url"] == url


@pytest.mark.parametrize(("route", "body", "param"), [
    ("/assistants", {"model": "m", "tools": [{"type": "file_search", "file_search": {"ranking_options": None}}]},
     "tools[0].file_search.ranking_options"),
    ("/assistants", {"model": "m", "tools": [{"type": "file_search", "file_search": {"max_num_results": None}}]},
     "tools[0].file_search.max_num_results"),
])
def test_nulls_the_spec_does_not_allow_are_400s(http, route, body, param):
    r = http.post(route, json=body)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param


@pytest.mark.parametrize("url", [
    "/assistants?limit=", "/assistants?order=", "/threads/{t}/messages?limit=", "/vector_stores?limit=",
    "/files?limit=", "/vector_stores/{vs}/files?filter=", "/assistants?limit=99999999999999999999999",
    "/files?limit=-99999999999999999999999", "/assistants?limit=1e3",
])
def test_empty_and_huge_query_values_are_400s(http, client, thread, url):
    vs = client.vector_stores.create(name="q").id if "{vs}" in url else ""
    r = http.get(url.format(t=thread, vs=vs))
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] in ("limit", "order", "filter")


def test_chunk_overlap_rule_holds_in_helpers_too(http):
    """The spec's overlap rule (at most half the chunk) applies wherever a strategy is given."""
    static = {"type": "static", "static": {"max_chunk_size_tokens": 100, "chunk_overlap_tokens": 51}}
    r = http.post("/assistants", json={"model": "m", "tool_resources": {"file_search": {
        "vector_stores": [{"file_ids": [], "chunking_strategy": static}]}}})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == \
        "tool_resources.file_search.vector_stores[0].chunking_strategy.static.chunk_overlap_tokens"


def test_many_attachment_ids_are_a_404_not_a_500(http, thread):
    """More ids than a statement may bind (PostgreSQL: 32,767) are looked up in slices."""
    ids = [f"file-{i:022d}" for i in range(33_000)]
    r = http.post(f"/threads/{thread}/messages", json={
        "role": "user", "content": "x", "attachments": [{"file_id": i, "tools": [{"type": "code_interpreter"}]}
                                                         for i in ids]})
    assert r.status_code == 404, r.text


def test_what_real_clients_send_is_still_accepted(http, client):
    """Explicit nulls meaning "not given" (LangChain, LlamaIndex), empty lists, tools on the run only."""
    fn = {"type": "function", "function": {"name": "WeatherPlugin-get_weather", "description": "d",
                                           "parameters": {"type": "object", "properties": {}}, "strict": False}}
    a = http.post("/assistants", json={"model": "m", "temperature": None, "top_p": None, "metadata": None,
                                       "tools": [fn, {"type": "file_search", "file_search": {
                                           "max_num_results": 5,
                                           "ranking_options": {"ranker": "auto", "score_threshold": 0.5}}}],
                                       "response_format": {"type": "json_schema", "json_schema": {
                                           "name": "x", "schema": {"type": "object"}, "strict": True}}})
    assert a.status_code == 200, a.text
    r = http.post("/threads/runs", json={
        "assistant_id": a.json()["id"], "metadata": None, "instructions": None,
        "thread": {"metadata": None, "messages": [{"role": "user", "content": "hi", "attachments": None}]},
        "truncation_strategy": {"type": "last_messages", "last_messages": 10}, "max_completion_tokens": 1000,
        "tool_choice": {"type": "function", "function": {"name": "WeatherPlugin-get_weather"}}})
    assert r.status_code == 200, r.text
    with contextlib.suppress(openai.BadRequestError):  # it may have ended already
        client.beta.threads.runs.cancel(r.json()["id"], thread_id=r.json()["thread_id"])
    t = http.post("/threads", json={"messages": [{"role": "user", "attachments": [],
                                                  "content": [{"type": "text", "text": "a"}]}]})
    assert t.status_code == 200, t.text
    thread = t.json()["id"]
    m = http.post(f"/threads/{thread}/messages", json={"role": "user", "content": "hi", "attachments": None,
                                                       "metadata": None})
    assert m.status_code == 200, m.text
    r = http.post(f"/threads/{thread}/runs", json={"assistant_id": a.json()["id"], "instructions": None,
                                                    "metadata": None})
    assert r.status_code == 200, r.text
    with contextlib.suppress(openai.BadRequestError):
        client.beta.threads.runs.cancel(r.json()["id"], thread_id=thread)
    assert http.post(f"/threads/{thread}", json={"metadata": None}).status_code == 200


@pytest.mark.parametrize("seconds", [str(2**64), "9" * 5000, "-" + "9" * 30, "1e400", "3600\x00"])
def test_upload_expiry_beyond_its_range_is_a_400(http, seconds):
    r = http.post("/files", data={"purpose": "assistants", "expires_after[anchor]": "created_at",
                                  "expires_after[seconds]": seconds}, files={"file": ("a.txt", b"x")})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == "expires_after.seconds"
