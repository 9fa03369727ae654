"""Storage on the session database (SQLite or PostgreSQL, whichever the suite runs on): one transaction
per unit of work, all or nothing — checked directly and through HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import orjson
import pytest
from sqlalchemy import func, select

from assistd import ids
from assistd.pagination import PageParams
from assistd.services import messages as message_service
from assistd.store import objects
from assistd.store.db import Database
from assistd.store.tables import messages, projects, threads

T = TypeVar("T")
PROJECT = "proj_storetests000000000000"


class Boom(Exception):
    pass


class Store:
    """The session database, opened once for this module on its own event loop."""

    def __init__(self, database_url: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.db = Database(database_url, pool_size=2)

    def run(self, work: Callable[[Database], Awaitable[T]]) -> T:
        return self.loop.run_until_complete(work(self.db))

    def close(self) -> None:
        self.loop.run_until_complete(self.db.close())
        self.loop.close()


@pytest.fixture(scope="module")
def store(server, database_url: str) -> Iterator[Store]:
    """``server`` migrated the database at start; these tests share it."""
    s = Store(database_url)
    yield s
    s.close()


def new_thread() -> dict[str, Any]:
    return {"id": ids.new_id("thread"), "object": "thread", "created_at": ids.now(), "metadata": {},
            "tool_resources": {}}


async def count(db: Database, table, **where: Any) -> int:
    async with db.read() as conn:
        stmt = select(func.count()).select_from(table).where(*[table.c[k] == v for k, v in where.items()])
        return int((await conn.execute(stmt)).scalar_one())


def test_committed_write_is_visible(store):
    thread = new_thread()

    async def work(db: Database) -> None:
        async with db.write() as conn:
            await objects.insert_object(conn, threads, thread, project_id=PROJECT)
        async with db.read() as conn:
            assert await objects.get_object(conn, threads, thread["id"], project_id=PROJECT) == thread
            assert await objects.get_raw(conn, threads, thread["id"], project_id="proj_other") is None

    store.run(work)


def test_write_that_raises_leaves_no_row(store):
    thread = new_thread()

    async def work(db: Database) -> None:
        with pytest.raises(Boom):
            async with db.write() as conn:
                await objects.insert_object(conn, threads, thread, project_id=PROJECT)
                # Visible inside the transaction…
                assert await objects.get_raw(conn, threads, thread["id"]) is not None
                raise Boom
        # …and gone after it.
        async with db.read() as conn:
            assert await objects.get_raw(conn, threads, thread["id"]) is None
        assert await count(db, threads, id=thread["id"]) == 0

    store.run(work)


def test_write_spanning_tables_is_all_or_nothing(store):
    thread = new_thread()

    async def work(db: Database) -> None:
        with pytest.raises(Boom):
            async with db.write() as conn:
                await objects.insert_object(conn, threads, thread, project_id=PROJECT)
                for i in range(3):
                    message = message_service.new_message(thread["id"], "user",
                                                          [message_service.text_content(str(i))])
                    await message_service.insert(conn, PROJECT, message)
                raise Boom
        assert await count(db, threads, id=thread["id"]) == 0
        assert await count(db, messages, thread_id=thread["id"]) == 0

    store.run(work)


def test_database_error_rolls_back_earlier_statements(store):
    first, duplicate = new_thread(), new_thread()

    async def work(db: Database) -> None:
        async with db.write() as conn:
            await objects.insert_object(conn, threads, duplicate, project_id=PROJECT)
        with pytest.raises(Exception) as err:
            async with db.write() as conn:
                await objects.insert_object(conn, threads, first, project_id=PROJECT)
                await objects.insert_object(conn, threads, duplicate, project_id=PROJECT)  # unique id
        assert not isinstance(err.value, AssertionError)
        assert await count(db, threads, id=first["id"]) == 0
        assert await count(db, threads, id=duplicate["id"]) == 1
        # The database is still usable afterwards (the failed connection went back clean).
        async with db.write() as conn:
            await objects.insert_object(conn, threads, first, project_id=PROJECT)
        assert await count(db, threads, id=first["id"]) == 1

    store.run(work)


def test_modify_that_raises_keeps_the_old_object(store):
    thread = new_thread()

    async def work(db: Database) -> None:
        async with db.write() as conn:
            await objects.insert_object(conn, threads, thread, project_id=PROJECT)
        with pytest.raises(Boom):
            async with db.write() as conn:
                obj = await objects.get_for_update(conn, threads, thread["id"], project_id=PROJECT)
                obj["metadata"] = {"changed": "yes"}
                await objects.save_object(conn, threads, obj)
                raise Boom
        async with db.read() as conn:
            assert (await objects.get_object(conn, threads, thread["id"]))["metadata"] == {}

    store.run(work)


def test_ties_on_created_at_keep_insertion_order(store):
    """Ids are random, so only the insertion sequence can order objects of one second."""
    thread = new_thread()
    made = [message_service.new_message(thread["id"], "user", [message_service.text_content(str(i))],
                                        created_at=thread["created_at"]) for i in range(30)]
    made_ids = [m["id"] for m in made]
    assert made_ids != sorted(made_ids)  # else the test could pass by ordering on id

    async def page_ids(db: Database, **params: Any) -> tuple[list[str], bool]:
        async with db.read() as conn:
            page = await objects.list_page(conn, messages, PageParams(**params), project_id=PROJECT,
                                           thread_id=thread["id"])
        return [orjson.loads(raw)["id"] for raw in page.items], page.has_more

    async def work(db: Database) -> None:
        async with db.write() as conn:
            await objects.insert_object(conn, threads, thread, project_id=PROJECT)
            for message in made:
                await message_service.insert(conn, PROJECT, message)
        assert await page_ids(db, limit=100, order="asc") == (made_ids, False)
        assert await page_ids(db, limit=100, order="desc") == (made_ids[::-1], False)
        assert await page_ids(db, limit=5, order="asc", after=made_ids[9]) == (made_ids[10:15], True)
        assert await page_ids(db, limit=5, order="asc", before=made_ids[9]) == (made_ids[4:9], True)
        assert await page_ids(db, limit=5, order="desc", after=made_ids[9]) == (made_ids[8:3:-1], True)
        assert await page_ids(db, order="asc", after=made_ids[2], before=made_ids[6]) == (made_ids[3:6], False)

    store.run(work)


# --- through HTTP -------------------------------------------------------------------------------------

def project_a_counts(store: Store) -> tuple[int, int]:
    async def work(db: Database) -> tuple[int, int]:
        async with db.read() as conn:
            project = (await conn.execute(select(projects.c.id).where(projects.c.name == "project-a"))).scalar_one()
        return await count(db, threads, project_id=project), await count(db, messages, project_id=project)

    return store.run(work)


@pytest.mark.parametrize(("body", "status"), [
    # the second message is invalid: refused while validating
    ({"messages": [{"role": "user", "content": "fine"}, {"role": "user", "content": []}]}, 400),
    ({"messages": [{"role": "user", "content": "fine"}, {"role": "robot", "content": "x"}]}, 400),
    # refused by the service after the thread and its first message were written: an unknown file
    ({"messages": [{"role": "user", "content": "fine"}],
      "tool_resources": {"file_search": {"vector_stores": [{"file_ids": ["file-1"]}]}}}, 404),
    ({"messages": [{"role": "user", "content": "fine"},
                   {"role": "user", "content": "x", "attachments": [
                       {"file_id": "file-nope", "tools": [{"type": "file_search"}]}]}]}, 404),
])
def test_failed_thread_create_leaves_nothing(http, store, body, status):
    before = project_a_counts(store)
    r = http.post("/threads", json=body)
    assert r.status_code == status, r.text
    assert project_a_counts(store) == before


def test_thread_delete_removes_its_message_rows(client, store):
    t = client.beta.threads.create(messages=[{"role": "user", "content": str(i)} for i in range(3)])
    assert store.run(lambda db: count(db, messages, thread_id=t.id)) == 3
    client.beta.threads.delete(t.id)
    assert store.run(lambda db: count(db, messages, thread_id=t.id)) == 0
    assert store.run(lambda db: count(db, threads, id=t.id)) == 0


def test_concurrent_writes_all_land(client):
    """Many writers at once: none fails with 'database is locked' or a deadlock, none is lost."""
    t = client.beta.threads.create()
    with ThreadPoolExecutor(16) as pool:
        made = list(pool.map(
            lambda i: client.beta.threads.messages.create(t.id, role="user", content=str(i)).id, range(40)))
    listed = [m.id for m in client.beta.threads.messages.list(t.id, order="asc", limit=100)]
    assert sorted(listed) == sorted(made) and len(set(listed)) == 40
    # And a modify racing with creates keeps both.
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: client.beta.threads.update(t.id, metadata={"n": str(i)}), range(16)))
    assert client.beta.threads.retrieve(t.id).metadata["n"] in {str(i) for i in range(16)}


@pytest.mark.parametrize(("url", "env", "args"), [
    ("postgresql://u@127.0.0.1:5432/db", {}, {"ssl": False}),
    ("postgresql://u@localhost/db", {}, {"ssl": False}),
    ("postgresql://u@[::1]:5432/db", {}, {"ssl": False}),
    ("postgresql://u@/db?host=/var/run/postgresql", {}, {"ssl": False}),
    ("postgresql+asyncpg://u@127.0.0.2/db", {}, {"ssl": False}),
    # an explicit setting is never weakened, nor a remote host touched
    ("postgresql://u@127.0.0.1/db?ssl=require", {}, {"ssl": "require"}),
    ("postgresql://u@127.0.0.1/db?sslmode=verify-full", {}, {"ssl": "verify-full"}),
    ("postgresql://u@127.0.0.1/db", {"PGSSLMODE": "require"}, {}),
    ("postgresql://u@db.example.com/db", {}, {}),
    ("postgresql://u@10.0.0.5/db", {}, {}),
    ("postgresql://u@/db?host=127.0.0.1:5432,db.example.com:5432", {}, {}),
])
def test_tls_is_off_only_for_local_postgres_urls_that_say_nothing_of_it(monkeypatch, url, env, args):
    from assistd.store.pg_tls import pg_connect

    for name in ("PGSSLMODE", "PGSSLNEGOTIATION", "PGHOST"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert pg_connect(url).kwargs == args


_SPELLINGS = [  # (query, the ssl= every connection gets)
    ("sslmode=disable", False), ("ssl=disable", False), ("ssl=false", False),
    ("sslmode=allow", "allow"), ("ssl=allow", "allow"),
    ("sslmode=prefer", "prefer"), ("ssl=prefer", "prefer"),
    ("sslmode=require", "require"), ("ssl=require", "require"),
    ("sslmode=verify-ca", "verify-ca"), ("ssl=verify-ca", "verify-ca"),
    ("sslmode=verify-full", "verify-full"), ("ssl=verify-full", "verify-full"), ("ssl=true", "verify-full"),
    ("sslmode=require&ssl=require", "require"),
    ("", False),
]


@pytest.mark.parametrize(("query", "ssl"), _SPELLINGS)
def test_every_connection_gets_the_same_tls_setting_from_either_spelling(monkeypatch, query, ssl):
    """The SQLAlchemy pool, the fast readers and the event bus each call ``asyncpg.connect``: all three with
    the same ``ssl=`` and a DSN or keywords carrying no TLS parameter (asyncpg would send it to the server)."""
    import asyncpg

    from assistd.events.postgres import PostgresBus
    from assistd.store.errors import FastReadUnavailable

    for name in ("PGSSLMODE", "PGSSLNEGOTIATION", "PGHOST"):
        monkeypatch.delenv(name, raising=False)
    calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    async def connect(*args: Any, **kwargs: Any) -> Any:
        calls.append((args, kwargs))
        raise ConnectionRefusedError("recorded")

    monkeypatch.setattr(asyncpg, "connect", connect)
    url = "postgresql://u@127.0.0.1:5432/db" + (f"?{query}" if query else "")

    async def open_all() -> None:
        db = Database(url, pool_size=1)
        with pytest.raises(ConnectionRefusedError):
            async with db.read():
                pass
        with pytest.raises(FastReadUnavailable):
            await db.fetch_row("SELECT 1", [])
        with pytest.raises(ConnectionRefusedError):
            await PostgresBus(url).start()
        await db.close()

    asyncio.run(open_all())
    assert len(calls) == 3
    for args, kwargs in calls:
        assert kwargs["ssl"] == ssl
        text = " ".join(map(str, args)) + " " + " ".join(f"{k}={v}" for k, v in kwargs.items() if k != "ssl")
        assert "ssl" not in text and "server_settings" not in kwargs


def test_certificate_files_make_one_context_for_every_connection(tmp_path):
    import ssl as ssl_module
    import subprocess

    from assistd.store.pg_tls import pg_connect

    key, cert = tmp_path / "k.pem", tmp_path / "c.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=t", "-days", "1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    url = f"postgresql://u@db.example.com/db?sslmode=verify-ca&sslrootcert={cert}&sslcert={cert}&sslkey={key}"
    dsn, kwargs = pg_connect(url)
    assert dsn == "postgresql://u@db.example.com/db"
    context = kwargs["ssl"]
    assert isinstance(context, ssl_module.SSLContext)
    assert context.verify_mode == ssl_module.CERT_REQUIRED and not context.check_hostname
    with pytest.raises(ValueError, match="sslmode=require"):
        pg_connect(f"postgresql://u@db.example.com/db?sslmode=prefer&sslcert={cert}")
    with pytest.raises(ValueError, match="disagree"):
        pg_connect("postgresql://u@db.example.com/db?sslmode=disable&ssl=require")
    with pytest.raises(ValueError, match="not one of"):
        pg_connect("postgresql://u@db.example.com/db?sslmode=sometimes")


def test_an_explicit_tls_requirement_is_kept(is_postgres, database_url):
    """The test server is on loopback: a URL requiring TLS still requires it (it connects only if the
    server has TLS on), one saying nothing connects without it."""
    if not is_postgres:
        pytest.skip("PostgreSQL only")

    async def ping(url: str) -> bool:
        db = Database(url, pool_size=1)
        try:
            return await db.ping()
        finally:
            await db.close()

    assert asyncio.run(ping(database_url))
    tls_on = asyncio.run(_server_tls(database_url))
    assert asyncio.run(ping(database_url + "?ssl=require")) is tls_on


async def _server_tls(url: str) -> bool:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        return await conn.fetchval("SHOW ssl") == "on"
    finally:
        await conn.close()


def test_a_server_answers_a_run_with_tls_spelled_either_way(is_postgres, database_url, upstream, tmp_path):
    """``serve`` opens all three kinds of connection (pool, fast readers, event bus): each spelling of the
    URL's TLS setting gets a run done; ``sslmode=require`` too when the local server has TLS on."""
    from tests.run_helpers import fresh_database, new_assistant, new_thread, sdk, serve, server_env, wait_run

    if not is_postgres:
        pytest.skip("PostgreSQL only")
    queries = ["sslmode=disable", "ssl=disable"]
    if asyncio.run(_server_tls(database_url)):
        queries += ["sslmode=require", "ssl=require"]
    with fresh_database(database_url, tmp_path) as url:
        for query in queries:
            with serve(server_env(f"{url}?{query}", upstream, tmp_path)) as proc:
                client = sdk(proc)
                thread = new_thread(client, f"[reply: over {query}]")
                run = client.beta.threads.runs.create(thread.id, assistant_id=new_assistant(client).id)
                assert wait_run(client, thread.id, run.id, "completed")["status"] == "completed", query
                assert client.beta.threads.runs.retrieve(run.id, thread_id=thread.id).status == "completed"
