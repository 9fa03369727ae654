"""What parsing one uploaded document may cost, and the checks that hold compressed formats to it.

A small upload can expand enormously: a DOCX is a zip (1 GiB of zeros deflates to ~1 MB), a PDF's streams
are zlib/LZW/run-length compressed. So before a parser decompresses anything:

* zip packages (DOCX): the central directory's entry count and declared sizes are checked, then every
  entry is decompressed in 1 MiB steps while counting what actually comes out (declared sizes can lie);
* PDF: pypdf's own per-stream limits are lowered to ours, and every stream pypdf decodes is counted
  against a budget for the whole document (pypdf has no total).

``ParseLimits.max_bytes`` bounds both the decompressed bytes and the text a file may yield. Time and memory
are bounded by running the parser in a separate process (parse_worker.py).
"""

from __future__ import annotations

import contextlib
import io
import zipfile
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

MiB = 1024**2
GiB = 1024**3


class LimitExceeded(Exception):
    """A document over a parse limit; parsing.py turns it into ``InvalidFile`` with this message."""


@dataclass(frozen=True)
class ParseLimits:
    max_bytes: int = 256 * MiB  # decompressed bytes of a package or a PDF's streams, and text yielded
    max_entries: int = 10_000  # entries of a zip package
    # The text a file yields, in cl100k tokens: the hosted API's 5,000,000 per file. Counted in the worker:
    # the server tokenizes the text again to chunk it, and 256 MiB of text (emoji are 2 tokens a character)
    # would be hundreds of millions of token ids, gigabytes of Python integers in the server.
    max_tokens: int = 5_000_000
    timeout_seconds: float = 120.0  # wall clock of one parse (the worker is killed)
    memory_bytes: int = 2 * GiB  # address space of the parser process

    @classmethod
    def from_settings(cls, settings: Any) -> ParseLimits:
        return cls(max_bytes=settings.parse_max_bytes, max_entries=settings.parse_max_entries,
                   timeout_seconds=settings.parse_timeout_seconds, memory_bytes=settings.parse_memory_bytes)


def size(n: int) -> str:
    return f"{n / MiB:.0f} MiB" if n >= MiB else f"{n} bytes"


def check_zip(data: bytes, limits: ParseLimits, what: str) -> None:
    """Raise ``LimitExceeded`` (or ``zipfile.BadZipFile``) unless ``data`` is a zip within the limits."""
    buf = io.BytesIO(data)
    # The end record's count first: parsing a central directory of millions of entries is itself costly.
    end = zipfile._EndRecData(buf)  # type: ignore[attr-defined]  # stable since Python 2
    if end is None:
        raise zipfile.BadZipFile("not a zip package")
    if end[zipfile._ECD_ENTRIES_TOTAL] > limits.max_entries:  # type: ignore[attr-defined]
        raise LimitExceeded(f"the {what} package has {end[zipfile._ECD_ENTRIES_TOTAL]} parts "  # type: ignore[attr-defined]
                            f"(at most {limits.max_entries})")
    with zipfile.ZipFile(buf) as zf:
        infos = zf.infolist()
        if len(infos) > limits.max_entries:
            raise LimitExceeded(f"the {what} package has {len(infos)} parts (at most {limits.max_entries})")
        declared = sum(info.file_size for info in infos)
        if declared > limits.max_bytes:
            raise LimitExceeded(f"the {what} package would decompress to {size(declared)} "
                                f"(at most {size(limits.max_bytes)}): a decompression bomb?")
        total = 0
        for info in infos:
            with zf.open(info) as part:
                while chunk := part.read(MiB):
                    total += len(chunk)
                    if total > limits.max_bytes:
                        raise LimitExceeded(f"the {what} package decompresses to more than "
                                            f"{size(limits.max_bytes)}: a decompression bomb?")


# --- PDF -------------------------------------------------------------------------------------------------

_PDF_BUDGET: ContextVar[list[int] | None] = ContextVar("assistd_pdf_budget", default=None)
_PER_STREAM_KEYS = ("zlib_maximum_output_length", "lzw_maximum_output_length", "run_length_maximum_output_length",
                    "jbig2_maximum_output_length", "brotli_maximum_output_length",
                    "array_based_stream_maximum_output_length", "maximum_declared_stream_length",
                    "image_maximum_buffer_size")


def _install_counter() -> None:
    """Wrap pypdf's one stream decoder (looked up at each call by ``StreamObject.get_data``) so decoded
    bytes count against the budget of the parse running in this context. Installed once per process."""
    import pypdf.filters as filters

    if getattr(filters.decode_stream_data, "_assistd_counted", False):
        return
    original = filters.decode_stream_data

    def decode_stream_data(stream: Any) -> bytes:
        data = original(stream)
        budget = _PDF_BUDGET.get()
        if budget is not None:
            budget[0] -= len(data)
            if budget[0] < 0:  # pypdf catches some errors while extracting: pdf_budget checks again
                raise LimitExceeded("the PDF's streams decompress to more than the limit")
        return data

    decode_stream_data._assistd_counted = True  # type: ignore[attr-defined]
    filters.decode_stream_data = decode_stream_data


@contextlib.contextmanager
def pdf_budget(limits: ParseLimits) -> Iterator[Any]:
    """Within: pypdf's per-stream limits at most ``max_bytes``, and decoded streams counted; yields a
    ``check()`` to call between pages (it raises ``LimitExceeded`` once the total is over)."""
    from pypdf._configuration import apply_configuration, get_configuration

    _install_counter()
    current = get_configuration()
    lowered = {key: min(getattr(current, key), limits.max_bytes) for key in _PER_STREAM_KEYS
               if hasattr(current, key)}
    budget = [limits.max_bytes]
    token = _PDF_BUDGET.set(budget)

    def check() -> None:
        if budget[0] < 0:
            raise LimitExceeded(f"the PDF's streams decompress to more than {size(limits.max_bytes)}: "
                                "a decompression bomb?")

    try:
        with apply_configuration(**lowered):
            yield check
    finally:
        _PDF_BUDGET.reset(token)
