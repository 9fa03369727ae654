"""Hostile code in the code_interpreter sandbox: each attack is contained, the host and OTHER sessions are
unaffected (a witness session is checked before and after every test), the attacker's session recovers.

Network tests only target 127.0.0.1 (a port this test listens on, and 5432) and 192.0.2.1 (TEST-NET-1,
never routed): inside the sandbox's empty network namespace nothing leaves the process at all. They run
only with the sandbox (this whole module skips without bubblewrap, or fails if
ASSISTD_TEST_REQUIRE_SANDBOX=1).
"""

from __future__ import annotations

import os
import socket
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest

from assistd.tools.code_interpreter import InputFile
from assistd.tools.code_interpreter.sandbox import is_root
from tests.test_code_interpreter_engine import Runner, require_sandbox

FILE_LIMIT = 10 * 1000**2
MAX_OUTPUT = 4000


@pytest.fixture(scope="module")
def ci(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runner]:
    runner = Runner(tmp_path_factory.mktemp("sandbox-data"), max_processes=32, file_size_bytes=FILE_LIMIT,
                    tmp_bytes=8 * 1024**2, max_output_chars=MAX_OUTPUT)
    require_sandbox(runner)
    runner.exec("witness", "secret_of_witness = 12345")
    yield runner
    runner.close()


def sandbox_processes(ci: Runner, thread: str) -> list[int]:
    """Host pids running as the thread's sandbox uid (as root every session has its own uid)."""
    uid = ci.engine._uids.get(thread)
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                status = Path(f"/proc/{entry}/status").read_text()
            except OSError:
                continue
            if f"\nUid:\t{uid}\t" in status:
                pids.append(int(entry))
    return pids


@pytest.fixture(autouse=True)
def witness(ci: Runner) -> Iterator[None]:
    assert ci.exec("witness", "print(secret_of_witness)").logs == "12345\n"
    yield
    r = ci.exec("witness", "print(secret_of_witness)")
    assert (r.logs, r.error, r.session_restarted) == ("12345\n", None, False), "another session was affected"
    if is_root():  # nothing left running in the attacker's sandbox but its kernel
        for thread in list(ci.engine._sessions):
            pids = sandbox_processes(ci, thread)
            assert len(pids) <= 1, [Path(f"/proc/{pid}/status").read_text()[:200] for pid in pids]


def test_infinite_loop_is_interrupted_and_the_session_kept(ci: Runner) -> None:
    ci.exec("loop", "kept = 'yes'")
    r = ci.exec("loop", "while True:\n    pass", timeout=1)
    assert r.error == "Execution timed out after 1 s" and "KeyboardInterrupt" in r.logs
    assert ci.exec("loop", "print(kept)").logs == "yes\n"


def test_code_ignoring_the_interrupt_is_killed_and_the_session_restarts(ci: Runner) -> None:
    ci.exec("stubborn", "lost = 1")
    code = "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    pass"
    r = ci.exec("stubborn", code, timeout=1)
    assert r.error == "Execution timed out after 1 s" and "new Python session" in r.logs
    r = ci.exec("stubborn", "lost")
    assert r.session_restarted and r.error == "NameError: name 'lost' is not defined"


def test_fork_bomb_hits_the_process_limit(ci: Runner) -> None:
    r = ci.exec("forkbomb", "import os\nwhile True:\n    os.fork()")
    assert r.error is not None and "Resource temporarily unavailable" in r.error
    r = ci.exec("forkbomb", "import subprocess\nprint(subprocess.run(['echo', 'ok'], capture_output=True).stdout)")
    assert r.logs == "b'ok\\n'\n"  # the limit is free again: the bomb's processes were reaped


