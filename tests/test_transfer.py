"""``assistd export`` / ``assistd import``: round trips on the session's database and across SQLite and
PostgreSQL, read back through the API; an import killed half-way and run again."""

from __future__ import annotations

import secrets
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from openai import OpenAI

from assistd.blobstore import LocalBlobStore
from assistd.transfer.openai_shape import Normalizer
from tests.run_helpers import MODEL, fresh_database
from tests.servers import ROOT, LiveProcess, free_port, pg_admin
from tests.transfer_helpers import PG_URL, cli, members, objects, ok, pg_reachable, wait_for

# Each test starts servers and CLI processes of its own: more than the default per-test budget on a busy machine.
pytestmark = pytest.mark.timeout(360)

PROJECT = "transfer-src"
KEY = "sk-transfer-" + secrets.token_hex(8)
TEXT = b"Mushrooms spread by spores carried on the wind.\n\nFerns also spread by spores, not seeds.\n"


def _project_key(database_url: str, data_dir: Path) -> str:
    """A key of a project of our own on the session server, so the export holds only what we made."""
    out = ok(cli("keys", "create", "--project", PROJECT, database_url=database_url, data_dir=data_dir)).stdout
    return out.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def source(server: LiveProcess, database_url: str, data_dir: Path) -> dict[str, Any]:
    key = _project_key(database_url, data_dir)
    client = OpenAI(base_url=f"{server.url}/v1", api_key=key, max_retries=0, timeout=30)
    f = client.files.create(file=("spores.txt", TEXT), purpose="assistants")
    client.files.create(file=("data.bin", bytes(range(256)) * 64), purpose="user_data")  # one the API gives back
    vs = client.vector_stores.create(name="transfer", metadata={"k": "v"})
    vsf = client.vector_stores.files.create_and_poll(file_id=f.id, vector_store_id=vs.id, attributes={"lang": "en"},
                                                    poll_interval_ms=50)
    assert vsf.status == "completed", vsf
    assistant = client.beta.assistants.create(model=MODEL, name="transfer", instructions="Be brief.",
                                              tools=[{"type": "function", "function": {"name": "f"}}],
                                              metadata={"a": "1"})
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "hello [reply: hi there]"}],
                                        metadata={"t": "1"})
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id,
                                                   poll_interval_ms=50)
    assert run.status == "completed", run
    client.beta.threads.messages.create(thread.id, role="user", content="and again", metadata={"m": "2"})
    http = httpx.Client(base_url=f"{server.url}/v1", headers={"Authorization": f"Bearer {key}",
                                                               "OpenAI-Beta": "assistants=v2"}, timeout=30)
    return {"client": client, "http": http, "key": key, "vector_store": vs.id, "file": f.id, "thread": thread.id,
            "text": TEXT}


def _export(database_url: str, data_dir: Path, path: Path) -> Path:
    ok(cli("export", str(path), "--project", PROJECT, database_url=database_url, data_dir=data_dir))
    return path


def _server(database_url: str, data_dir: Path, upstream: LiveProcess, key: str) -> LiveProcess:
    port = free_port()
    env = {"ASSISTD_DATABASE_URL": database_url, "ASSISTD_DATA_DIR": str(data_dir),
           "ASSISTD_API_KEYS": f"{key}:{PROJECT}", "ASSISTD_LLM_BASE_URL": f"{upstream.url}/v1",
           "ASSISTD_LLM_API_KEY": "upstream-key", "ASSISTD_EMBEDDINGS": "upstream:text-embedding-3-small",
           "ASSISTD_DB_POOL_SIZE": "3"}  # a shared PostgreSQL has connections for few servers
    return LiveProcess(["serve", "--port", str(port)], port, env=env, timeout=90)


def _paths(kind: str, obj: dict[str, Any]) -> str:
    return {
        "files": f"/files/{obj['id']}",
        "vector_stores": f"/vector_stores/{obj['id']}",
        "vector_store_files": f"/vector_stores/{obj.get('vector_store_id')}/files/{obj['id']}",
        "assistants": f"/assistants/{obj['id']}",
        "threads": f"/threads/{obj['id']}",
        "runs": f"/threads/{obj.get('thread_id')}/runs/{obj['id']}",
        "messages": f"/threads/{obj.get('thread_id')}/messages/{obj['id']}",
        "run_steps": f"/threads/{obj.get('thread_id')}/runs/{obj.get('run_id')}/steps/{obj['id']}",
    }[kind]


def _http(proc: LiveProcess, key: str) -> httpx.Client:
    return httpx.Client(base_url=f"{proc.url}/v1", headers={"Authorization": f"Bearer {key}",
                                                            "OpenAI-Beta": "assistants=v2"}, timeout=30)


