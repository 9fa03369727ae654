"""The console's sessions fail closed with the keys: a session signed in with a key ends when that key is
revoked (within the key cache's two seconds), and revoking every key closes the console as it closes the
API. The signed cookie alone (8 hours) kept another project's data open after its key was revoked."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.console.conftest import sign_in
from tests.security.test_auth_fail_closed import serve
from tests.servers import LiveProcess
from tests.test_auth import cli, create_key, wait_until


@pytest.fixture(scope="module")
def where(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("console-sessions")


@pytest.fixture(scope="module")
def proc(where: Path) -> Iterator[LiveProcess]:
    with serve(where, ASSISTD_DEV_MODE="0") as p:
        yield p


def _reads(console: httpx.Client) -> int:
    return console.get("/console/api/v1/assistants").status_code


def test_a_revoked_key_ends_its_console_sessions(proc, where):
    url = f"sqlite:///{where / 'db' / 'assistd.db'}"
    first_id, first = create_key("first", url)
    _, second = create_key("second", url)
    wait_until(lambda: httpx.get(f"{proc.url}/v1/assistants",
                                 headers={"Authorization": f"Bearer {first}"}).status_code == 200)
    one, two = sign_in(proc.url, first), sign_in(proc.url, second)
    assert _reads(one) == 200 and _reads(two) == 200
    cli("keys", "revoke", first_id, database_url=url)
    wait_until(lambda: _reads(one) == 401)
    assert one.get("/console/threads").status_code in (303, 307)  # back to the sign-in page
    r = one.post("/console/api/v1/assistants", json={"model": "m"}, headers={"X-CSRF-Token": one.csrf})
    assert r.status_code == 401
    assert _reads(two) == 200  # the other key's session is untouched


def test_a_forged_or_old_cookie_without_its_key_signs_nobody_in(proc, where):
    """A session cookie that names a project but no key (as before this check) is not signed in."""
    from assistd.console.sessions import COOKIE, Session, SessionSigner, load_secret

    signer = SessionSigner(load_secret(where / "data"))
    _, key = create_key("third", f"sqlite:///{where / 'db' / 'assistd.db'}")
    console = sign_in(proc.url, key)
    session = signer.load(console.cookies.get(COOKIE))
    assert session is not None and session.project_id is not None
    keyless = Session(session.nonce, session.project_id, session.expires_at, None)
    with httpx.Client(base_url=proc.url, cookies={COOKIE: signer.dump(keyless)}) as c:
        assert c.get("/console/api/v1/assistants").status_code == 401