def test_allocating_10_gb_fails_inside(ci: Runner) -> None:
    r = ci.exec("memory", "block = bytearray(10 * 1024**3)")
    assert r.error == "MemoryError"
    r = ci.exec("memory", "import numpy as np\nnp.ones(10 * 1024**3 // 8)")
    assert r.error is not None and "Unable to allocate" in r.error
    assert ci.exec("memory", "print(len(bytearray(10 * 1024**2)))").logs == f"{10 * 1024**2}\n"


def test_writing_10_gb_stops_at_the_file_size_limit(ci: Runner) -> None:
    code = "with open('{}', 'wb') as f:\n    for _ in range(10 * 1024):\n        f.write(bytes(1024**2))"
    r = ci.exec("bigfile", code.format("/mnt/data/big.bin"))
    assert r.error == "OSError: [Errno 27] File too large"
    big = ci.engine.data_dir.resolve() / "code" / "bigfile" / "big.bin"
    assert big.stat().st_size <= FILE_LIMIT
    r = ci.exec("bigfile", code.format("/tmp/a.bin") + "\n" + code.format("/tmp/b.bin"))
    assert r.error == "OSError: [Errno 28] No space left on device"  # /tmp is a small private tmpfs


def test_no_connection_to_the_host_loopback(ci: Runner) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        for target in (port, 5432):
            r = ci.exec("net", f"import socket\nsocket.create_connection(('127.0.0.1', {target}), timeout=2)")
            assert r.error == "ConnectionRefusedError: [Errno 111] Connection refused", r.logs
        listener.settimeout(0.2)
        with pytest.raises(TimeoutError):
            listener.accept()  # nothing ever reached the host's listener
    assert ci.exec("net", "import socket\nsocket.if_nameindex()").logs == "[(1, 'lo')]\n"


def test_no_route_to_any_outside_address(ci: Runner) -> None:
    # 192.0.2.1 is TEST-NET-1; with no interface but lo there is no route: nothing is sent anywhere
    r = ci.exec("net", "import socket\nsocket.create_connection(('192.0.2.1', 80), timeout=2)")
    assert r.error == "OSError: [Errno 101] Network is unreachable"
    udp = "import socket\nsocket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'x', ('192.0.2.1', 53))"
    r = ci.exec("net", udp)
    assert r.error == "OSError: [Errno 101] Network is unreachable"


def test_host_files_and_other_threads_are_invisible(ci: Runner, tmp_path: Path) -> None:
    marker = tmp_path / "host-marker"
    marker.write_text("host")
    ci.exec("other_thread", "open('/mnt/data/private.txt', 'w').write('other thread secret')")
    other = ci.engine.data_dir.resolve() / "code" / "other_thread" / "private.txt"
    assert other.read_text() == "other thread secret"
    for path in ("/etc/shadow", str(marker), str(other), str(ci.engine.data_dir.resolve()), "/mnt/other_thread"):
        r = ci.exec("snoop", f"open({path!r}).read()")
        assert r.error is not None and r.error.startswith(("FileNotFoundError", "IsADirectoryError")), (path, r.logs)
    code = "import os\nprint(os.listdir('/mnt'), os.listdir('/mnt/data'), os.listdir('/etc'))"
    assert ci.exec("snoop", code).logs.startswith("['data'] [] [")
    r = ci.exec("snoop", "open('/usr/bin/planted', 'w')")
    assert r.error is not None and "Read-only file system" in r.error


def test_runs_unprivileged_and_cannot_signal_host_processes(ci: Runner) -> None:
    code = (
        "import os\nstatus = open('/proc/self/status').read()\n"
        "print(os.getuid() != 0, 'CapEff:\\t0000000000000000' in status, 'NoNewPrivs:\\t1' in status)\n"
        "print(sorted(int(p) for p in os.listdir('/proc') if p.isdigit()))"
    )
    assert ci.exec("kill", code).logs == "True True True\n[1]\n"  # its own PID namespace: only itself
    r = ci.exec("kill", f"import os, signal\nos.kill({os.getpid()}, signal.SIGKILL)")
    assert r.error == "ProcessLookupError: [Errno 3] No such process"
    r = ci.exec("kill", "import os, signal\nos.kill(-1, signal.SIGKILL)")  # "every process I may signal"
    assert r.error == "ProcessLookupError: [Errno 3] No such process"
    assert ci.exec("kill", "import os\nos.setuid(0)").error == "PermissionError: [Errno 1] Operation not permitted"


