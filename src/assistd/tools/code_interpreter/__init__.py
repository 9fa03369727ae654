"""The code_interpreter tool: stateful, sandboxed Python per thread, as a library for the run engine.

Usage::

    from assistd.tools.code_interpreter import CodeInterpreter, InputFile

    engine = CodeInterpreter(settings.data_dir)          # settings: ASSISTD_CODE_* (settings.py)
    engine.check()                                        # optional, at startup: raises SandboxUnavailable
    result = await engine.execute(thread_id, code, timeout=None,
                                  files=[InputFile("data.csv", b"a,b\\n1,2\\n")])
    result.outputs        # [Logs(text), Image(png), …]: logs first (stdout+stderr+traceback, capped)
    result.files_created  # [CreatedFile(path, name, size)]: new/modified regular files under /mnt/data;
                          #   read them with created.read_bytes() (refuses symlinks), not open(path)
    result.error          # None, or one line: "ZeroDivisionError: division by zero", a timeout, a crash
    await engine.cancel(thread_id)                        # run cancelled: interrupt, then kill
    await engine.close(thread_id, delete_files=True)      # thread deleted
    await engine.aclose()                                 # shutdown: every session ends

Semantics:

* One Python session (a separate process, started lazily on the first execute) per thread: variables,
  imports and files persist between executions; it ends after ``ASSISTD_CODE_IDLE_SECONDS`` (1 h) without
  use, on ``close``, on ``aclose``, or when it dies (timeout not honoured, memory/CPU limit); the next
  execute then starts a fresh one (``result.session_restarted``). Executions of one thread are serialised.
* The code sees its thread's files at /mnt/data (its working directory; ``ASSISTD_DATA_DIR/code/<thread>``
  on the host); input files are written there first. numpy, pandas and matplotlib are installed.
* Notebook-like: the value of a final expression is printed; figures shown or left open become PNGs.
* Wall clock per execution: ``timeout`` or ``ASSISTD_CODE_TIMEOUT_SECONDS`` (120 s), then
  KeyboardInterrupt, then the session is killed. Logs beyond ``ASSISTD_CODE_MAX_OUTPUT_CHARS`` (20,000)
  keep their head and tail around a ``[… output truncated …]`` marker.
* What the code does never raises: it is reported in ``result``. ``execute`` raises
  :class:`CodeInterpreterError` (``str(exc)`` is meant for the step's ``last_error``) when it cannot run
  the code at all: :class:`SandboxUnavailable` (bubblewrap missing or unusable, and
  ``ASSISTD_CODE_SANDBOX`` is not ``none``), :class:`SessionLimitReached`, a kernel that fails to start.

The sandbox (bubblewrap: no network, private filesystem and PID namespace, resource limits) is described
in sandbox.py; ``ASSISTD_CODE_SANDBOX=none`` runs kernels unsandboxed (resource limits only): UNSAFE, for
a trusted single-user machine only, and /mnt/data does not exist there (the working directory is the
thread's directory).
"""

from assistd.tools.code_interpreter.engine import CodeInterpreter
from assistd.tools.code_interpreter.results import (
    CodeInterpreterError,
    CreatedFile,
    ExecutionResult,
    Image,
    InputFile,
    Logs,
    SandboxUnavailable,
    SessionLimitReached,
)
from assistd.tools.code_interpreter.settings import CodeInterpreterSettings

__all__ = [
    "CodeInterpreter",
    "CodeInterpreterError",
    "CodeInterpreterSettings",
    "CreatedFile",
    "ExecutionResult",
    "Image",
    "InputFile",
    "Logs",
    "SandboxUnavailable",
    "SessionLimitReached",
]
