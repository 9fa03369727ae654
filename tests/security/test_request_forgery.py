"""A JSON body must say it is JSON: the only bodies a browser page may send cross-site without a CORS
preflight are ``text/plain``, form and multipart ones (or none at all), so a server that read those as JSON
could be made to create objects by any web page its user visits (worst with keyless dev mode)."""

from __future__ import annotations

import json

import pytest

from tests.test_auth import error_of

BODY = json.dumps({"model": "m", "name": "forged?"}).encode()


@pytest.mark.parametrize("content_type", [
    "text/plain", "text/plain;charset=UTF-8", "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x", "application/octet-stream", "text/json", "application/jsonx", "",
])
def test_non_json_content_types_are_refused(http, content_type):
    before = {a["id"] for a in http.get("/assistants", params={"limit": 100}).json()["data"]}
    r = http.post("/assistants", content=BODY, headers={"Content-Type": content_type})
    error = error_of(r, 400)
    assert error["type"] == "invalid_request_error"
    assert error["message"].startswith("Unsupported content type:") and "application/json" in error["message"]
    assert {a["id"] for a in http.get("/assistants", params={"limit": 100}).json()["data"]} == before


def test_a_body_without_content_type_is_refused(http):
    # fetch(url, {method: "POST", body: new Blob([json])}) sends no Content-Type, and no preflight.
    error = error_of(http.post("/threads", content=b"{}"), 400)
    assert "Content-Type: application/json" in error["message"]


@pytest.mark.parametrize("content_type", ["application/json", "application/json; charset=utf-8",
                                          "Application/JSON", "application/json;charset=UTF-8"])
def test_json_content_types_are_accepted(http, content_type):
    r = http.post("/assistants", content=BODY, headers={"Content-Type": content_type})
    assert r.status_code == 200, r.text


def test_posts_without_a_body_need_no_content_type(http, client):
    # What the SDKs send for cancel and friends, and curl -X POST: no body at all.
    thread = client.beta.threads.create()
    r = http.post(f"/threads/{thread.id}/runs/run_missing/cancel")
    assert r.status_code == 404, r.text
    assert http.post("/threads").status_code == 200


def test_json_is_parsed_once_with_exact_integers(http):
    """orjson reads integers beyond 64 bits as floats; the value reaching validation must stay exact."""
    params = {"type": "object", "properties": {"n": {"type": "integer", "maximum": 2**70}}}
    body = {"model": "m", "tools": [{"type": "function", "function": {"name": "f", "parameters": params}}]}
    r = http.post("/assistants", content=json.dumps(body), headers={"Content-Type": "application/json"})
    if r.status_code == 200:  # accepted: then stored exactly as sent, not as 1.18e21
        assert r.json()["tools"][0]["function"]["parameters"]["properties"]["n"]["maximum"] == 2**70
    else:
        assert r.status_code == 400
