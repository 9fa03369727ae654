"""Untrusted input in every field of every JSON body: integers beyond 64 bits, NUL and unpaired surrogates,
unknown nested keys — each a 400 ``invalid_request_error`` naming the exact param, never a 500.

The fields are generated from the routes' models (tests/security/body_fields.py): a field added later is
attacked here without anyone listing it. Bodies go to ids that do not exist: a body is validated before
any object is looked up, so each case costs one request and no setup.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.security.body_fields import (
    all_leaves,
    build,
    concrete,
    has_upper_bound,
    minimal,
    model_prefixes,
)

LEAVES = all_leaves()
INTS = [(route, path) for route, path, kind, _ in LEAVES if kind is int]
STRINGS = [(route, path, kind) for route, path, kind, _ in LEAVES if kind in (str, "literal", Any)]
MAPS = sorted({(route, path[:path.index(("key",))]) for route, path, _, _ in LEAVES if ("key",) in path},
              key=str)
# Integers bounded by a validator rather than by their type (attribute values fit in 64 bits).
VALIDATED_INTS = {"attributes.k", "files[0].attributes.k"}


def _id(route: str, path: Any = "") -> str:
    return f"{route} {concrete(path) if isinstance(path, tuple) else path}".strip()


def assert_400(r: httpx.Response, param: str | None) -> dict[str, Any]:
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error", error
    if param is not None:
        assert error["param"] == param, error
    return error


def test_the_generated_fields_cover_the_bodies():
    """The generator sees what it should: a change to the models that hid fields from it fails here."""
    names = {concrete(p) for _, p, _, _ in LEAVES}
    for expected in ("max_prompt_tokens", "truncation_strategy.last_messages", "tool_outputs[0].output",
                     "messages[0].content[0].image_url.url", "tools[0].function.parameters.k",
                     "attributes.k", "filters.k", "query", "expires_after.days", "metadata.k",
                     "thread.messages[0].attachments[0].file_id", "additional_messages[0].content"):
        assert expected in names, expected
    assert len({route for route, _ in INTS}) >= 10 and len(STRINGS) > 150


@pytest.mark.parametrize(("route", "path"), INTS, ids=[_id(*c) for c in INTS])
def test_every_integer_field_has_an_upper_bound(route, path):
    meta = next(m for r, p, _, m in LEAVES if (r, p) == (route, path))
    assert has_upper_bound(meta) or concrete(path) in VALIDATED_INTS, concrete(path)


@pytest.mark.parametrize("value", [2**64, 10**30, -(2**64)], ids=["2^64", "10^30", "-2^64"])
@pytest.mark.parametrize(("route", "path"), INTS, ids=[_id(*c) for c in INTS])
def test_huge_integers_are_400s(http, route, path, value):
    error = assert_400(http.post(route, json=build(path, value)), concrete(path))
    assert "server" not in error["message"]


@pytest.mark.parametrize(("route", "path"), [(r, p) for r, p, k in STRINGS if k is Any],
                         ids=[_id(r, p) for r, p, k in STRINGS if k is Any])
def test_huge_integers_in_free_form_json_are_400s(http, route, path):
    """Function parameters, JSON schemas, filters: orjson stores integers of at most 64 bits."""
    if path[-1] == ("key",):
        path = path[:-1]  # the free-form object's own field
    where = concrete(path)
    value = {"type": "eq", "key": "k", "value": 2**70} if where == "filters" else {"n": [2**70]}
    error = assert_400(http.post(route, json=build(path, value)), None)
    assert error["param"].startswith(where), error


NUL = "a\x00b"


@pytest.mark.parametrize(("route", "path", "kind"), STRINGS, ids=[_id(r, p) for r, p, _ in STRINGS])
def test_nul_in_every_string_is_a_400(http, route, path, kind):
    value, param = ({"k": NUL}, concrete(path) + ".k") if kind is Any else (NUL, concrete(path))
    error = assert_400(http.post(route, json=build(path, value)), param)
    assert "NUL" in error["message"]


@pytest.mark.parametrize(("route", "path"), MAPS, ids=[_id(*c) for c in MAPS])
def test_nul_in_every_map_key_is_a_400(http, route, path):
    body = build(path, {"k\x00": "v"})
    assert_400(http.post(route, json=body), concrete(path))


@pytest.mark.parametrize(("route", "body"), [
    ("/assistants", b'{"model": "m", "name": "\\ud800"}'),  # an unpaired surrogate, escaped
    ("/assistants", b'{"model": "m", "metadata": {"\\udfff": "v"}}'),
    ("/threads/x/messages", b'{"role": "user", "content": "\\ud83d"}'),
    ("/vector_stores/x/search", b'{"query": "\\ud800"}'),
    ("/assistants", b'{"model": "m", "name": "\xff\xfe"}'),  # not UTF-8 at all
    ("/threads", b'{"messages": [{"role": "user", "content": "\xed\xa0\x80"}]}'),  # a surrogate in UTF-8
    ("/assistants", b'{"model": "m", "temperature": 1e400}'),
])
def test_invalid_unicode_and_numbers_are_400s(http, route, body):
    r = http.post(route, content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize("url", [
    "/assistants/asst_%00", "/threads/thread_%00/messages", "/threads/thread_%00/runs/run_%00/steps",
    "/vector_stores/vs_%00/files/file_%00", "/files/file-%00", "/assistants?after=asst_%00",
    "/assistants?before=%00", "/vector_stores?after=%00", "/files?purpose=%00",
])
def test_nul_in_urls_is_never_a_500(http, url):
    r = http.get(url)
    assert r.status_code in (200, 400, 404), r.text


@pytest.mark.parametrize(("route", "path", "model"), model_prefixes(),
                         ids=[f"{_id(r, p)} {m.__name__}" for r, p, m in model_prefixes()])
def test_unknown_nested_keys_are_400s(http, route, path, model):
    """As unknown top-level keys always were: ``tools[0].bogus`` names where the key sits."""
    where = concrete(path)
    body = build(path, {**minimal(model), "bogus": 1}) if path else {**minimal(model), "bogus": 1}
    error = assert_400(http.post(route, json=body), f"{where}.bogus".lstrip("."))
    assert error["message"].startswith("Unrecognized request argument"), error
