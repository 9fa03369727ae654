"""The Files API through the official SDK (and raw HTTP for edge cases), validated against the spec."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote

import httpx
import openai
import orjson
import pytest
from sqlalchemy import select, update

from assistd.blobstore import LocalBlobStore
from assistd.errors import NotFound
from assistd.services import files as file_service
from assistd.store.db import Database
from assistd.store.tables import files as files_table
from assistd.store.tables import projects
from tests.servers import LiveProcess, free_port
from tests.spec import assert_list, assert_schema

ALL_BYTES = bytes(range(256)) * 257


def blob_files(root: Path) -> list[Path]:
    return [p for p in (root / "blobs").rglob("*") if p.is_file()]


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def error_of(exc: pytest.ExceptionInfo) -> dict:
    return exc.value.body if isinstance(exc.value.body, dict) else orjson.loads(exc.value.response.content)["error"]


def test_round_trip_every_byte_value(client, tmp_path, data_dir):
    path = tmp_path / "all bytes.bin"
    path.write_bytes(ALL_BYTES)
    with path.open("rb") as f:
        made = client.files.create(file=f, purpose="user_data")
    raw = assert_schema(made, "OpenAIFile")
    assert raw["id"].startswith("file-") and len(raw["id"]) == 5 + 24
    assert made.object == "file" and made.bytes == len(ALL_BYTES) and made.filename == "all bytes.bin"
    assert made.purpose == "user_data" and made.status == "processed" and made.expires_at is None

    assert client.files.retrieve(made.id) == made
    assert client.files.content(made.id).read() == ALL_BYTES
    raw_response = client.files.with_raw_response.content(made.id)
    assert raw_response.headers["content-type"] == "application/octet-stream"
    assert raw_response.headers["content-length"] == str(len(ALL_BYTES))
    # The blob key is the id, not the name.
    assert [p.name for p in blob_files(data_dir) if p.name == made.id] == [made.id]


def test_every_purpose(client):
    for purpose in ("assistants", "batch", "fine-tune", "vision", "user_data", "evals"):
        made = client.files.create(file=(f"{purpose}.jsonl", b"{}\n"), purpose=purpose)
        assert made.purpose == purpose
        if purpose != "evals":  # the spec's OpenAIFile.purpose enum lacks the `evals` it accepts on upload
            assert_schema(made, "OpenAIFile")
        # "files with purpose=batch expire after 30 days" unless told otherwise
        assert made.expires_at == (made.created_at + 30 * 24 * 3600 if purpose == "batch" else None)


def test_expires_after(client, http):
    made = client.files.create(file=("e.txt", b"e"), purpose="assistants",
                               expires_after={"anchor": "created_at", "seconds": 3600})
    assert_schema(made, "OpenAIFile")
    assert made.expires_at == made.created_at + 3600
    assert client.files.retrieve(made.id).expires_at == made.expires_at

    for fields, param in (
        ({"expires_after[anchor]": "created_at", "expires_after[seconds]": "3599"}, "expires_after.seconds"),
        ({"expires_after[anchor]": "created_at", "expires_after[seconds]": "2592001"}, "expires_after.seconds"),
        ({"expires_after[anchor]": "created_at", "expires_after[seconds]": "soon"}, "expires_after.seconds"),
        ({"expires_after[anchor]": "last_active_at", "expires_after[seconds]": "3600"}, "expires_after.anchor"),
        ({"expires_after[anchor]": "created_at"}, "expires_after.seconds"),
        ({"expires_after[seconds]": "3600"}, "expires_after.anchor"),
        ({"unknown": "1"}, "unknown"),
    ):
        parts = {"purpose": (None, "assistants"), "file": ("a.txt", b"a"),
                 **{k: (None, v) for k, v in fields.items()}}
        r = http.post("/files", files=parts)
        assert r.status_code == 400, (fields, r.text)
        assert r.json()["error"]["param"] == param and r.json()["error"]["type"] == "invalid_request_error"
    # JSON, as a hand-written client would send it
    r = http.post("/files", files={"purpose": (None, "assistants"), "file": ("a.txt", b"a"),
                                   "expires_after": (None, '{"anchor": "created_at", "seconds": 7200}')})
    assert r.status_code == 200, r.text
    assert r.json()["expires_at"] == r.json()["created_at"] + 7200


def test_bad_purpose_and_missing_fields(client, http, data_dir):
    before = len(blob_files(data_dir))
    with pytest.raises(openai.BadRequestError) as err:
        client.files.create(file=("a.txt", b"a"), purpose="assistants_output")  # server-made only
    assert err.value.status_code == 400 and err.value.body["param"] == "purpose"
    assert err.value.body["message"].startswith("Invalid value: 'assistants_output'. Supported values are:")

    # purpose after the file: the bytes were already stored, and must be dropped
    r = http.post("/files", files=[("file", ("a.txt", b"abc" * 1000)), ("purpose", (None, "nope"))])
    assert r.status_code == 400 and r.json()["error"]["param"] == "purpose"
    r = http.post("/files", files={"purpose": (None, "assistants")})
    assert r.status_code == 400, r.text
    assert r.json()["error"] == {"message": "Missing required parameter: 'file'.",
                                 "type": "invalid_request_error", "param": "file", "code": None}
    r = http.post("/files", files={"file": ("a.txt", b"a")})
    assert r.status_code == 400 and r.json()["error"]["param"] == "purpose"
    r = http.post("/files", files=[("file", ("a.txt", b"a")), ("file", ("b.txt", b"b")),
                                   ("purpose", (None, "assistants"))])
    assert r.status_code == 400 and r.json()["error"]["param"] == "file"
    r = http.post("/files", json={"purpose": "assistants"})
    assert r.status_code == 400 and "multipart/form-data" in r.json()["error"]["message"]
    r = http.post("/files", content=b"--x\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nassis",
                  headers={"content-type": "multipart/form-data; boundary=x"})
    assert r.status_code == 400 and "multipart" in r.json()["error"]["message"]
    assert len(blob_files(data_dir)) == before


def test_list_filters_and_pagination(client, http):
    made = [client.files.create(file=(f"p{i}.jsonl", b"{}"), purpose="fine-tune") for i in range(3)]
    client.files.create(file=("other.txt", b"x"), purpose="user_data")

    full = client.files.list(purpose="fine-tune")
    assert_list(full, "OpenAIFile")
    assert all(f.purpose == "fine-tune" for f in full.data) and not full.has_more
    ids = [f.id for f in full.data]
    assert ids[:3] == [m.id for m in reversed(made)]  # newest first

    first = client.files.list(purpose="fine-tune", limit=2)
    assert_list(first, "OpenAIFile")
    assert [f.id for f in first.data] == ids[:2] and first.has_more
    assert [f.id for f in client.files.list(purpose="fine-tune", limit=2)] == ids  # the SDK follows `after`
    asc = client.files.list(purpose="fine-tune", order="asc", after=made[0].id, limit=1)
    assert [f.id for f in asc.data] == [made[1].id] and asc.has_more

    everything = http.get("/files").json()
    assert {m.id for m in made} <= {f["id"] for f in everything["data"]}
    assert any(f["purpose"] == "user_data" for f in everything["data"])
    assert http.get("/files", params={"limit": 10000}).status_code == 200
    for bad in ("0", "10001", "x"):
        r = http.get("/files", params={"limit": bad})
        assert r.status_code == 400 and r.json()["error"]["param"] == "limit", r.text
    r = http.get("/files", params={"order": "sideways"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "order"
    assert http.get("/files", params={"purpose": "nothing-has-this"}).json()["data"] == []


def test_other_project_and_deleted_are_404(client, client_b, data_dir):
    made = client.files.create(file=("mine.txt", b"secret"), purpose="user_data")
    for call in (client_b.files.retrieve, client_b.files.content, client_b.files.delete):
        with pytest.raises(openai.NotFoundError) as err:
            call(made.id)
        assert error_of(err)["message"] == f"No file found with id '{made.id}'."
    assert made.id not in {f.id for f in client_b.files.list()}

    deleted = client.files.delete(made.id)
    assert_schema(deleted, "DeleteFileResponse")
    assert deleted.id == made.id and deleted.object == "file" and deleted.deleted is True
    for call in (client.files.retrieve, client.files.content, client.files.delete):
        with pytest.raises(openai.NotFoundError):
            call(made.id)
    assert made.id not in {f.id for f in client.files.list()}
    assert not [p for p in blob_files(data_dir) if p.name == made.id]


def test_path_traversal_filename_is_only_a_name(client, data_dir):
    made = client.files.create(file=("../../etc/passwd", b"root:x:0:0"), purpose="assistants")
    assert_schema(made, "OpenAIFile")
    assert made.filename == "passwd"
    stored = [p for p in blob_files(data_dir) if p.name == made.id]
    assert len(stored) == 1 and stored[0].read_bytes() == b"root:x:0:0"
    assert not (data_dir / "etc").exists() and not (data_dir.parent / "etc" / "passwd").exists()
    made = client.files.create(file=("..\\..\\windows\\win.ini", b"x"), purpose="assistants")
    assert made.filename == "win.ini"


@pytest.mark.parametrize(("sent", "shown"), [
    ('quo"te.txt', 'quo"te.txt'),
    ("new\nline\r.csv", "newline.csv"),
    ("üñí 文件.pdf", "üñí 文件.pdf"),
    ("tab\tand;semi=colon", "taband;semi=colon"),
    ("back\\slash", "slash"),
    ("page.html", "page.html"),
])
def test_content_disposition_is_safe(client, sent, shown):
    made = client.files.create(file=(sent, b"x"), purpose="user_data")
    assert made.filename == shown
    response = client.files.with_raw_response.content(made.id)
    disposition = response.headers["content-disposition"]
    assert disposition.isascii() and "\n" not in disposition and "\r" not in disposition
    assert disposition.startswith('attachment; filename="')
    fallback = disposition.split('filename="', 1)[1].split('"', 1)[0]
    assert '"' not in fallback and len(fallback) == len(shown)
    assert unquote(disposition.split("filename*=UTF-8''", 1)[1]) == shown
    # Whatever the name says, the bytes are an attachment the browser must not sniff (tests/security too).
    assert response.headers["content-type"] == "application/octet-stream"
    assert response.headers["x-content-type-options"] == "nosniff"


def test_large_upload_is_streamed(client, server, tmp_path):
    """50 MB in and out while the server's resident memory barely moves: nothing buffers the file."""
    size = 50 * 1024 * 1024
    path = tmp_path / "big.bin"
    block = os.urandom(1024 * 1024)
    with path.open("wb") as f:
        for _ in range(size // len(block)):
            f.write(block)
    pid = server.proc.pid
    before = rss_kib(pid)
    with path.open("rb") as f:
        made = client.files.create(file=f, purpose="batch")
    grown = rss_kib(pid) - before
    assert made.bytes == size
    assert grown < 20 * 1024, f"server RSS grew by {grown} KiB for a 50 MiB upload"

    before = rss_kib(pid)
    digest = hashlib.sha256()
    with client.files.with_streaming_response.content(made.id) as response:
        for chunk in response.iter_bytes(1024 * 1024):
            digest.update(chunk)
    assert digest.digest() == hashlib.sha256(block * (size // len(block))).digest()
    grown = rss_kib(pid) - before
    assert grown < 20 * 1024, f"server RSS grew by {grown} KiB for a 50 MiB download"
    client.files.delete(made.id)


# --- the size limit, on a server of its own ------------------------------------------------------------

LIMIT = 64 * 1024
LIMIT_KEY = "sk-test-file-limit-0123456789"


@pytest.fixture(scope="module")
def small_server(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveProcess, Path]]:
    where = tmp_path_factory.mktemp("limit")
    port = free_port()
    env = {"ASSISTD_DATABASE_URL": database_url, "ASSISTD_DATA_DIR": str(where), "ASSISTD_WORKERS": "0",
           "ASSISTD_API_KEYS": f"{LIMIT_KEY}:project-file-limit", "ASSISTD_MAX_FILE_BYTES": str(LIMIT)}
    with LiveProcess(["serve", "--port", str(port)], port, env=env) as proc:
        yield proc, where


def test_size_limit(small_server):
    proc, where = small_server
    small = openai.OpenAI(base_url=f"{proc.url}/v1", api_key=LIMIT_KEY, max_retries=0, timeout=30)
    exact = small.files.create(file=("exact.bin", b"x" * LIMIT), purpose="assistants")
    assert exact.bytes == LIMIT

    with pytest.raises(openai.APIStatusError) as err:
        small.files.create(file=("over.bin", b"x" * (LIMIT + 1)), purpose="assistants")
    assert err.value.status_code == 413
    assert err.value.body["param"] == "file" and err.value.body["type"] == "invalid_request_error"

    # Far over the limit (refused on Content-Length), and chunked with no length (refused while streaming).
    with pytest.raises(openai.APIStatusError) as err:
        small.files.create(file=("huge.bin", b"x" * (8 * 1024 * 1024)), purpose="assistants")
    assert err.value.status_code == 413

    def chunked() -> Iterator[bytes]:
        yield (b'--b\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nassistants\r\n'
               b'--b\r\nContent-Disposition: form-data; name="file"; filename="c.bin"\r\n\r\n')
        for _ in range(4):
            yield b"y" * LIMIT
        yield b"\r\n--b--\r\n"

    r = httpx.post(f"{proc.url}/v1/files", content=chunked(), timeout=30,
                   headers={"authorization": f"Bearer {LIMIT_KEY}", "content-type": "multipart/form-data; boundary=b"})
    assert r.status_code == 413 and r.json()["error"]["param"] == "file", r.text

    assert [f.id for f in small.files.list()] == [exact.id]
    assert [p.name for p in blob_files(where)] == [exact.id]  # no partial or temporary blob left


# --- expiry and the service API, in-process against the server's database ---------------------------------

def expire(database_url: str, file_id: str) -> None:
    async def main() -> None:
        db = Database(database_url)
        try:
            async with db.write() as conn:
                raw = (await conn.execute(select(files_table.c.data).where(files_table.c.id == file_id))).scalar_one()
                obj = {**orjson.loads(raw), "expires_at": 1}
                await conn.execute(update(files_table).where(files_table.c.id == file_id)
                                   .values(expires_at=1, data=orjson.dumps(obj).decode()))
        finally:
            await db.close()

    asyncio.run(main())


def test_expired_files_are_gone(client, database_url, data_dir):
    made = [client.files.create(file=(f"x{i}.txt", b"x"), purpose="vision",
                                expires_after={"anchor": "created_at", "seconds": 3600}) for i in range(3)]
    for m in made:
        expire(database_url, m.id)
    assert not {m.id for m in made} & {f.id for f in client.files.list()}
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(made[0].id)
    with pytest.raises(openai.NotFoundError):
        client.files.delete(made[1].id)
    assert not [p for p in blob_files(data_dir) if p.name in (made[0].id, made[1].id)]  # cleaned on access
    client.files.create(file=("new.txt", b"n"), purpose="vision")  # an upload sweeps the project's expired
    assert not [p for p in blob_files(data_dir) if p.name == made[2].id]


def test_service_api(client, database_url, data_dir):
    """What code_interpreter and vector stores call: create_file, get_file, require_files, on_delete hooks."""
    blobs = LocalBlobStore(data_dir / "blobs")
    hooked: list[tuple[str, str]] = []

    async def hook(conn, project_id: str, file_id: str) -> None:
        assert conn.in_transaction()
        hooked.append((project_id, file_id))

    async def chunks():
        yield b"print('hi')\n"
        yield b"# output"

    async def main() -> None:
        db = Database(database_url)
        try:
            async with db.read() as conn:
                a, b = [(await conn.execute(select(projects.c.id).where(projects.c.name == name))).scalar_one()
                        for name in ("project-a", "project-b")]
            async with db.write() as conn:
                out = await file_service.create_file(conn, blobs, a, "out.py", "assistants_output",
                                                     chunks())
            async with db.read() as conn:
                assert await file_service.get_file(conn, a, out["id"]) == out
                with pytest.raises(NotFound) as err:
                    await file_service.get_file(conn, b, out["id"], param="file_id")
                assert err.value.param == "file_id" and err.value.status_code == 404
                got = await file_service.require_files(conn, a, [out["id"], out["id"]], "file_ids")
                assert [f["id"] for f in got] == [out["id"], out["id"]]
                with pytest.raises(NotFound) as err:
                    await file_service.require_files(conn, a, [out["id"], "file-nope"], "file_ids")
                assert err.value.param == "file_ids" and "file-nope" in err.value.message
            assert await file_service.read_content(blobs, out, 100) == b"print('hi')\n# output"
            assert b"".join([c async for c in await file_service.open_content(blobs, out)]).endswith(b"output")
            async with db.write() as conn:
                assert (await file_service.remove_file(conn, a, out["id"], [hook]))["id"] == out["id"]
            await file_service.discard_blob(blobs, out)
            assert hooked == [(a, out["id"])]
            assert not await blobs.exists(out["id"])
        finally:
            await db.close()

    asyncio.run(main())

    async def kept() -> str:
        db = Database(database_url)
        try:
            async with db.write() as conn:
                a = (await conn.execute(select(projects.c.id).where(projects.c.name == "project-a"))).scalar_one()
                return (await file_service.create_file(conn, blobs, a, "chart.png", "assistants_output",
                                                       chunks()))["id"]
        finally:
            await db.close()

    file_id = asyncio.run(kept())  # what the API then shows of a server-made file
    assert_schema(client.files.retrieve(file_id), "OpenAIFile")
    assert file_id in {f.id for f in client.files.list(purpose="assistants_output")}
    assert client.files.content(file_id).read() == b"print('hi')\n# output"
    assert client.files.with_raw_response.content(file_id).headers["content-type"] == "application/octet-stream"
