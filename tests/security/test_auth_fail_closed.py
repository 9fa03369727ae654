"""Keyless dev mode is entered only on purpose, and every way out of it fails closed (README: Security).

Servers of their own, on their own SQLite files: the key state is what is under test.
"""

from __future__ import annotations

import socket
import stat
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from assistd.api.authenticate import origin_of
from assistd.services.auth import KeyMode, _mode
from tests.servers import LiveProcess, free_port
from tests.test_auth import cli, create_key, wait_until

NO_KEYS = {"ASSISTD_API_KEYS": "", "ASSISTD_WORKERS": "0", "ASSISTD_DEV_MODE": ""}


def serve(where: Path, *, host: str = "127.0.0.1", **env: str) -> LiveProcess:
    port = free_port()
    settings = {**NO_KEYS, "ASSISTD_DATABASE_URL": f"sqlite:///{where / 'db' / 'assistd.db'}",
                "ASSISTD_DATA_DIR": str(where / "data"), **env}
    return LiveProcess(["serve", "--host", host, "--port", str(port)], port, env=settings)


def status(proc: LiveProcess, key: str | None = None, **headers: str) -> int:
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    return httpx.get(f"{proc.url}/v1/assistants", headers=headers).status_code


# --- the rule, without a server ------------------------------------------------------------------------

@pytest.mark.parametrize(("forced", "stored", "active", "mode"), [
    (None, 0, 0, KeyMode.DEV_LOCAL),  # a fresh database: `make run` works keyless
    (None, 1, 0, KeyMode.CLOSED),  # every stored key revoked: closed, never open
    (None, 3, 1, KeyMode.KEYS),
    (True, 1, 0, KeyMode.DEV),  # ASSISTD_DEV_MODE=1: the operator's explicit choice
    (True, 2, 1, KeyMode.KEYS),  # … but an active key still rules
    (False, 0, 0, KeyMode.CLOSED),  # ASSISTD_DEV_MODE=0: never keyless
])
def test_key_mode_rule(forced, stored, active, mode):
    assert _mode(forced, stored=stored, active=active) is mode


def scope(server: tuple[str, int] | None = ("127.0.0.1", 8000), **headers: str) -> dict:
    return {"type": "http", "scheme": "http", "server": server,
            "headers": [(k.replace("_", "-").lower().encode(), v.encode()) for k, v in headers.items()]}


@pytest.mark.parametrize(("request_scope", "local", "cross_site"), [
    (scope(host="127.0.0.1:8000"), True, False),
    (scope(host="localhost:8000"), True, False),
    (scope(("::1", 8000), host="[::1]:8000"), True, False),
    (scope(("192.0.2.2", 8000), host="192.0.2.2:8000"), False, False),  # another host's connection
    (scope(host="127.0.0.1:8000", x_forwarded_for="203.0.113.9"), False, False),  # a reverse proxy
    (scope(host="127.0.0.1:8000", forwarded="for=203.0.113.9"), False, False),
    (scope(host="evil.example:8000"), False, False),  # DNS rebinding
    (scope(host="127.0.0.1:8000", origin="http://127.0.0.1:8000"), True, False),  # same-origin page
    (scope(host="127.0.0.1:8000", origin="https://evil.example"), True, True),
    (scope(host="127.0.0.1:8000", origin="null"), True, True),
    (scope(host="127.0.0.1:8000", sec_fetch_site="cross-site"), True, True),
    (scope(host="127.0.0.1:8000", sec_fetch_site="same-site"), True, True),  # localhost:3000's page
    (scope(host="127.0.0.1:8000", sec_fetch_site="same-origin", origin="http://127.0.0.1:8000"), True, False),
])
def test_where_a_request_comes_from(request_scope, local, cross_site):
    origin = origin_of(request_scope)
    assert (origin.local, origin.cross_site) == (local, cross_site)


# --- a fresh database, then a key, then none -----------------------------------------------------------

@pytest.fixture(scope="module")
def where(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("failclosed")


@pytest.fixture(scope="module")
def fresh(where: Path) -> Iterator[LiveProcess]:
    with serve(where) as proc:
        yield proc


def test_fresh_database_on_loopback_is_keyless(fresh, where):
    assert status(fresh) == 200 and status(fresh, "sk-anything") == 200
    assert "local dev mode" in fresh.log() and "WARNING" in fresh.log()
    # The data directory and the database were created private (issue 11 #13).
    assert stat.S_IMODE((where / "data").stat().st_mode) == 0o700
    assert stat.S_IMODE((where / "db").stat().st_mode) == 0o700
    assert stat.S_IMODE((where / "db" / "assistd.db").stat().st_mode) == 0o600


@pytest.mark.parametrize("headers", [
    {"X-Forwarded-For": "203.0.113.9"}, {"Forwarded": "for=203.0.113.9"}, {"X-Real-IP": "203.0.113.9"},
    {"Host": "evil.example"}, {"Origin": "https://evil.example"}, {"Sec-Fetch-Site": "cross-site"},
])
def test_keyless_only_for_direct_local_requests(fresh, headers):
    assert status(fresh, **headers) == 401
    r = httpx.post(f"{fresh.url}/v1/threads", headers={"Content-Type": "application/json", **headers}, content=b"{}")
    assert r.status_code == 401


def test_revoking_the_last_key_closes_the_server(fresh, where):
    url = f"sqlite:///{where / 'db' / 'assistd.db'}"
    key_id, secret = create_key("first", url)
    wait_until(lambda: status(fresh, "sk-random") == 401)
    assert status(fresh) == 401 and status(fresh, secret) == 200

    assert "running servers refuse every request" in cli("keys", "revoke", key_id, database_url=url)
    wait_until(lambda: status(fresh, secret) == 401)
    for key in (None, "sk-random", secret):
        assert status(fresh, key) == 401
    r = httpx.post(f"{fresh.url}/v1/threads", headers={"Content-Type": "application/json"}, content=b"{}")
    assert r.status_code == 401
    wait_until(lambda: "no active API key: every request is refused" in fresh.log())


def test_closed_stays_closed_after_a_restart(fresh, where):
    fresh.stop()
    with serve(where) as again:
        assert status(again) == 401 and status(again, "sk-anything") == 401
        assert "no active API key: every request is refused" in again.log()


def test_dev_mode_1_reopens_it_on_purpose(fresh, where):
    fresh.stop()
    with serve(where, ASSISTD_DEV_MODE="1") as forced:
        assert status(forced) == 200
        assert "ASSISTD_DEV_MODE=1" in forced.log()
        assert status(forced, Origin="https://evil.example") == 401  # still no cross-site forgery


def test_dev_mode_0_never_keyless(tmp_path):
    with serve(tmp_path, ASSISTD_DEV_MODE="0") as closed:
        assert status(closed) == 401 and status(closed, "sk-anything") == 401
        assert "every request is refused" in closed.log()


def _outside_address() -> str | None:
    """This machine's address on a non-loopback interface, if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.254", 9))  # no packet is sent: this only picks the route
        except OSError:
            return None
        address = s.getsockname()[0]
    return None if address.startswith("127.") else address


def test_non_loopback_connections_are_never_keyless(tmp_path):
    address = _outside_address()
    if address is None:
        pytest.skip("no non-loopback interface")
    with serve(tmp_path, host="0.0.0.0") as proc:
        assert "requests from other hosts are refused" in proc.log()
        assert status(proc) == 200  # this machine, over loopback
        outside = httpx.get(f"http://{address}:{proc.port}/v1/assistants")
        assert outside.status_code == 401, outside.text
        assert outside.json()["error"]["message"].startswith("You didn't provide an API key.")
