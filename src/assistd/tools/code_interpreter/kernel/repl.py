"""The kernel: one stateful Python REPL per thread, driven over pipes (no sockets: it has no network).

Runs inside the sandbox, started as ``python -I -B -u repl.py``. Protocol (all JSON lines):

* stdin, first line: the config ``{"limits": {"AS": n, …}, "uid": n|null, "gid": n|null, "ctrl_fd": 3,
  "cwd": "/mnt/data", "nonce": "…", "reap": bool, "max_images": n, "max_image_bytes": n}``; then requests ``{"id": n,
  "code": "…"}``. stdin is then pointed at /dev/null so ``input()`` cannot eat requests.
* fd 1 and 2 (one pipe): whatever the code prints, C libraries and subprocesses included. After each
  request the kernel writes ``SENTINEL(nonce, id)`` there, so the server knows the logs are complete.
* ``ctrl_fd``: frames ``{"type": "ready"}`` and ``{"type": "done", "id": n, "error": str|null,
  "images": [base64 png…]}``.

The code runs in a fresh ``__main__`` module; like a notebook, the value of a final expression is printed,
and matplotlib figures (plt.show() or left open) come back as PNGs.
"""

import ast
import base64
import builtins
import io
import json
import linecache
import os
import resource
import signal
import sys
import threading
import time
import traceback
import types
from queue import Queue

KERNEL_FILE = os.path.abspath(__file__)


class State:
    running = False  # SIGINT interrupts user code only, never the kernel's own bookkeeping
    child = False  # set in forks of the kernel: they must never answer the server
    images: list = []
    config: dict = {}


def sentinel(nonce, request_id):
    return f"\x00\x01assistd-end:{nonce}:{request_id}\x01\x00".encode()


def apply_limits(config):
    # Set here, before any user code and after the sandbox's user namespace exists: RLIMIT_NPROC then
    # counts this sandbox's processes only. Hard limits too, so the code cannot raise them again.
    for name, value in config["limits"].items():
        resource.setrlimit(getattr(resource, "RLIMIT_" + name), (value, value))
    if config.get("uid") is not None:  # the server is root: become this session's own unprivileged uid
        os.setgroups([])
        os.setgid(config["gid"])
        os.setuid(config["uid"])  # clears every capability
        if os.getuid() != config["uid"] or os.geteuid() == 0:
            raise SystemExit("could not drop privileges")


def on_sigint(signum, frame):
    if State.running:
        raise KeyboardInterrupt


def capture_figures():
    plt = sys.modules.get("matplotlib.pyplot")
    if plt is None:
        return
    for num in plt.get_fignums():
        if len(State.images) >= State.config["max_images"]:
            print(f"[figure {num} not returned: at most {State.config['max_images']} per execution]",
                  file=sys.stderr)
            continue
        try:
            buf = io.BytesIO()
            plt.figure(num).savefig(buf, format="png", bbox_inches="tight")
        except Exception as exc:  # a figure too big for the memory limit must not break the kernel
            print(f"[figure {num} could not be rendered: {exc!r}]", file=sys.stderr)
            continue
        if buf.tell() > State.config["max_image_bytes"]:
            print(f"[figure {num} not returned: its PNG is {buf.tell()} bytes]", file=sys.stderr)
            continue
        State.images.append(buf.getvalue())
    plt.close("all")


def report(exc):
    """Print the traceback without the kernel's frames; return the one-line summary."""
    tbe = traceback.TracebackException(type(exc), exc, exc.__traceback__)
    tbe.stack = traceback.StackSummary.from_list([f for f in tbe.stack if f.filename != KERNEL_FILE])
    sys.stderr.write("".join(tbe.format()))
    summary = "".join(traceback.format_exception_only(type(exc), exc)).strip().splitlines()
    return (summary[-1] if summary else type(exc).__name__)[:500]