def _indexed(http: httpx.Client, archive: Path) -> None:
    """Wait until the target's ingestion queue has indexed every vector store again."""
    for line in objects(archive, "vector_stores"):
        store_id = orjson.loads(line)["id"]
        wait_for(lambda: http.get(f"/vector_stores/{store_id}").json()["status"] == "completed",  # noqa: B023
                 f"vector store {store_id} re-indexed")


def _check_served(archive: Path, target: httpx.Client, source: httpx.Client | None, target_dir: Path) -> None:
    """Every archived object, read back through the target's API, is byte for byte what was exported (and
    what the source serves); every file's bytes match: downloaded where the API allows it (not for purpose
    ``assistants``), and in the target's blob store for all."""
    header = orjson.loads(members(archive)["assistd-archive.json"])
    normalizer = Normalizer(header["exported_at"])
    counts = 0
    for kind in ("files", "vector_stores", "vector_store_files", "assistants", "threads", "runs", "messages",
                 "run_steps"):
        for line in objects(archive, kind):
            obj = orjson.loads(line)
            expected = orjson.dumps(normalizer.normalize(kind, obj))
            got = target.get(_paths(kind, obj))
            assert got.status_code == 200, (kind, got.text)
            if kind != "run_steps":  # steps are served without their private parts (services/step_render.py)
                assert got.content == expected, (kind, got.content, expected)
            if source is not None:
                assert got.content == source.get(_paths(kind, obj)).content, kind
            if kind == "files":
                data = members(archive)[f"projects/0/files/{obj['id']}"]
                assert (LocalBlobStore(target_dir / "blobs").local_path(obj["id"]) or Path()).read_bytes() == data
                if obj["purpose"] != "assistants":
                    assert target.get(f"/files/{obj['id']}/content").content == data
            counts += 1
    assert counts >= 9


def _search(client: OpenAI, store_id: str) -> list[dict[str, Any]]:
    return [r.model_dump() for r in client.vector_stores.search(store_id, query="spores wind")]


def test_round_trip_on_the_session_database(source, database_url, data_dir, upstream, tmp_path):
    archive = _export(database_url, data_dir, tmp_path / "a.tar.gz")
    target_dir = tmp_path / "target"
    with fresh_database(database_url, tmp_path) as url:
        ok(cli("import", str(archive), database_url=url, data_dir=target_dir))
        with _server(url, target_dir, upstream, KEY) as proc, _http(proc, KEY) as http:
            _indexed(http, archive)
            _check_served(archive, http, source["http"], target_dir)
            target = OpenAI(base_url=f"{proc.url}/v1", api_key=KEY, max_retries=0, timeout=30)
            assert _search(target, source["vector_store"]) == _search(source["client"], source["vector_store"])
            listed = target.beta.threads.messages.list(source["thread"], order="asc")
            assert [m.id for m in listed] == [m.id for m in source["client"].beta.threads.messages.list(
                source["thread"], order="asc")]
        # Again into the same database: everything is already there, nothing changes.
        again = ok(cli("import", str(archive), database_url=url, data_dir=target_dir)).stdout
        assert f"messages: 0 imported, {len(objects(archive, 'messages'))} already present" in again, again
        assert "runs: 0 imported" in again and "conflict" not in again, again


