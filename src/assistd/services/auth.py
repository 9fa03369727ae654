"""API keys → projects.

Keys come from ``ASSISTD_API_KEYS`` (``secret`` or ``secret:project``) and from the database
(``assistd keys create``, stored as SHA-256 hashes: the secrets are random, so a slow hash buys nothing).
With neither, the server is in local dev mode: any bearer is accepted into the ``default`` project.
Database lookups are cached briefly so hot reads don't pay a query per request; a revoked key stops
working within ``CACHE_SECONDS``.
"""

from __future__ import annotations

import hashlib
import secrets
import time

from assistd.errors import Unauthorized
from assistd.store import keys as key_store
from assistd.store.db import Database

DEFAULT_PROJECT = "default"
CACHE_SECONDS = 2.0
_CACHE_MAX = 10_000


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_secret() -> str:
    return "sk-" + secrets.token_urlsafe(36)


def redact(secret: str) -> str:
    return f"{secret[:6]}...{secret[-4:]}" if len(secret) > 12 else "***"


class Authenticator:
    def __init__(self, db: Database, static_keys: list[str]) -> None:
        self.db = db
        self._static: list[tuple[bytes, str]] = []  # (sha256 digest, project name)
        for entry in static_keys:
            secret, _, project = entry.partition(":")
            self._static.append((hashlib.sha256(secret.encode()).digest(), project or DEFAULT_PROJECT))
        self._project_ids: dict[str, str] = {}
        # Static key digest → project id, filled by start(): one dict lookup per request. Looked up by the
        # digest, never the secret, so lookup timing tells nothing about any secret.
        self._static_ids: dict[bytes, str] = {}
        self._cache: dict[str, tuple[float, str | None]] = {}
        self._db_has_keys: tuple[float, bool] = (0.0, False)

    async def start(self) -> None:
        """Create the projects the static keys (and dev mode) name."""
        async with self.db.write() as conn:
            names = {name for _, name in self._static} | {DEFAULT_PROJECT}
            for name in names:
                self._project_ids[name] = await key_store.ensure_project(conn, name)
        self._static_ids = {digest: self._project_ids[name] for digest, name in self._static}

    async def dev_mode(self) -> bool:
        return not self._static and not await self._any_db_keys()

    async def _any_db_keys(self) -> bool:
        checked, value = self._db_has_keys
        if time.monotonic() - checked > CACHE_SECONDS:
            async with self.db.read() as conn:
                value = await key_store.count_active(conn) > 0
            self._db_has_keys = (time.monotonic(), value)
        return value

    async def project_for(self, authorization: str | None) -> str:
        """The project id for an ``Authorization`` header value, or raise 401."""
        secret = _bearer(authorization)
        if secret:
            digest = hashlib.sha256(secret.encode()).digest()
            project_id = self._static_ids.get(digest)
            if project_id is not None:
                return project_id
            project_id = await self._db_project(digest.hex())
            if project_id is not None:
                return project_id
        if await self.dev_mode():
            return self._project_ids[DEFAULT_PROJECT]
        if not secret:
            raise Unauthorized(
                "You didn't provide an API key. You need to provide your API key in an Authorization "
                "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
            )
        raise Unauthorized(f"Incorrect API key provided: {redact(secret)}.", code="invalid_api_key")

    async def _db_project(self, secret_hash: str) -> str | None:
        hit = self._cache.get(secret_hash)
        if hit is not None and time.monotonic() - hit[0] < CACHE_SECONDS:
            return hit[1]
        async with self.db.read() as conn:
            project_id = await key_store.project_for_hash(conn, secret_hash)
        if len(self._cache) >= _CACHE_MAX:
            self._cache.clear()
        self._cache[secret_hash] = (time.monotonic(), project_id)
        return project_id


def _bearer(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return value.strip() or None
