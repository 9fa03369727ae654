"""Reading runs and run steps: list, retrieve, modify, include[], ids from elsewhere, bad tool outputs."""

from __future__ import annotations

import openai
import pytest

from tests.run_helpers import (
    FILE_SEARCH_CONTENT,
    WEATHER,
    call_ids,
    check_run,
    check_step,
    marker,
    new_assistant,
    new_thread,
    steps_of,
    wait_run,
)
from tests.spec import assert_list, assert_schema

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def assistant(client):
    return new_assistant(client, tools=[WEATHER])


@pytest.fixture(scope="module")
def three_runs(client, assistant):
    """A thread with three finished runs, oldest first."""
    thread = new_thread(client, f"{marker('three')} [reply: fine]")
    runs = [client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
            for _ in range(3)]
    assert [r.status for r in runs] == ["completed"] * 3
    return thread, runs


@pytest.fixture(scope="module")
def tool_run(client, assistant):
    """A finished run of three steps: two tool rounds, then the answer."""
    thread = new_thread(client, f'{marker("steps")} [tool: get_weather {{"city": "Nice"}}] [tool-again: 2]')
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
    for output in ("first", "second"):
        assert run.status == "requires_action"
        run = client.beta.threads.runs.submit_tool_outputs_and_poll(
            run_id=run.id, thread_id=thread.id, tool_outputs=[{"tool_call_id": call_ids(run)[0], "output": output}])
    assert check_run(run)["status"] == "completed"
    return thread, run


@pytest.fixture
def waiting_run(client, assistant):
    """A run waiting for the outputs of two parallel calls; cancelled afterwards if still active."""
    thread = new_thread(client, f'{marker("wait")} [tool: get_weather {{"city": "A"}}] '
                                f'[tool: get_weather {{"city": "B"}}]')
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
    assert run.status == "requires_action"
    yield thread, run
    current = client.beta.threads.runs.retrieve(run.id, thread_id=thread.id)
    if current.status == "requires_action":
        client.beta.threads.runs.cancel(run.id, thread_id=thread.id)
        wait_run(client, thread.id, run.id, "cancelled")


# --- runs ------------------------------------------------------------------------------------------------------

def test_list_runs_in_both_orders_and_by_page(client, three_runs):
    thread, runs = three_runs
    ids = [r.id for r in runs]
    page = client.beta.threads.runs.list(thread.id)
    assert [r["id"] for r in assert_list(page, "RunObject")["data"]] == ids[::-1]
    asc = client.beta.threads.runs.list(thread.id, order="asc", limit=2)
    raw = assert_list(asc, "RunObject")
    assert [r["id"] for r in raw["data"]] == ids[:2] and raw["has_more"] is True
    rest = assert_list(client.beta.threads.runs.list(thread.id, order="asc", after=ids[1]), "RunObject")
    assert [r["id"] for r in rest["data"]] == ids[2:] and rest["has_more"] is False
    before = assert_list(client.beta.threads.runs.list(thread.id, order="asc", before=ids[2]), "RunObject")
    assert [r["id"] for r in before["data"]] == ids[:2]
    for item in page.data:
        check_run(item)


def test_retrieve_and_modify_run_metadata(client, three_runs):
    thread, runs = three_runs
    run = runs[0]
    got = check_run(client.beta.threads.runs.retrieve(run.id, thread_id=thread.id))
    assert got == check_run(run)
    changed = client.beta.threads.runs.update(run.id, thread_id=thread.id, metadata={"reviewed": "yes"})
    raw = check_run(changed)
    assert raw["metadata"] == {"reviewed": "yes"} and raw["status"] == "completed"
    assert check_run(client.beta.threads.runs.retrieve(run.id, thread_id=thread.id))["metadata"] == {
        "reviewed": "yes"}
    # everything but metadata is untouched
    assert {k: v for k, v in raw.items() if k != "metadata"} == {
        k: v for k, v in check_run(run).items() if k != "metadata"}


def test_run_ids_from_elsewhere_are_not_found(client, client_b, three_runs, http):
    thread, runs = three_runs
    other = client.beta.threads.create()
    with pytest.raises(openai.NotFoundError):
        client.beta.threads.runs.retrieve(runs[0].id, thread_id=other.id)
    with pytest.raises(openai.NotFoundError):
        client.beta.threads.runs.retrieve("run_doesnotexist", thread_id=thread.id)
    r = http.post(f"/threads/{other.id}/runs/{runs[0].id}", json={"metadata": {"a": "b"}})
    assert r.status_code == 404 and r.json()["error"]["type"] == "invalid_request_error"
    assert http.post(f"/threads/{other.id}/runs/{runs[0].id}/cancel").status_code == 404
    assert http.get(f"/threads/{other.id}/runs/{runs[0].id}/steps").status_code == 404


