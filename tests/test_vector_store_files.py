"""Vector store files and file batches through the official SDK, validated against the spec: every
endpoint, ingestion of each supported type, failures (unsupported, corrupt), cancel, and file deletion."""

from __future__ import annotations

import io
import json

import openai
import pytest

from tests.run_helpers import fresh_database, server_env
from tests.servers import LiveProcess, free_port
from tests.spec import assert_list, assert_schema

COUNTS0 = {"in_progress": 0, "completed": 0, "failed": 0, "cancelled": 0, "total": 0}


def upload(client, name: str, data: bytes) -> str:
    return client.files.create(file=(name, data), purpose="assistants").id


def check_file(obj) -> dict:
    raw = assert_schema(obj, "VectorStoreFileObject")
    assert raw["object"] == "vector_store.file"
    assert (raw["last_error"] is not None) == (raw["status"] == "failed"), raw
    return raw


def counts(**given: int) -> dict:
    out = {**COUNTS0, **given}
    out["total"] = sum(v for k, v in out.items() if k != "total")
    return out


def tiny_pdf(text: str) -> bytes:
    """A one-page PDF written by hand (Helvetica), with a correct xref table."""
    stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET"
    bodies = ["<< /Type /Catalog /Pages 2 0 R >>", "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
              "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
              "/Resources << /Font << /F1 5 0 R >> >> >>",
              f"<< /Length {len(stream)} >>\nstream\n{stream}\nendstream",
              "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    out = io.BytesIO(b"%PDF-1.4\n")
    out.seek(0, 2)
    offsets = []
    for i, body in enumerate(bodies, start=1):
        offsets.append(out.tell())
        out.write(f"{i} 0 obj\n{body}\nendobj\n".encode())
    xref = out.tell()
    out.write(f"xref\n0 {len(bodies) + 1}\n0000000000 65535 f \n".encode())
    out.write("".join(f"{off:010d} 00000 n \n" for off in offsets).encode())
    out.write(f"trailer\n<< /Size {len(bodies) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode())
    return out.getvalue()


def tiny_docx(text: str) -> bytes:
    from docx import Document

    doc = Document()
    doc.add_paragraph(text)
    buf = io.BytesIO()
    doc.save(buf)
    return buf.getvalue()


KINDS = {
    "notes.txt": b"plain text about aardvarks",
    "readme.md": b"# Title\n\nmarkdown about bobcats",
    "page.html": b"<html><body><p>html about cheetahs</p><script>hidden()</script></body></html>",
    "data.json": json.dumps({"animal": "dingo", "note": "json about dingos"}).encode(),
    "table.csv": b"animal,fact\nelephant,csv about elephants\n",
    "code.py": b"def ferret():\n    return 'python about ferrets'\n",
    "doc.pdf": tiny_pdf("pdf about gazelles"),
    "doc.docx": tiny_docx("docx about hyenas"),
}
WORDS = dict(zip(KINDS, ["aardvarks", "bobcats", "cheetahs", "dingos", "elephants", "ferrets", "gazelles", "hyenas"],
                 strict=True))


def test_every_supported_type_is_ingested(client):
    store = client.vector_stores.create(name="kinds")
    batch = client.vector_stores.file_batches.upload_and_poll(store.id, files=list(KINDS.items()))
    raw = assert_schema(batch, "VectorStoreFileBatchObject")
    assert raw["status"] == "completed" and raw["file_counts"] == counts(completed=len(KINDS)), raw
    files = {f.id: check_file(f) for f in client.vector_stores.files.list(store.id, limit=100)}
    names = {fid: client.files.retrieve(fid).filename for fid in files}
    for fid, name in names.items():
        sdk_page = client.vector_stores.files.content(fid, vector_store_id=store.id)  # the SDK reads it too
        raw_page = client.vector_stores.files.with_raw_response.content(fid, vector_store_id=store.id)
        body = assert_schema(raw_page.http_response.json(), "VectorStoreFileContentResponse")
        assert [p.text for p in sdk_page.data] == [p["text"] for p in body["data"]]
        assert body["object"] == "vector_store.file_content.page" and body["has_more"] is False
        text = " ".join(part["text"] for part in body["data"])
        assert WORDS[name] in text, (name, text)
        assert all(part["type"] == "text" for part in body["data"])
        assert "hidden()" not in text
        hits = client.vector_stores.search(store.id, query=WORDS[name]).data
        assert hits and hits[0].file_id == fid and hits[0].filename == name


def test_unsupported_and_corrupt_files_fail(client):
    store = client.vector_stores.create()
    cases = {"blob.bin": (b"\x00\x01\x02\xff" * 10, "unsupported_file"),
             "image.png": (b"\x89PNG\r\n\x1a\n\x00\x00", "unsupported_file"),
             "broken.pdf": (b"%PDF-1.4 this is not really a pdf", "invalid_file"),
             "empty.txt": (b"   ", "invalid_file")}
    for name, (data, code) in cases.items():
        done = client.vector_stores.files.create_and_poll(file_id=upload(client, name, data), vector_store_id=store.id)
        raw = check_file(done)
        assert raw["status"] == "failed" and raw["last_error"]["code"] == code, raw
        assert raw["last_error"]["message"] and raw["usage_bytes"] == 0
    after = assert_schema(client.vector_stores.retrieve(store.id), "VectorStoreObject")
    assert after["status"] == "completed" and after["file_counts"] == counts(failed=4) and after["usage_bytes"] == 0
    failed = assert_list(client.vector_stores.files.list(store.id, filter="failed"), "VectorStoreFileObject")
    assert len(failed["data"]) == 4


def test_file_endpoints(client, http):
    store = client.vector_stores.create()
    fid = upload(client, "one.txt", b"The quick brown fox jumps over the lazy dog.")
    made = client.vector_stores.files.create(vector_store_id=store.id, file_id=fid, attributes={"a": "x", "n": 3},
                                             chunking_strategy={"type": "static", "static": {
                                                 "max_chunk_size_tokens": 100, "chunk_overlap_tokens": 0}})
    raw = check_file(made)
    assert raw["status"] == "in_progress" and raw["id"] == fid and raw["vector_store_id"] == store.id
    assert raw["attributes"] == {"a": "x", "n": 3} and raw["usage_bytes"] == 0
    done = check_file(client.vector_stores.files.poll(fid, vector_store_id=store.id))
    assert done["status"] == "completed" and done["usage_bytes"] > 0 and done["created_at"] == raw["created_at"]
    assert done["chunking_strategy"]["static"] == {"max_chunk_size_tokens": 100, "chunk_overlap_tokens": 0}
    assert check_file(client.vector_stores.files.retrieve(fid, vector_store_id=store.id)) == done

    updated = check_file(client.vector_stores.files.update(fid, vector_store_id=store.id,
                                                          attributes={"a": "y", "flag": True}))
    assert updated["attributes"] == {"a": "y", "flag": True}
    hits = client.vector_stores.search(store.id, query="fox", filters={"type": "eq", "key": "a", "value": "y"})
    assert [h.file_id for h in hits.data] == [fid] and hits.data[0].attributes == {"a": "y", "flag": True}

    other = upload(client, "two.txt", b"Another document entirely.")
    client.vector_stores.files.create_and_poll(file_id=other, vector_store_id=store.id)
    page = assert_list(client.vector_stores.files.list(store.id, limit=1, order="asc"), "VectorStoreFileObject")
    assert [f["id"] for f in page["data"]] == [fid] and page["has_more"] is True
    page = assert_list(client.vector_stores.files.list(store.id, limit=1, order="asc", after=fid),
                       "VectorStoreFileObject")
    assert [f["id"] for f in page["data"]] == [other] and page["has_more"] is False
    assert client.vector_stores.files.list(store.id, filter="in_progress").data == []
    r = http.get(f"/vector_stores/{store.id}/files", params={"filter": "done"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "filter"

    usage = client.vector_stores.retrieve(store.id).usage_bytes
    gone = client.vector_stores.files.delete(fid, vector_store_id=store.id)
    assert assert_schema(gone, "DeleteVectorStoreFileResponse") == {
        "id": fid, "object": "vector_store.file.deleted", "deleted": True}
    after = assert_schema(client.vector_stores.retrieve(store.id), "VectorStoreObject")
    assert after["file_counts"] == counts(completed=1) and after["usage_bytes"] == usage - done["usage_bytes"]
    assert client.files.retrieve(fid).id == fid  # the File itself stays
    assert fid not in {h.file_id for h in client.vector_stores.search(store.id, query="fox").data}
    for call in (lambda: client.vector_stores.files.retrieve(fid, vector_store_id=store.id),
                 lambda: client.vector_stores.files.delete(fid, vector_store_id=store.id),
                 lambda: client.vector_stores.files.update(fid, vector_store_id=store.id, attributes={}),
                 lambda: list(client.vector_stores.files.content(fid, vector_store_id=store.id))):
        with pytest.raises(openai.NotFoundError):
            call()


@pytest.mark.parametrize("body,status,param", [
    ({"file_id": "file-missing"}, 404, "file_id"),
    ({"file_id": "f", "attributes": {f"k{i}": i for i in range(17)}}, 400, "attributes"),
    ({"file_id": "f", "attributes": {"k": "v" * 513}}, 400, "attributes.k"),
    ({"file_id": "f", "attributes": {"k": None}}, 400, "attributes.k"),
    ({"file_id": "f", "chunking_strategy": {"type": "static", "static": {"max_chunk_size_tokens": 5000,
                                                                         "chunk_overlap_tokens": 0}}},
     400, "chunking_strategy.static.max_chunk_size_tokens"),
    ({}, 400, "file_id"),
])
def test_file_create_errors(client, http, body, status, param):
    store = client.vector_stores.create()
    r = http.post(f"/vector_stores/{store.id}/files", json=body)
    assert r.status_code == status and r.json()["error"]["param"] == param, r.text


def test_reattaching_reingests_once(client):
    store = client.vector_stores.create()
    text = " ".join(f"sentence number {i} about reattachment." for i in range(200))
    fid = upload(client, "long.txt", text.encode())
    first = client.vector_stores.files.create_and_poll(file_id=fid, vector_store_id=store.id)
    chunks_auto = list(client.vector_stores.files.content(fid, vector_store_id=store.id))
    again = client.vector_stores.files.create_and_poll(file_id=fid, vector_store_id=store.id, chunking_strategy={
        "type": "static", "static": {"max_chunk_size_tokens": 100, "chunk_overlap_tokens": 0}})
    assert first.status == again.status == "completed"
    chunks_small = list(client.vector_stores.files.content(fid, vector_store_id=store.id))
    assert len(chunks_small) > len(chunks_auto)
    assert client.vector_stores.retrieve(store.id).file_counts.total == 1


def test_batches(client, http):
    store = client.vector_stores.create()
    ids = [upload(client, f"b{i}.txt", f"batch document {i} mentions walrus{i}".encode()) for i in range(3)]
    batch = client.vector_stores.file_batches.create_and_poll(store.id, file_ids=ids, attributes={"src": "batch"})
    raw = assert_schema(batch, "VectorStoreFileBatchObject")
    assert raw["id"].startswith("vsfb_") and raw["object"] == "vector_store.files_batch"
    assert raw["vector_store_id"] == store.id and raw["status"] == "completed"
    assert raw["file_counts"] == counts(completed=3)
    assert assert_schema(client.vector_stores.file_batches.retrieve(batch.id, vector_store_id=store.id),
                         "VectorStoreFileBatchObject") == raw
    listed = assert_list(client.vector_stores.file_batches.list_files(batch.id, vector_store_id=store.id,
                                                                      order="asc"), "VectorStoreFileObject")
    assert [f["id"] for f in listed["data"]] == ids and all(f["attributes"] == {"src": "batch"} for f in listed["data"])
    page = client.vector_stores.file_batches.list_files(batch.id, vector_store_id=store.id, limit=2, filter="completed")
    assert len(page.data) == 2 and page.has_more is True
    assert client.vector_stores.file_batches.list_files(batch.id, vector_store_id=store.id, filter="failed").data == []

    # per-file settings
    extra = upload(client, "x.txt", b"per file settings narwhal")
    second = client.vector_stores.file_batches.create_and_poll(store.id, files=[
        {"file_id": extra, "attributes": {"k": 1}, "chunking_strategy": {
            "type": "static", "static": {"max_chunk_size_tokens": 300, "chunk_overlap_tokens": 100}}}])
    assert second.file_counts.completed == 1
    f = check_file(client.vector_stores.files.retrieve(extra, vector_store_id=store.id))
    assert f["attributes"] == {"k": 1} and f["chunking_strategy"]["static"]["max_chunk_size_tokens"] == 300
    assert client.vector_stores.retrieve(store.id).file_counts.completed == 4
    # cancelling a finished batch changes nothing
    assert client.vector_stores.file_batches.cancel(batch.id, vector_store_id=store.id).status == "completed"

    for body, status, param in [
        ({"files": [{"file_id": extra}, {"file_id": "file-nope"}]}, 404, "files[1].file_id"),
        ({"file_ids": [extra, "file-nope"]}, 404, "file_ids"),
        ({"file_ids": [extra], "files": [{"file_id": extra}]}, 400, "files"),
        ({}, 400, "file_ids"),
        ({"file_ids": []}, 400, "file_ids"),
    ]:
        r = http.post(f"/vector_stores/{store.id}/file_batches", json=body)
        assert r.status_code == status and r.json()["error"]["param"] == param, (body, r.text)
    with pytest.raises(openai.NotFoundError):
        client.vector_stores.file_batches.retrieve("vsfb_nope", vector_store_id=store.id)


def test_deleting_a_file_removes_it_from_every_store(client):
    fid = upload(client, "shared.txt", b"shared knowledge about quokkas")
    keep = upload(client, "keep.txt", b"other knowledge about wombats")
    one = client.vector_stores.create(file_ids=[fid, keep])
    two = client.vector_stores.create(file_ids=[fid])
    for store in (one, two):
        client.vector_stores.files.poll(fid, vector_store_id=store.id)
    client.vector_stores.files.poll(keep, vector_store_id=one.id)
    assert client.vector_stores.search(two.id, query="quokkas").data
    client.files.delete(fid)
    for store, left in ((one, 1), (two, 0)):
        raw = assert_schema(client.vector_stores.retrieve(store.id), "VectorStoreObject")
        assert raw["file_counts"] == counts(completed=left), raw
        assert fid not in {f.id for f in client.vector_stores.files.list(store.id)}
        assert all(h.file_id != fid for h in client.vector_stores.search(store.id, query="quokkas").data)
    assert client.vector_stores.retrieve(two.id).usage_bytes == 0


# --- an API-only server (ASSISTD_WORKERS=0): nothing ingests, so batches stay in progress ---------------------

@pytest.fixture(scope="module")
def api_only(database_url, upstream, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("api-only")
    with fresh_database(database_url, tmp) as url:
        port = free_port()
        env = server_env(url, upstream, tmp, ASSISTD_WORKERS="0", ASSISTD_EMBEDDINGS="upstream:text-embedding-3-small")
        with LiveProcess(["serve", "--port", str(port)], port, env=env) as proc:
            yield openai.OpenAI(base_url=f"{proc.url}/v1", api_key="sk-dev", max_retries=0, timeout=30)


def test_cancel_batch(api_only):
    client = api_only
    store = client.vector_stores.create()
    ids = [upload(client, f"c{i}.txt", b"cancel me") for i in range(3)]
    single = upload(client, "single.txt", b"not in the batch")
    client.vector_stores.files.create(vector_store_id=store.id, file_id=single)
    batch = client.vector_stores.file_batches.create(store.id, file_ids=ids)
    raw = assert_schema(batch, "VectorStoreFileBatchObject")
    assert raw["status"] == "in_progress" and raw["file_counts"] == counts(in_progress=3)
    assert client.vector_stores.retrieve(store.id).file_counts.in_progress == 4
    cancelled = assert_schema(client.vector_stores.file_batches.cancel(batch.id, vector_store_id=store.id),
                              "VectorStoreFileBatchObject")
    assert cancelled["status"] == "cancelled" and cancelled["file_counts"] == counts(cancelled=3)
    files = client.vector_stores.file_batches.list_files(batch.id, vector_store_id=store.id, filter="cancelled")
    assert sorted(f.id for f in files.data) == sorted(ids)
    for f in files.data:
        assert check_file(f)["status"] == "cancelled"
    raw = assert_schema(client.vector_stores.retrieve(store.id), "VectorStoreObject")
    assert raw["status"] == "in_progress" and raw["file_counts"] == counts(in_progress=1, cancelled=3)
    assert client.vector_stores.files.retrieve(single, vector_store_id=store.id).status == "in_progress"
    # cancelling again is harmless
    assert client.vector_stores.file_batches.cancel(batch.id, vector_store_id=store.id).status == "cancelled"
