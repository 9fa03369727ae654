"""A damaged or foreign archive: a clear error naming the line or object, and the database as it was.

Also conflicts (an id already present with other content) and objects in OpenAI's own shape. These need
no server: the archives are written here and imported with the CLI into a database of the session's kind.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import pytest

from assistd.transfer.archive import ArchiveWriter, blob_member, kind_member
from tests.run_helpers import fresh_database
from tests.transfer_helpers import cli, members, ok, rewrite

NOW = 1_765_000_000
FILE_BYTES = b"hello, archive\n" * 100


def _objects() -> dict[str, list[dict[str, Any]]]:
    thread = {"id": "thread_t1", "object": "thread", "created_at": NOW, "metadata": {}, "tool_resources": {}}
    return {
        "files": [{"id": "file-f1", "object": "file", "bytes": len(FILE_BYTES), "created_at": NOW,
                   "filename": "a.txt", "purpose": "assistants", "status": "processed"}],
        "assistants": [{"id": "asst_a1", "object": "assistant", "created_at": NOW, "name": "a", "description": None,
                        "model": "gpt-4o-mini", "instructions": None, "tools": [], "tool_resources": {},
                        "metadata": {}, "top_p": 1.0, "temperature": 1.0, "reasoning_effort": None,
                        "response_format": "auto"}],
        "threads": [thread],
        "messages": [{"id": f"msg_m{i}", "object": "thread.message", "created_at": NOW + i, "assistant_id": None,
                      "thread_id": "thread_t1", "run_id": None, "role": "user",
                      "content": [{"type": "text", "text": {"value": f"m{i}", "annotations": []}}],
                      "attachments": [], "metadata": {}, "status": "completed", "incomplete_details": None,
                      "completed_at": NOW + i, "incomplete_at": None} for i in range(3)],
    }


def write_archive(path: Path, objs: dict[str, list[dict[str, Any]]] | None = None, *,
                  source: str = "assistd", file_bytes: bytes = FILE_BYTES,
                  projects: dict[str, dict[str, list[dict[str, Any]]]] | None = None,
                  project_rows: dict[str, Any] | None = None) -> Path:
    """An archive of ``projects`` (name → objects by kind), by default one project "errors" of ``objs``;
    ``project_rows``: the manifest keys of each project beyond its dir and name (limits, usage_daily)."""
    projects = projects or {"errors": _objects() if objs is None else objs}
    writer = ArchiveWriter(path, header={"source": source, "exported_at": NOW})
    for n, project_objs in enumerate(projects.values()):
        for kind in ("files", "vector_stores", "vector_store_files", "assistants", "threads", "runs", "messages",
                     "run_steps"):
            member = writer.jsonl(kind_member(str(n), kind))
            for obj in project_objs.get(kind, []):
                member.add(orjson.dumps(obj))
            member.close()
            if kind == "files":
                for f in project_objs.get("files", []):
                    writer.add_bytes(blob_member(str(n), f["id"]), file_bytes)
    writer.close({"exported_at": NOW, "projects": [{"dir": str(n), "name": name, **(project_rows or {})}
                                                   for n, name in enumerate(projects)]})
    return path


def dump(url: str) -> dict[str, list[tuple[str, str]]]:
    """Every object row of the database: what must not change when an import fails."""
    from sqlalchemy import select

    from assistd.store.db import Database
    from assistd.transfer.export import TABLES

    async def read() -> dict[str, list[tuple[str, str]]]:
        db = Database(url)
        try:
            async with db.read() as conn:
                return {kind: [tuple(r) for r in await conn.execute(select(t.c.id, t.c.data).order_by(t.c.seq))]
                        for kind, t in TABLES.items()}
        finally:
            await db.close()

    return asyncio.run(read())


@pytest.fixture
def loaded(database_url: str, tmp_path: Path):
    """A database holding the good archive, and the good archive."""
    good = write_archive(tmp_path / "good.tar")
    with fresh_database(database_url, tmp_path) as url:
        ok(cli("import", str(good), database_url=url, data_dir=tmp_path / "data"))
        yield url, good


def _import_fails(url: str, archive: Path, data_dir: Path, *expected: str) -> None:
    before = dump(url)
    result = cli("import", str(archive), database_url=url, data_dir=data_dir)
    assert result.returncode == 2, (result.stdout, result.stderr)
    for text in expected:
        assert text in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert dump(url) == before


def _changed_message(name: str, data: bytes) -> bytes | None:
    if name.endswith("messages.jsonl"):
        lines = data.split(b"\n")
        lines[1] = b'{"id": "msg_m1", "object": "thread.message", '  # cut short
        return b"\n".join(lines)
    return data


def test_malformed_line(loaded, tmp_path):
    url, good = loaded
    bad = tmp_path / "bad.tar"
    rewrite(good, bad, lambda name, data: _changed_message(name, data))
    _import_fails(url, bad, tmp_path / "data", "projects/0/messages.jsonl line 2", "not valid JSON")


def test_line_that_is_not_an_object_of_its_kind(loaded, tmp_path):
    url, good = loaded
    bad = tmp_path / "bad.tar"
    rewrite(good, bad, lambda name, data: data.replace(b'"object":"thread"', b'"object":"nope"'))
    _import_fails(url, bad, tmp_path / "data", "projects/0/threads.jsonl line 1", "expected object 'thread'")


def test_wrong_format_version(loaded, tmp_path):
    url, good = loaded
    bad = tmp_path / "v99.tar"
    rewrite(good, bad, lambda name, data: data.replace(b'"format_version": 1', b'"format_version": 99'))
    assert b'"format_version": 99' in members(bad)["assistd-archive.json"]
    _import_fails(url, bad, tmp_path / "data", "format version 99 is not supported")


@pytest.mark.parametrize("compressed", [False, True])
def test_truncated_archive(loaded, tmp_path, compressed):
    url, _ = loaded
    whole = write_archive(tmp_path / ("t.tar.gz" if compressed else "t.tar"))
    cut = tmp_path / ("cut.tar.gz" if compressed else "cut.tar")
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size * 2 // 3])
    _import_fails(url, cut, tmp_path / "data", "truncated")


def test_file_whose_checksum_fails(database_url, tmp_path):
    good = write_archive(tmp_path / "good.tar")
    raw = good.read_bytes()
    assert raw.count(FILE_BYTES) == 1
    bad = tmp_path / "bad.tar"
    bad.write_bytes(raw.replace(FILE_BYTES, FILE_BYTES[:-2] + b"?\n"))  # same size, other bytes
    with fresh_database(database_url, tmp_path) as url:
        ok(cli("migrate", database_url=url, data_dir=tmp_path / "data"))
        _import_fails(url, bad, tmp_path / "data", "file file-f1", "checksum mismatch")
        assert not any((tmp_path / "data").rglob("file-f1"))  # no blob left behind either


def test_conflicts_are_listed_and_nothing_is_overwritten(loaded, tmp_path):
    url, _ = loaded
    objs = _objects()
    objs["threads"][0]["metadata"] = {"changed": "yes"}
    objs["messages"].append({**objs["messages"][0], "id": "msg_new", "created_at": NOW + 10})
    other = write_archive(tmp_path / "other.tar", objs)
    before = dump(url)
    result = cli("import", str(other), database_url=url, data_dir=tmp_path / "data")
    assert result.returncode == 1, result
    assert "conflict: thread thread_t1 already exists with other content" in result.stdout, result.stdout
    after = dump(url)
    assert after["threads"] == before["threads"]
    assert [i for i, _ in after["messages"]] == [i for i, _ in before["messages"]] + ["msg_new"]


def test_objects_in_openai_shape(database_url, tmp_path):
    """What the official SDK's model_dump() returns from another server: unknown fields kept and reported,
    missing ones filled, unfinished runs ended; a file without bytes skipped and reported."""
    objs = _objects()
    objs["assistants"][0]["reasoning_effort"] = None
    objs["assistants"][0]["some_future_field"] = {"x": 1}
    del objs["assistants"][0]["response_format"]
    objs["files"][0]["expires_at"] = None
    objs["files"][0]["status_details"] = None
    objs["files"].append({**objs["files"][0], "id": "file-nobytes"})
    objs["runs"] = [{"id": "run_r1", "object": "thread.run", "created_at": NOW, "thread_id": "thread_t1",
                     "assistant_id": "asst_a1", "status": "requires_action", "expires_at": NOW + 600,
                     "required_action": {"type": "submit_tool_outputs", "submit_tool_outputs": {"tool_calls": []}},
                     "model": "gpt-4o-mini", "instructions": "", "tools": []}]
    objs["run_steps"] = [{"id": "step_s1", "object": "thread.run.step", "created_at": NOW, "run_id": "run_r1",
                          "thread_id": "thread_t1", "assistant_id": "asst_a1", "type": "tool_calls",
                          "status": "in_progress", "step_details": {"type": "tool_calls", "tool_calls": []}}]
    archive = write_archive(tmp_path / "openai.tar.gz", objs, source="openai-api")
    # The archive lists file-nobytes but has no bytes for it: drop that member's absence from the check.
    with fresh_database(database_url, tmp_path) as url:
        result = ok(cli("import", str(archive), database_url=url, data_dir=tmp_path / "data"))
        out = result.stdout
        assert "kept 1 assistants field 'some_future_field'" in out, out
        assert "filled missing assistants field 'response_format'" in out, out
        assert "1 unfinished runs imported as expired" in out, out
        rows = dump(url)
        assistant = orjson.loads(rows["assistants"][0][1])
        assert assistant["some_future_field"] == {"x": 1} and assistant["response_format"] == "auto"
        run = orjson.loads(rows["runs"][0][1])
        assert run["status"] == "expired" and run["expired_at"] == NOW and run["required_action"] is None
        step = orjson.loads(rows["run_steps"][0][1])
        assert step["status"] == "expired" and step["expired_at"] == NOW
        files = {i: orjson.loads(d) for i, d in rows["files"]}
        assert "expires_at" not in files["file-f1"]


def test_file_listed_without_bytes_is_skipped(database_url, tmp_path):
    objs = _objects()
    good = write_archive(tmp_path / "good.tar", objs)
    missing = tmp_path / "missing.tar"
    rewrite(good, missing, lambda name, data: None if name.startswith("projects/0/files/") else data)
    with fresh_database(database_url, tmp_path) as url:
        out = ok(cli("import", str(missing), database_url=url, data_dir=tmp_path / "data")).stdout
        assert "skipped: file file-f1: its bytes are not in the archive" in out, out
        assert dump(url)["files"] == []


def _renamed(objs: dict[str, list[dict[str, Any]]], suffix: str) -> dict[str, list[dict[str, Any]]]:
    """The same objects under other ids (a second project's)."""
    return orjson.loads(orjson.dumps(objs).replace(b'_t1"', f'_t1{suffix}"'.encode())
                        .replace(b'"asst_a1"', f'"asst_a1{suffix}"'.encode())
                        .replace(b'"file-f1"', f'"file-f1{suffix}"'.encode())
                        .replace(b'"msg_m', f'"msg{suffix}_m'.encode()))


def test_every_project_or_one(database_url, tmp_path):
    """An archive of two projects lands in two projects (by name); exported whole it lists both; imported
    with --project, everything lands in that one."""
    both = write_archive(tmp_path / "two.tar", projects={"alpha": _objects(), "beta": _renamed(_objects(), "b")})
    with fresh_database(database_url, tmp_path) as url:
        ok(cli("import", str(both), database_url=url, data_dir=tmp_path / "data"))
        exported = tmp_path / "all.tar.gz"
        ok(cli("export", str(exported), database_url=url, data_dir=tmp_path / "data"))
        manifest = orjson.loads(members(exported)["manifest.json"])
        assert {p["name"]: p["counts"]["messages"] for p in manifest["projects"]} == {"alpha": 3, "beta": 3}
        one = tmp_path / "beta.tar"
        ok(cli("export", str(one), "--project", "beta", database_url=url, data_dir=tmp_path / "data"))
        assert [p["name"] for p in orjson.loads(members(one)["manifest.json"])["projects"]] == ["beta"]
        assert members(one)["projects/0/files/file-f1b"] == FILE_BYTES
        missing = cli("export", str(tmp_path / "x.tar"), "--project", "nope", database_url=url,
                      data_dir=tmp_path / "data")
        assert missing.returncode == 1 and "no project named 'nope'" in missing.stderr
    with fresh_database(database_url, tmp_path) as url:
        ok(cli("import", str(exported), "--project", "merged", database_url=url, data_dir=tmp_path / "merged"))
        assert _project_ids(url) == {"merged"}
        assert len(dump(url)["messages"]) == 6


def _project_ids(url: str) -> set[str]:
    from sqlalchemy import select

    from assistd.store.db import Database
    from assistd.store.tables import messages, projects, threads

    async def read() -> set[str]:
        db = Database(url)
        try:
            async with db.read() as conn:
                names = dict((await conn.execute(select(projects.c.id, projects.c.name))).all())
                used = set((await conn.execute(select(messages.c.project_id))).scalars())
                used |= set((await conn.execute(select(threads.c.project_id))).scalars())
                return {names[i] for i in used}
        finally:
            await db.close()

    return asyncio.run(read())


def test_an_id_twice_in_one_archive(database_url, tmp_path):
    objs = _objects()
    objs["messages"].append(objs["messages"][0])  # the same line again: present
    objs["messages"].append({**objs["messages"][0], "metadata": {"other": "x"}})  # the same id, other content
    archive = write_archive(tmp_path / "twice.tar", objs)
    with fresh_database(database_url, tmp_path) as url:
        result = cli("import", str(archive), database_url=url, data_dir=tmp_path / "data")
        assert result.returncode == 1, result
        assert "messages: 3 imported, 1 already present" in result.stdout, result.stdout
        assert "conflict: message msg_m0 already exists with other content" in result.stdout, result.stdout
        assert [i for i, _ in dump(url)["messages"]] == ["msg_m0", "msg_m1", "msg_m2"]


USAGE_ROW = {"day": "2026-11-30", "model": "gpt-4o-mini", "prompt_tokens": 120, "completion_tokens": 30,
             "runs_completed": 3, "runs_failed": 1, "runs_cancelled": 0, "runs_expired": 0, "runs_incomplete": 0}


def _limits_and_usage(url: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    from sqlalchemy import select

    from assistd.store.db import Database
    from assistd.store.tables import projects, usage_daily

    async def read() -> tuple[dict[str, Any], list[dict[str, Any]]]:
        db = Database(url)
        try:
            async with db.read() as conn:
                limits = (await conn.execute(select(projects.c.rpm_limit, projects.c.tpm_limit,
                                                    projects.c.max_concurrent_runs)
                                             .where(projects.c.name == "errors"))).one()
                usage = (await conn.execute(select(usage_daily).order_by(usage_daily.c.day))).mappings().all()
                return dict(limits._mapping), [{k: v for k, v in r.items() if k != "project_id"} for r in usage]
        finally:
            await db.close()

    return asyncio.run(read())


def test_project_limits_and_usage_travel_with_the_archive(database_url, tmp_path):
    rows = {"limits": {"rpm": 60, "tpm": None, "max_concurrent_runs": 2}, "usage_daily": [USAGE_ROW]}
    archive = write_archive(tmp_path / "limits.tar", project_rows=rows)
    with fresh_database(database_url, tmp_path) as url:
        out = ok(cli("import", str(archive), database_url=url, data_dir=tmp_path / "data")).stdout
        assert "limits: 2 imported, 0 already present" in out and "usage_daily: 1 imported" in out, out
        assert _limits_and_usage(url) == ({"rpm_limit": 60, "tpm_limit": None, "max_concurrent_runs": 2},
                                          [USAGE_ROW])
        again = ok(cli("import", str(archive), database_url=url, data_dir=tmp_path / "data")).stdout
        assert "limits: 0 imported, 2 already present" in again and "usage_daily: 0 imported, 1 already" in again
        exported = tmp_path / "out.tar"
        ok(cli("export", str(exported), database_url=url, data_dir=tmp_path / "data"))
        [entry] = orjson.loads(members(exported)["manifest.json"])["projects"]
        assert entry["limits"] == rows["limits"] and entry["usage_daily"] == [USAGE_ROW]
        other = write_archive(tmp_path / "other.tar", project_rows={
            "limits": {"rpm": 100}, "usage_daily": [{**USAGE_ROW, "prompt_tokens": 1}]})
        result = cli("import", str(other), database_url=url, data_dir=tmp_path / "data")
        assert result.returncode == 1, result
        assert "conflict: project errors: rpm_limit is 60 here, 100 in the archive" in result.stdout
        assert "conflict: project errors: usage of gpt-4o-mini on 2026-11-30 differs" in result.stdout
        assert _limits_and_usage(url)[1] == [USAGE_ROW]  # kept as it was


@pytest.mark.parametrize("rows", [{"limits": {"rpm": -1}}, {"limits": {"burst": 3}},
                                  {"usage_daily": [{**USAGE_ROW, "runs_failed": "1"}]}, {"usage_daily": {}}])
def test_malformed_limits_or_usage_refuse_the_archive(loaded, tmp_path, rows):
    url, _ = loaded
    _import_fails(url, write_archive(tmp_path / "bad.tar", project_rows=rows), tmp_path / "data", "manifest.json")