@pytest.fixture(scope="module")
def pg_database() -> Iterator[Any]:
    if not pg_reachable():
        pytest.skip(f"no PostgreSQL at {PG_URL}")

    def make() -> str:
        name = "assistd_transfer_" + secrets.token_hex(5)
        pg_admin(PG_URL, f'CREATE DATABASE "{name}"')
        made.append(name)
        return PG_URL.rsplit("/", 1)[0] + "/" + name

    made: list[str] = []
    yield make
    for name in made:
        pg_admin(PG_URL, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_across_sqlite_and_postgresql(source, database_url, data_dir, upstream, pg_database, tmp_path):
    """session database → PostgreSQL → SQLite: the third archive is the first, line for line."""
    first = _export(database_url, data_dir, tmp_path / "first.tar")
    pg_url, pg_dir = pg_database(), tmp_path / "pg"
    ok(cli("import", str(first), database_url=pg_url, data_dir=pg_dir))
    with _server(pg_url, pg_dir, upstream, KEY) as proc, _http(proc, KEY) as http:
        _indexed(http, first)
        second = _export(pg_url, pg_dir, tmp_path / "second.tar.gz")  # while the PostgreSQL server serves
    sqlite_url, sqlite_dir = f"sqlite:///{tmp_path / 'back.db'}", tmp_path / "back"
    ok(cli("import", str(second), database_url=sqlite_url, data_dir=sqlite_dir))
    with _server(sqlite_url, sqlite_dir, upstream, KEY) as proc, _http(proc, KEY) as http:
        _indexed(http, second)
        _check_served(first, http, source["http"], sqlite_dir)
        third = _export(sqlite_url, sqlite_dir, tmp_path / "third.tar")
        target = OpenAI(base_url=f"{proc.url}/v1", api_key=KEY, max_retries=0, timeout=30)
        assert _search(target, source["vector_store"]) == _search(source["client"], source["vector_store"])
    a, c = members(first), members(third)
    data = sorted(name for name in a if name.startswith("projects/"))
    assert data == sorted(name for name in c if name.startswith("projects/"))
    for name in data:
        assert a[name] == c[name], name


def test_an_import_killed_half_way_completes_when_run_again(source, database_url, data_dir, tmp_path):
    archive = _export(database_url, data_dir, tmp_path / "k.tar")
    target_dir = tmp_path / "target"
    with fresh_database(database_url, tmp_path) as url:
        killed = cli("import", str(archive), "--batch-size", "1", "--fail-after", "5", database_url=url,
                     data_dir=target_dir)
        assert killed.returncode == -signal.SIGKILL, killed
        half = _count_rows(url)
        assert half["messages"] < len(objects(archive, "messages")), half  # killed before the end
        out = ok(cli("import", str(archive), "--batch-size", "1", database_url=url, data_dir=target_dir)).stdout
        total = {kind: len(objects(archive, kind)) for kind in ("files", "assistants", "threads", "messages",
                                                                "runs", "run_steps")}
        for kind, n in total.items():
            line = next(x for x in out.splitlines() if x.startswith(f"{kind}:"))
            imported, present = (int(w) for w in line.replace(",", "").split() if w.isdigit())
            assert imported + present == n, (kind, line)
        assert "conflict" not in out
        rows = _count_rows(url)
        assert rows["messages"] == total["messages"] and rows["runs"] == total["runs"], rows
        assert rows["ingest_jobs"] == len(objects(archive, "vector_store_files")), rows


def _count_rows(url: str) -> dict[str, int]:
    import asyncio

    from sqlalchemy import func, select

    from assistd.store.db import Database
    from assistd.store.tables import jobs, messages, runs

    async def count() -> dict[str, int]:
        db = Database(url)
        try:
            async with db.read() as conn:
                return {
                    "messages": (await conn.execute(select(func.count()).select_from(messages))).scalar_one(),
                    "runs": (await conn.execute(select(func.count()).select_from(runs))).scalar_one(),
                    "ingest_jobs": (await conn.execute(select(func.count()).select_from(jobs).where(
                        jobs.c.kind == "ingest_file"))).scalar_one(),
                }
        finally:
            await db.close()

    return asyncio.run(count())


def test_export_from_api_script(source, server, database_url, tmp_path):
    """scripts/export-from-api against a live Assistants-API server (this one), then imported elsewhere:
    every object is there with every field the server served (the SDK's model_dump() adds its own Nones)."""
    archive = tmp_path / "api.tar.gz"
    originals = tmp_path / "originals"  # what the API will not give back (purpose assistants), given by hand
    originals.mkdir()
    (originals / source["file"]).write_bytes(source["text"])
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "export-from-api"), str(archive), "--base-url", f"{server.url}/v1",
         "--api-key", source["key"], "--thread", source["thread"], "--project", "from-api",
         "--bytes-from", str(originals)],
        capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert orjson.loads(members(archive)["assistd-archive.json"])["source"] == "openai-api"
    with fresh_database(database_url, tmp_path) as url:
        out = ok(cli("import", str(archive), database_url=url, data_dir=tmp_path / "data")).stdout
        assert "conflict" not in out and "skipped" not in out, out
        rows = _rows(url)
        http = source["http"]
        checked = 0
        for kind, items in rows.items():
            for obj in items:
                served = http.get(_paths(kind, obj)).json()
                for name, value in served.items():
                    if kind == "run_steps" and name == "step_details":
                        continue  # the script asked for file_search results' content, served only on request
                    if kind in ("vector_stores", "vector_store_files") and name in ("status", "file_counts",
                                                                                  "usage_bytes", "last_active_at"):
                        continue  # recomputed by the target's re-indexing
                    assert obj.get(name) == value, (kind, name, obj.get(name), value)
                extra = set(obj) - set(served)
                assert all(obj[name] is None for name in extra), (kind, extra)
                checked += 1
        assert checked == sum(len(objects(archive, kind)) for kind in rows) and checked >= 9


def _rows(url: str) -> dict[str, list[dict[str, Any]]]:
    import asyncio

    from sqlalchemy import select

    from assistd.store.db import Database
    from assistd.transfer.export import TABLES

    async def read() -> dict[str, list[dict[str, Any]]]:
        db = Database(url)
        try:
            async with db.read() as conn:
                return {kind: [orjson.loads(r.data) for r in await conn.execute(select(t.c.data).order_by(t.c.seq))]
                        for kind, t in TABLES.items()}
        finally:
            await db.close()

    return asyncio.run(read())


