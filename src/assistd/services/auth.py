"""API keys → projects, and when (if ever) a request needs no key.

Keys come from ``ASSISTD_API_KEYS`` (``secret`` or ``secret:project``) and from the database
(``assistd keys create``, stored as SHA-256 hashes: the secrets are random, so a slow hash buys nothing).

Keyless local dev mode (any bearer, or none, lands in the ``default`` project) is the exception, and it
fails closed (README "Keys and dev mode"):

* ``ASSISTD_DEV_MODE`` unset: keyless only while no static key is set and no key was *ever* stored (a
  revoked key counts: revoking every key closes the server, it never opens it), and only for a direct
  connection to a loopback address (not through a proxy, not from another site's page).
* ``ASSISTD_DEV_MODE=1``: keyless whenever no key is active, from anywhere (still not from another site's
  page). ``ASSISTD_DEV_MODE=0``: never keyless.

With keys required and none active, every request is refused (401) and the log says so, loudly, each time
the server enters that state. Database lookups are cached briefly so hot reads don't pay a query per
request; a revoked key stops working (and a newly stored key ends dev mode) within ``CACHE_SECONDS``.
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from assistd.errors import Unauthorized
from assistd.store import keys as key_store
from assistd.store.db import Database

log = logging.getLogger("assistd.auth")

DEFAULT_PROJECT = "default"
CACHE_SECONDS = 2.0
_CACHE_MAX = 10_000
_HEADERS_MAX = 256


class KeyMode(enum.Enum):
    KEYS = "keys"  # keys required, at least one active
    CLOSED = "closed"  # keys required, none active: every request is refused
    DEV_LOCAL = "dev-local"  # keyless, for direct loopback connections only
    DEV = "dev"  # keyless from anywhere (ASSISTD_DEV_MODE=1)


_ANNOUNCE = {
    KeyMode.CLOSED: (logging.ERROR, "no active API key: every request is refused (401). Create one with "
                     "`assistd keys create --project NAME`; a key once stored keeps keyless dev mode off "
                     "(ASSISTD_DEV_MODE=1 turns it on again, README: Security)."),
    KeyMode.DEV_LOCAL: (logging.WARNING, "no API keys configured (ASSISTD_API_KEYS, `assistd keys create`): "
                        "local dev mode accepts requests without a key over loopback connections only. "
                        "Do not expose this server."),
    KeyMode.DEV: (logging.WARNING, "ASSISTD_DEV_MODE=1 and no active API key: dev mode accepts requests "
                  "without a key FROM ANY HOST that can reach this server."),
    KeyMode.KEYS: (logging.INFO, "API keys are required."),
}


@dataclass(frozen=True)
class Origin:
    """Where a request came from, as the HTTP layer sees it (api/authenticate.py)."""

    local: bool = False  # a direct connection to a loopback address naming a loopback host, no proxy
    cross_site: bool = False  # a browser request made by another site's page


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_secret() -> str:
    return "sk-" + secrets.token_urlsafe(36)


def redact(secret: str) -> str:
    return f"{secret[:6]}...{secret[-4:]}" if len(secret) > 12 else "***"


class Authenticator:
    def __init__(self, db: Database, static_keys: list[str], *, dev_mode: bool | None = None) -> None:
        self.db = db
        self._forced = dev_mode  # ASSISTD_DEV_MODE: None = automatic
        self._static: list[tuple[bytes, str]] = []  # (sha256 digest, project name)
        for entry in static_keys:
            secret, _, project = entry.partition(":")
            self._static.append((hashlib.sha256(secret.encode()).digest(), project or DEFAULT_PROJECT))
        self._project_ids: dict[str, str] = {}
        # Static key digest → project id, filled by start(): one dict lookup per request. Looked up by the
        # digest, never the secret, so lookup timing tells nothing about any secret.
        self._static_ids: dict[bytes, str] = {}
        # Authorization values found to carry a static key → its project: a client repeating one (every
        # client) skips parsing and hashing it again. Static keys never change while the process runs; only
        # values that matched are kept, at most _HEADERS_MAX. Timing tells no more than the digest lookup:
        # str hashes are keyed per process and two strings are compared only when their hashes match.
        self._static_headers: dict[str, str] = {}
        self._cache: dict[str, tuple[float, str | None]] = {}
        self._mode_checked = 0.0
        self._refreshing = asyncio.Lock()
        self._mode = KeyMode.CLOSED  # until start() has looked
        self._announced: KeyMode | None = None

    async def start(self) -> None:
        """Create the projects the static keys (and dev mode) name; log the mode the server starts in."""
        async with self.db.write() as conn:
            names = {name for _, name in self._static} | {DEFAULT_PROJECT}
            for name in names:
                self._project_ids[name] = await key_store.ensure_project(conn, name)
        self._static_ids = {digest: self._project_ids[name] for digest, name in self._static}
        if self._static and self._forced:
            log.warning("ASSISTD_DEV_MODE=1 is ignored while ASSISTD_API_KEYS is set")
        await self.mode()

    async def mode(self) -> KeyMode:
        """The current key mode (database state cached for ``CACHE_SECONDS``)."""
        if self._static:
            self._mode = KeyMode.KEYS
        elif time.monotonic() - self._mode_checked > CACHE_SECONDS:
            async with self._refreshing:  # one query for all the requests that found it stale
                if time.monotonic() - self._mode_checked > CACHE_SECONDS:
                    async with self.db.read() as conn:
                        stored, active = await key_store.count_keys(conn)
                    self._mode = _mode(self._forced, stored=stored, active=active)
                    self._mode_checked = time.monotonic()
        if self._mode is not self._announced:
            self._announced = self._mode
            level, message = _ANNOUNCE[self._mode]
            log.log(level, message)
        return self._mode

    async def dev_mode(self) -> bool:
        """Whether requests without a key are accepted now (from loopback only, unless ASSISTD_DEV_MODE=1)."""
        return await self.mode() in (KeyMode.DEV_LOCAL, KeyMode.DEV)

    async def project_for(self, authorization: str | None,
                          origin: Origin | Callable[[], Origin] | None = None) -> str:
        """The project id for an ``Authorization`` header value, or raise 401. ``origin`` may be a function
        computing it: it is called only when the key alone does not decide (keyless dev mode), so a request
        with a valid key never pays for reading its addresses and headers."""
        if authorization is not None:
            project_id = self._static_headers.get(authorization)
            if project_id is not None:
                return project_id
        secret = _bearer(authorization)
        mode = await self.mode()
        if secret:
            digest = hashlib.sha256(secret.encode()).digest()
            project_id = self._static_ids.get(digest)
            if project_id is not None:
                if authorization is not None and len(self._static_headers) < _HEADERS_MAX:
                    self._static_headers[authorization] = project_id
                return project_id
            if mode is KeyMode.KEYS:  # no stored key is active otherwise: no lookup to pay for
                project_id = await self._db_project(digest.hex())
                if project_id is not None:
                    return project_id
        if mode is KeyMode.DEV or mode is KeyMode.DEV_LOCAL:
            where = origin() if callable(origin) else origin or Origin()
            if not where.cross_site and (mode is KeyMode.DEV or where.local):
                return self._project_ids[DEFAULT_PROJECT]
        if not secret:
            raise Unauthorized(
                "You didn't provide an API key. You need to provide your API key in an Authorization "
                "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
            )
        raise Unauthorized(f"Incorrect API key provided: {redact(secret)}.", code="invalid_api_key")

    async def project_for_hash(self, secret_hash: str) -> str | None:
        """The project of the key with this SHA-256 (hex) while that key is active, else None: a console
        session signed in with a key lasts only as long as the key (revoked: within ``CACHE_SECONDS``)."""
        try:
            digest = bytes.fromhex(secret_hash)
        except ValueError:
            return None
        mode = await self.mode()
        project_id = self._static_ids.get(digest)
        if project_id is not None:
            return project_id
        if mode is KeyMode.KEYS:
            return await self._db_project(secret_hash)
        return None

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


def _mode(forced: bool | None, *, stored: int, active: int) -> KeyMode:
    """The mode without static keys, from how many keys were ever stored and how many are active."""
    if active:
        return KeyMode.KEYS
    if forced:
        return KeyMode.DEV
    if forced is None and stored == 0:
        return KeyMode.DEV_LOCAL
    return KeyMode.CLOSED


def _bearer(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return value.strip() or None
