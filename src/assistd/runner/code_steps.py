"""The code_interpreter part of a run's execution: its calls streamed, executed in the thread's
sandboxed session, and their outputs (logs, images, files) recorded.

A mixin of :class:`assistd.runner.execute.RunExecutor`; it shares the executor's state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING, Any

from assistd import ids
from assistd.events.base import Event, run_channel
from assistd.providers.base import ToolCallDelta
from assistd.services.outbox import Outbox
from assistd.services.run_objects import (
    new_step,
    tool_call_delta,
)
from assistd.services.runs import insert_step
from assistd.services.step_render import shown
from assistd.tools import code_outputs, code_tool

if TYPE_CHECKING:
    pass

log = logging.getLogger("assistd.runner")



class CodeSteps:

    def _image_parts(self) -> list[dict[str, Any]]:
        """The images the run's code made since its last answer, as the next answer's first parts."""
        parts = [{"type": "image_file", "image_file": {"file_id": f}} for f in self._pending_images]
        self._pending_images = []
        return parts

    async def _publish_code_piece(self, index: int, piece: dict[str, Any]) -> None:
        assert self.turn.code_step is not None
        await self.bus.publish(run_channel(self.run_id), Event("thread.run.step.delta", tool_call_delta(
            self.turn.code_step["id"], index, {"type": "code_interpreter", "code_interpreter": piece})))

    async def _on_code_delta(self, delta: ToolCallDelta) -> None:
        """A piece of a code_interpreter call: its step shows the code as the model writes it."""
        entry = self.turn.code_calls.get(delta.index)
        if entry is None:
            entry = code_tool.new_entry(delta.id or ids.new_id("tool_call"), self._code_name or "")
            self.turn.code_calls[delta.index] = entry
            if self.turn.code_step is None:
                outbox = Outbox(self.run_id)
                async with self.db.write() as conn:
                    step = new_step(self.run, "tool_calls", {"type": "tool_calls", "tool_calls": [entry]})
                    await insert_step(conn, self.project_id, step)
                    outbox.add("thread.run.step.created", shown(step))
                    outbox.add("thread.run.step.in_progress", shown(step))
                self.turn.code_step = step
                await outbox.flush(self.bus)
            await self.bus.publish(run_channel(self.run_id), Event("thread.run.step.delta", tool_call_delta(
                self.turn.code_step["id"], len(self.turn.code_calls) - 1,
                {"id": entry["id"], "type": "code_interpreter", "code_interpreter": {"input": "", "outputs": []}})))
        private = entry[code_tool.PRIVATE]
        private["arguments"] += delta.arguments
        await self._stream_input(entry, code_tool.partial_code(private["arguments"]))

    async def _stream_input(self, entry: dict[str, Any], code: str) -> None:
        written = entry["code_interpreter"]["input"]
        if len(code) > len(written) and code.startswith(written):
            entry["code_interpreter"]["input"] = code
            index = list(self.turn.code_calls.values()).index(entry)
            await self._publish_code_piece(index, {"input": code[len(written):]})

    async def _run_code(self) -> None:
        """Execute this turn's code_interpreter calls in order, in the thread's session; each call's outputs
        are saved (files, images) and streamed as soon as it returns. A cancel interrupts the execution."""
        assert self.code is not None
        tool = self.code
        engine = tool.engine
        thread_id = self.run["thread_id"]
        provided = tool.provided.setdefault(thread_id, set())
        async with self.db.read() as conn:
            inputs = await code_tool.input_files(conn, tool.blobs, self.project_id, self.run, provided)
        for index, entry in enumerate(self.turn.code_calls.values()):
            code = code_tool.code_of(entry[code_tool.PRIVATE]["arguments"])
            await self._stream_input(entry, code)
            entry["code_interpreter"]["input"] = code
            timeout = None
            if self.run.get("expires_at") is not None:  # never past the run's expiry
                left = self.run["expires_at"] - time.time()
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
            saved = await code_outputs.save_outputs(self.db, tool.blobs, self.project_id, entry["id"], result,
                                                    self.run_id)
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
            self._code_files.update(files_out)  # (its images go in the next turn's answer: see _plan_code)
            if outputs:
                await self._publish_code_piece(index, {"outputs": [{"index": i, **o} for i, o in enumerate(outputs)]})
        self.turn.code_ran = True