def run_code(request_id, code, namespace):
    filename = f"<code-{request_id}>"
    linecache.cache[filename] = (len(code), None, code.splitlines(True), filename)
    try:
        tree = ast.parse(code, filename)
        last = None
        if tree.body and isinstance(tree.body[-1], ast.Expr):  # notebook-style: show the final value
            last = ast.Interactive(body=[tree.body.pop()])
        State.running = True
        try:
            exec(compile(tree, filename, "exec"), namespace)
            if last is not None:
                exec(compile(last, filename, "single"), namespace)
        finally:
            State.running = False
    except SystemExit as exc:
        if State.child:
            os._exit(0)
        return None if exc.code in (None, 0) else f"SystemExit: {exc.code}"
    except BaseException as exc:
        State.running = False
        if State.child:
            os._exit(1)
        return report(exc)
    if State.child:  # a fork of the kernel that finished the code: it is not a kernel
        os._exit(0)
    return None


def reap():
    """Kill what the code left running (background or forked processes), so no CPU is used between
    executions and the process limit is free again. Only as pid 1 of the sandbox's PID namespace, where
    kill(-1) reaches every process of the sandbox and nothing else (never outside: it would kill the
    host's processes of our uid). As pid 1 we also inherit orphans: reap them."""
    if not State.config.get("reap") or os.getpid() != 1:
        return
    # Repeat: a process forked while kill(-1) walked the process list may have escaped one round.
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.kill(-1, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            return  # nothing left (zombies count until reaped, so this also means all reaped)
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
        time.sleep(0.001)


def read_requests(requests, queue):
    """A thread: requests to the main thread; at EOF the server is gone (or ended us), and nothing may
    outlive it, even code in the middle of an infinite loop. (bwrap's --die-with-parent does not cover
    us: setuid clears the parent-death signal, and root's bwrap could not signal our uid anyway.)"""
    try:
        for line in requests:
            queue.put(line)
        if State.config.get("reap") and os.getpid() == 1:
            os.kill(-1, signal.SIGKILL)
    finally:
        os._exit(0)


def main():
    requests = os.fdopen(os.dup(0), "rb")
    config = State.config = json.loads(requests.readline())
    apply_limits(config)
    os.chdir(config["cwd"])
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    sys.stdin = open(os.devnull)
    ctrl = os.fdopen(config["ctrl_fd"], "wb")
    os.register_at_fork(after_in_child=lambda: setattr(State, "child", True))
    signal.signal(signal.SIGINT, on_sigint)

    hooks = types.ModuleType("_assistd_hooks")
    hooks.capture_figures = capture_figures
    sys.modules["_assistd_hooks"] = hooks
    sys.path.append(os.path.dirname(KERNEL_FILE))  # for MPLBACKEND=module://_assistd_mpl
    sys.path.insert(0, "")  # like an interactive interpreter: modules written to the cwd import
    main_module = types.ModuleType("__main__")
    main_module.__builtins__ = builtins
    sys.modules["__main__"] = main_module
    stdout, stderr = sys.stdout, sys.stderr

    def send(frame):
        ctrl.write(json.dumps(frame).encode() + b"\n")
        ctrl.flush()

    queue = Queue()
    threading.Thread(target=read_requests, args=(requests, queue), daemon=True).start()
    send({"type": "ready"})
    while True:
        request = json.loads(queue.get())
        State.images = []
        error = run_code(request["id"], request["code"], main_module.__dict__)
        try:
            capture_figures()
        except Exception as exc:
            print(f"[figures could not be captured: {exc!r}]", file=sys.stderr)
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        sys.stdout, sys.stderr = stdout, stderr  # the code may have replaced them
        reap()
        try:
            os.write(1, sentinel(config["nonce"], request["id"]))
        except OSError:  # the code closed fd 1: the server stops waiting for the sentinel after a while
            pass
        images = [base64.b64encode(png).decode() for png in State.images]
        send({"type": "done", "id": request["id"], "error": error, "images": images})


if __name__ == "__main__":
    main()
