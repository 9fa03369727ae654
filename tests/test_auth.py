"""API keys and projects: 401s, isolation between projects, stored keys from the CLI, local dev mode."""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import openai
import pytest
from openai import OpenAI

from tests.servers import ROOT, LiveProcess, free_port
from tests.spec import assert_schema


def error_of(r: httpx.Response, status: int) -> dict:
    assert r.status_code == status, (r.status_code, r.text)
    return assert_schema(r.json(), "ErrorResponse")["error"]


def cli(*args: str, database_url: str) -> str:
    """Run ``assistd ARGS --database-url URL`` and return its stdout."""
    done = subprocess.run(
        [sys.executable, "-m", "assistd.cli", *args, "--database-url", database_url],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
        env={k: v for k, v in os.environ.items() if k != "ASSISTD_API_KEYS"},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def create_key(project: str, database_url: str) -> tuple[str, str]:
    out = cli("keys", "create", "--project", project, "--name", "ci", database_url=database_url)
    key_id = re.search(r"\bkey_[A-Za-z0-9]{24}\b", out)
    secret = re.search(r"^sk-\S+$", out, re.M)
    assert key_id and secret, out
    return key_id.group(0), secret.group(0)


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> float:
    """Poll ``predicate`` until true; return the seconds it took (fail after ``timeout``)."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"not true after {timeout}s")
        time.sleep(0.05)
    return time.monotonic() - start


# --- 401s ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("headers", [{}, {"Authorization": ""}, {"Authorization": "Bearer"},
                                     {"Authorization": "Basic dXNlcjpwYXNz"}, {"Authorization": "sk-no-scheme"}])
def test_missing_key_is_401(base_url, headers):
    for method, path in [("GET", "/assistants"), ("POST", "/threads"), ("GET", "/threads/thread_x/messages")]:
        error = error_of(httpx.request(method, base_url + path, headers=headers), 401)
        assert error["type"] == "invalid_request_error"
        assert error["message"].startswith("You didn't provide an API key.")


def test_wrong_key_is_401_invalid_api_key(base_url):
    r = httpx.get(f"{base_url}/assistants", headers={"Authorization": "Bearer sk-wrong-key-123456789"})
    error = error_of(r, 401)
    assert error["code"] == "invalid_api_key" and error["type"] == "invalid_request_error"
    assert "sk-wro...6789" in error["message"] and "sk-wrong-key-123456789" not in error["message"]


def test_sdk_raises_authentication_error(base_url):
    bad = OpenAI(base_url=base_url, api_key="sk-nope", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as err:
        bad.beta.assistants.list()
    assert err.value.status_code == 401 and err.value.code == "invalid_api_key"


def test_key_checked_before_the_body(base_url):
    r = httpx.post(f"{base_url}/assistants", json={"bogus": 1},
                   headers={"Authorization": "Bearer sk-wrong-key-123456789"})
    assert error_of(r, 401)["code"] == "invalid_api_key"


# --- projects -----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def a_objects(client):
    assistant = client.beta.assistants.create(model="m", name="private-to-a")
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "secret"}])
    message = client.beta.threads.messages.list(thread.id).data[0]
    return assistant, thread, message


def test_project_b_cannot_see_project_a(client, client_b, a_objects):
    assistant, thread, message = a_objects
    calls = [
        lambda: client_b.beta.assistants.retrieve(assistant.id),
        lambda: client_b.beta.assistants.update(assistant.id, name="hijacked"),
        lambda: client_b.beta.assistants.delete(assistant.id),
        lambda: client_b.beta.threads.retrieve(thread.id),
        lambda: client_b.beta.threads.update(thread.id, metadata={"x": "y"}),
        lambda: client_b.beta.threads.delete(thread.id),
        lambda: client_b.beta.threads.messages.list(thread.id),
        lambda: client_b.beta.threads.messages.create(thread.id, role="user", content="injected"),
        lambda: client_b.beta.threads.messages.retrieve(message.id, thread_id=thread.id),
        lambda: client_b.beta.threads.messages.update(message.id, thread_id=thread.id, metadata={"x": "y"}),
        lambda: client_b.beta.threads.messages.delete(message.id, thread_id=thread.id),
    ]
    for call in calls:
        with pytest.raises(openai.NotFoundError) as err:
            call()
        assert err.value.status_code == 404
        assert "found with id" in err.value.body["message"]

    # B's list never shows A's assistants, even walking every page.
    b_ids = {a.id for a in client_b.beta.assistants.list(limit=100)}
    assert assistant.id not in b_ids
    # An A id as a cursor in B's list is unknown there.
    with pytest.raises(openai.BadRequestError):
        client_b.beta.assistants.list(after=assistant.id)

    # Nothing changed for A.
    assert client.beta.assistants.retrieve(assistant.id).name == "private-to-a"
    assert client.beta.threads.retrieve(thread.id).metadata == {}
    msgs = client.beta.threads.messages.list(thread.id).data
    assert [m.id for m in msgs] == [message.id] and msgs[0].metadata == {}


def test_project_a_cannot_see_project_b(client, client_b):
    mine = client_b.beta.assistants.create(model="m", name="b-only")
    thread = client_b.beta.threads.create()
    assert mine.id in {a.id for a in client_b.beta.assistants.list(limit=100)}
    assert mine.id not in {a.id for a in client.beta.assistants.list(limit=100)}
    with pytest.raises(openai.NotFoundError):
        client.beta.assistants.retrieve(mine.id)
    with pytest.raises(openai.NotFoundError):
        client.beta.threads.retrieve(thread.id)
    client_b.beta.assistants.delete(mine.id)


# --- keys from the CLI --------------------------------------------------------------------------------

def test_cli_key_lifecycle(base_url, database_url, client, a_objects):
    project = "cli-" + secrets.token_hex(4)
    key_id, secret = create_key(project, database_url)
    assert secret.startswith("sk-") and len(secret) > 40

    c = OpenAI(base_url=base_url, api_key=secret, max_retries=0, timeout=30)
    assert c.beta.assistants.list().data == []  # a fresh project
    made = c.beta.assistants.create(model="m", name="from-cli-key")
    assert [a.id for a in c.beta.assistants.list()] == [made.id]
    with pytest.raises(openai.NotFoundError):
        c.beta.assistants.retrieve(a_objects[0].id)
    with pytest.raises(openai.NotFoundError):
        client.beta.assistants.retrieve(made.id)

    listing = cli("keys", "list", database_url=database_url)
    line = next(row for row in listing.splitlines() if row.startswith(key_id))
    assert project in line and "active" in line and f"{secret[:6]}...{secret[-4:]}" in line
    assert secret not in listing

    out = cli("keys", "revoke", key_id, database_url=database_url)
    assert key_id in out
    took = wait_until(lambda: httpx.get(f"{base_url}/assistants",
                                        headers={"Authorization": f"Bearer {secret}"}).status_code == 401)
    assert took < 3.0
    error = error_of(httpx.get(f"{base_url}/assistants", headers={"Authorization": f"Bearer {secret}"}), 401)
    assert error["code"] == "invalid_api_key"
    assert "revoked" in next(row for row in cli("keys", "list", database_url=database_url).splitlines()
                             if row.startswith(key_id))
    # The static keys are untouched.
    assert client.beta.assistants.retrieve(a_objects[0].id).id == a_objects[0].id


def test_cli_revoke_unknown_key_fails(database_url):
    done = subprocess.run(
        [sys.executable, "-m", "assistd.cli", "keys", "revoke", "key_doesnotexist", "--database-url", database_url],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )
    assert done.returncode != 0 and "key_doesnotexist" in done.stdout


# --- local dev mode -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def dev_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveProcess, str]]:
    """A short-lived server on its own SQLite file with no keys at all."""
    where: Path = tmp_path_factory.mktemp("devmode")
    url = f"sqlite:///{where / 'dev.db'}"
    port = free_port()
    env = {"ASSISTD_DATABASE_URL": url, "ASSISTD_DATA_DIR": str(where), "ASSISTD_API_KEYS": "",
           "ASSISTD_WORKERS": "0"}
    with LiveProcess(["serve", "--port", str(port)], port, env=env) as proc:
        yield proc, url


def test_dev_mode_accepts_any_bearer(dev_server):
    proc, _ = dev_server
    assert "dev mode" in proc.log() and "WARNING" in proc.log()
    one = OpenAI(base_url=f"{proc.url}/v1", api_key="sk-anything", max_retries=0)
    other = OpenAI(base_url=f"{proc.url}/v1", api_key="whatever-else", max_retries=0)
    made = one.beta.assistants.create(model="m")
    assert_schema(made, "AssistantObject")
    assert other.beta.assistants.retrieve(made.id).id == made.id  # one `default` project
    r = httpx.get(f"{proc.url}/v1/assistants/{made.id}")
    assert r.status_code == 200, r.text


def test_dev_mode_ends_when_a_key_is_stored(dev_server):
    proc, url = dev_server
    _, secret = create_key("first", url)
    wait_until(lambda: httpx.get(f"{proc.url}/v1/assistants",
                                 headers={"Authorization": "Bearer sk-random"}).status_code == 401)
    r = httpx.get(f"{proc.url}/v1/assistants", headers={"Authorization": f"Bearer {secret}"})
    assert r.status_code == 200 and r.json()["data"] == []


def test_serve_help_names_every_setting() -> None:
    """`assistd serve --help` lists every ASSISTD_ variable the settings read (the README's table, too)."""
    from assistd.config import Settings

    out = subprocess.run([sys.executable, "-m", "assistd.cli", "serve", "--help"], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    names = [f"ASSISTD_{name.upper()}" for name in Settings.model_fields if name != "log_level"]
    assert [n for n in names if n not in out] == []
    assert [n for n in names if f"`{n}`" not in readme] == []
