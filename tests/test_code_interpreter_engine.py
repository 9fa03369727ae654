"""The code_interpreter engine as the run executor uses it: sessions, outputs, files, lifecycle.

Needs bubblewrap (scripts/install-sandbox); without it these tests skip, unless
ASSISTD_TEST_REQUIRE_SANDBOX=1 (CI) makes that a failure.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest

from assistd.tools.code_interpreter import (
    CodeInterpreter,
    CodeInterpreterError,
    CodeInterpreterSettings,
    ExecutionResult,
    InputFile,
    SandboxUnavailable,
)

PNG = b"\x89PNG\r\n\x1a\n"


class Runner:
    """An engine on its own event loop, driven from synchronous tests."""

    def __init__(self, data_dir: Path, **settings: Any) -> None:
        self.loop = asyncio.new_event_loop()
        base = {"timeout_seconds": 10, "interrupt_grace_seconds": 1, "max_output_chars": 4000}
        self.engine = CodeInterpreter(data_dir, CodeInterpreterSettings(**(base | settings)))

    def run(self, coro: Coroutine[Any, Any, Any], timeout: float = 60) -> Any:
        return self.loop.run_until_complete(asyncio.wait_for(coro, timeout))

    def exec(self, thread: str, code: str, **kw: Any) -> ExecutionResult:
        return self.run(self.engine.execute(thread, code, **kw))

    def close(self) -> None:
        self.run(self.engine.aclose())
        self.loop.close()


def require_sandbox(runner: Runner) -> None:
    try:
        runner.engine.check()
    except SandboxUnavailable as exc:
        runner.close()
        if os.environ.get("ASSISTD_TEST_REQUIRE_SANDBOX") == "1":
            pytest.fail(str(exc))
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def ci(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runner]:
    runner = Runner(tmp_path_factory.mktemp("ci-data"))
    require_sandbox(runner)
    yield runner
    runner.close()


def test_state_persists_and_the_last_expression_is_shown(ci: Runner) -> None:
    r = ci.exec("t_state", "x = 40\nprint('set')\nx + 2")
    assert (r.error, r.logs) == (None, "set\n42\n")
    r = ci.exec("t_state", "import sys\nprint('out'); print('err', file=sys.stderr)\nx")
    assert r.logs == "out\nerr\n40\n" and not r.session_restarted
    assert ci.exec("t_state", "x = None\nx").logs == ""  # None is not echoed, as in a notebook


def test_errors_come_back_as_traceback_and_summary(ci: Runner) -> None:
    r = ci.exec("t_err", "def f():\n    return 1 / 0\nf()")
    assert r.error == "ZeroDivisionError: division by zero"
    assert 'File "<code-1>", line 2, in f' in r.logs and "return 1 / 0" in r.logs
    assert "repl.py" not in r.logs  # the kernel's own frames are hidden
    r = ci.exec("t_err", "def broken(:\n  pass")
    assert r.error is not None and r.error.startswith("SyntaxError") and "def broken(:" in r.logs
    r = ci.exec("t_err", "input('name? ')")
    assert r.error is not None and r.error.startswith("EOFError")  # no stdin: never hangs
    assert ci.exec("t_err", "raise SystemExit(0)").error is None
    assert ci.exec("t_err", "print('still here')").logs == "still here\n"


def test_scientific_stack_and_figures(ci: Runner) -> None:
    code = (
        "import numpy as np, pandas as pd, matplotlib.pyplot as plt\n"
        "df = pd.DataFrame({'a': np.arange(3)})\n"
        "plt.plot(df['a']); plt.show()\n"
        "plt.figure(); plt.bar([1, 2], [3, 4])\n"  # left open: captured at the end
        "print(df['a'].sum())"
    )
    r = ci.exec("t_plot", code, timeout=30)
    assert r.error is None, r.logs
    assert r.logs.strip().endswith("3")
    assert len(r.images) == 2 and all(png.startswith(PNG) for png in r.images)
    assert [o.type for o in r.outputs] == ["logs", "image", "image"]
    assert ci.exec("t_plot", "import matplotlib.pyplot as plt\nplt.get_fignums()").logs == "[]\n"


def test_files_in_and_out(ci: Runner, tmp_path: Path) -> None:
    src = tmp_path / "from-disk.txt"
    src.write_text("disk")
    r = ci.exec("t_files", "import os\nprint(os.getcwd(), sorted(os.listdir('/mnt/data')))",
                files=[InputFile("data.csv", b"a,b\n1,2\n"), InputFile("../from-disk.txt", src)])
    assert r.logs == "/mnt/data ['data.csv', 'from-disk.txt']\n"
    assert r.files_created == []  # inputs are not outputs
    r = ci.exec("t_files", "import pandas as pd, os\nos.makedirs('out', exist_ok=True)\n"
                "pd.read_csv('data.csv').to_csv('out/result.csv', index=False)\n"
                "open('/mnt/data/data.csv', 'a').write('3,4\\n')\nopen('/tmp/scratch', 'w').write('x')")
    assert r.error is None, r.logs
    assert [(f.name, f.sandbox_path) for f in r.files_created] == [
        ("data.csv", "/mnt/data/data.csv"), ("out/result.csv", "/mnt/data/out/result.csv")]
    assert r.files_created[1].read_bytes() == b"a,b\n1,2\n"
    assert ci.exec("t_files", "print('nothing written')").files_created == []


def test_threads_are_separate_and_run_in_parallel(ci: Runner) -> None:
    ci.exec("t_par_a", "v = 'a'")
    ci.exec("t_par_b", "v = 'b'")

    async def both() -> list[ExecutionResult]:
        code = "import time; time.sleep(0.8); print(v)"
        return await asyncio.gather(ci.engine.execute("t_par_a", code), ci.engine.execute("t_par_b", code))

    start = time.monotonic()
    a, b = ci.run(both())
    assert (a.logs, b.logs) == ("a\n", "b\n")
    assert time.monotonic() - start < 1.5  # one after the other would take 1.6 s


def test_cancel_stops_a_running_execution(ci: Runner) -> None:
    ci.exec("t_cancel", "kept = 1")

    async def cancel_later() -> tuple[ExecutionResult, float]:
        task = asyncio.create_task(ci.engine.execute("t_cancel", "import time\nwhile True: time.sleep(0.05)"))
        await asyncio.sleep(0.5)
        start = time.monotonic()
        await ci.engine.cancel("t_cancel")
        return await task, time.monotonic() - start

    r, took = ci.run(cancel_later())
    assert r.error == "Execution cancelled" and "KeyboardInterrupt" in r.logs and took < 1.5
    assert ci.exec("t_cancel", "print(kept)").logs == "1\n"  # interrupted, not killed: state kept


def test_close_ends_the_session_and_can_delete_files(ci: Runner) -> None:
    ci.exec("t_close", "y = 1\nopen('f.txt', 'w').write('x')")
    workdir = ci.engine.data_dir.resolve() / "code" / "t_close"
    ci.run(ci.engine.close("t_close"))
    r = ci.exec("t_close", "print(sorted(__import__('os').listdir()))\ny")
    assert r.session_restarted and "['f.txt']" in r.logs and r.error == "NameError: name 'y' is not defined"
    ci.run(ci.engine.close("t_close", delete_files=True))
    assert not workdir.exists()
    with pytest.raises(CodeInterpreterError):
        ci.exec("../escape", "1")


def test_idle_sessions_end_and_shutdown_ends_all(tmp_path: Path) -> None:
    runner = Runner(tmp_path, idle_seconds=0.4)
    require_sandbox(runner)
    try:
        runner.exec("t_idle", "z = 1")
        runner.exec("t_busy", "z = 2")
        assert runner.engine.session_count() == 2
        runner.run(asyncio.sleep(1.0))
        assert runner.engine.session_count() == 0
        assert runner.exec("t_idle", "print('back')").session_restarted
        runner.run(runner.engine.aclose())
        assert runner.engine.session_count() == 0
        with pytest.raises(CodeInterpreterError):
            runner.exec("t_idle", "1")
    finally:
        runner.close()


def test_refuses_without_bubblewrap_unless_told_to_run_unsandboxed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no bwrap to be found
    runner = Runner(tmp_path)
    try:
        with pytest.raises(SandboxUnavailable, match="bwrap.*not installed.*ASSISTD_CODE_SANDBOX=none"):
            runner.exec("t_nobwrap", "print(1)")
    finally:
        runner.close()
    monkeypatch.setenv("ASSISTD_CODE_SANDBOX", "none")  # read from the environment like the server does
    runner = Runner(tmp_path, memory_bytes=512 * 1024**2)
    try:
        r = runner.exec("t_unsafe", "import os\nprint(os.getcwd())\nbytearray(2 * 1024**3)")
        assert r.logs.startswith(str(tmp_path.resolve() / "code" / "t_unsafe"))
        assert r.error == "MemoryError"  # resource limits still apply
    finally:
        runner.close()


def test_the_least_recently_used_idle_session_makes_room(tmp_path: Path) -> None:
    runner = Runner(tmp_path, max_sessions=2)
    require_sandbox(runner)
    try:
        for thread in ("t_lru_1", "t_lru_2"):
            runner.exec(thread, "v = 1")
        runner.exec("t_lru_1", "v")  # t_lru_2 is now the least recently used
        runner.exec("t_lru_3", "v = 3")
        assert sorted(runner.engine._sessions) == ["t_lru_1", "t_lru_3"]
        assert runner.exec("t_lru_2", "v").session_restarted
    finally:
        runner.close()


def _sessions_gauge() -> float:
    from assistd.observability import metrics

    lines = [line for line in metrics.exposition().decode().splitlines() if line.startswith("assistd_code_sessions ")]
    return float(lines[0].split()[1])


def test_the_sessions_gauge_sums_every_engine_of_the_process(ci: Runner, tmp_path: Path) -> None:
    """/metrics' assistd_code_sessions (the exposition it serves) counts the sessions of every engine."""
    other = Runner(tmp_path / "other")
    try:
        ci.exec("t_gauge", "1")
        other.exec("t_gauge_a", "1")
        other.exec("t_gauge_b", "1")
        assert other.engine.session_count() == 2
        assert _sessions_gauge() == ci.engine.session_count() + 2
    finally:
        other.close()
    assert _sessions_gauge() == ci.engine.session_count()  # a closed engine counts no more
