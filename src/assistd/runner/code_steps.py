"""code_interpreter in a run (a ``ServerTool``, runner/server_tools.py): its calls streamed into a step
that shows the code as the model writes it, executed in the thread's sandboxed session once the model's
call is complete, their outputs (logs, images, files) saved and recorded; the answer that follows shows
the images and links the files."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from assistd import ids
from assistd.providers.base import ToolCallDelta
from assistd.runner.run_scope import RunScope
from assistd.runner.server_tools import Offer, Recorded, Recording, ToolEngines, ToolFailed
from assistd.services.run_objects import set_step_status, tool_call_delta
from assistd.services.runs import save_step
from assistd.services.step_render import shown
from assistd.tools import code_outputs, code_tool

log = logging.getLogger("assistd.runner")


class CodeInterpreterSteps:
    kind = "code_interpreter"

    def __init__(self, scope: RunScope, engines: ToolEngines) -> None:
        self.scope = scope
        self.code = engines.code
        self.files: dict[str, str] = {}  # what the run's code wrote: name under /mnt/data → file id
        self.pending_images: list[str] = []  # images not yet shown in an answer (file ids)
        self.name: str | None = None  # what it is offered under on this call (None: not offered)
        self.calls: dict[int, dict[str, Any]] = {}  # this call's executions (entries), by upstream index
        self.step: dict[str, Any] | None = None  # ... and their step, opened with the first
        self.ran = False  # ... and whether they were executed

    def plan(self, run: dict[str, Any], steps: list[dict[str, Any]]) -> Offer | None:
        done = len(code_tool.entries_of(steps))
        self.files = code_tool.files_of(steps)
        self.pending_images = code_tool.pending_images(steps)
        self.calls, self.step, self.ran = {}, None, False
        offered = self.code is not None and code_tool.active(run) and done < code_tool.MAX_EXECUTIONS
        self.name = code_tool.function_name(run) if offered else None
        if self.name is None:
            return None
        return Offer(self.kind, self.name, code_tool.chat_function(self.name), forcible=done == 0)

    def replay(self, entry: dict[str, Any]) -> tuple[dict[str, Any], str]:
        return code_tool.chat_call(entry), code_tool.output_text(entry)

    # --- streamed -----------------------------------------------------------------------------------

    async def on_delta(self, delta: ToolCallDelta, *, taken: bool) -> bool:
        """A piece of a call: its step shows the code as the model writes it."""
        entry = self.calls.get(delta.index)
        if entry is None:
            if taken or self.name is None or delta.name != self.name:
                return False
            entry = code_tool.new_entry(delta.id or ids.new_id("tool_call"), self.name)
            self.calls[delta.index] = entry
            if self.step is None:
                self.step = await self.scope.open_tool_step([entry])
            await self.scope.publish("thread.run.step.delta", tool_call_delta(
                self.step["id"], len(self.calls) - 1,
                {"id": entry["id"], "type": "code_interpreter", "code_interpreter": {"input": "", "outputs": []}}))
        private = entry[code_tool.PRIVATE]
        private["arguments"] += delta.arguments
        await self._stream_input(entry, code_tool.partial_code(private["arguments"]))
        return True

    async def _publish_piece(self, index: int, piece: dict[str, Any]) -> None:
        assert self.step is not None
        await self.scope.publish("thread.run.step.delta", tool_call_delta(
            self.step["id"], index, {"type": "code_interpreter", "code_interpreter": piece}))

    async def _stream_input(self, entry: dict[str, Any], code: str) -> None:
        written = entry["code_interpreter"]["input"]
        if len(code) > len(written) and code.startswith(written):
            entry["code_interpreter"]["input"] = code
            index = list(self.calls.values()).index(entry)
            await self._publish_piece(index, {"input": code[len(written):]})

    def called(self) -> bool:
        return self.step is not None

    def open_step(self) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
        return None if self.step is None else (self.step, list(self.calls.values()))

    # --- executed -----------------------------------------------------------------------------------

    async def execute(self) -> None:
        if not self.calls:
            return
        from assistd.tools.code_interpreter import CodeInterpreterError  # the engine's package: once code runs

        try:
            await self._run()
        except CodeInterpreterError as exc:  # no sandbox, every session busy: the code could not run
            raise ToolFailed(str(exc)[:1000] or "The code interpreter is unavailable.") from exc
        except Exception as exc:
            log.exception("run %s: code_interpreter failed", self.scope.run_id)
            raise ToolFailed(f"The code_interpreter tool failed: {type(exc).__name__}") from exc

    async def _run(self) -> None:
        """Execute the calls in order, in the thread's session; each call's outputs are saved (files,
        images) and streamed as soon as it returns. A cancel interrupts the execution."""
        assert self.code is not None
        tool, scope, run = self.code, self.scope, self.scope.run
        engine = tool.engine
        thread_id = run["thread_id"]
        provided = tool.provided.setdefault(thread_id, set())
        async with scope.db.read() as conn:
            inputs = await code_tool.input_files(conn, tool.blobs, scope.project_id, run, provided)
        for index, entry in enumerate(self.calls.values()):
            code = code_tool.code_of(entry[code_tool.PRIVATE]["arguments"])
            await self._stream_input(entry, code)
            entry["code_interpreter"]["input"] = code
            timeout = None
            if run.get("expires_at") is not None:  # never past the run's expiry
                left = run["expires_at"] - time.time()
                if left < engine.settings.timeout_seconds:
                    timeout = max(1.0, left)
            files = [f for _, f in inputs]
            execution = asyncio.ensure_future(engine.execute(thread_id, code, timeout=timeout, files=files))
            try:
                result = await asyncio.shield(execution)
            except asyncio.CancelledError:
                # The run is cancelled (or this worker stops): interrupt the code, kill it if it goes on.
                with contextlib.suppress(BaseException):
                    await engine.cancel(thread_id)
                    await execution
                raise
            provided.update(fid for fid, _ in inputs)
            inputs = []
            saved = await code_outputs.save_outputs(scope.db, tool.blobs, scope.project_id, entry["id"], result,
                                                    scope.run_id)
            images, files_out, skipped = saved.images, saved.written, saved.skipped
            logs = result.logs
            if result.error and result.error not in logs:
                logs += ("" if not logs or logs.endswith("\n") else "\n") + f"[{result.error}]\n"
            outputs: list[dict[str, Any]] = [{"type": "logs", "logs": logs}] if logs else []
            outputs += [{"type": "image", "image": {"file_id": f}} for f in images]
            entry["code_interpreter"]["outputs"] = outputs
            told = code_tool.model_output(logs, None, images, files_out, skipped)
            if result.session_restarted:
                told = "[a new Python session was started: earlier variables and imports are lost]\n" + told
            entry[code_tool.PRIVATE].update(output=told, files=files_out)
            self.files.update(files_out)  # (its images go in the next call's answer: see ``plan``)
            if outputs:
                await self._publish_piece(index, {"outputs": [{"index": i, **o} for i, o in enumerate(outputs)]})
        self.ran = True

    async def record(self, rec: Recording) -> Recorded:
        """Its step, with the calls as executed: completed when the code ran (whatever happens to the run
        now), else left open for the run's ending to close."""
        step = self.step
        if step is None:
            return Recorded()
        step["step_details"]["tool_calls"] = list(self.calls.values())
        if self.ran:
            set_step_status(step, "completed", usage=rec.take_usage())
            rec.outbox.add("thread.run.step.completed", shown(step))
        await save_step(rec.conn, step)
        return Recorded(executed=True) if self.ran else Recorded(unexecuted=step)

    # --- the answer ---------------------------------------------------------------------------------

    def take_answer_parts(self) -> list[dict[str, Any]]:
        parts = [{"type": "image_file", "image_file": {"file_id": f}} for f in self.pending_images]
        self.pending_images = []
        return parts

    def annotate(self, text: str) -> list[dict[str, Any]]:
        return code_tool.file_path_annotations(text, self.files)
