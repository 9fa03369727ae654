"""Console sessions: a signed cookie, and the CSRF token derived from it.

The cookie holds ``{"n": nonce, "p": project_id or None, "e": expiry}`` signed with HMAC-SHA256 under a
per-install secret kept in the data dir (0600), so sessions survive restarts and every process of one
install accepts them, with nothing stored server-side. An anonymous visitor gets a session too (no
project): it carries the nonce the sign-in form's CSRF token is bound to. Signing in issues a new nonce.

The CSRF token is HMAC(secret, "csrf:" + nonce): a page embeds it, every state-changing console request
sends it back (form field or ``X-CSRF-Token`` header), and a request without the matching token is
refused. With SameSite=Strict cookies this is belt and braces.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

import orjson

COOKIE = "assistd_console"
SESSION_SECONDS = 8 * 3600
_SECRET_FILE = "console-secret"


def load_secret(data_dir: Path) -> bytes:
    """The install's signing secret, created on first use with mode 0600."""
    path = data_dir / _SECRET_FILE
    try:
        return bytes.fromhex(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        pass
    data_dir.mkdir(parents=True, exist_ok=True)
    value = secrets.token_bytes(32)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(value.hex())
    try:  # another process may have won the race: its secret is the one
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)
    return bytes.fromhex(path.read_text().strip())


@dataclass(frozen=True, slots=True)
class Session:
    nonce: str
    project_id: str | None
    expires_at: int
    key_hash: str | None = None  # SHA-256 of the key signed in with: the session ends with the key


class SessionSigner:
    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._secret, payload, hashlib.sha256).digest()

    def new(self, project_id: str | None, key_hash: str | None = None) -> Session:
        return Session(secrets.token_urlsafe(18), project_id, int(time.time()) + SESSION_SECONDS, key_hash)

    def dump(self, session: Session) -> str:
        payload = orjson.dumps({"n": session.nonce, "p": session.project_id, "e": session.expires_at,
                                "k": session.key_hash})
        return _b64(payload) + "." + _b64(self._mac(payload))

    def load(self, value: str | None) -> Session | None:
        """The session a cookie holds, or None when it is missing, forged or expired."""
        if not value or "." not in value or len(value) > 1024:
            return None
        body, _, mac = value.partition(".")
        try:
            payload, given = _unb64(body), _unb64(mac)
        except ValueError:
            return None
        if not hmac.compare_digest(self._mac(payload), given):
            return None
        try:
            data = orjson.loads(payload)
            key_hash = data.get("k")
            session = Session(str(data["n"]), data["p"], int(data["e"]), str(key_hash) if key_hash else None)
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return None
        return session if session.expires_at > time.time() else None

    def csrf_token(self, session: Session) -> str:
        return _b64(self._mac(b"csrf:" + session.nonce.encode()))

    def csrf_ok(self, session: Session | None, token: str | None) -> bool:
        if session is None or not token:
            return False
        return hmac.compare_digest(self.csrf_token(session), token)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError) as exc:
        raise ValueError("bad base64") from exc
