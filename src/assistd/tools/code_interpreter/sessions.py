"""One stateful kernel process per thread, outside the server's memory, spoken to over pipes.

Why not jupyter_client + ipykernel: their kernels talk ZMQ over TCP, and the sandbox has no network (not
even a loopback shared with the host). A ~150-line REPL over pipes (kernel/repl.py) needs nothing but the
stdlib inside the sandbox, starts in tens of milliseconds, and lets the server bound what it reads.

Pipes: stdin (requests), stdout+stderr merged (the logs, read in chunks into a bounded
:class:`OutputCapture`), a control pipe (JSON frames, lines capped at ``CTRL_LIMIT``), and bwrap's info
pipe (the kernel's host pid, for SIGINT).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import secrets
import signal
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from assistd.tools.code_interpreter.cgroups import SessionCgroup
from assistd.tools.code_interpreter.output import OutputCapture
from assistd.tools.code_interpreter.results import CodeInterpreterError
from assistd.tools.code_interpreter.sandbox import Sandbox
from assistd.tools.code_interpreter.spawn import KernelProcess, spawn

CTRL_LIMIT = 32 * 1024**2  # a done frame carries the PNGs (base64): bounded by max_images x max_image_bytes
OUTPUT_DRAIN_SECONDS = 2.0  # after the done frame, how long the logs may take to reach their sentinel


def _sentinel(nonce: str, request_id: int) -> bytes:  # the same bytes as kernel/repl.py's sentinel()
    return f"\x00\x01assistd-end:{nonce}:{request_id}\x01\x00".encode()


@dataclass
class RawResult:
    logs: str = ""
    images: list[bytes] = field(default_factory=list)
    error: str | None = None
    died: bool = False  # the kernel is gone: its state is lost


class Session:
    def __init__(self, thread_id: str, workdir: Path, sandbox: Sandbox, uid: int | None) -> None:
        self.thread_id, self.workdir, self.sandbox, self.uid = thread_id, workdir, sandbox, uid
        self.settings = sandbox.settings
        self.lock = asyncio.Lock()  # one execution at a time
        self.last_used = time.monotonic()
        self.cancelled = False
        self.started = False  # set by the engine once a kernel has run for this thread
        self._proc: KernelProcess | None = None
        self._ctrl: asyncio.StreamReader | None = None
        self._ctrl_transport: asyncio.BaseTransport | None = None
        self._kernel_pid: int | None = None
        self._pidfd: int | None = None
        self._cgroup: SessionCgroup | None = None
        self._killed = False  # we killed it (timeout, cancel, close), as opposed to a crash
        self._nonce = secrets.token_hex(16)
        self._seq = 0
        self._capture: OutputCapture | None = None
        self._captured = asyncio.Event()
        self._stray: deque[bytes] = deque(maxlen=16)  # output outside executions (startup errors)
        self._pump: asyncio.Task[None] | None = None

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    async def start(self) -> None:
        """Start (or restart, after a death) the kernel; raise CodeInterpreterError if it does not come up."""
        loop = asyncio.get_running_loop()
        await self.kill()  # the remains of a previous kernel: its pipes and reader task
        self._nonce, self._seq, self._capture, self._killed = secrets.token_hex(16), 0, None, False
        self._stray.clear()
        cgroups = await asyncio.to_thread(self.sandbox.cgroups)
        if cgroups.available:  # fail closed: a session is not started without the bound it should have
            try:
                self._cgroup = await asyncio.to_thread(cgroups.create)
            except OSError as exc:
                raise CodeInterpreterError(f"the Python session could not start: no cgroup ({exc})") from None
        ctrl_r, ctrl_w = os.pipe()
        info_r, info_w = os.pipe() if self.sandbox.enabled else (None, None)
        filter_fd = self.sandbox.seccomp_fd()
        argv = self.sandbox.command(self.workdir, info_fd=info_w, seccomp_fd=filter_fd) + [
            self.sandbox.kernel_script()]
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        if not self.sandbox.enabled:
            env = self.sandbox.environment(str(self.workdir))
        try:
            # only these descriptors (and 0, 1, 2) reach bwrap, and so the sandbox: see spawn.py
            self._proc = await spawn(argv, pass_fds=[fd for fd in (ctrl_w, info_w, filter_fd) if fd is not None],
                                     cwd=self.workdir, env=env)
        except OSError as exc:
            for fd in (ctrl_r, info_r):
                if fd is not None:
                    os.close(fd)
            if self._cgroup is not None:
                await self._cgroup.remove()
                self._cgroup = None
            raise CodeInterpreterError(f"the Python session could not start: {exc}") from None
        finally:
            for fd in (ctrl_w, info_w, filter_fd):
                if fd is not None:
                    os.close(fd)
        self._ctrl = ctrl = asyncio.StreamReader(limit=CTRL_LIMIT)
        self._ctrl_transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(ctrl), os.fdopen(ctrl_r, "rb", buffering=0))
        self._pump = asyncio.create_task(self._read_output())
        config = {
            "limits": self.sandbox.limits(), "uid": self.uid, "gid": self.uid, "ctrl_fd": ctrl_w,
            "cwd": self.sandbox.kernel_workdir(self.workdir), "nonce": self._nonce, "reap": self.sandbox.enabled,
            "max_images": self.settings.max_images, "max_image_bytes": self.settings.max_image_bytes,
        }
        try:
            async with asyncio.timeout(self.settings.startup_timeout_seconds):
                if info_r is not None:
                    self._kernel_pid = await _read_info_pid(info_r)
                    # a pidfd names this very process: no signal can hit a recycled pid later
                    with contextlib.suppress(OSError, AttributeError):
                        self._pidfd = os.pidfd_open(self._kernel_pid)
                else:
                    self._kernel_pid = self._proc.pid
                if self._cgroup is not None:  # before the config: before any user code runs
                    self._cgroup.add(self._kernel_pid)
                await self._send(config)
                frame = await self._frame()
            if frame.get("type") != "ready":
                raise CodeInterpreterError("unexpected first frame")
        except Exception as exc:
            await self.kill()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1):
                    await asyncio.shield(self._pump)
            detail = b"".join(self._stray).decode("utf-8", "replace").strip()[-1000:]
            raise CodeInterpreterError(f"the Python session could not start: {detail or exc!r}") from None

    async def _send(self, message: dict) -> None:
        assert self._proc is not None and self._proc.stdin is not None
        self._proc.stdin.write(json.dumps(message).encode() + b"\n")
        await self._proc.stdin.drain()

    async def _frame(self) -> dict:
        assert self._ctrl is not None
        line = await self._ctrl.readline()  # ValueError beyond CTRL_LIMIT
        if not line.endswith(b"\n"):
            raise EOFError("kernel exited")
        return json.loads(line)

    async def _read_output(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        while chunk := await self._proc.stdout.read(65536):
            capture = self._capture
            if capture is not None:
                chunk = capture.feed(chunk)
                if capture.complete:
                    self._capture = None
                    self._captured.set()
            if chunk:
                self._stray.append(chunk[-4096:])
        self._captured.set()  # EOF: nothing more will come

    async def execute(self, code: str, timeout: float) -> RawResult:
        """Run ``code``; never raises for what the code does (errors, timeouts, a dead kernel)."""
        self._seq += 1
        request_id = self._seq
        capture = self._capture = OutputCapture(self.settings.max_output_chars, _sentinel(self._nonce, request_id))
        self._captured.clear()
        result = RawResult()
        done = asyncio.ensure_future(self._done_frame(request_id))
        try:
            await self._send({"id": request_id, "code": code})
            finished, _ = await asyncio.wait({done}, timeout=timeout)
            if not finished and not self.cancelled:
                result.error = f"Execution timed out after {timeout:g} s"
                await self.interrupt()
                finished, _ = await asyncio.wait({done}, timeout=self.settings.interrupt_grace_seconds)
            if not finished:
                await self.kill()
                await asyncio.wait({done}, timeout=1)
            frame = done.result()
            result.error = result.error or frame.get("error")
            result.images = [base64.b64decode(png) for png in frame.get("images", ())]
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(OUTPUT_DRAIN_SECONDS):
                    await self._captured.wait()
        except (Exception, asyncio.CancelledError) as exc:
            done.cancel()
            if isinstance(exc, asyncio.CancelledError):
                await self.kill()
                raise
            result.died = True
            result.error = result.error or await self._death_reason()
            await self.kill()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1):
                    await self._captured.wait()
        finally:
            self._capture = None
            self.last_used = time.monotonic()
        if self.cancelled:
            result.error = "Execution cancelled"
        result.logs = capture.text()
        if result.died:
            result.logs += (f"\n[{result.error}. The next execution starts a new Python session: variables "
                            "and imports are lost, files in /mnt/data are kept]\n")
        return result

    async def _done_frame(self, request_id: int) -> dict:
        while True:
            frame = await self._frame()
            if frame.get("type") == "done" and frame.get("id") == request_id:
                return frame

    async def _death_reason(self) -> str:
        """Why the kernel stopped answering: let it exit on its own first, so its status is its own."""
        assert self._proc is not None
        if self._killed:
            return "The Python session was stopped"
        try:
            async with asyncio.timeout(1):
                code = await self._proc.wait()
        except TimeoutError:
            return "The Python session stopped responding"
        # bwrap exits 128+N when the kernel died of signal N; a bare kernel gives -N
        signum = -code if code < 0 else (code - 128 if code > 128 and self.sandbox.enabled else 0)
        if self._cgroup is not None and self._cgroup.oom_kills():
            limit = self.settings.session_memory_bytes // 1024**2
            return (f"The Python session was killed: its memory limit of {limit} MiB (processes and /tmp "
                    "together) was reached")
        if signum == signal.SIGKILL:  # pid 1 of its namespace: SIGXCPU is ignored, the hard limit kills
            return (f"The Python session was killed (CPU time limit of {self.settings.cpu_seconds} s reached, "
                    "or the machine ran out of memory)")
        if signum:
            return f"The Python session crashed ({signal.Signals(signum).name})"
        return f"The Python session exited (status {code})"

    def _signal_kernel(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if self._pidfd is not None:
                signal.pidfd_send_signal(self._pidfd, signum)
            elif self._kernel_pid is not None:
                os.kill(self._kernel_pid, signum)

    async def interrupt(self) -> None:
        """SIGINT: KeyboardInterrupt in the running code (the kernel ignores it between executions)."""
        if self.alive:
            self._signal_kernel(signal.SIGINT)

    async def kill(self) -> None:
        """End the kernel and everything it started. The kernel is pid 1 of its namespace, so its death
        ends every process in the sandbox, and bwrap, its parent, reaps it and exits. bwrap is killed
        only if it does not: killed first, it would leave the kernel a zombie for the host's init."""
        proc = self._proc
        if proc is not None and proc.returncode is None:
            self._killed = True
        if self.sandbox.enabled and (self._pidfd is not None or (proc is not None and proc.returncode is None)):
            self._signal_kernel(signal.SIGKILL)  # by pidfd even if bwrap is gone: the kernel may outlive it
        if proc is not None and proc.returncode is None:
            if self.sandbox.enabled:
                await _wait_exit(proc, 2)
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)  # bwrap, or the bare kernel and its process group
                await _wait_exit(proc, 5)
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None
        if proc is not None and proc.returncode is not None:
            proc.close()
        if self._ctrl_transport is not None:
            self._ctrl_transport.close()
        if self._cgroup is not None and (proc is None or proc.returncode is not None):
            if await self._cgroup.remove():
                self._cgroup = None
        if self._pump is not None and not self._pump.done():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1):
                    await asyncio.shield(self._pump)
            self._pump.cancel()


async def _wait_exit(proc: KernelProcess, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await proc.wait()


async def _read_info_pid(fd: int) -> int:
    """bwrap writes ``{"child-pid": N, …}`` to its info fd once the sandbox is up, then closes it."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=65536)
    transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader),
                                                os.fdopen(fd, "rb", buffering=0))
    try:
        data = await reader.read(65536)
        while (more := await reader.read(65536)) and len(data) < 65536:
            data += more
    finally:
        transport.close()
    try:
        return int(json.loads(data)["child-pid"])
    except (ValueError, KeyError, TypeError):
        raise CodeInterpreterError("bwrap did not start the sandbox") from None
