"""code_interpreter pieces that need no sandbox: bounded output capture, the host side of /mnt/data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from assistd.tools.code_interpreter import CodeInterpreterError, InputFile
from assistd.tools.code_interpreter import files as fs
from assistd.tools.code_interpreter.output import OutputCapture
from assistd.tools.code_interpreter.results import safe_file_name

SENTINEL = b"\x00\x01assistd-end:abc:1\x01\x00"


def test_capture_finds_a_sentinel_split_across_chunks() -> None:
    cap = OutputCapture(1000, SENTINEL)
    data = b"hello\n" + SENTINEL + b"next"
    rest = b""
    for i in range(len(data)):  # one byte at a time: the worst split
        rest += cap.feed(data[i : i + 1])
    assert cap.complete and cap.text() == "hello\n" and rest == b"next"


def test_capture_keeps_head_and_tail_and_counts_the_rest() -> None:
    cap = OutputCapture(100, SENTINEL)
    for _ in range(1000):
        cap.feed(b"x" * 1000)
    cap.feed(b"Traceback: the end" + SENTINEL)
    text = cap.text()
    assert cap.complete
    assert text.startswith("x" * 50) and text.endswith("Traceback: the end")
    assert "output truncated: 999,918 bytes omitted" in text
    assert len(text) < 100 + 80


def test_capture_does_not_split_utf8_at_the_cut() -> None:
    cap = OutputCapture(100, SENTINEL)
    cap.feed(("é" * 1000).encode() + SENTINEL)
    text = cap.text()
    assert "\ufffd" not in text and "truncated" in text


def test_thread_dir_refuses_ids_that_could_escape(tmp_path: Path) -> None:
    for bad in ("../x", "a/b", "", ".", "x" * 200, "a\x00b"):
        with pytest.raises(CodeInterpreterError):
            fs.thread_dir(tmp_path, bad)
    assert fs.thread_dir(tmp_path, "thread_abc-1") == tmp_path.resolve() / "code" / "thread_abc-1"


def test_input_file_names_are_flattened() -> None:
    assert safe_file_name("../../etc/passwd") == "passwd"
    assert safe_file_name("dir\\evil name?.csv") == "evil name_.csv"
    assert safe_file_name(".hidden") == "hidden"
    with pytest.raises(CodeInterpreterError):
        safe_file_name("..")


def test_input_file_replaces_a_planted_symlink_instead_of_writing_through_it(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    work = tmp_path / "work"
    work.mkdir()
    (work / "data.csv").symlink_to(victim)
    assert fs.write_input_file(work, InputFile("data.csv", b"a,b\n"), None) == "data.csv"
    assert victim.read_text() == "precious"
    assert not (work / "data.csv").is_symlink() and (work / "data.csv").read_bytes() == b"a,b\n"
    src = tmp_path / "src.bin"
    src.write_bytes(b"\x00\x01")
    fs.write_input_file(work, InputFile("bin", src), None)
    assert (work / "bin").read_bytes() == b"\x00\x01"


def test_snapshot_reports_regular_files_only_and_reads_refuse_links(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("host secret")
    work = tmp_path / "work"
    (work / "sub").mkdir(parents=True)
    before = fs.snapshot(work)
    (work / "sub" / "out.csv").write_text("1,2")
    (work / "link").symlink_to(secret)
    (work / "dirlink").symlink_to(tmp_path, target_is_directory=True)
    os.mkfifo(work / "fifo")
    created = fs.changed_files(work, before, fs.snapshot(work))
    assert [c.name for c in created] == ["sub/out.csv"]
    assert created[0].read_bytes() == b"1,2" and created[0].sandbox_path == "/mnt/data/sub/out.csv"
    for name in ("link", "dirlink/secret", "fifo", "../secret"):
        with pytest.raises((OSError, CodeInterpreterError)):
            fs.read_regular_file(work, name, 1000)
    # the sandbox swaps a reported file for a link after the fact: reading it still refuses
    (work / "sub" / "out.csv").unlink()
    (work / "sub" / "out.csv").symlink_to(secret)
    with pytest.raises(OSError):
        created[0].read_bytes()


def fake_cgroup_v2(root: Path, own: str, *, enabled: str = "") -> Path:
    """A directory shaped like a cgroup v2 mount (files only: what the code reads and writes)."""
    (root / "cgroup.controllers").write_text("cpu memory pids\n")
    parent = root / own.lstrip("/")
    parent.mkdir(parents=True, exist_ok=True)
    (parent / "cgroup.controllers").write_text("cpu memory pids\n")
    (parent / "cgroup.subtree_control").write_text(enabled)
    (parent / "cgroup.procs").write_text(f"{os.getpid()}\n")
    return parent


def test_session_cgroups_on_cgroup_v2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio
    import shutil

    from assistd.tools.code_interpreter import cgroups

    parent = fake_cgroup_v2(tmp_path, "/system.slice/assistd.service")
    monkeypatch.setattr(cgroups, "ROOT", tmp_path)
    monkeypatch.setattr(cgroups, "_own_cgroups", lambda: {"": "/system.slice/assistd.service"})
    # a real cgroupfs removes a cgroup's control files with it
    monkeypatch.setattr(cgroups.SessionCgroup, "remove_now", lambda self: [shutil.rmtree(d) for d in self.dirs])
    made = cgroups.Cgroups("auto", 300 * 1024**2, 16)
    assert made.available and made.v2 and made.parents == [parent], made.reason
    assert (parent / "cgroup.subtree_control").read_text() == "+memory +pids"
    session = made.create()
    [d] = session.dirs
    assert d.parent == parent and d.name.startswith(f"assistd-code-{os.getpid()}-")
    assert ((d / "memory.max").read_text(), (d / "memory.swap.max").read_text(), (d / "pids.max").read_text()) == (
        str(300 * 1024**2), "0", "16")
    session.add(4242)
    assert (d / "cgroup.procs").read_text() == "4242"
    assert session.oom_kills() == 0
    (d / "memory.events").write_text("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n")
    assert session.oom_kills() == 1
    session.remove_now()
    assert not d.exists() and asyncio.run(session.remove())


def test_session_cgroups_off_or_unusable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from assistd.tools.code_interpreter import cgroups

    off = cgroups.Cgroups("off", 1, 1)
    assert not off.available and "off" in off.describe()
    fake_cgroup_v2(tmp_path, "/").joinpath("cgroup.controllers").write_text("cpu\n")
    monkeypatch.setattr(cgroups, "ROOT", tmp_path)
    explicit = cgroups.Cgroups(str(tmp_path), 1, 1)
    assert not explicit.available and "memory and pids" in explicit.reason
