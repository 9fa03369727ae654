"""``assistd serve`` with some of the hot-path optimisations switched off, to measure each one's share:

    python -m bench.ablate OFF[,OFF…] serve --port 8000          # OFF: hot, cache, fastread, authdict

- ``hot``: no ``HotReads`` layer (api/hot.py): every GET goes through FastAPI.
- ``cache``: no terminal-step cache (services/steps.py): steps are read from the database each time.
- ``fastread``: ``Database.fetch_row`` unavailable: the hot path reads through SQLAlchemy (``read()``).
- ``authdict``: static keys checked by comparing the digest with each key in turn, as before.

Benchmarks take it with ``--ablate OFF,…`` (bench_get_step, bench_get_assistant). Not for production use.
"""

from __future__ import annotations

import hashlib
import hmac
import sys


def switch_off(names: set[str]) -> None:
    unknown = names - {"hot", "cache", "fastread", "authdict", ""}
    if unknown:
        raise SystemExit(f"unknown switches: {sorted(unknown)}")
    if "hot" in names:
        from assistd.api import hot

        async def passthrough(self, scope, receive, send):  # type: ignore[no-untyped-def]
            await self.app(scope, receive, send)

        hot.HotReads.__call__ = passthrough  # type: ignore[method-assign]
    if "cache" in names:
        from assistd.services import steps

        steps.TerminalStepCache.get = lambda self, *a: None  # type: ignore[method-assign]
    if "fastread" in names:
        from assistd.store import db

        async def unavailable(self, sql, params):  # type: ignore[no-untyped-def]
            raise db.FastReadUnavailable("switched off")

        db.Database.fetch_row = unavailable  # type: ignore[method-assign]
    if "authdict" in names:
        from assistd.services import auth

        orig = auth.Authenticator.project_for

        async def project_for(self, authorization, origin=None):  # type: ignore[no-untyped-def]
            secret = auth._bearer(authorization)
            if secret:
                digest = hashlib.sha256(secret.encode()).digest()
                project = None
                for known, name in self._static:
                    if hmac.compare_digest(known, digest):
                        project = name
                if project is not None:
                    return self._project_ids[project]
            return await orig(self, authorization, origin)

        auth.Authenticator.project_for = project_for  # type: ignore[method-assign]


def main() -> int:
    switch_off(set(sys.argv[1].split(",")))
    from assistd.cli import main as cli

    return cli(sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
