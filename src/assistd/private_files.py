"""Directories and files only the server's user may read: the data directory, the SQLite database, blobs.

Created 0700/0600 explicitly rather than by a process umask: the code_interpreter sandbox runs each session
as a uid of its own and needs the files it is given to keep their modes.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

log = logging.getLogger("assistd")

DIR_MODE = 0o700
FILE_MODE = 0o600


def private_dir(path: Path) -> Path:
    """Create ``path`` and any missing parents as 0700 (``mkdir -p`` would give parents the umask's mode)."""
    missing: list[Path] = []
    current = Path(path)
    while not current.exists():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=DIR_MODE)
        except FileExistsError:
            continue
        os.chmod(directory, DIR_MODE)  # mkdir's mode is filtered by the umask
    return Path(path)


def private_file(path: Path) -> None:
    """Create ``path`` empty as 0600 if it does not exist yet (an empty file is a new SQLite database)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        return
    os.close(fd)


def warn_if_shared(path: Path) -> None:
    """Say so when an existing data directory is open to other users (it was made by an older version, or
    by hand): it is the operator's to tighten (``chmod 700``)."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("%s is readable by other users (mode %o): uploaded files and the database live there; "
                    "`chmod 700 %s` keeps them private", path, stat.S_IMODE(mode), path)
