"""Pass one of an import: read the whole archive and check it before anything is written.

Checks, in archive order: the header's format and version; every member is one we know; every JSONL line
parses and is an object the importer can take (openai_shape.Normalizer); every member's size and sha256
match the manifest, which must be there (a truncated archive has none); nothing is missing or extra. The
first problem raises ``ArchiveError`` naming the member and line (or the file id).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from assistd.transfer import project_rows
from assistd.transfer.archive import (
    HEADER,
    KINDS,
    MANIFEST,
    ArchiveError,
    Member,
    check_header,
    iter_chunks,
    iter_lines,
    open_members,
    parse_member,
    reading,
)
from assistd.transfer.openai_shape import Normalizer, Notes, ObjectError


@dataclass
class Checked:
    header: dict[str, Any]
    manifest: dict[str, Any]
    notes: Notes
    project_names: dict[str, str]  # project dir → name


def parse_line(normalizer: Normalizer, member: str, kind: str, number: int, line: bytes) -> dict[str, Any]:
    try:
        return normalizer.normalize(kind, orjson.loads(line))
    except orjson.JSONDecodeError as exc:
        raise ArchiveError(f"{member} line {number}: not valid JSON ({exc})") from None
    except ObjectError as exc:
        raise ArchiveError(f"{member} line {number}: {exc}") from None


def _json(name: str, data: bytes) -> dict[str, Any]:
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise ArchiveError(f"{name}: not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise ArchiveError(f"{name}: expected a JSON object")
    return value


def verify(path: str | Path) -> Checked:
    members = open_members(path)
    first = next(members, None)
    if first is None or first.name != HEADER:
        raise ArchiveError(f"{path}: not an assistd archive (it does not begin with {HEADER})")
    with reading(HEADER):
        header_bytes = first.stream.read()
    header = _json(HEADER, header_bytes)
    check_header(header)
    exported_at = header.get("exported_at")
    if not isinstance(exported_at, int):
        raise ArchiveError(f"{HEADER}: 'exported_at' must be an integer (Unix seconds)")
    seen: dict[str, dict[str, Any]] = {HEADER: {"sha256": hashlib.sha256(header_bytes).hexdigest(),
                                                "bytes": len(header_bytes)}}
    normalizer = Normalizer(exported_at)
    manifest: dict[str, Any] | None = None
    file_lines: dict[str, set[str]] = {}  # project dir → file ids listed in its files.jsonl
    for member in members:
        if manifest is not None:
            raise ArchiveError(f"{member.name}: unexpected member after {MANIFEST}")
        if member.name == MANIFEST:
            with reading(MANIFEST):
                manifest = _json(MANIFEST, member.stream.read())
            continue
        parsed = parse_member(member.name)
        if parsed is None or (parsed[1] == "kind" and parsed[2] not in KINDS):
            raise ArchiveError(f"{member.name}: not a member an assistd archive has")
        with reading(member.name):
            seen[member.name] = _check_member(normalizer, member, parsed, file_lines)
    if manifest is None:
        raise ArchiveError(f"{path}: {MANIFEST} is missing: the archive is truncated")
    check_header(manifest, MANIFEST)
    listed = manifest.get("members")
    if not isinstance(listed, dict):
        raise ArchiveError(f"{MANIFEST}: 'members' is missing")
    for name, info in listed.items():
        got = seen.get(name)
        if got is None:
            raise ArchiveError(f"{name}: listed in {MANIFEST} but not in the archive (truncated?)")
        if not isinstance(info, dict) or got["sha256"] != info.get("sha256") or got["bytes"] != info.get("bytes"):
            raise ArchiveError(f"{_label(name)}: checksum mismatch (sha256 {got['sha256']}, {got['bytes']} bytes; "
                               f"the manifest says {info.get('sha256') if isinstance(info, dict) else info}): "
                               "the archive is damaged")
    extra = sorted(set(seen) - set(listed))
    if extra:
        raise ArchiveError(f"{extra[0]}: not listed in {MANIFEST}")
    names: dict[str, str] = {}
    for project in manifest.get("projects") or []:
        if isinstance(project, dict) and isinstance(project.get("dir"), str) and isinstance(project.get("name"), str):
            names[project["dir"]] = project["name"]
            project_rows.check(project)
    for name in seen:
        parsed = parse_member(name)
        if parsed is not None and parsed[0] not in names:
            raise ArchiveError(f"{name}: its project '{parsed[0]}' is not in {MANIFEST}'s projects")
    return Checked(header, manifest, normalizer.notes, names)


def _check_member(normalizer: Normalizer, member: Member, parsed: tuple[str, str, str],
                  file_lines: dict[str, set[str]]) -> dict[str, Any]:
    digest = hashlib.sha256()
    size = 0
    pdir, what, name = parsed
    if what == "kind":
        for number, line in iter_lines(member, digest.update):
            if line.strip():
                obj = parse_line(normalizer, member.name, name, number, line)
                if name == "files":
                    file_lines.setdefault(pdir, set()).add(obj["id"])
        size = member.size
    else:
        if name not in file_lines.get(pdir, set()):
            raise ArchiveError(f"{member.name}: bytes of a file that projects/{pdir}/files.jsonl does not list")
        for chunk in iter_chunks(member.stream):
            digest.update(chunk)
            size += len(chunk)
    return {"sha256": digest.hexdigest(), "bytes": size}


def _label(member: str) -> str:
    parsed = parse_member(member)
    return f"file {parsed[2]} ({member})" if parsed is not None and parsed[1] == "file" else member