def test_another_projects_runs_and_steps_are_not_found(client_b, tool_run):
    thread, run = tool_run
    calls = [
        lambda: client_b.beta.threads.runs.retrieve(run.id, thread_id=thread.id),
        lambda: client_b.beta.threads.runs.list(thread.id),
        lambda: client_b.beta.threads.runs.update(run.id, thread_id=thread.id, metadata={"x": "y"}),
        lambda: client_b.beta.threads.runs.cancel(run.id, thread_id=thread.id),
        lambda: client_b.beta.threads.runs.submit_tool_outputs(run.id, thread_id=thread.id, tool_outputs=[]),
        lambda: client_b.beta.threads.runs.steps.list(run.id, thread_id=thread.id),
        lambda: client_b.beta.threads.runs.steps.retrieve("step_x", run_id=run.id, thread_id=thread.id),
    ]
    for call in calls:
        with pytest.raises(openai.NotFoundError):
            call()


def test_create_run_with_unknown_ids(client, assistant, http, client_b):
    thread = client.beta.threads.create()
    r = http.post("/threads/thread_missing/runs", json={"assistant_id": assistant.id})
    assert r.status_code == 404
    r = http.post(f"/threads/{thread.id}/runs", json={"assistant_id": "asst_missing"})
    assert r.status_code == 404 and r.json()["error"]["param"] == "assistant_id"
    with pytest.raises(openai.NotFoundError):  # another project's assistant
        client_b.beta.threads.create_and_run(assistant_id=assistant.id)


# --- steps -----------------------------------------------------------------------------------------------------

def test_steps_list_order_and_pagination(client, tool_run):
    thread, run = tool_run
    steps = steps_of(client, thread.id, run.id)
    assert [s["type"] for s in steps] == ["tool_calls", "tool_calls", "message_creation"]
    assert [s["status"] for s in steps] == ["completed"] * 3
    outputs = [s["step_details"]["tool_calls"][0]["function"]["output"] for s in steps[:2]]
    assert outputs == ["first", "second"]
    ids = [s["id"] for s in steps]
    assert len(set(ids)) == 3

    desc = assert_list(client.beta.threads.runs.steps.list(run.id, thread_id=thread.id), "RunStepObject")
    assert [s["id"] for s in desc["data"]] == ids[::-1]
    seen, after = [], None
    while True:
        kwargs = {"after": after} if after else {}
        page = assert_list(client.beta.threads.runs.steps.list(
            run.id, thread_id=thread.id, order="asc", limit=1, **kwargs), "RunStepObject")
        seen += [s["id"] for s in page["data"]]
        if not page["has_more"]:
            break
        after = page["last_id"]
    assert seen == ids
    before = assert_list(client.beta.threads.runs.steps.list(
        run.id, thread_id=thread.id, order="asc", before=ids[2], limit=1), "RunStepObject")
    assert [s["id"] for s in before["data"]] == [ids[1]] and before["has_more"] is True


def test_steps_include_file_search_content(client, tool_run, http):
    thread, run = tool_run
    page = client.beta.threads.runs.steps.list(run.id, thread_id=thread.id, include=[FILE_SEARCH_CONTENT])
    assert len(assert_list(page, "RunStepObject")["data"]) == 3
    step_id = page.data[0].id
    step = client.beta.threads.runs.steps.retrieve(step_id, run_id=run.id, thread_id=thread.id,
                                                   include=[FILE_SEARCH_CONTENT])
    assert check_step(step)["id"] == step_id
    base = f"/threads/{thread.id}/runs/{run.id}/steps"
    for url in (base, f"{base}/{step_id}"):
        r = http.get(url, params={"include[]": "step_details.tool_calls[*].code_interpreter.outputs"})
        assert r.status_code == 400, r.text
        assert r.json()["error"]["param"].startswith("include")
        assert http.get(url, params={"include[]": FILE_SEARCH_CONTENT}).status_code == 200
    # create run takes it too (the SDK sends it as a query key), and refuses anything else
    fresh = client.beta.threads.create()
    assistant_id = run.assistant_id
    r = http.post(f"/threads/{fresh.id}/runs", params={"include[]": "bogus"}, json={"assistant_id": assistant_id})
    assert r.status_code == 400, r.text
    created = client.beta.threads.runs.create_and_poll(
        thread_id=fresh.id, assistant_id=assistant_id, include=[FILE_SEARCH_CONTENT],
        additional_messages=[{"role": "user", "content": "[reply: included]"}])
    assert check_run(created)["status"] == "completed"


