"""What goes in and comes out of an execution, and the errors the engine raises."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


class CodeInterpreterError(Exception):
    """An execution could not be attempted; ``str(exc)`` is meant for a run step's ``last_error``."""


class SandboxUnavailable(CodeInterpreterError):
    """bubblewrap is missing or cannot create namespaces here, and ASSISTD_CODE_SANDBOX is not ``none``."""


class SessionLimitReached(CodeInterpreterError):
    """Every session slot is busy executing."""


@dataclass(frozen=True)
class InputFile:
    """A file put in /mnt/data before the code runs: ``name`` (a plain file name) and its bytes or a path."""

    name: str
    content: bytes | Path


@dataclass(frozen=True)
class Logs:
    """stdout and stderr interleaved, tracebacks included, possibly truncated with a marker."""

    text: str
    type: str = field(default="logs", init=False)


@dataclass(frozen=True)
class Image:
    """A matplotlib figure shown or left open by the code."""

    png: bytes
    type: str = field(default="image", init=False)


@dataclass(frozen=True)
class CreatedFile:
    """A regular file under /mnt/data that the execution created or modified.

    ``name`` is relative to /mnt/data (``out/plot.csv``); ``path`` is where it is on the host. The sandbox
    can still change it (a symlink in its place…): read it with :meth:`read_bytes`, not ``open(path)``.
    """

    path: Path
    name: str
    size: int

    @property
    def sandbox_path(self) -> str:
        return f"/mnt/data/{self.name}"

    def read_bytes(self, max_bytes: int = 512 * 1024**2) -> bytes:
        from assistd.tools.code_interpreter.files import read_regular_file

        root = self.path
        for _ in self.name.split("/"):
            root = root.parent
        return read_regular_file(root, self.name, max_bytes)


Output = Logs | Image


@dataclass
class ExecutionResult:
    """``error`` is None when the code ran to the end; otherwise a one-line summary (``ZeroDivisionError:
    division by zero``, a timeout, a crashed session). Details, like the traceback, are in the logs."""

    outputs: list[Output] = field(default_factory=list)
    files_created: list[CreatedFile] = field(default_factory=list)
    error: str | None = None
    session_restarted: bool = False  # the thread's earlier state (variables) was lost before this run

    @property
    def logs(self) -> str:
        return "".join(o.text for o in self.outputs if isinstance(o, Logs))

    @property
    def images(self) -> list[bytes]:
        return [o.png for o in self.outputs if isinstance(o, Image)]


def safe_file_name(name: str) -> str:
    """The name an input file gets in /mnt/data: no directories, nothing hidden, nothing odd."""
    base = os.path.basename(name.replace("\\", "/")).strip()
    cleaned = "".join(c if c.isalnum() or c in "._- ()" else "_" for c in base).lstrip(".")
    if not cleaned:
        raise CodeInterpreterError(f"invalid input file name {name!r}")
    return cleaned[:200]
