"""Recording one model call's outcome, in the transaction that locks its run: named phases, in order —
the interrupted attempt's leftovers, the answer prepared ahead, the answer, the client calls, the server
tools' steps — then the one ``TurnOutcome`` they add up to, applied to the run."""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum

from assistd.runner import client_calls, endings
from assistd.runner.answer_steps import Answer, AnswerSteps
from assistd.runner.server_tools import Recorded, Recording
from assistd.runner.tool_set import ToolSet
from assistd.runner.turn import Turn
from assistd.services import citations
from assistd.services.run_objects import set_run_status, set_step_status, sum_usage
from assistd.services.runs import list_run_steps, save_run, save_step
from assistd.services.step_render import shown
from assistd.store import messages as stored_messages
from assistd.store import objects
from assistd.store import steps as stored_steps
from assistd.store.tables import messages


class TurnOutcome(Enum):
    ANSWERED = "completed"  # the run completed
    CUT = "max_completion_tokens"  # the answer was cut short: the run is incomplete
    OVER_PROMPT = "max_prompt_tokens"  # the call went over max_prompt_tokens: the run is incomplete
    TOOL_CALLS_REQUIRED = "requires_action"  # the client owes the outputs of its functions
    SERVER_TOOLS_EXECUTED = "in_progress"  # the model reads their outputs on its next call
    CANCELLED = "cancelled"  # the cancel came while the call was being recorded: it wins
    FAILED = "failed"  # a server tool could not execute its calls: the run failed
    SUPERSEDED = "superseded"  # another attempt recorded an outcome first: nothing recorded


