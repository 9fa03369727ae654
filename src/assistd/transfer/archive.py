"""The archive: a tar stream (gzip when the name ends in ``.gz``) of JSONL members and file bytes.

Layout (docs/archive-format.md is the reference)::

    assistd-archive.json              header: format, format_version, source, exported_at, versions
    projects/<n>/<kind>.jsonl         one API object per line, kinds in ``KINDS`` order
    projects/<n>/files/<file_id>      the bytes of each file, right after ``files.jsonl``
    manifest.json                     last: projects (name, counts), every member's sha256 and size

The manifest comes last so that an export is one pass that never holds a member in memory; the reader
therefore checks an archive whole (``verify``) before the importer writes anything, then reads it again.
Writing is our own tar framing (``TarInfo.tobuf`` + padding) so members can be fed from async iterators.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import importlib.metadata
import tarfile
import tempfile
import time
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import orjson

FORMAT = "assistd-archive"
FORMAT_VERSION = 1
HEADER = "assistd-archive.json"
MANIFEST = "manifest.json"
# Parents before children: the importer inserts in this order and never needs to look ahead.
KINDS = ("files", "vector_stores", "vector_store_files", "assistants", "threads", "runs", "messages",
         "run_steps")
BLOCK = 512
SPOOL_BYTES = 8 * 1024 * 1024  # a JSONL member larger than this is spooled to disk while it is written


def assistd_version() -> str:
    try:
        return importlib.metadata.version("assistd")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


class ArchiveError(Exception):
    """The archive cannot be read as it is; the message names the member (and line) at fault."""


def kind_member(project_dir: str, kind: str) -> str:
    return f"projects/{project_dir}/{kind}.jsonl"


def blob_member(project_dir: str, file_id: str) -> str:
    return f"projects/{project_dir}/files/{file_id}"


def parse_member(name: str) -> tuple[str, str, str] | None:
    """``(project_dir, "kind", kind)`` or ``(project_dir, "file", file_id)`` for a data member, else None."""
    parts = name.split("/")
    if len(parts) == 3 and parts[0] == "projects" and parts[2].endswith(".jsonl"):
        return parts[1], "kind", parts[2][: -len(".jsonl")]
    if len(parts) == 4 and parts[0] == "projects" and parts[2] == "files" and parts[3]:
        return parts[1], "file", parts[3]
    return None


class ArchiveWriter:
    """Writes members one after another; ``close()`` adds the manifest and the tar end blocks."""

    def __init__(self, path: str | Path, *, header: dict[str, Any], compress: bool | None = None) -> None:
        self.path = Path(path)
        if compress is None:
            compress = self.path.name.endswith(".gz")
        self._raw: BinaryIO = open(self.path, "wb")  # noqa: SIM115 (closed by close())
        self._out: BinaryIO = (gzip.GzipFile(fileobj=self._raw, mode="wb", compresslevel=6)  # type: ignore[assignment]
                               if compress else self._raw)
        self.members: dict[str, dict[str, Any]] = {}
        self.header = {"format": FORMAT, "format_version": FORMAT_VERSION, **header}
        self.add_bytes(HEADER, orjson.dumps(self.header, option=orjson.OPT_INDENT_2))

    def _header(self, name: str, size: int) -> None:
        info = tarfile.TarInfo(name)
        info.size = size
        info.mtime = int(time.time())
        info.mode = 0o644
        self._out.write(info.tobuf(format=tarfile.PAX_FORMAT))

    def _pad(self, size: int) -> None:
        if size % BLOCK:
            self._out.write(b"\0" * (BLOCK - size % BLOCK))

    def add_bytes(self, name: str, data: bytes) -> None:
        self.add_stream(name, len(data), [data])

    def add_stream(self, name: str, size: int, chunks: Iterable[bytes]) -> None:
        """A member of exactly ``size`` bytes fed from ``chunks`` (ArchiveError when they disagree)."""
        self._header(name, size)
        digest = hashlib.sha256()
        written = 0
        for chunk in chunks:
            written += len(chunk)
            if written > size:
                raise ArchiveError(f"{name}: more than the {size} bytes announced")
            digest.update(chunk)
            self._out.write(chunk)
        if written != size:
            raise ArchiveError(f"{name}: {written} bytes where {size} were announced")
        self._pad(size)
        self.members[name] = {"sha256": digest.hexdigest(), "bytes": size}

    def jsonl(self, name: str) -> JsonlMember:
        return JsonlMember(self, name)

    def close(self, manifest: dict[str, Any]) -> None:
        body = {"format": FORMAT, "format_version": FORMAT_VERSION, **manifest, "members": self.members}
        data = orjson.dumps(body, option=orjson.OPT_INDENT_2)
        self._header(MANIFEST, len(data))
        self._out.write(data)
        self._pad(len(data))
        self._out.write(b"\0" * (2 * BLOCK))
        self._out.close()
        if self._out is not self._raw:
            self._raw.close()

    def abort(self) -> None:
        self._out.close()
        if self._out is not self._raw:
            self._raw.close()
        self.path.unlink(missing_ok=True)


class JsonlMember:
    """Lines gathered in a spooled temporary file (the tar header needs the size first)."""

    def __init__(self, writer: ArchiveWriter, name: str) -> None:
        self.writer = writer
        self.name = name
        self.count = 0
        self._buf = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)  # noqa: SIM115

    def add(self, line: str | bytes) -> None:
        self._buf.write(line.encode() if isinstance(line, str) else line)
        self._buf.write(b"\n")
        self.count += 1

    def close(self) -> None:
        size = self._buf.tell()
        self._buf.seek(0)
        self.writer.add_stream(self.name, size, iter(lambda: self._buf.read(1024 * 1024), b""))
        self._buf.close()


# --- reading ----------------------------------------------------------------------------------------------

@dataclass
class Member:
    name: str
    size: int
    stream: BinaryIO


def open_members(path: str | Path) -> Iterator[Member]:
    """The archive's members in order, each readable only until the next is asked for."""
    try:
        tar = tarfile.open(path, mode="r|*")
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise ArchiveError(f"{path}: not a readable tar archive ({exc})") from None
    with tar:
        try:
            for info in tar:
                if not info.isfile():
                    raise ArchiveError(f"{info.name}: unexpected member type (only regular files)")
                stream = tar.extractfile(info)
                assert stream is not None
                yield Member(info.name, info.size, stream)  # type: ignore[arg-type]
        except (*DAMAGED, OSError) as exc:
            raise ArchiveError(f"the archive is truncated or damaged ({type(exc).__name__}: {exc})") from None


