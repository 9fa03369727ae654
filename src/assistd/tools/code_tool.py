"""The code_interpreter tool in runs: offered to the model as a function, executed by the server.

A run whose tools include ``{"type": "code_interpreter"}`` offers the model a chat-completions function
named ``code_interpreter`` (``run_python_code`` if a client function already has that name) with one string
parameter, ``code``. When the model calls it the runner executes the code in the run's THREAD's Python
session (tools/code_interpreter: state persists across the thread's runs) and records a ``tool_calls``
step whose entry is the spec's code_interpreter tool call::

    {"id": "call_…", "type": "code_interpreter",
     "code_interpreter": {"input": "print(1)", "outputs": [{"type": "logs", "logs": "1\\n"},
                                                          {"type": "image", "image": {"file_id": "file-…"}}]},
     "_assistd": {"name": "code_interpreter", "arguments": "{\\"code\\": …}", "output": "…",
                  "files": {"out.csv": "file-…"}}}

``_assistd`` is stored but never shown (services/step_render.py): the call as the model made it, what the
model read as its output, and the files the code wrote under /mnt/data (each became a file with purpose
``assistants_output``), by their name there — links ``sandbox:/mnt/data/<name>`` in the answer become
``file_path`` annotations (``file_path_annotations``). Images became files too; the answer that follows
gets them as ``image_file`` content parts.

Input files: the ``tool_resources.code_interpreter.file_ids`` of the run (the assistant's and the thread's)
and the thread's message attachments for code_interpreter are written into /mnt/data once per thread and
process (``CodeTool.provided``), so the code may change them without having them put back.

One :class:`CodeTool` per process (app.state.code_interpreter, and in ``assistd worker``) holds the engine,
created on first use; it also ends a thread's session and removes its /mnt/data when the thread is deleted
(the ``thread.deleted`` event every process receives, published after the delete's commit).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy.ext.asyncio import AsyncConnection

from assistd.events import channels
from assistd.services import files as file_service
from assistd.store import messages as stored_messages
from assistd.tools.server_functions import free_name, one_string_function

if TYPE_CHECKING:
    from assistd.blobstore import BlobStore
    from assistd.events.base import EventBus, Subscription
    from assistd.tools.code_interpreter import CodeInterpreter, InputFile

log = logging.getLogger("assistd.runner")

FUNCTION_NAME = "code_interpreter"
FALLBACK_NAME = "run_python_code"  # when a client function is already called code_interpreter
PRIVATE = "_assistd"
# A run's executions at most; past this the tool is no longer offered and the model has to answer.
MAX_EXECUTIONS = 20
MAX_OUTPUT_CHARS_FOR_MODEL = 20_000

DESCRIPTION = (
    "Execute Python code in a stateful, Jupyter-like session: variables, imports and files persist between "
    "calls in this conversation. The value of a final expression is printed; stdout, stderr and tracebacks "
    "are returned to you. numpy, pandas and matplotlib are installed; there is no internet access. The "
    "user's files are in /mnt/data (the working directory). matplotlib figures are shown to the user as "
    "images. To give the user a file, save it under /mnt/data and link it as sandbox:/mnt/data/<name>."
)

_SANDBOX_LINK = re.compile(r"sandbox:/mnt/data/([^\s()\[\]<>\"'`]+)")


# --- offering ----------------------------------------------------------------------------------------------

def active(run: dict[str, Any]) -> bool:
    return any(t.get("type") == "code_interpreter" for t in run.get("tools") or [])


def function_name(run: dict[str, Any]) -> str:
    return free_name(run, FUNCTION_NAME, FALLBACK_NAME)


def chat_function(name: str) -> dict[str, Any]:
    return one_string_function(name, DESCRIPTION, "code", "The Python code to execute.")


def code_of(arguments: str) -> str:
    """The code the model sent; a model that sent bare code rather than ``{"code": …}`` gets it run."""
    try:
        args = orjson.loads(arguments or "{}")
    except orjson.JSONDecodeError:
        return arguments
    if isinstance(args, dict):
        code = args.get("code")
        if isinstance(code, str):
            return code
        strings = [v for v in args.values() if isinstance(v, str)]
        return strings[0] if len(strings) == 1 else ""
    return args if isinstance(args, str) else ""


_CODE_START = re.compile(r'\s*\{\s*"code"\s*:\s*"')
_HEX = set("0123456789abcdefABCDEF")


def partial_code(arguments: str) -> str:
    """The part of ``{"code": "…`` decodable so far from streamed arguments ("" when not of that form)."""
    m = _CODE_START.match(arguments)
    if not m:
        return ""
    i = start = m.end()
    end = len(arguments)
    while i < end:
        ch = arguments[i]
        if ch == '"':
            break
        if ch == "\\":
            if i + 1 >= end:
                break
            if arguments[i + 1] == "u":
                hex4 = arguments[i + 2:i + 6]
                if len(hex4) < 4 or not set(hex4) <= _HEX:
                    break
                if 0xD800 <= int(hex4, 16) <= 0xDBFF:  # a surrogate pair: wait for its second half
                    low = arguments[i + 6:i + 12]
                    if len(low) < 6 or low[:2] != "\\u" or not set(low[2:]) <= _HEX:
                        break
                    i += 12
                    continue
                i += 6
                continue
            i += 2
            continue
        i += 1
    try:
        return orjson.loads(f'"{arguments[start:i]}"')
    except orjson.JSONDecodeError:
        return ""


# --- entries -----------------------------------------------------------------------------------------------

def entries_of(steps: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for step in steps:
        if step.get("type") == "tool_calls":
            out.extend(c for c in step["step_details"]["tool_calls"] if c.get("type") == "code_interpreter")
    return out


def is_code_step(step: dict[str, Any]) -> bool:
    return step.get("type") == "tool_calls" and any(
        c.get("type") == "code_interpreter" for c in step["step_details"]["tool_calls"])


def new_entry(call_id: str, name: str) -> dict[str, Any]:
    return {"id": call_id, "type": "code_interpreter", "code_interpreter": {"input": "", "outputs": []},
            PRIVATE: {"name": name, "arguments": "", "output": "", "files": {}}}


def chat_call(call: dict[str, Any]) -> dict[str, Any]:
    private = call.get(PRIVATE) or {}
    arguments = private.get("arguments") or orjson.dumps({"code": call["code_interpreter"]["input"]}).decode()
    return {"id": call["id"], "type": "function",
            "function": {"name": private.get("name", FUNCTION_NAME), "arguments": arguments}}


def output_text(call: dict[str, Any]) -> str:
    private = call.get(PRIVATE) or {}
    if private.get("output"):
        return private["output"]
    logs = "".join(o.get("logs", "") for o in call["code_interpreter"]["outputs"] if o["type"] == "logs")
    return logs or "(no output)"


def model_output(logs: str, error: str | None, images: list[str], files: dict[str, str],
                 skipped: list[str]) -> str:
    """What the model reads as the call's output."""
    parts = [logs.rstrip("\n")] if logs.strip() else []
    if error and error not in logs:
        parts.append(f"[{error}]")
    if images:
        parts.append(f"[{len(images)} image(s) shown to the user]")
    if files:
        parts.append("[files written, link them as: " + ", ".join(f"sandbox:/mnt/data/{n}" for n in files) + "]")
    if skipped:
        parts.append("[not saved for the user (too large or too many): " + ", ".join(skipped) + "]")
    text = "\n".join(parts) or "(no output)"
    if len(text) > MAX_OUTPUT_CHARS_FOR_MODEL:
        half = MAX_OUTPUT_CHARS_FOR_MODEL // 2
        text = text[:half] + "\n[… output truncated …]\n" + text[-half:]
    return text


def files_of(steps: Iterable[dict[str, Any]]) -> dict[str, str]:
    """Every file the run's code wrote: name under /mnt/data → file id (the latest wins)."""
    files: dict[str, str] = {}
    for call in entries_of(steps):
        files.update((call.get(PRIVATE) or {}).get("files") or {})
    return files


def pending_images(steps: Iterable[dict[str, Any]]) -> list[str]:
    """Images made by code after the run's last answer: they go in its next message, as image_file parts."""
    pending: list[str] = []
    for step in steps:
        if step.get("type") == "message_creation" and step.get("status") == "completed":
            pending = []
        elif step.get("type") == "tool_calls" and step.get("status") == "completed":
            for call in step["step_details"]["tool_calls"]:
                if call.get("type") == "code_interpreter":
                    pending += [o["image"]["file_id"] for o in call["code_interpreter"]["outputs"]
                                if o["type"] == "image"]
    return pending


def file_path_annotations(text: str, files: dict[str, str]) -> list[dict[str, Any]]:
    """``sandbox:/mnt/data/<name>`` links to files the run's code wrote → file_path annotations."""
    if not files or "sandbox:/mnt/data/" not in text:
        return []
    out = []
    for m in _SANDBOX_LINK.finditer(text):
        name = m.group(1)
        while name and name not in files and name[-1] in ".,;:!?":
            name = name[:-1]  # the end of the sentence, not of the name
        file_id = files.get(name)
        if file_id is not None:
            link = f"sandbox:/mnt/data/{name}"
            out.append({"type": "file_path", "text": link, "file_path": {"file_id": file_id},
                        "start_index": m.start(), "end_index": m.start() + len(link)})
    return out


# --- the engine, one per process ---------------------------------------------------------------------------

class CodeTool:
    """The process's code_interpreter engine (made on first use) and the blob store its files go to."""

    def __init__(self, data_dir: Path | str, blobs: BlobStore) -> None:
        self.data_dir = Path(data_dir)
        self.blobs = blobs
        self._engine: CodeInterpreter | None = None
        self._watch: asyncio.Task[None] | None = None
        # Input files already put in a thread's /mnt/data by this process: thread id → file ids.
        self.provided: dict[str, set[str]] = {}

    @property
    def engine(self) -> CodeInterpreter:
        if self._engine is None:
            # The engine's package (sandbox, sessions) loads on first use, not in every process importing this.
            from assistd.tools.code_interpreter import CodeInterpreter, CodeInterpreterSettings

            self._engine = CodeInterpreter(self.data_dir, CodeInterpreterSettings())
        return self._engine

    async def start(self, bus: EventBus) -> None:
        """Follow thread deletions (from any process) to end their sessions."""
        self._watch = asyncio.create_task(self._follow(await bus.subscribe(channels.CACHE)))

    async def _follow(self, sub: Subscription) -> None:
        try:
            while True:
                event = await sub.get()
                if event is not None and event.name == channels.THREAD_DELETED:
                    try:
                        await self.forget_thread(event.data["thread_id"])
                    except Exception:
                        log.exception("ending the code_interpreter session of %s failed", event.data)
        finally:
            await sub.close()

    async def forget_thread(self, thread_id: str) -> None:
        """The thread was deleted: end its session, remove its /mnt/data."""
        self.provided.pop(thread_id, None)
        if self._engine is None and not (self.data_dir / "code" / thread_id).exists():
            return
        with contextlib.suppress(Exception):  # an id that is no thread id: nothing of ours
            await self.engine.close(thread_id, delete_files=True)

    async def aclose(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
        if self._engine is not None:
            await self._engine.aclose()


# --- input files -------------------------------------------------------------------------------------------

def resource_file_ids(run: dict[str, Any]) -> list[str]:
    return list(((run.get("tool_resources") or {}).get("code_interpreter") or {}).get("file_ids") or [])


async def input_files(conn: AsyncConnection, blobs: BlobStore, project_id: str, run: dict[str, Any],
                      provided: set[str]) -> list[tuple[str, InputFile]]:
    """The run's input files not yet put in its thread's /mnt/data: (file id, InputFile), first name wins.
    Files deleted since they were attached are left out."""
    from assistd.tools.code_interpreter import InputFile  # the engine's package: loaded once code runs

    wanted = resource_file_ids(run)
    for message in await stored_messages.thread_messages_mentioning(conn, project_id, run["thread_id"],
                                                                    '"code_interpreter"'):
        for attachment in message.get("attachments") or []:
            if any(t.get("type") == "code_interpreter" for t in attachment.get("tools") or []):
                wanted.append(attachment["file_id"])
    wanted = [f for f in dict.fromkeys(wanted) if f not in provided]
    if not wanted:
        return []
    found = await file_service.find_files(conn, project_id, wanted)
    out: list[tuple[str, InputFile]] = []
    names: set[str] = set()
    for file_id in wanted:
        file = found.get(file_id)
        if file is None or file["filename"] in names:
            continue
        names.add(file["filename"])
        path = blobs.local_path(file_service.blob_key(file))
        if path is not None and path.is_file():
            content: Any = path
        else:
            content = await file_service.read_content(blobs, file, file_service.max_file_bytes())
        out.append((file_id, InputFile(file["filename"], content)))
    return out
