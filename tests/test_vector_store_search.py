"""POST /v1/vector_stores/{id}/search through the official SDK, validated against the spec: the results
page, attribute filters (every operator, and/or), ranking options, result bounds, and a needle in a
haystack found by keyword."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from tests.run_helpers import upstream_bodies
from tests.spec import assert_schema

DOCS = {
    # name: (text, attributes)
    "mars.txt": ("Mars is the red planet with the tallest volcano, Olympus Mons.",
                 {"topic": "planets", "year": 2020, "draft": False, "rank": 1.5}),
    "venus.txt": ("Venus is the hottest planet because of its thick atmosphere.",
                  {"topic": "planets", "year": 2022, "draft": True, "rank": 3}),
    "oak.txt": ("The oak tree grows acorns and lives for centuries.",
                {"topic": "trees", "year": 2021, "draft": False}),
    "fern.txt": ("Ferns reproduce with spores instead of seeds.",
                 {"topic": "plants", "year": 2019}),
}


def page_of(client, store_id: str, **params) -> dict:
    raw = client.vector_stores.with_raw_response.search(store_id, **params).http_response.json()
    return assert_schema(raw, "VectorStoreSearchResultsPage")


def names(page: dict) -> set[str]:
    return {item["filename"] for item in page["data"]}


@pytest.fixture(scope="module")
def store(client):
    made = client.vector_stores.create(name="search")
    files = [{"file_id": client.files.create(file=(name, text.encode()), purpose="assistants").id,
              "attributes": attrs} for name, (text, attrs) in DOCS.items()]
    batch = client.vector_stores.file_batches.create_and_poll(made.id, files=files)
    assert batch.file_counts.completed == len(DOCS)
    return made.id


def test_results_page(client, store):
    page = page_of(client, store, query="Which planet has the tallest volcano?")
    assert page["object"] == "vector_store.search_results.page" and page["has_more"] is False
    assert page["next_page"] is None and page["search_query"] == ["Which planet has the tallest volcano?"]
    top = page["data"][0]
    assert top["filename"] == "mars.txt" and top["file_id"].startswith("file-")
    assert top["attributes"] == DOCS["mars.txt"][1]
    assert top["content"] == [{"type": "text", "text": DOCS["mars.txt"][0]}]
    assert 0 <= top["score"] <= 1 and [i["score"] for i in page["data"]] == sorted(
        (i["score"] for i in page["data"]), reverse=True)
    # several queries: each searched, results merged
    page = page_of(client, store, query=["spores", "hottest atmosphere"])
    assert page["search_query"] == ["spores", "hottest atmosphere"]
    assert {"fern.txt", "venus.txt"} <= names(page)
    sdk = client.vector_stores.search(store, query="spores")
    assert sdk.data[0].filename == "fern.txt"


def test_rewrite_query_searches_what_the_model_rewrote(client, store, upstream):
    """ASSISTD_REWRITE_MODEL rewrites each query; the rewrites are searched and answered in search_query."""
    question = "What do the big trees in my garden grow each autumn? [reply: oak acorns]"
    page = page_of(client, store, query=question, rewrite_query=True)
    assert page["search_query"] == ["oak acorns"] and page["data"][0]["filename"] == "oak.txt"
    (body,) = upstream_bodies(upstream, "big trees in my garden")
    assert body["model"] == "gpt-4o-mini" and body["messages"][0]["role"] == "system"
    assert body["messages"][1] == {"role": "user", "content": question}
    # A rewrite that fails is not the search's failure: the query is searched as given.
    page = page_of(client, store, query="acorns [error: 400]", rewrite_query=True)
    assert page["search_query"] == ["acorns [error: 400]"] and page["data"][0]["filename"] == "oak.txt"
    # An unknown store is a 404 before any model is called.
    with pytest.raises(openai.NotFoundError):
        client.vector_stores.search("vs_unknown", query="never asked [reply: x]", rewrite_query=True)
    assert upstream_bodies(upstream, "never asked") == []


@pytest.mark.parametrize("filters,expected", [
    ({"type": "eq", "key": "topic", "value": "planets"}, {"mars.txt", "venus.txt"}),
    ({"type": "ne", "key": "topic", "value": "planets"}, {"oak.txt", "fern.txt"}),
    ({"type": "eq", "key": "draft", "value": True}, {"venus.txt"}),
    ({"type": "gt", "key": "year", "value": 2020}, {"venus.txt", "oak.txt"}),
    ({"type": "gte", "key": "year", "value": 2020}, {"mars.txt", "venus.txt", "oak.txt"}),
    ({"type": "lt", "key": "year", "value": 2020}, {"fern.txt"}),
    ({"type": "lte", "key": "rank", "value": 1.5}, {"mars.txt"}),
    ({"type": "in", "key": "topic", "value": ["trees", "plants"]}, {"oak.txt", "fern.txt"}),
    ({"type": "nin", "key": "year", "value": [2019, 2020]}, {"venus.txt", "oak.txt"}),
    ({"type": "and", "filters": [{"type": "eq", "key": "topic", "value": "planets"},
                                 {"type": "eq", "key": "draft", "value": False}]}, {"mars.txt"}),
    ({"type": "or", "filters": [{"type": "eq", "key": "topic", "value": "trees"},
                                {"type": "and", "filters": [{"type": "gte", "key": "rank", "value": 2},
                                                            {"type": "lt", "key": "year", "value": 2030}]}]},
     {"oak.txt", "venus.txt"}),
    ({"type": "eq", "key": "missing", "value": "x"}, set()),
])
def test_filters(client, store, filters, expected):
    page = page_of(client, store, query="planet tree plant spores acorns volcano", filters=filters,
                   max_num_results=50)
    assert names(page) == expected


@pytest.mark.parametrize("body,param", [
    ({"query": "x", "filters": {"type": "eq", "key": "k"}}, "filters"),
    ({"query": "x", "filters": {"type": "between", "key": "k", "value": 1}}, "filters.type"),
    ({"query": "x", "filters": {"type": "and", "filters": []}}, "filters.filters"),
    ({"query": "x", "filters": {"type": "gt", "key": "k", "value": True}}, "filters.value"),
    ({"query": "x", "max_num_results": 0}, "max_num_results"),
    ({"query": "x", "max_num_results": 51}, "max_num_results"),
    ({"query": "x", "ranking_options": {"score_threshold": 1.5}}, "ranking_options.score_threshold"),
    ({"query": "x", "ranking_options": {"ranker": "best"}}, "ranking_options.ranker"),
    ({"query": []}, "query"),
    ({"query": 5}, "query"),
    ({}, "query"),
])
def test_invalid_requests(http, store, body, param):
    r = http.post(f"/vector_stores/{store}/search", json=body)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param and r.json()["error"]["type"] == "invalid_request_error"


def test_ranking_options_and_bounds(client, store):
    everything = page_of(client, store, query="planet", max_num_results=50)
    assert len(everything["data"]) == len(DOCS)  # one chunk each; the vector ranking ranks them all
    only_best = page_of(client, store, query="planet", ranking_options={"score_threshold": 0.9})
    assert only_best["data"] and all(i["score"] >= 0.9 for i in only_best["data"])
    assert len(only_best["data"]) < len(everything["data"])
    assert page_of(client, store, query="planet", ranking_options={"score_threshold": 1.0})["data"] == [
        i for i in everything["data"] if i["score"] >= 1.0]
    assert len(page_of(client, store, query="planet", max_num_results=1)["data"]) == 1
    for ranker in ("none", "auto", "default-2024-11-15"):
        page = page_of(client, store, query="acorns", ranking_options={"ranker": ranker})
        assert page["data"][0]["filename"] == "oak.txt"


def test_unknown_store(client):
    with pytest.raises(openai.NotFoundError):
        client.vector_stores.search("vs_missing", query="x")


def test_needle_among_filler_and_default_limit(client):
    made = client.vector_stores.create(name="haystack")
    filler = [(f"filler{i:02d}.txt", f"Filler note {i}: the weather was mild and the meeting ran long. "
               f"Topics were budgets, schedules and office plants.".encode()) for i in range(50)]
    needle = ("needle.txt", b"The launch code for project Zanzibar is tangerine-42.")
    batch = client.vector_stores.file_batches.upload_and_poll(made.id, files=[*filler[:25], needle, *filler[25:]])
    assert batch.file_counts.completed == 51 and batch.status == "completed"
    page = page_of(client, made.id, query="Zanzibar launch code")
    assert page["data"][0]["filename"] == "needle.txt"
    assert "tangerine-42" in page["data"][0]["content"][0]["text"]
    assert len(page["data"]) == 10  # the spec's default max_num_results
    store = assert_schema(client.vector_stores.retrieve(made.id), "VectorStoreObject")
    assert store["file_counts"]["completed"] == 51 and store["usage_bytes"] > 0


# --- an embedding model out of reach: a 503 to retry, never a 500 ---------------------------------------


def _models_file(tmp_path, upstream) -> str:
    """Chat goes to the scripted upstream; embeddings to ``ASSISTD_LLM_BASE_URL`` (the ``default`` upstream)."""
    path = tmp_path / "models.toml"
    path.write_text(f'[upstreams.chat]\nbase_url = "{upstream.url}/v1"\n\n[models."*"]\nupstream = "chat"\n')
    return str(path)


@contextlib.contextmanager
def _embeddings_server(database_url, upstream, tmp_path, embeddings_url: str) -> Iterator[Any]:
    """A server whose embeddings go to ``embeddings_url``, on a database of its own: keyless dev mode ends
    on a database where another test stored a key, and these tests call it keyless."""
    from tests.run_helpers import fresh_database, serve, server_env

    with fresh_database(database_url, tmp_path) as url:
        with serve(server_env(url, upstream, tmp_path, ASSISTD_LLM_BASE_URL=embeddings_url,
                              ASSISTD_EMBEDDINGS="upstream:text-embedding-3-small",
                              ASSISTD_MODELS_FILE=_models_file(tmp_path, upstream))) as proc:
            yield proc


def _search_raw(proc, store_id: str):
    import httpx

    return httpx.post(f"{proc.url}/v1/vector_stores/{store_id}/search", json={"query": "anything"}, timeout=60,
                      headers={"Authorization": "Bearer sk-any", "OpenAI-Beta": "assistants=v2"})


def _assert_retry_later(response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == "1"
    error = response.json()["error"]
    assert error["type"] == "server_error" and "embedding model cannot be reached" in error["message"]
    assert set(error) == {"message", "type", "param", "code"}


def test_search_and_a_file_search_run_with_the_embeddings_upstream_down(database_url, upstream, tmp_path):
    from tests.run_helpers import new_assistant, new_thread, sdk, wait_run
    from tests.servers import free_port

    closed = f"http://127.0.0.1:{free_port()}/v1"
    with _embeddings_server(database_url, upstream, tmp_path, closed) as proc:
        client = sdk(proc)
        store_id = client.vector_stores.create(name="embeddings down").id
        _assert_retry_later(_search_raw(proc, store_id))
        assistant = new_assistant(client, tools=[{"type": "file_search"}],
                                  tool_resources={"file_search": {"vector_store_ids": [store_id]}})
        thread = new_thread(client, '[tool: file_search {"query": "anything"}] [cite]')
        run = client.beta.threads.runs.create(thread.id, assistant_id=assistant.id)
        ended = wait_run(client, thread.id, run.id, {"completed", "failed"})
    assert ended["status"] == "failed"
    assert ended["last_error"]["code"] == "server_error"
    assert "embedding model cannot be reached" in ended["last_error"]["message"]


@pytest.fixture(scope="module")
def refused(database_url, upstream, tmp_path_factory) -> Iterator[tuple[Any, dict[str, Any]]]:
    """A server whose embeddings upstream refuses every request with the status a test puts in the dict (and
    notes each status it answered)."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    answer: dict[str, Any] = {"status": 503, "answered": []}

    class Refusing(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            self.rfile.read(int(self.headers.get("content-length") or 0))
            body = b'{"error": {"message": "busy", "type": "server_error", "param": null, "code": null}}'
            self.send_response(answer["status"])
            answer["answered"].append(answer["status"])
            self.send_header("content-type", "application/json")
            self.send_header("retry-after-ms", "1")  # the openai client retries at once, not after its back-off
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    refusing = ThreadingHTTPServer(("127.0.0.1", 0), Refusing)
    thread = threading.Thread(target=refusing.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{refusing.server_address[1]}/v1"
        with _embeddings_server(database_url, upstream, tmp_path_factory.mktemp("refused"), url) as proc:
            yield proc, answer
    finally:
        refusing.shutdown()
        refusing.server_close()
        thread.join()


@pytest.mark.parametrize("status", [503, 429])
def test_search_answers_503_while_the_embeddings_upstream_refuses(refused, status):
    from tests.run_helpers import sdk

    proc, answer = refused
    answer["status"] = status
    client = sdk(proc)
    store_id = client.vector_stores.create(name="embeddings refused").id
    _assert_retry_later(_search_raw(proc, store_id))
    assert status in answer["answered"]  # the refusal came from the upstream, with this status
