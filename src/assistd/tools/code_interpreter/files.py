"""The host side of /mnt/data: each thread's directory, input files, what an execution changed.

The sandboxed code owns these directories and may plant symlinks in them, so the server never follows a
link there: writes go through ``O_NOFOLLOW`` opens relative to a directory fd, reads walk the path one
component at a time, scans use ``lstat`` and report regular files only.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from assistd.tools.code_interpreter.results import CodeInterpreterError, CreatedFile, InputFile, safe_file_name

_THREAD_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
SCAN_LIMIT = 10_000  # entries examined per scan: a million tiny files must not stall the server


def thread_dir(data_dir: Path, thread_id: str) -> Path:
    """``data_dir/code/<thread_id>``, created if needed; the id is checked so it cannot escape."""
    if not _THREAD_ID.match(thread_id):
        raise CodeInterpreterError(f"invalid thread id {thread_id!r}")
    path = Path(data_dir).resolve() / "code" / thread_id
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def write_input_file(directory: Path, file: InputFile, owner: tuple[int, int] | None) -> str:
    """Put ``file`` in ``directory`` (replacing whatever has its name, symlink included); return its name."""
    name = safe_file_name(file.name)
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        tmp = f".assistd-upload-{os.getpid()}-{name}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644, dir_fd=dir_fd)
        try:
            if isinstance(file.content, Path):
                with open(file.content, "rb") as src:  # streamed: input files can be large
                    while chunk := src.read(1 << 20):
                        _write_all(fd, chunk)
            else:
                _write_all(fd, bytes(file.content))
            if owner is not None:
                os.fchown(fd, *owner)
        finally:
            os.close(fd)
        # rename replaces a planted symlink itself instead of writing through it
        os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    finally:
        os.close(dir_fd)
    return name


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def chown_tree(directory: Path, owner: tuple[int, int]) -> None:
    """Give a session's uid its directory back (earlier sessions of the thread ran as other uids)."""
    os.chown(directory, *owner, follow_symlinks=False)
    for root, dirs, files in os.walk(directory):  # os.walk does not descend into symlinked dirs
        for name in dirs + files:
            try:
                os.chown(os.path.join(root, name), *owner, follow_symlinks=False)
            except FileNotFoundError:
                pass


@dataclass(frozen=True)
class _Entry:
    mtime_ns: int
    size: int
    inode: int


Snapshot = dict[str, _Entry]


def snapshot(directory: Path) -> Snapshot:
    """Regular files under ``directory`` (relative name → identity), symlinks and specials skipped."""
    found: Snapshot = {}
    seen = 0
    stack = [""]
    while stack and seen < SCAN_LIMIT:
        rel = stack.pop()
        try:
            entries = list(os.scandir(directory / rel if rel else directory))
        except OSError:
            continue
        for entry in entries:
            seen += 1
            name = f"{rel}/{entry.name}" if rel else entry.name
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if stat.S_ISDIR(st.st_mode):
                stack.append(name)
            elif stat.S_ISREG(st.st_mode) and not entry.name.startswith(".assistd-upload-"):
                found[name] = _Entry(st.st_mtime_ns, st.st_size, st.st_ino)
    return found


def changed_files(directory: Path, before: Snapshot, after: Snapshot) -> list[CreatedFile]:
    return [
        CreatedFile(path=directory / name, name=name, size=entry.size)
        for name, entry in sorted(after.items())
        if before.get(name) != entry
    ]


def read_regular_file(root: Path, name: str, max_bytes: int) -> bytes:
    """Read ``root/name`` refusing symlinks at every step and anything but a regular file."""
    parts = [p for p in name.split("/") if p]
    if not parts or any(p in (".", "..") for p in parts):
        raise CodeInterpreterError(f"invalid file name {name!r}")
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        for part in parts[:-1]:
            nxt = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = nxt
        # O_NONBLOCK: a FIFO planted under the name must not block the server
        file_fd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=fd)
    finally:
        os.close(fd)
    with os.fdopen(file_fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise CodeInterpreterError(f"/mnt/data/{name} is not a regular file")
        if st.st_size > max_bytes:
            raise CodeInterpreterError(f"/mnt/data/{name} is larger than {max_bytes} bytes")
        return f.read(max_bytes + 1)[:max_bytes]
