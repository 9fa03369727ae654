"""CodeInterpreter: the engine the run executor calls (see the package docstring for the API)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import time
import weakref
from collections import OrderedDict
from collections.abc import Iterable
from pathlib import Path

from assistd.observability import metrics
from assistd.observability import runs as observe_runs
from assistd.tools.code_interpreter import files as fs
from assistd.tools.code_interpreter.results import (
    CodeInterpreterError,
    ExecutionResult,
    Image,
    InputFile,
    Logs,
    SessionLimitReached,
)
from assistd.tools.code_interpreter.sandbox import Sandbox, is_root
from assistd.tools.code_interpreter.sessions import Session
from assistd.tools.code_interpreter.settings import CodeInterpreterSettings

UID_SLOTS = 1024
_UIDS_IN_USE: set[int] = set()  # per process, not per engine: two engines must never share a uid
_ENGINES: weakref.WeakSet[CodeInterpreter] = weakref.WeakSet()  # open engines: assistd_code_sessions sums them


def _sessions_alive() -> int:
    return sum(engine.session_count() for engine in list(_ENGINES))


metrics.code_sessions.set_function(_sessions_alive)


class CodeInterpreter:
    def __init__(self, data_dir: Path | str, settings: CodeInterpreterSettings | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.settings = settings or CodeInterpreterSettings()
        self.sandbox = Sandbox(self.settings)
        self._sessions: dict[str, Session] = {}
        self._uids: dict[str, int] = {}
        self._ended: OrderedDict[str, None] = OrderedDict()  # threads whose session ended (bounded)
        self._reaper: asyncio.Task[None] | None = None
        self._closed = False
        _ENGINES.add(self)

    def check(self) -> None:
        """Raise SandboxUnavailable unless kernels can run here (probes bwrap once; blocking)."""
        self.sandbox.check()

    async def execute(self, thread_id: str, code: str, *, timeout: float | None = None,
                      files: Iterable[InputFile] = ()) -> ExecutionResult:
        if self._closed:
            raise CodeInterpreterError("the code interpreter is shut down")
        await asyncio.to_thread(self.sandbox.check)  # cached after the first call
        workdir = await asyncio.to_thread(fs.thread_dir, self.data_dir, thread_id)
        session = self._sessions.get(thread_id) or await self._new_session(thread_id, workdir)
        async with session.lock:
            if self._sessions.get(thread_id) is not session:  # closed while we waited for the lock
                raise CodeInterpreterError("the thread's Python session was closed")
            session.cancelled = False
            restarted = False
            owner = (session.uid, session.uid) if session.uid is not None else None
            if not session.alive:
                restarted = session.started or thread_id in self._ended
                if owner is not None:  # earlier sessions of this thread ran as other uids
                    await asyncio.to_thread(fs.chown_tree, workdir, owner)
                await session.start()
                session.started = True
            for file in files:
                await asyncio.to_thread(fs.write_input_file, workdir, file, owner)
            before = await asyncio.to_thread(fs.snapshot, workdir)
            with observe_runs.tool_call("code_interpreter"):
                raw = await session.execute(code, timeout or self.settings.timeout_seconds)
            metrics.code_executions.labels("error" if raw.error else "ok").inc()
            after = await asyncio.to_thread(fs.snapshot, workdir)
        self._ensure_reaper()
        outputs: list[Logs | Image] = [Logs(raw.logs)] if raw.logs else []
        outputs += [Image(png) for png in raw.images]
        return ExecutionResult(outputs=outputs, files_created=fs.changed_files(workdir, before, after),
                               error=raw.error, session_restarted=restarted)

    async def cancel(self, thread_id: str) -> None:
        """Stop the thread's running execution (interrupt, then kill); returns once it has returned."""
        session = self._sessions.get(thread_id)
        if session is None or not session.lock.locked():
            return
        session.cancelled = True
        await session.interrupt()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(1.0):
                async with session.lock:
                    return
        await session.kill()
        async with session.lock:
            pass

    async def close(self, thread_id: str, *, delete_files: bool = False) -> None:
        """End the thread's session (thread deleted); ``delete_files`` also removes its /mnt/data."""
        session = self._sessions.pop(thread_id, None)
        if session is not None:
            await session.kill()
            self._forget(thread_id)
        if delete_files:
            path = self.data_dir.resolve() / "code" / thread_id
            fs.thread_dir(self.data_dir, thread_id)  # validates the id
            # rmtree removes symlinks without following them
            await asyncio.to_thread(shutil.rmtree, path, True)

    async def aclose(self) -> None:
        """End every session (server shutdown)."""
        self._closed = True
        _ENGINES.discard(self)
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
        sessions, self._sessions = self._sessions, {}
        await asyncio.gather(*(s.kill() for s in sessions.values()), return_exceptions=True)
        for thread_id in sessions:
            self._forget(thread_id)

    def session_count(self) -> int:
        return sum(1 for s in self._sessions.values() if s.alive)

    async def _new_session(self, thread_id: str, workdir: Path) -> Session:
        if len(self._sessions) >= self.settings.max_sessions:
            idle = [s for s in self._sessions.values() if not s.lock.locked()]
            if not idle:
                raise SessionLimitReached(f"all {self.settings.max_sessions} Python sessions are busy; retry later")
            await self.close(min(idle, key=lambda s: s.last_used).thread_id)
        if thread_id in self._sessions:  # another caller made it while we waited
            return self._sessions[thread_id]
        session = Session(thread_id, workdir, self.sandbox, self._allocate_uid(thread_id))
        self._sessions[thread_id] = session
        return session

    def _allocate_uid(self, thread_id: str) -> int | None:
        """As root, every session gets a uid of its own (see sandbox.py); otherwise the server's."""
        if not is_root() or not self.sandbox.enabled:
            return None
        base = self.settings.uid_base + (os.getpid() % 65536) * UID_SLOTS
        for slot in range(UID_SLOTS):
            if base + slot not in _UIDS_IN_USE:
                _UIDS_IN_USE.add(base + slot)
                self._uids[thread_id] = base + slot
                return base + slot
        raise SessionLimitReached("no free sandbox uid")

    def _forget(self, thread_id: str) -> None:
        _UIDS_IN_USE.discard(self._uids.pop(thread_id, -1))
        self._ended[thread_id] = None
        if len(self._ended) > 10_000:
            self._ended.popitem(last=False)

    def _ensure_reaper(self) -> None:
        if self._reaper is None or self._reaper.done():
            self._reaper = asyncio.create_task(self._reap_idle())

    async def _reap_idle(self) -> None:
        idle = self.settings.idle_seconds
        while self._sessions:
            await asyncio.sleep(min(idle / 2, 30.0))
            now = time.monotonic()
            for thread_id, session in list(self._sessions.items()):
                if not session.lock.locked() and now - session.last_used > idle:
                    await self.close(thread_id)
