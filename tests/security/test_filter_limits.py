"""Search filters at and beyond their documented limits, run for real against a store with files, on
each database: at the limit a search answers 200 (the SQL stays within SQLite's expression depth and
either backend's parameter count), beyond it a 400 naming where the filter went wrong; never a 500."""

from __future__ import annotations

from typing import Any

import pytest

from assistd.retrieval.filters import MAX_DEPTH, MAX_TERMS


@pytest.fixture(scope="module")
def store(client) -> str:
    made = client.vector_stores.create(name="filter-limits")
    files = [{"file_id": client.files.create(file=(f"{i}.txt", f"doc {i} about comets".encode()),
                                             purpose="assistants").id,
              "attributes": {"n": i, "tag": f"t{i}", 'odd"key': "q", "flag": bool(i % 2)}} for i in range(3)]
    batch = client.vector_stores.file_batches.create_and_poll(made.id, files=files)
    assert batch.file_counts.completed == 3
    return made.id


def eq(i: int) -> dict[str, Any]:
    return {"type": "eq", "key": "n", "value": i}


def nested(levels: int) -> dict[str, Any]:
    """``levels`` compound filters, each inside the previous one."""
    filt: dict[str, Any] = eq(1)
    for _ in range(levels):
        filt = {"type": "and", "filters": [filt]}
    return filt


def search(http, store: str, filters: Any):
    return http.post(f"/vector_stores/{store}/search",
                     json={"query": "comets", "max_num_results": 50, "filters": filters})


def names(r) -> set[str]:
    assert r.status_code == 200, r.text
    return {item["filename"] for item in r.json()["data"]}


@pytest.mark.parametrize(("filters", "expected"), [
    # at the limit: one compound + 999 comparisons, or one comparison with 999 values
    ({"type": "or", "filters": [eq(i) for i in range(MAX_TERMS - 1)]}, {"0.txt", "1.txt", "2.txt"}),
    ({"type": "and", "filters": [{"type": "ne", "key": "n", "value": -i} for i in range(1, MAX_TERMS)]},
     {"0.txt", "1.txt", "2.txt"}),
    ({"type": "in", "key": "n", "value": list(range(2, MAX_TERMS + 1))}, {"2.txt"}),
    ({"type": "in", "key": "tag", "value": [f"t{i}" for i in range(1, MAX_TERMS)]}, {"1.txt", "2.txt"}),
    ({"type": "nin", "key": "n", "value": [0, 1, *[f"{i}" for i in range(MAX_TERMS - 3)]]}, {"2.txt"}),
    ({"type": "in", "key": "n", "value": [1, "1", 2.0]}, {"1.txt", "2.txt"}),  # strict types, mixed list
    (nested(MAX_DEPTH - 1), {"1.txt"}),
    # a quote in a key is neither SQL nor JSON-path syntax, and matches on both databases
    ({"type": "eq", "key": 'odd"key', "value": "q"}, {"0.txt", "1.txt", "2.txt"}),
    ({"type": "ne", "key": 'odd"key', "value": "q"}, set()),
    ({"type": "eq", "key": "odd", "value": "q"}, set()),
    ({"type": "eq", "key": "n", "value": 2**63}, set()),
    ({"type": "lt", "key": "n", "value": -(2**63)}, set()),
    ({"type": "eq", "key": "flag", "value": True}, {"1.txt"}),
])
def test_filters_at_the_limits_are_searched(http, store, filters, expected):
    assert names(search(http, store, filters)) == expected


@pytest.mark.parametrize(("filters", "param"), [
    ({"type": "or", "filters": [eq(i) for i in range(MAX_TERMS)]}, None),
    ({"type": "or", "filters": [eq(i) for i in range(10_000)]}, None),
    ({"type": "in", "key": "n", "value": list(range(MAX_TERMS))}, "filters.value"),
    ({"type": "in", "key": "n", "value": list(range(100_000))}, "filters.value"),
    ({"type": "and", "filters": [{"type": "in", "key": "n", "value": list(range(600))}] * 2}, None),
    (nested(MAX_DEPTH), None),
    (nested(300), None),
    ({"type": "and", "filters": [{"type": ["eq"], "key": "n", "value": 1}]}, "filters.filters[0].type"),
    ({"type": "or", "filters": [{"type": {"x": 1}, "filters": []}]}, "filters.filters[0].type"),
    ({"type": 7, "key": "n", "value": 1}, "filters.type"),
    ({"key": "n", "value": 1}, "filters.type"),  # type is required by the spec
    ({"type": "eq", "key": "n", "value": 2**64}, "filters.value"),
    ({"type": "in", "key": "n", "value": [1, -(2**64) - 1]}, "filters.value"),
    ({"type": "eq", "key": "n\x00", "value": 1}, "filters.key"),
    ({"type": "eq", "key": "tag", "value": "t\x00"}, "filters.value"),
    ({"type": "in", "key": "tag", "value": ["a", "t\x00"]}, "filters.value[1]"),
    ({"type": "or", "filters": [eq(1), {"type": "eq", "key": 5, "value": 1}]}, "filters.filters[1].key"),
    ({"type": "and", "filters": [eq(1), "eq"]}, "filters.filters[1]"),
    ({"type": "eq", "key": "n", "value": [1]}, "filters.value"),
    ({"type": "in", "key": "n", "value": [True]}, "filters.value"),
])
def test_filters_beyond_the_limits_are_400s(http, store, filters, param):
    r = search(http, store, filters)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param if param else error["param"].startswith("filters"), error


def test_a_filter_nested_past_the_json_parser_is_a_400(http, store):
    deep = '{"type":"and","filters":[' * 5000 + '{"type":"eq","key":"n","value":1}' + "]}" * 5000
    r = http.post(f"/vector_stores/{store}/search", content=f'{{"query":"x","filters":{deep}}}',
                  headers={"Content-Type": "application/json"})
    assert r.status_code == 400, r.text


@pytest.mark.parametrize("body", [
    {"query": "x", "filters": None},
    {"query": "x", "ranking_options": None},
    {"query": "x", "max_num_results": None},
    {"query": "x", "rewrite_query": None},
])
def test_search_fields_the_spec_does_not_make_nullable(http, store, body):
    r = http.post(f"/vector_stores/{store}/search", json=body)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == next(k for k in body if k != "query")


@pytest.mark.parametrize("query", ["comets " * 200_000, ["comets " * 50_000] * 20, "\U0001f600" * 100_000])
def test_huge_queries_are_never_500s(http, store, query):
    r = http.post(f"/vector_stores/{store}/search", json={"query": query})
    assert r.status_code in (200, 400), r.text