def test_export_while_runs_stream_is_consistent(source, database_url, data_dir, tmp_path):
    """Runs streaming while the export reads: one snapshot, so no step without its run, no message without
    its thread; the runs caught mid-answer arrive ended, never to be executed again."""
    client: OpenAI = source["client"]
    assistant = client.beta.assistants.create(model=MODEL, name="streaming")
    started = [threading.Event() for _ in range(3)]
    streaming: list[tuple[str, str]] = []  # (thread id, run id)
    errors: list[BaseException] = []

    def stream(i: int) -> None:
        try:  # answers that would take minutes: cancelled once the export is written
            thread = client.beta.threads.create(messages=[{"role": "user",
                                                           "content": "[tokens: 2000] [chunk-delay: 0.2]"}])
            with client.beta.threads.runs.stream(thread_id=thread.id, assistant_id=assistant.id) as events:
                for event in events:
                    if event.event == "thread.run.created":
                        streaming.append((thread.id, event.data.id))
                    if event.event == "thread.message.delta":
                        started[i].set()
        except BaseException as exc:  # noqa: BLE001 (reported by the test thread)
            errors.append(exc)
            started[i].set()

    workers = [threading.Thread(target=stream, args=(i,)) for i in range(len(started))]
    for w in workers:
        w.start()
    for event in started:
        assert event.wait(60)
    try:
        archive = _export(database_url, data_dir, tmp_path / "live.tar")
    finally:
        for thread_id, run_id in streaming:
            client.beta.threads.runs.cancel(run_id, thread_id=thread_id)
        for w in workers:
            w.join(120)
    assert not errors, errors
    loaded = {kind: [orjson.loads(x) for x in objects(archive, kind)]
              for kind in ("threads", "runs", "messages", "run_steps")}
    thread_ids = {t["id"] for t in loaded["threads"]}
    run_ids = {r["id"] for r in loaded["runs"]}
    assert {r["thread_id"] for r in loaded["runs"]} <= thread_ids
    assert {m["thread_id"] for m in loaded["messages"]} <= thread_ids
    assert {m["run_id"] for m in loaded["messages"] if m["run_id"]} <= run_ids
    assert {s["run_id"] for s in loaded["run_steps"]} <= run_ids
    assert {s["thread_id"] for s in loaded["run_steps"]} <= thread_ids
    caught = [r for r in loaded["runs"] if r["status"] == "in_progress"]
    assert len(caught) >= 1, [r["status"] for r in loaded["runs"]]
    with fresh_database(database_url, tmp_path) as url:
        out = ok(cli("import", str(archive), database_url=url, data_dir=tmp_path / "target")).stdout
        assert f"{len(caught)} unfinished runs imported as expired" in out, out
        rows = _rows(url)
        assert not [r for r in rows["runs"] if r["status"] in ("queued", "in_progress", "requires_action",
                                                                "cancelling")]
        assert not [s for s in rows["run_steps"] if s["status"] == "in_progress"]
        assert not [m for m in rows["messages"] if m["status"] == "in_progress"]


def test_backup_and_restore(source, database_url, data_dir, upstream, tmp_path, request):
    """The physical backup docs/operations.md describes, taken while the server serves: the database first
    (SQLite's online backup, or pg_dump), then the data dir's blobs; restored, it serves every object."""
    archive = _export(database_url, data_dir, tmp_path / "before.tar")
    restored_dir = tmp_path / "restored"
    if database_url.startswith("sqlite"):
        import sqlite3

        restored_url = f"sqlite:///{tmp_path / 'restored.db'}"
        src = sqlite3.connect(database_url.removeprefix("sqlite:///"))
        dst = sqlite3.connect(tmp_path / "restored.db")
        with dst:
            src.backup(dst)  # what the sqlite3 shell's `.backup` does
        src.close()
        dst.close()
    else:
        if shutil.which("pg_dump") is None or shutil.which("pg_restore") is None:
            pytest.skip("pg_dump / pg_restore are not installed")
        dump = tmp_path / "assistd.dump"
        subprocess.run(["pg_dump", "-Fc", "-f", str(dump), database_url], check=True, timeout=120)
        restored_url = request.getfixturevalue("pg_database")()
        subprocess.run(["pg_restore", "--no-owner", "-d", restored_url, str(dump)], check=True, timeout=120)
    shutil.copytree(data_dir / "blobs", restored_dir / "blobs")
    with _server(restored_url, restored_dir, upstream, KEY) as proc, _http(proc, KEY) as http:
        _indexed(http, archive)
        _check_served(archive, http, source["http"], restored_dir)
        target = OpenAI(base_url=f"{proc.url}/v1", api_key=KEY, max_retries=0, timeout=30)
        assert _search(target, source["vector_store"]) == _search(source["client"], source["vector_store"])