def test_no_nested_user_namespaces_but_threads_and_processes_work(ci: Runner) -> None:
    """A user namespace inside the sandbox would hand the code every capability in it: refused (as an
    ordinary user by bwrap's --disable-userns, as root by the seccomp filter), while threads (clone3 falls
    back to clone) and child processes work as usual."""
    code = (
        "import ctypes, os, subprocess, threading\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "pid = os.fork()\n"
        "if pid == 0:  # a single-threaded child, where unshare() is otherwise allowed\n"
        "    os._exit(0 if libc.unshare(0x10000000) == 0 else ctypes.get_errno())\n"
        "print('unshare', os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) != 0)\n"
        "out = subprocess.run(['unshare', '--user', 'true'], capture_output=True, text=True)\n"
        "print('unshare(1)', out.returncode != 0)\n"
        "seen = []\n"
        "t = threading.Thread(target=lambda: seen.append(1)); t.start(); t.join()\n"
        "print('thread', seen, subprocess.run(['true']).returncode)"
    )
    assert ci.exec("userns", code).logs == "unshare True\nunshare(1) True\nthread [1] 0\n"


def test_seccomp_program_jumps_land_on_its_returns() -> None:
    """The filter's jumps (offsets counted by hand are a classic mistake) resolve inside the program."""
    import struct

    from assistd.tools.code_interpreter import seccomp

    for machine in ("x86_64", "aarch64"):
        prog = seccomp.program(machine)
        assert prog is not None and len(prog) % 8 == 0
        ops = [struct.unpack("=HBBI", prog[i:i + 8]) for i in range(0, len(prog), 8)]
        assert ops[-1][0] == 0x06 and ops[-2][0] == 0x06  # the program ends in returns
        for i, (code, jt, jf, _k) in enumerate(ops):
            if code in (0x15, 0x45):
                assert i + 1 + max(jt, jf) < len(ops)
    assert seccomp.program("sparc") is None


def test_100_mb_of_output_is_truncated_without_buffering_it(ci: Runner) -> None:
    code = "import sys\nfor _ in range(100):\n    sys.stdout.write('x' * 1024**2)\nraise ValueError('the end')"
    tracemalloc.start()
    try:
        r = ci.exec("flood", code)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * 1024**2, f"the server buffered {peak} bytes"
    assert len(r.logs) < MAX_OUTPUT + 200 and "output truncated: 104,8" in r.logs
    assert r.logs.rstrip().endswith("ValueError: the end")  # the tail is kept: tracebacks stay visible


def test_cpu_time_limit_kills_the_session(tmp_path: Path) -> None:
    runner = Runner(tmp_path, cpu_seconds=1)
    require_sandbox(runner)
    try:
        r = runner.exec("cpu", "while True:\n    pass")
        assert r.error is not None and "CPU time limit of 1 s" in r.error
        assert runner.exec("cpu", "print('fresh')").session_restarted
    finally:
        runner.close()


def test_links_planted_in_mnt_data_are_never_followed_by_the_server(ci: Runner) -> None:
    shadow = Path("/etc/shadow")
    before = shadow.stat().st_mtime_ns if shadow.exists() else None
    r = ci.exec("links", "import os\nos.symlink('/etc/shadow', 'shadow')\nos.symlink('/', 'root')")
    assert r.error is None and r.files_created == []
    ci.exec("links", "1", files=[InputFile("shadow", b"overwritten?")])
    assert (shadow.stat().st_mtime_ns if shadow.exists() else None) == before
    assert ci.exec("links", "print(open('shadow').read())").logs == "overwritten?\n"
