"""The code_interpreter tool in runs, end to end through the official SDK against the live server.

The scripted model calls ``code_interpreter`` when told ``[tool: code_interpreter {"code": …}]`` and, once
the results are in, replies ``tool results: <what the code printed>``. Needs bubblewrap (scripts/
install-sandbox); without it these tests skip, unless ASSISTD_TEST_REQUIRE_SANDBOX=1 makes that a failure.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from assistd.tools import code_tool
from tests.run_helpers import (
    WEATHER,
    check_run,
    check_step,
    fresh_database,
    kill9,
    marker,
    messages_of,
    new_assistant,
    require_sandbox,
    sdk,
    serve,
    server_env,
    steps_of,
    text,
    upstream_bodies,
    wait_run,
    wait_until,
)
from tests.servers import LiveProcess, free_port
from tests.spec import assert_schema, wire
from tests.test_streaming import stream_post

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module", autouse=True)
def sandbox() -> None:
    require_sandbox()


def code_message(code: str, *extra: str) -> str:
    return f'{marker("ci")} [tool: code_interpreter {json.dumps({"code": code})}] ' + " ".join(extra)


def run_code(client: Any, assistant: Any, thread_id: str, code: str, **kwargs: Any) -> tuple[dict, list[dict]]:
    """Post ``code`` for the model to run, run the thread; the run and its steps, checked against the spec."""
    client.beta.threads.messages.create(thread_id, role="user", content=code_message(code))
    run = client.beta.threads.runs.create_and_poll(thread_id=thread_id, assistant_id=assistant.id,
                                                   poll_interval_ms=50, **kwargs)
    return check_run(run), steps_of(client, thread_id, run.id)


def code_calls(step: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for c in step["step_details"]["tool_calls"] if c["type"] == "code_interpreter"]


def logs_of(call: dict[str, Any]) -> str:
    return "".join(o["logs"] for o in call["code_interpreter"]["outputs"] if o["type"] == "logs")


def last_answer(client: Any, thread_id: str) -> dict[str, Any]:
    answer = messages_of(client, thread_id, "assistant")[-1]
    return assert_schema(answer, "MessageObject")


def check_shown(client: Any, thread_id: str, run_id: str, step: dict[str, Any]) -> None:
    """Nothing private shows, listed (``step``) or retrieved."""
    got = wire(client.beta.threads.runs.steps.retrieve(step["id"], thread_id=thread_id, run_id=run_id))
    assert check_step(got) == step
    for call in code_calls(got):
        assert set(call) == {"id", "type", "code_interpreter"}, call
        assert set(call["code_interpreter"]) == {"input", "outputs"}


@pytest.fixture(scope="module")
def assistant(client):
    return new_assistant(client, tools=[{"type": "code_interpreter"}])


def test_partial_code_decodes_what_streamed_so_far():
    whole = json.dumps({"code": 'print("é😀\\n")\nx = 1'})
    seen = [code_tool.partial_code(whole[:i]) for i in range(len(whole) + 1)]
    assert all(b.startswith(a) for a, b in zip(seen, seen[1:], strict=False)), seen
    assert seen[-1] == 'print("é😀\\n")\nx = 1'
    assert code_tool.partial_code('{"other": "x"}') == "" and code_tool.code_of('{"code": "1"}') == "1"
    assert code_tool.code_of("print(2)") == "print(2)"
    files = {"out.csv": "file-1"}
    value = "See sandbox:/mnt/data/out.csv. Or (sandbox:/mnt/data/nope.csv)"
    [a] = code_tool.file_path_annotations(value, files)
    assert value[a["start_index"]:a["end_index"]] == a["text"] == "sandbox:/mnt/data/out.csv"


def test_state_persists_across_runs(client, upstream, assistant):
    thread = client.beta.threads.create()
    run, steps = run_code(client, assistant, thread.id, "x = 41")
    assert run["status"] == "completed", run
    assert [(s["type"], s["status"]) for s in steps] == [("tool_calls", "completed"), ("message_creation", "completed")]
    [call] = code_calls(steps[0])
    assert call["id"].startswith("call_") and call["code_interpreter"] == {"input": "x = 41", "outputs": []}
    check_shown(client, thread.id, run["id"], steps[0])

    run, steps = run_code(client, assistant, thread.id, "print(x + 1)")
    assert run["status"] == "completed", run
    [call] = code_calls(steps[0])
    assert call["code_interpreter"]["input"] == "print(x + 1)"
    assert call["code_interpreter"]["outputs"] == [{"type": "logs", "logs": "42\n"}]
    assert run["usage"]["total_tokens"] == sum(s["usage"]["total_tokens"] for s in steps)
    answer = last_answer(client, thread.id)
    assert steps[1]["step_details"]["message_creation"]["message_id"] == answer["id"]
    assert text(answer) == "tool results: 42"

    # The model was offered the function, and read the output as the call's result.
    mark = messages_of(client, thread.id, "user")[-1]["content"][0]["text"]["value"].split()[0]
    first, second = upstream_bodies(upstream, mark)
    assert [t["function"]["name"] for t in first["tools"]] == ["code_interpreter"]
    assert first["tools"][0]["function"]["parameters"]["required"] == ["code"]
    assert second["messages"][-2]["tool_calls"][0]["function"]["name"] == "code_interpreter"
    assert second["messages"][-1] == {"role": "tool", "tool_call_id": call["id"], "content": "42"}


def test_traceback_goes_back_to_the_model(client, assistant):
    thread = client.beta.threads.create()
    run, steps = run_code(client, assistant, thread.id, "1/0")
    assert run["status"] == "completed", run
    logs = logs_of(code_calls(steps[0])[0])
    assert "ZeroDivisionError" in logs and "Traceback" in logs, logs
    assert "ZeroDivisionError" in text(last_answer(client, thread.id))


def test_files_in(client, assistant):
    data = client.files.create(file=("data.csv", b"a,b\n1,2\n"), purpose="assistants")
    notes = client.files.create(file=("notes.txt", b"attached notes"), purpose="assistants")
    with_files = new_assistant(client, tools=[{"type": "code_interpreter"}],
                               tool_resources={"code_interpreter": {"file_ids": [data.id]}})
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "files", "attachments": [
        {"file_id": notes.id, "tools": [{"type": "code_interpreter"}]}]}])
    code = "print(open('/mnt/data/data.csv').read().split()[1]); print(open('notes.txt').read())"
    run, steps = run_code(client, with_files, thread.id, code)
    assert run["status"] == "completed", run
    assert run["tool_resources"]["code_interpreter"]["file_ids"] == [data.id]
    assert logs_of(code_calls(steps[0])[0]) == "1,2\nattached notes\n"

    # File ids for code_interpreter must exist.
    for create, param in (
        (lambda: client.beta.threads.create(tool_resources={"code_interpreter": {"file_ids": ["file-nope"]}}),
         "tool_resources.code_interpreter.file_ids"),
        (lambda: client.beta.assistants.create(model="m", tool_resources={
            "code_interpreter": {"file_ids": [data.id, "file-nope"]}}), "tool_resources.code_interpreter.file_ids"),
        (lambda: client.beta.threads.messages.create(thread.id, role="user", content="x", attachments=[
            {"file_id": "file-nope", "tools": [{"type": "code_interpreter"}]}]), "attachments"),
    ):
        with pytest.raises(Exception) as err:
            create()
        assert getattr(err.value, "status_code", None) == 404, err.value
        body = assert_schema(err.value.response.json(), "ErrorResponse")["error"]
        assert body["param"] == param and "file-nope" in body["message"], body


def test_files_out_and_file_path_annotation(client, assistant):
    thread = client.beta.threads.create()
    code = "open('/mnt/data/out.csv', 'w').write('a,b\\n1,2\\n')\nprint('saved')"
    run, steps = run_code(client, assistant, thread.id, code)
    assert run["status"] == "completed", run
    assert logs_of(code_calls(steps[0])[0]) == "saved\n"
    answer = last_answer(client, thread.id)
    value = text(answer)
    assert "sandbox:/mnt/data/out.csv" in value, value
    [annotation] = answer["content"][0]["text"]["annotations"]
    assert annotation["type"] == "file_path" and annotation["text"] == "sandbox:/mnt/data/out.csv"
    assert value[annotation["start_index"]:annotation["end_index"]] == annotation["text"]
    file_id = annotation["file_path"]["file_id"]
    file = assert_schema(client.files.retrieve(file_id), "OpenAIFile")
    assert file["purpose"] == "assistants_output" and file["filename"] == "out.csv" and file["bytes"] == 8
    assert client.files.content(file_id).content == b"a,b\n1,2\n"
    check_shown(client, thread.id, run["id"], steps[0])


def test_image_output(client, assistant):
    thread = client.beta.threads.create()
    code = "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3])\nplt.show()"
    run, steps = run_code(client, assistant, thread.id, code)
    assert run["status"] == "completed", run
    [call] = code_calls(steps[0])
    [image] = [o for o in call["code_interpreter"]["outputs"] if o["type"] == "image"]
    file_id = image["image"]["file_id"]
    assert client.files.retrieve(file_id).purpose == "assistants_output"
    assert client.files.content(file_id).content.startswith(b"\x89PNG")
    answer = last_answer(client, thread.id)
    assert answer["content"][0] == {"type": "image_file", "image_file": {"file_id": file_id}}
    assert answer["content"][1]["type"] == "text"


def test_streaming_shows_input_and_outputs(client, http, assistant):
    code = "for i in range(3):\n    print('line', i)"
    thread = client.beta.threads.create(messages=[{"role": "user", "content": code_message(code)}])
    s = stream_post(http, f"/threads/{thread.id}/runs", {"assistant_id": assistant.id, "stream": True})
    assert s.names() == [
        "thread.run.created", "thread.run.queued", "thread.run.in_progress",
        "thread.run.step.created", "thread.run.step.in_progress", "thread.run.step.delta…",
        "thread.run.step.completed",
        "thread.run.step.created", "thread.run.step.in_progress",
        "thread.message.created", "thread.message.in_progress", "thread.message.delta…",
        "thread.message.completed", "thread.run.step.completed", "thread.run.completed", "done"]
    created = s.first("thread.run.step.created")
    pieces = [c for d in s.of("thread.run.step.delta") for c in d["delta"]["step_details"]["tool_calls"]]
    assert all(d["id"] == created["id"] for d in s.of("thread.run.step.delta"))
    assert all(p["index"] == 0 and p["type"] == "code_interpreter" for p in pieces)
    assert pieces[0]["id"].startswith("call_")
    inputs = [p["code_interpreter"]["input"] for p in pieces if "input" in p.get("code_interpreter", {})]
    assert len([i for i in inputs if i]) >= 2 and "".join(inputs) == code, inputs  # as the model wrote it
    [outputs] = [p["code_interpreter"]["outputs"] for p in pieces if p["code_interpreter"].get("outputs")]
    assert outputs == [{"index": 0, "type": "logs", "logs": "line 0\nline 1\nline 2\n"}]
    assert "_assistd" not in json.dumps(s.events)
    completed = s.first("thread.run.step.completed")
    assert completed == steps_of(client, thread.id, created["run_id"])[0]

    # The SDK's stream helper accumulates the same step.
    client.beta.threads.messages.create(thread.id, role="user", content=code_message("print(7 * 6)"))
    with client.beta.threads.runs.stream(thread_id=thread.id, assistant_id=assistant.id) as stream:
        stream.until_done()
        steps = stream.get_final_run_steps()
    call = steps[0].step_details.tool_calls[0]
    assert call.type == "code_interpreter" and call.code_interpreter.input == "print(7 * 6)"
    assert call.code_interpreter.outputs[0].logs == "42\n"


def test_cancel_stops_the_execution(client, assistant):
    thread = client.beta.threads.create(messages=[
        {"role": "user", "content": code_message("import time; time.sleep(30)")}])
    run = client.beta.threads.runs.create(thread_id=thread.id, assistant_id=assistant.id)

    def executing() -> bool:
        steps = steps_of(client, thread.id, run.id)
        return bool(steps) and code_calls(steps[0])[0]["code_interpreter"]["input"] != ""
    wait_until(lambda: steps_of(client, thread.id, run.id), timeout=15, what="the code step")
    time.sleep(1.0)  # the code is sleeping by now
    start = time.monotonic()
    client.beta.threads.runs.cancel(run.id, thread_id=thread.id)
    done = wait_run(client, thread.id, run.id, "cancelled", timeout=10)
    assert time.monotonic() - start < 2.5, time.monotonic() - start
    assert done["cancelled_at"] is not None
    [step] = steps_of(client, thread.id, run.id)
    assert step["status"] == "cancelled" and code_calls(step)[0]["code_interpreter"]["input"].startswith("import")
    assert executing()
    # The thread's next run executes code again.
    run2, steps = run_code(client, assistant, thread.id, "print('after')")
    assert run2["status"] == "completed" and logs_of(code_calls(steps[0])[0]) == "after\n"


def test_forced_code_interpreter_and_a_client_function(client, upstream):
    mixed = new_assistant(client, tools=[{"type": "code_interpreter"}, WEATHER])
    mark = marker("forced")
    thread = client.beta.threads.create(messages=[{"role": "user", "content": (
        f'{mark} [tool: code_interpreter {{"code": "print(5)"}}] [tool: get_weather {{"city": "Oslo"}}]')}])
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=mixed.id, poll_interval_ms=50,
                                                   tool_choice={"type": "code_interpreter"})
    raw = check_run(run)
    assert raw["status"] == "requires_action"
    [pending] = raw["required_action"]["submit_tool_outputs"]["tool_calls"]
    assert pending["function"]["name"] == "get_weather"
    run = client.beta.threads.runs.submit_tool_outputs_and_poll(
        run_id=run.id, thread_id=thread.id, tool_outputs=[{"tool_call_id": pending["id"], "output": "snow"}],
        poll_interval_ms=50)
    assert check_run(run)["status"] == "completed"
    answer = text(last_answer(client, thread.id))
    assert "snow" in answer and "5" in answer, answer
    bodies = upstream_bodies(upstream, mark)
    assert [b["tool_choice"] for b in bodies] == [{"type": "function", "function": {"name": "code_interpreter"}},
                                                  "auto"]


def test_thread_delete_ends_the_session(client, assistant, data_dir):
    thread = client.beta.threads.create()
    run, _ = run_code(client, assistant, thread.id, "open('kept.txt', 'w').write('x')")
    assert run["status"] == "completed"
    workdir = Path(data_dir) / "code" / thread.id
    assert (workdir / "kept.txt").is_file()
    assert client.beta.threads.delete(thread.id).deleted
    wait_until(lambda: not workdir.exists(), timeout=10, what="the thread's /mnt/data to go")


def code_sessions(server) -> float:
    text = httpx.get(f"{server.url}/metrics", timeout=10).text
    return float(next(line for line in text.splitlines() if line.startswith("assistd_code_sessions ")).split()[1])


def test_metrics_count_the_code_sessions_alive(client, assistant, server):
    thread = client.beta.threads.create()
    before = code_sessions(server)
    run, _ = run_code(client, assistant, thread.id, "y = 1")
    assert run["status"] == "completed"
    assert code_sessions(server) == before + 1
    assert client.beta.threads.delete(thread.id).deleted
    wait_until(lambda: code_sessions(server) == before, timeout=10, what="the thread's session to end")


# --- dedicated servers -------------------------------------------------------------------------------------

def test_timeouts_and_network_through_the_api(database_url, upstream, tmp_path):
    port = free_port()
    with fresh_database(database_url, tmp_path) as url, LiveProcess(
            ["serve", "--port", str(port)], port, env=server_env(
                url, upstream, tmp_path / "data", ASSISTD_CODE_TIMEOUT_SECONDS="2")) as proc:
        client = sdk(proc)
        assistant = new_assistant(client, tools=[{"type": "code_interpreter"}])
        thread = client.beta.threads.create()
        start = time.monotonic()
        run, steps = run_code(client, assistant, thread.id, "while True:\n    pass")
        assert run["status"] == "completed" and time.monotonic() - start < 15, run
        logs = logs_of(code_calls(steps[0])[0])
        assert "timed out" in logs, logs

        # the server itself: out of the sandbox's reach
        code = (f"import socket\ntry:\n    socket.create_connection(('127.0.0.1', {port}), timeout=1)\n"
                "    print('connected')\nexcept OSError as exc:\n    print('refused', type(exc).__name__)")
        run, steps = run_code(client, assistant, thread.id, code)
        assert run["status"] == "completed", run
        assert logs_of(code_calls(steps[0])[0]).startswith("refused"), steps

        # The server is fine, and another thread's run works.
        assert httpx.get(f"{proc.url}/healthz", timeout=5).status_code == 200
        other = client.beta.threads.create()
        run, steps = run_code(client, assistant, other.id, "print(2 + 2)")
        assert run["status"] == "completed" and logs_of(code_calls(steps[0])[0]) == "4\n"


def test_code_interrupted_by_a_dead_server_runs_again_once_resumed(database_url, upstream, tmp_path):
    """A server killed while the model's code executes: the run resumes elsewhere (here: the restarted
    server) and executes the code again — at least once, as documented: its step is recorded once, with the
    second execution's outputs, and what the first one wrote in /mnt/data is still there."""
    code = ("import os, time\n"
            "n = int(open('count').read()) if os.path.exists('count') else 0\n"
            "open('count', 'w').write(str(n + 1))\n"
            "time.sleep(1.5)\n"
            "print('execution', n + 1)")
    data = tmp_path / "data"
    with fresh_database(database_url, tmp_path) as url:
        env = server_env(url, upstream, data, ASSISTD_LEASE_SECONDS="2")
        first = serve(env).start()
        try:
            client = sdk(first)
            assistant = new_assistant(client, tools=[{"type": "code_interpreter"}])
            thread = client.beta.threads.create(messages=[{"role": "user", "content": code_message(code)}])
            run = client.beta.threads.runs.create(thread_id=thread.id, assistant_id=assistant.id)
            count = data / "code" / thread.id / "count"
            wait_until(count.is_file, timeout=20, what="the code to start")
        finally:
            kill9(first)
        with serve(env) as second:
            client = sdk(second)
            done = wait_run(client, thread.id, run.id, "completed", timeout=30)
            assert count.read_text() == "2"
            steps = steps_of(client, thread.id, run.id)
            assert [(s["type"], s["status"]) for s in steps] == [("tool_calls", "completed"),
                                                                 ("message_creation", "completed")], steps
            assert logs_of(code_calls(steps[0])[0]) == "execution 2\n"
            assert text(last_answer(client, thread.id)).startswith("tool results: execution 2\n")
            assert done["usage"] is not None


