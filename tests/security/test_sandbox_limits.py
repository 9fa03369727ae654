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
from collections.abc import Iterator
from typing import Any

import pytest

from tests.run_helpers import marker, messages_of, new_assistant, new_thread, require_sandbox

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
MiB = 1024**2


@pytest.fixture(scope="module", autouse=True)
def sandbox() -> None:
    require_sandbox()


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


@pytest.fixture(scope="module")
def tight(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """An engine whose sessions may hold 384 MiB together, each process 512 MiB."""
    from tests.test_code_interpreter_engine import Runner, require_sandbox

    runner = Runner(tmp_path_factory.mktemp("tight"), memory_bytes=512 * MiB, session_memory_bytes=384 * MiB,
                    max_processes=32, tmp_bytes=256 * MiB, timeout_seconds=60)
    require_sandbox(runner)
    cgroups = runner.engine.sandbox.cgroups()
    if not cgroups.available:
        runner.close()
        pytest.skip(f"no per-session cgroups here: {cgroups.reason}")
    yield runner
    runner.close()


FORK_AND_HOLD = """
import os, select
r, w = os.pipe()
hold_r, hold_w = os.pipe()
kids, dead, ready = [], {}, 0
for i in range(3):
    pid = os.fork()
    if pid == 0:
        os.close(r); os.close(hold_w)
        data = b"x" * (200 << 20)  # written, so really held
        os.write(w, b"1")
        os.read(hold_r, 1)  # held until the parent lets go
        os._exit(0)
    kids.append(pid)
os.close(w); os.close(hold_r)
while ready + len(dead) < 3:  # each child is either holding its 200 MiB or dead
    if select.select([r], [], [], 0.05)[0]:
        ready += len(os.read(r, 3))
    for pid in kids:
        if pid not in dead and os.waitpid(pid, os.WNOHANG)[0]:
            dead[pid] = True
os.close(hold_w)
print("holding together:", ready - len(dead))
"""


def test_forked_children_share_the_session_memory_limit(tight: Any) -> None:
    r = tight.exec("forks", FORK_AND_HOLD)
    if r.error is not None:  # the kernel itself was the one killed
        assert "memory limit of 384 MiB" in r.error, (r.error, r.logs)
    else:
        held = int(r.logs.split("holding together:")[1].split()[0])
        assert held < 2, r.logs  # 3 x 200 MiB fit per process, but not together
    assert tight.exec("forks", "print('alive')").logs == "alive\n"  # a session again, fresh or not


def test_the_sessions_tmp_counts_in_its_memory(tight: Any) -> None:
    code = ("for n in range(4):  # files of 50 MiB: under the file size limit\n"
            "    with open(f'/tmp/fill{n}', 'wb') as f:\n"
            "        f.write(b'x' * (50 << 20))\n"
            "held = b'y' * (250 << 20)\nprint('both fit')")
    r = tight.exec("tmpfill", code)
    assert "both fit" not in r.logs and r.error is not None and "memory limit" in r.error, (r.error, r.logs)


WRITABLE = """
import os
for p in ('/', '/dev', '/dev/shm', '/tmp', '/mnt/data'):
    try:
        open(os.path.join(p, 'probe'), 'w').close()
        size = os.statvfs(p).f_blocks * os.statvfs(p).f_frsize
        print(p, 'writable', size)
    except OSError as exc:
        print(p, exc.strerror)
"""


def test_ram_backed_filesystems_are_bounded_and_the_rest_read_only(tmp_path) -> None:
    from tests.test_code_interpreter_engine import Runner, require_sandbox

    runner = Runner(tmp_path, tmp_bytes=8 * MiB)
    require_sandbox(runner)
    try:
        lines = dict(line.split(" ", 1) for line in runner.exec("fs", WRITABLE).logs.splitlines())
    finally:
        runner.close()
    assert lines["/"] == lines["/dev"] == "Read-only file system", lines  # tmpfs too, unbounded
    assert lines["/tmp"] == lines["/dev/shm"] == f"writable {8 * MiB}", lines
    assert lines["/mnt/data"].startswith("writable"), lines
