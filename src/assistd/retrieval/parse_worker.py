"""Parsing in a process of its own, so that a hostile document cannot hurt the server.

``parse_isolated`` starts ``python -m assistd.retrieval.parse_worker`` per file: the worker limits its own
address space (``ParseLimits.memory_bytes``) and CPU time before it reads anything, parses with the
decompression limits of parse_limits.py, and answers on stdout; the server kills it at
``ParseLimits.timeout_seconds``. A file over any limit (or one that crashes the parser) raises
``InvalidFile`` with a message for ``last_error``: it is the file's fault, so nothing is logged as an error.

One process per parse rather than a pool: a parser that hit a limit leaves nothing behind (memory
fragmentation, a half-decoded PDF cache), ingestion runs at most a couple of files at once per process, and
starting Python is ~50 ms against parses that take tenths of seconds to minutes.

Protocol: stdin = one JSON line ``{"filename", "content_type", "limits": {…}}`` then the file's bytes;
stdout = one JSON line ``{"ok": true, "headings": [[offset, level, text], …]}`` then the text as UTF-8,
or ``{"ok": false, "code", "message", "detail"}`` (detail: a traceback for a parser bug, logged at DEBUG by the server).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import resource
import signal
import subprocess
import sys
import traceback
from typing import BinaryIO

from assistd.retrieval.outline import Heading
from assistd.retrieval.parse_limits import ParseLimits, size
from assistd.retrieval.parsing import InvalidFile, ParsedDocument, ParseError, UnsupportedFile, parse_document

log = logging.getLogger("assistd.parsing")

_ERRORS = {"invalid_file": InvalidFile, "unsupported_file": UnsupportedFile}


async def parse_isolated(data: bytes, filename: str, content_type: str | None, limits: ParseLimits) -> str:
    """``parsing.parse`` in a worker process bounded in memory, CPU and wall-clock time."""
    return (await parse_document_isolated(data, filename, content_type, limits)).text


async def parse_document_isolated(data: bytes, filename: str, content_type: str | None,
                                  limits: ParseLimits) -> ParsedDocument:
    """``parsing.parse_document`` in the worker process (as ``parse_isolated``)."""
    import asyncio  # here: the worker itself starts faster without it

    return await asyncio.to_thread(_run_worker, data, filename, content_type, limits)


def _run_worker(data: bytes, filename: str, content_type: str | None, limits: ParseLimits) -> ParsedDocument:
    header = json.dumps({"filename": filename, "content_type": content_type,
                         "limits": dataclasses.asdict(limits)}).encode() + b"\n"
    # subprocess (not the event loop's machinery: uvloop ignores close_fds) from a thread: the worker
    # inherits none of the server's descriptors. cwd /: nothing in the server's directory shadows a module.
    proc = subprocess.Popen([sys.executable, "-B", "-m", "assistd.retrieval.parse_worker"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            cwd="/", close_fds=True, start_new_session=True)
    try:
        assert proc.stdin is not None
        proc.stdin.write(header)  # well under a pipe's buffer; then the bytes, without a joined copy
        out, err = proc.communicate(data, timeout=limits.timeout_seconds)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise InvalidFile(f"{filename} could not be parsed within {limits.timeout_seconds:g} s "
                          "(ASSISTD_PARSE_TIMEOUT_SECONDS)") from None
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    first, _, rest = out.partition(b"\n")
    try:
        answer = json.loads(first) if first else None
    except ValueError:
        answer = None
    if isinstance(answer, dict) and answer.get("ok") is True and proc.returncode == 0:
        return ParsedDocument(rest.decode("utf-8", "replace"),
                              [Heading(int(o), int(level), str(t)) for o, level, t in answer.get("headings") or []])
    if isinstance(answer, dict) and answer.get("ok") is False:
        if answer.get("detail"):
            log.debug("parser error on %s:\n%s", filename, answer["detail"])
        raise _ERRORS.get(str(answer.get("code")), InvalidFile)(str(answer.get("message")))
    # no answer: killed by a limit (SIGKILL at the hard CPU limit, SIGSEGV…) or the interpreter failed
    signum = -proc.returncode if proc.returncode < 0 else 0
    if signum in (signal.SIGKILL, signal.SIGXCPU):
        raise InvalidFile(f"{filename} could not be parsed within its CPU time or memory limit")
    log.warning("the parser of %s exited with status %s: %s", filename, proc.returncode,
                err.decode("utf-8", "replace").strip()[-2000:] or "(no output)")
    what = f"signal {signal.Signals(signum).name}" if signum else f"status {proc.returncode}"
    raise InvalidFile(f"{filename} could not be parsed (the parser stopped with {what})")


# --- the worker ------------------------------------------------------------------------------------------

def _limit_self(limits: ParseLimits) -> None:
    cpu = int(limits.timeout_seconds) + 5  # the wall clock ends it first; this bounds a stopped clock
    for name, value in (("AS", limits.memory_bytes), ("CPU", cpu), ("CORE", 0), ("FSIZE", 0)):
        resource.setrlimit(getattr(resource, "RLIMIT_" + name), (value, value))


def _answer(out: BinaryIO, header: dict, text: str | None = None) -> None:
    out.write(json.dumps(header).encode() + b"\n")
    if text is not None:
        # "replace": a lone surrogate (JSON's "\\ud800") becomes "?" rather than an error
        out.write(text.encode("utf-8", "replace"))
    out.flush()


def main() -> None:
    out = sys.stdout.buffer
    sys.stdout = sys.stderr  # a library printing must not corrupt the answer
    logging.basicConfig(level=logging.ERROR)  # pypdf warns about every oddity of a malformed file
    request = json.loads(sys.stdin.buffer.readline())
    limits = ParseLimits(**request["limits"])
    _limit_self(limits)
    filename = request["filename"]
    try:
        data = sys.stdin.buffer.read()
        document = parse_document(data, filename, request["content_type"], limits)
    except ParseError as exc:
        _answer(out, {"ok": False, "code": exc.code, "message": exc.message})
    except MemoryError:
        _answer(out, {"ok": False, "code": "invalid_file", "message": f"{filename} needs more than "
                      f"{size(limits.memory_bytes)} of memory to parse (ASSISTD_PARSE_MEMORY_BYTES)"})
    except Exception as exc:  # a parser library's bug on a malformed file: still the file's failure
        _answer(out, {"ok": False, "code": "invalid_file",
                      "message": f"{filename} could not be parsed ({type(exc).__name__}: {exc})"[:1000],
                      "detail": traceback.format_exc()})
    else:
        _answer(out, {"ok": True, "headings": [[h.offset, h.level, h.text] for h in document.headings]},
                document.text)


if __name__ == "__main__":
    main()