def test_no_sandbox_fails_the_run(database_url, upstream, tmp_path):
    # Without bwrap on its PATH the engine cannot run code: the step and the run fail with the reason.
    env = server_env(database_url, upstream, tmp_path / "data", PATH=str(Path(sys.executable).parent))
    port = free_port()
    with fresh_database(database_url, tmp_path) as url, LiveProcess(
            ["serve", "--port", str(port)], port, env={**env, "ASSISTD_DATABASE_URL": url}) as proc:
        client = sdk(proc)
        assistant = new_assistant(client, tools=[{"type": "code_interpreter"}])
        thread = client.beta.threads.create()
        run, steps = run_code(client, assistant, thread.id, "print(1)")
        assert run["status"] == "failed", run
        assert run["last_error"]["code"] == "server_error" and "bwrap" in run["last_error"]["message"], run
        [step] = steps
        assert step["status"] == "failed" and step["last_error"] == run["last_error"], step
        assert code_calls(step)[0]["code_interpreter"]["input"] == "print(1)"


# --- every abuse case of the issue, through the API on the session server ------------------------------------

ABUSE = {
    "fork bomb": ("import os\nn = 0\ntry:\n    while True:\n        if os.fork() == 0:\n            os._exit(0)\n"
                  "        n += 1\nexcept OSError as exc:\n    print('stopped', type(exc).__name__)", "stopped"),
    "allocate 10 GB": ("try:\n    b = bytearray(10 * 1024**3)\n    print('allocated')\n"
                       "except MemoryError:\n    print('refused MemoryError')", "refused"),
    "write a 10 GB file": ("try:\n    with open('/mnt/data/big', 'wb') as f:\n        f.truncate(0)\n"
                           "        for _ in range(10 * 1024):\n            f.write(b'x' * 1024**2)\n"
                           "    print('written')\nexcept OSError as exc:\n    print('refused', type(exc).__name__)",
                           "refused"),
    "socket to postgres": ("import socket\ntry:\n    socket.create_connection(('127.0.0.1', 5432), timeout=1)\n"
                           "    print('connected')\nexcept OSError as exc:\n    print('refused', type(exc).__name__)",
                           "refused"),
    # TEST-NET-1: never routed; inside the sandbox's empty network namespace nothing is even sent.
    "outside address": ("import socket\ntry:\n    socket.create_connection(('192.0.2.1', 80), timeout=1)\n"
                        "    print('connected')\nexcept OSError as exc:\n    print('refused', type(exc).__name__)",
                        "refused"),
    "read /etc/shadow": ("try:\n    open('/etc/shadow').read()\n    print('read')\n"
                         "except OSError as exc:\n    print('refused', type(exc).__name__)", "refused"),
    "kill a host process": (f"import os, signal\ntry:\n    os.kill({os.getpid()}, signal.SIGTERM)\n    print('sent')\n"
                            "except OSError as exc:\n    print('refused', type(exc).__name__)", "refused"),
    "print 100 MB": ("import sys\nchunk = 'y' * 1024**2\nfor _ in range(100):\n    sys.stdout.write(chunk)\n"
                     "print('end')", "output truncated"),
}