DAMAGED = (tarfile.TarError, EOFError, gzip.BadGzipFile, zlib.error)


@contextlib.contextmanager
def reading(name: str) -> Iterator[None]:
    """Reading a member's bytes: a tar or gzip error there means the archive ends (or breaks) inside it."""
    try:
        yield
    except DAMAGED as exc:
        raise ArchiveError(f"{name}: the archive is truncated or damaged inside this member "
                           f"({type(exc).__name__}: {exc})") from None


def check_header(header: dict[str, Any], where: str = HEADER) -> None:
    if header.get("format") != FORMAT:
        raise ArchiveError(f"{where}: not an assistd archive (format {header.get('format')!r})")
    version = header.get("format_version")
    if version != FORMAT_VERSION:
        raise ArchiveError(f"{where}: format version {version!r} is not supported "
                           f"(this assistd reads version {FORMAT_VERSION})")


def iter_chunks(stream: BinaryIO, size: int = 1024 * 1024) -> Iterator[bytes]:
    while chunk := stream.read(size):
        yield chunk


def iter_lines(member: Member, on_chunk: Any = None) -> Iterator[tuple[int, bytes]]:
    """``(line number, line)`` of a JSONL member, read a chunk at a time; ``on_chunk(bytes)`` sees
    every byte (for its checksum). A line longer than a chunk is gathered in parts, never rescanned."""
    parts: list[bytes] = []
    number = 0
    for chunk in iter_chunks(member.stream):
        if on_chunk is not None:
            on_chunk(chunk)
        start = 0
        while (end := chunk.find(b"\n", start)) != -1:
            parts.append(chunk[start:end])
            number += 1
            yield number, b"".join(parts)
            parts = []
            start = end + 1
        if start < len(chunk):
            parts.append(chunk[start:])
    if parts:
        number += 1
        yield number, b"".join(parts)
