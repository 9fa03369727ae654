"""One live server per test session, on the database ASSISTD_TEST_DATABASE_URL names.

``sqlite`` (default) uses a fresh file; a ``postgresql://…`` URL names a server on which a throwaway
database is created for the session and dropped after. The scripted upstream runs beside the server.
"""

from __future__ import annotations

import os
import secrets
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from openai import OpenAI

from tests.servers import LiveProcess, free_port, pg_admin

KEY_A = "sk-test-project-a-0123456789"
KEY_B = "sk-test-project-b-0123456789"


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    base = os.environ.get("ASSISTD_TEST_DATABASE_URL", "sqlite")
    if base.startswith("postgres"):
        name = "assistd_test_" + secrets.token_hex(6)
        admin = base.rsplit("/", 1)[0] + "/postgres"
        pg_admin(admin, f'CREATE DATABASE "{name}"')
        try:
            yield base.rsplit("/", 1)[0] + "/" + name
        finally:
            pg_admin(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    else:
        yield f"sqlite:///{tmp_path_factory.mktemp('db') / 'assistd.db'}"


@pytest.fixture(scope="session")
def is_postgres(database_url: str) -> bool:
    return database_url.startswith("postgres")


@pytest.fixture(scope="session")
def upstream() -> Iterator[LiveProcess]:
    port = free_port()
    proc = LiveProcess(["dev-upstream", "--port", str(port)], port, ready_path="/v1/models")
    with proc:
        yield proc


@pytest.fixture(scope="session")
def data_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="assistd-test-") as d:
        yield Path(d)


@pytest.fixture(scope="session")
def server(database_url: str, upstream: LiveProcess, data_dir: Path) -> Iterator[LiveProcess]:
    port = free_port()
    env = {
        "ASSISTD_DATABASE_URL": database_url,
        "ASSISTD_DATA_DIR": str(data_dir),
        "ASSISTD_API_KEYS": f"{KEY_A}:project-a,{KEY_B}:project-b",
        "ASSISTD_LLM_BASE_URL": f"{upstream.url}/v1",
        "ASSISTD_LLM_API_KEY": "upstream-key",
        # The scripted upstream's embeddings keep ingestion fast; the local model has its own tests.
        "ASSISTD_EMBEDDINGS": "upstream:text-embedding-3-small",
    }
    with LiveProcess(["serve", "--port", str(port)], port, env=env) as proc:
        yield proc


@pytest.fixture(scope="session")
def base_url(server: LiveProcess) -> str:
    return f"{server.url}/v1"


@pytest.fixture(scope="session")
def client(base_url: str) -> OpenAI:
    return OpenAI(base_url=base_url, api_key=KEY_A, max_retries=0, timeout=30)


@pytest.fixture(scope="session")
def client_b(base_url: str) -> OpenAI:
    return OpenAI(base_url=base_url, api_key=KEY_B, max_retries=0, timeout=30)


@pytest.fixture(scope="session")
def http(base_url: str) -> Iterator[httpx.Client]:
    """Raw HTTP with project A's key, for error shapes and status codes."""
    headers = {"Authorization": f"Bearer {KEY_A}", "OpenAI-Beta": "assistants=v2"}
    with httpx.Client(base_url=base_url, headers=headers, timeout=30) as c:
        yield c