@pytest.mark.parametrize("case", list(ABUSE))
def test_abuse_is_contained_and_the_server_stays_up(client, assistant, server, data_dir, case):
    code, expect = ABUSE[case]
    witness = client.beta.threads.create()
    run_code(client, assistant, witness.id, "kept = 7")
    thread = client.beta.threads.create()
    run, steps = run_code(client, assistant, thread.id, code)
    assert run["status"] == "completed", run
    logs = logs_of(code_calls(steps[0])[0])
    assert expect in logs, logs[:500]
    assert len(logs) < 50_000  # 100 MB of output never reaches the step
    assert httpx.get(f"{server.url}/healthz", timeout=5).status_code == 200
    run, steps = run_code(client, assistant, witness.id, "print(kept)")
    assert logs_of(code_calls(steps[0])[0]) == "7\n"


def test_other_threads_files_and_the_data_dir_are_out_of_reach(client, assistant, data_dir):
    owner = client.beta.threads.create()
    run_code(client, assistant, owner.id, "open('/mnt/data/secret.txt', 'w').write('s3cret')")
    intruder = client.beta.threads.create()
    paths = [str(data_dir), str(data_dir / "code" / owner.id), "/mnt/data/secret.txt"]
    probe = (f"import os\nfor p in {paths!r}:\n"
             "    try:\n        print(p, 'visible', os.listdir(p) if os.path.isdir(p) else open(p).read())\n"
             "    except OSError as exc:\n        print(p, 'hidden', type(exc).__name__)")
    run, steps = run_code(client, assistant, intruder.id, probe)
    logs = logs_of(code_calls(steps[0])[0])
    assert "visible" not in logs and logs.count("hidden") == 3, logs