def test_step_retrieve_and_ids_from_elsewhere(client, tool_run, three_runs):
    thread, run = tool_run
    steps = steps_of(client, thread.id, run.id)
    for expected in steps:
        got = client.beta.threads.runs.steps.retrieve(expected["id"], run_id=run.id, thread_id=thread.id)
        assert assert_schema(got, "RunStepObject") == expected
    other_thread, other_runs = three_runs
    other_step = steps_of(client, other_thread.id, other_runs[0].id)[0]
    with pytest.raises(openai.NotFoundError):  # a step of another run
        client.beta.threads.runs.steps.retrieve(other_step["id"], run_id=run.id, thread_id=thread.id)
    with pytest.raises(openai.NotFoundError):  # under another thread
        client.beta.threads.runs.steps.retrieve(steps[0]["id"], run_id=run.id, thread_id=other_thread.id)
    with pytest.raises(openai.NotFoundError):  # the run of another thread
        client.beta.threads.runs.steps.list(run.id, thread_id=other_thread.id)
    with pytest.raises(openai.NotFoundError):
        client.beta.threads.runs.steps.retrieve("step_missing", run_id=run.id, thread_id=thread.id)


_RUN_KEYS = {"id", "object", "created_at", "thread_id", "assistant_id", "status", "required_action", "last_error",
             "expires_at", "started_at", "cancelled_at", "failed_at", "completed_at", "incomplete_details", "model",
             "instructions", "tools", "metadata", "usage", "temperature", "top_p", "max_prompt_tokens",
             "max_completion_tokens", "truncation_strategy", "response_format", "tool_choice",
             "parallel_tool_calls", "tool_resources", "reasoning_effort"}
_STEP_KEYS = {"id", "object", "created_at", "assistant_id", "thread_id", "run_id", "type", "status", "step_details",
              "last_error", "expired_at", "cancelled_at", "failed_at", "completed_at", "metadata", "usage"}


def test_millisecond_timings_stay_out_of_the_api_json(tool_run, http):
    """The console's millisecond timings are stored beside the objects, never in what the API serves."""
    thread, run = tool_run
    base = f"/threads/{thread.id}/runs/{run.id}"
    got = http.get(base).json()
    assert set(got) - _RUN_KEYS == set(), got
    listed = http.get(f"{base}/steps").json()["data"]
    assert listed
    for step in listed:
        assert set(step) - _STEP_KEYS == set(), step
        assert http.get(f"{base}/steps/{step['id']}").json() == step
    for text in (http.get(base).text, http.get(f"{base}/steps").text):
        assert '_ms"' not in text and '"_assistd"' not in text  # as keys: random ids may hold "_ms"


# --- submit_tool_outputs errors ------------------------------------------------------------------------------

def test_submit_tool_outputs_refuses_missing_and_unknown_ids(client, waiting_run, http):
    thread, run = waiting_run
    first, second = call_ids(run)
    url = f"/threads/{thread.id}/runs/{run.id}/submit_tool_outputs"
    bad_bodies = [
        [{"tool_call_id": first, "output": "only one"}],
        [{"tool_call_id": first, "output": "a"}, {"tool_call_id": "call_unknown", "output": "b"}],
        [{"tool_call_id": first, "output": "a"}, {"tool_call_id": first, "output": "a"}],
        [],
    ]
    for outputs in bad_bodies:
        r = http.post(url, json={"tool_outputs": outputs})
        assert r.status_code == 400, (outputs, r.text)
        assert r.json()["error"]["type"] == "invalid_request_error"
    still = check_run(client.beta.threads.runs.retrieve(run.id, thread_id=thread.id))
    assert still["status"] == "requires_action" and call_ids(still) == [first, second]
    (step,) = steps_of(client, thread.id, run.id)
    assert step["status"] == "in_progress"
    assert [c["function"]["output"] for c in step["step_details"]["tool_calls"]] == [None, None]
    done = client.beta.threads.runs.submit_tool_outputs_and_poll(
        run_id=run.id, thread_id=thread.id,
        tool_outputs=[{"tool_call_id": first, "output": "1"}, {"tool_call_id": second, "output": "2"}])
    assert check_run(done)["status"] == "completed"
    r = http.post(url, json={"tool_outputs": [{"tool_call_id": first, "output": "again"}]})
    assert r.status_code == 400, r.text  # no longer requires_action


def test_submit_tool_outputs_to_a_run_that_asked_for_none(client, three_runs, http):
    thread, runs = three_runs
    r = http.post(f"/threads/{thread.id}/runs/{runs[0].id}/submit_tool_outputs",
                  json={"tool_outputs": [{"tool_call_id": "call_x", "output": "x"}]})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["type"] == "invalid_request_error"
