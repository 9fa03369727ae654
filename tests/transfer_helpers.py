"""Shared by the transfer tests: running ``assistd export``/``import``, reading and rewriting archives."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from assistd.transfer.archive import HEADER, MANIFEST, ArchiveWriter
from tests.servers import ROOT

PG_URL = os.environ.get("ASSISTD_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def cli(*args: str, database_url: str, data_dir: Path | str, **extra_env: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "ASSISTD_DATABASE_URL": database_url, "ASSISTD_DATA_DIR": str(data_dir), **extra_env}
    return subprocess.run([sys.executable, "-m", "assistd.cli", *args], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=300)


def ok(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result


def members(path: Path | str) -> dict[str, bytes]:
    with tarfile.open(path, "r:*") as tar:
        return {info.name: tar.extractfile(info).read() for info in tar}  # type: ignore[union-attr]


def objects(path: Path | str, kind: str, project_dir: str = "0") -> list[bytes]:
    """The lines of one kind's member: each exactly an object as served."""
    data = members(path).get(f"projects/{project_dir}/{kind}.jsonl", b"")
    return [line for line in data.split(b"\n") if line]


def rewrite(src: Path | str, dst: Path | str, change: Callable[[str, bytes], bytes | None]) -> None:
    """Copy an archive, ``change(name, data)`` (None drops the member), with a manifest whose checksums fit
    the result: a well-formed archive with bad content."""
    found = members(src)
    manifest = orjson.loads(found[MANIFEST])
    writer = ArchiveWriter(dst, header=orjson.loads(change(HEADER, found[HEADER]) or found[HEADER]))
    for name, data in found.items():
        if name in (HEADER, MANIFEST):
            continue
        new = change(name, data)
        if new is not None:
            writer.add_stream(name, len(new), [new])
    writer.close({k: v for k, v in manifest.items() if k != "members"})


def wait_for(predicate: Callable[[], Any], what: str, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def pg_reachable() -> bool:
    from tests.servers import pg_admin

    try:
        pg_admin(PG_URL, "SELECT 1")
        return True
    except Exception:
        return False
