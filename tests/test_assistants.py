"""Assistants through the official SDK, validated against the spec."""

from __future__ import annotations

import openai
import pytest

from tests.spec import assert_list, assert_schema

FUNCTION_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def test_create_retrieve_modify_delete(client):
    a = client.beta.assistants.create(
        model="gpt-4o-mini", name="x", instructions="be brief", tools=[FUNCTION_TOOL],
        metadata={"k": "v"},
    )
    raw = assert_schema(a, "AssistantObject")
    assert raw["id"].startswith("asst_") and len(raw["id"]) == 5 + 24
    assert a.object == "assistant" and a.model == "gpt-4o-mini" and a.metadata == {"k": "v"}
    assert a.tools[0].function.name == "get_weather"
    assert a.temperature == 1.0 and a.top_p == 1.0 and a.response_format == "auto"
    assert a.tool_resources.code_interpreter is None

    got = client.beta.assistants.retrieve(a.id)
    assert got == a

    changed = client.beta.assistants.update(
        a.id, name="y", temperature=0.5, tools=[{"type": "code_interpreter"}],
        tool_resources={"code_interpreter": {"file_ids": []}},
        response_format={"type": "json_object"},
    )
    assert_schema(changed, "AssistantObject")
    assert changed.name == "y" and changed.temperature == 0.5 and changed.instructions == "be brief"
    assert [t.type for t in changed.tools] == ["code_interpreter"]
    assert changed.response_format.type == "json_object"
    assert client.beta.assistants.retrieve(a.id).name == "y"

    deleted = client.beta.assistants.delete(a.id)
    assert_schema(deleted, "DeleteAssistantResponse")
    assert deleted.deleted is True and deleted.id == a.id and deleted.object == "assistant.deleted"
    with pytest.raises(openai.NotFoundError) as err:
        client.beta.assistants.retrieve(a.id)
    assert err.value.body["message"] == f"No assistant found with id '{a.id}'."


def test_all_tool_kinds_and_response_formats(client):
    a = client.beta.assistants.create(
        model="m",
        tools=[
            {"type": "code_interpreter"},
            {"type": "file_search", "file_search": {"max_num_results": 5,
                                                    "ranking_options": {"score_threshold": 0.5}}},
            FUNCTION_TOOL,
        ],
        response_format={"type": "json_schema", "json_schema": {
            "name": "answer", "schema": {"type": "object"}, "strict": True}},
    )
    raw = assert_schema(a, "AssistantObject")
    assert raw["tools"][1]["file_search"]["ranking_options"] == {"ranker": "auto", "score_threshold": 0.5}
    assert raw["response_format"]["json_schema"]["schema"] == {"type": "object"}


def test_nulls_mean_not_given(http):
    """LlamaIndex sends temperature/top_p null; that means the defaults (where the document allows null)."""
    r = http.post("/assistants", json={"model": "m", "temperature": None, "top_p": None, "name": None,
                                       "metadata": None, "response_format": None})
    assert r.status_code == 200, r.text
    body = assert_schema(r.json(), "AssistantObject")
    assert body["temperature"] == 1.0 and body["metadata"] == {} and body["tools"] == []
    r = http.post("/assistants", json={"model": "m", "tools": None})  # not nullable in the document
    assert r.status_code == 400 and r.json()["error"]["param"] == "tools", r.text


def test_list(client):
    made = [client.beta.assistants.create(model="m", name=f"list-{i}") for i in range(3)]
    page = client.beta.assistants.list(limit=2, order="desc")
    assert_list(page, "AssistantObject")
    assert [a.id for a in page.data] == [made[2].id, made[1].id]
    assert page.has_more is True
