"""A private PostgreSQL cluster in a temp dir on a free port (initdb + pg_ctl, as the postgres user when run as
root): the load benchmark and the fault tests use it so they neither share nor exhaust, nor restart, the
machine's own cluster."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.harness import free_port


def _pg_bin() -> Path:
    """$ASSISTD_TEST_PG_BIN, else the newest Debian server install (/usr/lib/postgresql/N/bin)."""
    if given := os.environ.get("ASSISTD_TEST_PG_BIN"):
        return Path(given)
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
    return found[-1].parent if found else Path("/usr/lib/postgresql/15/bin")


PG_BIN = _pg_bin()


def _as_postgres(args: list[str]) -> list[str]:
    """initdb and postgres refuse to run as root: run them as the postgres user then."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *args]
    return args


class PrivatePostgres:
    """A throwaway cluster: ``url`` for the ``postgres`` database, ``restart()`` drops every connection."""

    def __init__(self) -> None:
        if not (PG_BIN / "initdb").exists():
            raise FileNotFoundError(f"no PostgreSQL binaries in {PG_BIN} (ASSISTD_TEST_PG_BIN)")
        self.dir = Path(tempfile.mkdtemp(prefix="assistd-pg-"))
        self.data = self.dir / "data"
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")

    def _ctl(self, *args: str) -> None:
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        subprocess.run(_as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.dir / "log"),
                                     "-o", options, "-w", "-t", "60", *args]),
                       check=True, capture_output=True, timeout=90)

    def start(self) -> PrivatePostgres:
        subprocess.run(_as_postgres([str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres",
                                     "--auth=trust", "-E", "UTF8"]), check=True, capture_output=True, timeout=120)
        self._ctl("start")
        return self

    def restart(self) -> None:
        self._ctl("restart", "-m", "fast")

    def stop(self) -> None:
        if self.data.exists():
            subprocess.run(_as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w",
                                         "stop"]), capture_output=True, timeout=60)
        shutil.rmtree(self.dir, ignore_errors=True)


@contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    pg = PrivatePostgres()
    try:
        yield pg.start()
    finally:
        pg.stop()


