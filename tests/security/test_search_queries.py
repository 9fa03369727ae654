"""Odd text in vector store searches, on a store whose chunks hold the same odd text (so every word the
keyword ranking keeps matches, and is counted and ranked by the database's full-text search): control
characters, astral-plane characters (JSON surrogate pairs), noncharacters, very long words, punctuation
alone, full-text query syntax, quotes and backslashes — in ``query`` (string and array), in ``filters`` and
in a ``file_search`` run's query (the scripted model's). Each storable string answers 200, each unstorable
one (NUL, a lone surrogate) a 400 naming where it is; never a 500. A run completes whatever its model asked
to search for, a NUL included (a model's arguments are not checked as a request body is).

The strings are generated from those classes with a fixed seed, plus a list of hand-picked ones."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from tests.run_helpers import MODEL, marker, wait_run

CONTROLS = [chr(c) for c in (*range(0x01, 0x20), 0x7F, *range(0x80, 0xA0))]
ASTRAL = ["\U0001f600", "\U0001d400", "\U00020000", "\U000e4438", "\U000374f0", "\U000f0000", "\U0010fffd",
          "\U0001f1eb\U0001f1f7", "\U0001f468\u200d\U0001f469\u200d\U0001f467"]
ODD_BMP = ["\ufffe", "\uffff", "\ufeff", "\u200b", "\u202e", "\u0301", "\u00df", "\u0130", "\u01c6", "\ufb01",
           "\u0660", "\u3000", "\uff21", "\u2028", "\u00d7", "\u00fe", "\u65e5\u672c"]
SYNTAX = ["&", "|", "!", "(", ")", ":", "*", "<->", "<2>", "'", '"', "\\", "-", "OR", "AND", "NOT", "NEAR",
          "^", "~", "%", "_", "\\'", "''", ":*", "!!", "&&", "||", "{", "}", "[", "]", "@@", "$1", "?", ";"]
WORDS = ["otters", "sleep", "8", "t", "the", "a1b2", "x_y", "naïve", "straße"]

HAND_PICKED = [
    # schemathesis's replay pJZY6v (docs/compatibility.md), as the server decodes it
    "=\U000e4438\x0f\x8b\xd7\xfek\x9e\x04\x0f8\U000374f0\x1aT",
    "otters & sleep", "otters | !sleep", "(otters", "otters:*", "otters <-> sleep", "!!!", "&|!():*<->",
    "\\", "\\\\otters\\", "'", "''", '"', '"otters"', "'otters'", "...", "?!?!", "-otters", "otters -sleep",
    "a" * 2100, "otters " + "z" * 5000, "x" * 100_000, " ".join(f"w{i}" for i in range(200)),
    "the of and to", "t", "_", "__", "\x01\x02\x1f", "\ufffe\uffff", "\U0001f600" * 50, "\u0301" * 20,
    "8" * 3000, "1e309", "NaN", "-0", "\u0000x",
]
UNSTORABLE = ["\x00", "otters\x00", "\ud800", "\udc00otters", "otters\udbff"]


def generated(count: int = 40, seed: int = 15) -> list[str]:
    rng = random.Random(seed)
    pools = [CONTROLS, ASTRAL, ODD_BMP, SYNTAX, WORDS]
    out = []
    for _ in range(count):
        parts = [rng.choice(rng.choice(pools)) for _ in range(rng.randint(1, 12))]
        out.append("".join(p + (" " if rng.random() < 0.3 else "") for p in parts))
    return out


STORABLE = [s for s in HAND_PICKED if "\x00" not in s] + generated()


def body_bytes(body: dict[str, Any]) -> bytes:
    # ASCII JSON: astral characters go as surrogate pairs and lone surrogates as "\\udXXX" escapes, as a
    # client serialising with JSON's \\u escapes sends them.
    return json.dumps(body).encode()


def post(http, path: str, body: dict[str, Any]):
    return http.post(path, content=body_bytes(body), headers={"Content-Type": "application/json"})


@pytest.fixture(scope="module")
def store(client) -> str:
    """One file holding every storable string (in chunks of a few strings each), one plain file."""
    made = client.vector_stores.create(name="odd-queries")
    odd = "\n".join(s[:3000] for s in STORABLE)
    files = [{"file_id": client.files.create(file=(name, text.encode()), purpose="assistants").id,
              "attributes": {"kind": name}}
             for name, text in (("odd.txt", odd), ("plain.txt", "Otters hold hands while they sleep. 8 t."))]
    batch = client.vector_stores.file_batches.create_and_poll(made.id, files=files)
    assert batch.file_counts.completed == 2, batch
    return made.id


def ok(r) -> dict[str, Any]:
    assert r.status_code == 200, (r.status_code, r.text[:500])
    page = r.json()
    assert page["object"] == "vector_store.search_results.page"
    return page


def refused(r, param: str | None) -> None:
    assert r.status_code == 400, (r.status_code, r.text[:500])
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param, error


@pytest.mark.parametrize("query", STORABLE, ids=lambda s: repr(s[:24]))
def test_odd_query_answers(http, store, query):
    page = ok(post(http, f"/vector_stores/{store}/search", {"query": query, "max_num_results": 50}))
    assert page["search_query"] == [query]
    page = ok(post(http, f"/vector_stores/{store}/search", {
        "query": [query, "otters", query[::-1]], "max_num_results": 17,
        "ranking_options": {"ranker": "auto", "score_threshold": 0.0789}}))
    assert page["search_query"] == [query, "otters", query[::-1]]


@pytest.mark.parametrize("query", UNSTORABLE, ids=repr)
def test_unstorable_query_is_refused(http, store, query):
    # A NUL is refused naming where it is; a lone surrogate already by the JSON parser (not Unicode text).
    named = "\x00" in query
    refused(post(http, f"/vector_stores/{store}/search", {"query": query}), "query" if named else None)
    refused(post(http, f"/vector_stores/{store}/search", {"query": ["otters", query]}),
            "query[1]" if named else None)


@pytest.mark.parametrize("value", STORABLE[::3], ids=lambda s: repr(s[:24]))
def test_odd_filter_strings_answer(http, store, value):
    for filters in ({"type": "eq", "key": value, "value": value},
                    {"type": "in", "key": "kind", "value": [value, "odd.txt"]},
                    {"type": "or", "filters": [{"type": "ne", "key": value[:64], "value": value},
                                               {"type": "eq", "key": "kind", "value": value}]}):
        r = post(http, f"/vector_stores/{store}/search", {"query": "otters", "filters": filters})
        assert r.status_code in (200, 400), (filters, r.status_code, r.text[:500])
        if r.status_code == 400:  # a key too long, for instance: named, never a server error
            assert r.json()["error"]["param"].startswith("filters"), r.text


@pytest.mark.parametrize("ranking_options", [
    {}, {"ranker": "none"}, {"ranker": "default-2024-11-15", "score_threshold": 1},
    {"score_threshold": 0}, {"score_threshold": 0.9999999}, {"score_threshold": 5e-324},
])
def test_ranking_options_with_odd_query(http, store, ranking_options):
    for query in STORABLE[::7]:
        ok(post(http, f"/vector_stores/{store}/search", {"query": query, "ranking_options": ranking_options}))


def _model_query(query: str) -> str:
    """The user message making the scripted model call file_search with ``query``: brackets would end the
    directive, so they go as JSON escapes (the model's arguments are the decoded JSON)."""
    args = json.dumps({"query": query}).replace("[", "\\u005b").replace("]", "\\u005d")
    return f"{marker('oddq')} [tool: file_search {args}]"


@pytest.mark.parametrize("query", [*HAND_PICKED[:1], "otters & sleep", "&|!():*<->", "\\'\"", "a" * 2100,
                                   # the model's arguments are not a request body: nothing refused them (a
                                   # lone surrogate the scripted model cannot send: it breaks its stream)
                                   "otters\x00sleep", *generated(6, seed=151)],
                         ids=lambda s: repr(s[:24]))
def test_file_search_run_with_odd_query_completes(client, store, query):
    assistant = client.beta.assistants.create(model=MODEL, tools=[{"type": "file_search"}],
                                              tool_resources={"file_search": {"vector_store_ids": [store]}})
    thread = client.beta.threads.create(messages=[{"role": "user", "content": _model_query(query)}])
    run = client.beta.threads.runs.create(thread.id, assistant_id=assistant.id)
    done = wait_run(client, thread.id, run.id, {"completed", "failed", "incomplete", "expired"}, timeout=60)
    assert done["status"] == "completed", done.get("last_error")
    steps = client.beta.threads.runs.steps.list(run.id, thread_id=thread.id)
    calls = [c for s in steps.data if s.type == "tool_calls" for c in s.step_details.tool_calls]
    assert calls and calls[0].type == "file_search"


BIG_NUMBERS = {"big": 1e20, "huge": 1.5e300, "negative": -1e19, "tiny": 1e-300, "u64": 2**64 - 1,
               "i64": -(2**63), "whole": 2.0, "max": 1.7976931348623157e308}


def test_search_gives_back_attribute_numbers_of_any_size(client, http):
    """PostgreSQL's JSONB writes 1e20 back as a 21-digit integer: the results must still be written (this was
    the search 500 of the long conformance profile, schemathesis replays pJZY6v and GCwgGS), with the
    numbers as sent."""
    made = client.vector_stores.create(name="big-numbers")
    file_id = client.files.create(file=("big.txt", b"Quasars are very far away."), purpose="assistants").id
    created = client.vector_stores.files.create_and_poll(file_id, vector_store_id=made.id,
                                                         attributes={"big": 1.0})
    assert created.status == "completed", created
    r = post(http, f"/vector_stores/{made.id}/files/{file_id}", {"attributes": BIG_NUMBERS})
    assert r.status_code == 200, r.text
    for query in ("quasars", "s\u00ef\u00ac"):
        (item,) = ok(post(http, f"/vector_stores/{made.id}/search", {"query": query}))["data"]
        assert item["attributes"] == BIG_NUMBERS, item["attributes"]
    r = post(http, f"/vector_stores/{made.id}/search", {"query": "quasars", "filters": {
        "type": "gt", "key": "big", "value": 1e19}})
    assert [i["filename"] for i in ok(r)["data"]] == ["big.txt"]
