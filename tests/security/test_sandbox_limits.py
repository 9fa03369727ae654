"""The code sandbox's resource and descriptor bounds, seen from the code inside it.

* descriptors: under the real server (uvloop), the code holds only what its kernel needs — stdin and
  sys.stdin (/dev/null), stdout and stderr (the logs pipe), the kernel's request pipe and its control
  pipe — never a socket or another session's pipe;
* memory per session, not per process: forked children together cannot exceed the session's limit,
  and the session's RAM-backed /tmp counts in it (cgroups; skipped where cgroups cannot be used).

Needs bubblewrap (scripts/install-sandbox): skipped without it unless ASSISTD_TEST_REQUIRE_SANDBOX=1.
"""

from __future__ import annotations

import json
import os
import tempfile

import pytest

from tests.run_helpers import marker, messages_of, new_assistant, new_thread

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
MiB = 1024**2


@pytest.fixture(scope="module", autouse=True)
def sandbox() -> None:
    from assistd.tools.code_interpreter import CodeInterpreter, SandboxUnavailable

    try:
        CodeInterpreter(tempfile.mkdtemp(prefix="assistd-ci-check-")).check()
    except SandboxUnavailable as exc:
        if os.environ.get("ASSISTD_TEST_REQUIRE_SANDBOX") == "1":
            pytest.fail(str(exc))
        pytest.skip(str(exc))


def run_code_in_server(client, code: str) -> str:
    """Have the scripted model run ``code`` in a new thread of the session server; the code's logs."""
    assistant = new_assistant(client, tools=[{"type": "code_interpreter"}])
    thread = new_thread(client, f'{marker("fd")} [tool: code_interpreter {json.dumps({"code": code})}]')
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id,
                                                   poll_interval_ms=50)
    assert run.status == "completed", run.last_error
    steps = client.beta.threads.runs.steps.list(run_id=run.id, thread_id=thread.id).data
    for step in steps:
        if step.step_details.type == "tool_calls":
            for call in step.step_details.tool_calls:
                if call.type == "code_interpreter":
                    return "".join(o.logs for o in call.code_interpreter.outputs if o.type == "logs")
    raise AssertionError(messages_of(client, thread.id))


LIST_FDS = """
import json, os, stat
fds = {}
for name in os.listdir('/proc/self/fd'):
    try:
        fds[int(name)] = [os.readlink(f'/proc/self/fd/{name}'), os.fstat(int(name)).st_mode]
    except OSError:
        pass  # the listing's own descriptor, closed by now
print(json.dumps(fds))
"""


def test_only_the_kernels_descriptors_exist_inside_the_sandbox(client) -> None:
    # two sessions at once: one's pipes must not reach the other
    logs = [run_code_in_server(client, LIST_FDS) for _ in range(2)]
    for out in logs:
        fds = {int(k): v for k, v in json.loads(out.strip().splitlines()[-1]).items()}
        assert not [fd for fd, (target, mode) in fds.items() if target.startswith("socket:")], fds
        assert fds[0][0] == "/dev/null" and fds[1][0] == fds[2][0] and fds[1][0].startswith("pipe:"), fds
        extra = sorted(target.split("[")[0] for fd, (target, mode) in fds.items() if fd > 2)
        # the kernel's request pipe (its stdin, kept), its control pipe and sys.stdin; nothing else
        assert extra == ["/dev/null", "pipe:", "pipe:"], fds
        pipes = [target for target, _ in fds.values() if target.startswith("pipe:")]
        assert len(set(pipes)) == len(pipes) - 1, fds  # only 1 and 2 share a pipe