class TurnRecorder:
    """The phases, over what the executor holds of the call: its turn, its answer, its server tools, and
    what closes its open work if the run ends here (``live``)."""

    def __init__(self, turn: Turn, answers: AnswerSteps, tools: ToolSet, live: Callable[[], endings.Live]) -> None:
        self.turn = turn
        self.answers = answers
        self.tools = tools
        self.live = live

    async def record(self, rec: Recording, prepared: Answer | None, *, cut: bool, prompt_tokens: int
                     ) -> TurnOutcome:
        """The call's outcome, written into ``rec`` (its run locked, still in_progress or cancelling);
        ``prepared``: the answer inserted ahead and not yet announced; ``cut``: the model stopped at its
        token limit; ``prompt_tokens``: what the upstream counted of the call's prompt."""
        await self.drop_unused_orphans(rec)
        await self.settle_prepared(rec, prepared)
        # Token estimates decide what is sent; the upstream's count decides whether the run overran.
        limit = rec.run.get("max_prompt_tokens")
        if limit:
            prior = sum_usage(await list_run_steps(rec.conn, rec.run["id"]))["prompt_tokens"]
            rec.over_prompt = prior + prompt_tokens > limit
        await self.close_answer(rec, cut)
        await self.save_client_calls(rec)
        recorded = await self.tools.record(rec)
        outcome = self.decide(rec, recorded, cut)
        await self.apply(rec, outcome, recorded)
        return outcome

    async def drop_unused_orphans(self, rec: Recording) -> None:
        """What the interrupted attempt left and this one did not reuse goes (its unexecuted code too)."""
        for orphan in self.turn.orphans.values():
            await stored_steps.delete_step(rec.conn, orphan["id"])
            if orphan["type"] == "message_creation":
                await stored_messages.delete_message(rec.conn, orphan["step_details"]["message_creation"]["message_id"])
        self.turn.orphans = {}

    async def settle_prepared(self, rec: Recording, prepared: Answer | None) -> None:
        """The answer inserted ahead: deleted when the model called tools instead, else it is the (empty)
        answer, announced now and closed below like any other."""
        if prepared is None:
            return
        if self.turn.tool_step is not None or self.tools.called():
            await self.answers.delete(rec.conn, prepared)
        else:
            self.answers.announce(rec.outbox, prepared)
            self.answers.adopt(self.turn, prepared)

    async def close_answer(self, rec: Recording, cut: bool) -> None:
        """The answer, completed (incomplete when cut) with its annotations; it takes the call's usage."""
        message, step = self.turn.message, self.turn.message_step
        if message is None or step is None:
            return
        annotations = self.answers.close(self.turn, message, "incomplete" if cut else "completed",
                                         "max_tokens" if cut else None)
        await objects.save_object(rec.conn, messages, message)
        set_step_status(step, "completed", usage=rec.take_usage())
        await save_step(rec.conn, step)
        if annotations:  # the citations, in a last delta before the message completes
            rec.outbox.add("thread.message.delta", citations.annotations_delta(message["id"], annotations))
        rec.outbox.add(f"thread.message.{message['status']}", message)
        rec.outbox.add("thread.run.step.completed", step)

    async def save_client_calls(self, rec: Recording) -> None:
        """The client calls' step, with its calls as streamed (still in_progress: the client answers them)."""
        step = self.turn.tool_step
        if step is None:
            return
        step["step_details"]["tool_calls"] = list(self.turn.calls.values())
        step["usage"] = rec.take_usage()
        await save_step(rec.conn, step)

    def decide(self, rec: Recording, recorded: list[Recorded], cut: bool) -> TurnOutcome:
        if rec.run["status"] == "cancelling":
            return TurnOutcome.CANCELLED
        if self.turn.tool_step is not None and not cut and not rec.over_prompt:
            return TurnOutcome.TOOL_CALLS_REQUIRED
        if any(r.executed for r in recorded) and not rec.over_prompt:
            return TurnOutcome.SERVER_TOOLS_EXECUTED
        if cut:
            return TurnOutcome.CUT
        return TurnOutcome.OVER_PROMPT if rec.over_prompt else TurnOutcome.ANSWERED

    async def apply(self, rec: Recording, outcome: TurnOutcome, recorded: list[Recorded]) -> None:
        conn, run, outbox = rec.conn, rec.run, rec.outbox
        if outcome is TurnOutcome.CANCELLED:
            await endings.end_run(conn, run, outbox, "cancelled", live=self.live())
        elif outcome is TurnOutcome.TOOL_CALLS_REQUIRED:
            set_run_status(run, "requires_action", required_action=client_calls.required_action(self.turn))
            await save_run(conn, run, lease_owner=None, lease_expires_at=None)
            outbox.add("thread.run.requires_action", run)
        elif outcome is not TurnOutcome.SERVER_TOOLS_EXECUTED:  # the run ends here
            await self.end(rec, outcome, recorded)

    async def end(self, rec: Recording, outcome: TurnOutcome, recorded: list[Recorded]) -> None:
        """Completed, or incomplete: calls that will not be executed are cancelled; a call that said nothing
        at all is still recorded, as an empty answer."""
        conn, run, outbox = rec.conn, rec.run, rec.outbox
        unexecuted = [s for s in (self.turn.tool_step, *(r.unexecuted for r in recorded)) if s is not None]
        for open_step in unexecuted:
            set_step_status(open_step, "cancelled")
            await save_step(conn, open_step)
            outbox.add("thread.run.step.cancelled", shown(open_step))
        executed = any(r.executed for r in recorded)
        if not unexecuted and not executed and self.turn.message_step is None:
            await self.answers.record_empty(conn, self.turn, run, rec.usage, outcome is TurnOutcome.CUT, outbox)
        steps = await list_run_steps(conn, run["id"])
        if outcome is TurnOutcome.ANSWERED:
            set_run_status(run, "completed", usage=sum_usage(steps))
        else:
            set_run_status(run, "incomplete", incomplete_details={"reason": outcome.value}, usage=sum_usage(steps))
        await save_run(conn, run, lease_owner=None, lease_expires_at=None)
        outbox.add(f"thread.run.{run['status']}", run)
