"""One cgroup per Python session: a memory bound (swap included) and a process bound for everything the
session runs together, its RAM-backed /tmp included (tmpfs pages are charged to the cgroup that writes
them). RLIMIT_AS alone bounds each process, so N forked children could hold N times the limit.

Where: a child of the server's own cgroup (``ASSISTD_CODE_CGROUP=auto``), or of a cgroup v2 directory the
operator delegated to assistd (``ASSISTD_CODE_CGROUP=/sys/fs/cgroup/…``). Nesting under our own cgroup keeps
whatever bounds the operator (systemd, a container) put on the server. Both hierarchies are handled:

* cgroup v2: ``memory.max``, ``memory.swap.max = 0``, ``pids.max``; the parent must have the memory and
  pids controllers in ``cgroup.subtree_control``. A cgroup with processes cannot enable controllers for
  its children (v2's "no internal processes"), so if the server's own cgroup holds only the server, the
  server moves itself into a leaf ``assistd-server`` first, as container runtimes do;
* cgroup v1 (hybrid hosts, some containers): the memory and pids hierarchies, ``memory.limit_in_bytes``
  and ``memory.memsw.limit_in_bytes`` (where swap is accounted), ``pids.max``.

The kernel joins its cgroup before it reads its configuration, so before any user code runs: everything
the code starts is inside. The cgroup is removed when the session's kernel has ended. Without usable
cgroups (not root and nothing delegated, or ``off``), sessions keep the per-process limits only; the
README says what is then not guaranteed.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
from pathlib import Path

log = logging.getLogger("assistd.code_interpreter")

ROOT = Path("/sys/fs/cgroup")
PREFIX = "assistd-code-"
_counter = itertools.count(1)


class SessionCgroup:
    """One session's cgroup (one directory per hierarchy: one on v2, memory and pids on v1)."""

    def __init__(self, dirs: list[Path], v2: bool) -> None:
        self.dirs, self.v2 = dirs, v2

    def add(self, pid: int) -> None:
        for d in self.dirs:
            (d / "cgroup.procs").write_text(str(pid))

    def oom_kills(self) -> int:
        """Processes the kernel killed for going over the memory limit (0 if unknown)."""
        name = "memory.events" if self.v2 else "memory.oom_control"
        for d in self.dirs:
            with contextlib.suppress(OSError, ValueError):
                for line in (d / name).read_text().splitlines():
                    key, _, value = line.partition(" ")
                    if key == "oom_kill":
                        return int(value)
        return 0

    def remove_now(self) -> None:
        for d in self.dirs:
            d.rmdir()

    async def remove(self) -> bool:
        """rmdir once the processes are gone (they leave the cgroup when reaped: give them a moment)."""
        for attempt in range(10):  # ~3 s in all
            left = [d for d in self.dirs if d.exists()]
            for d in left:
                with contextlib.suppress(FileNotFoundError, OSError):
                    d.rmdir()
            if not any(d.exists() for d in self.dirs):
                return True
            await asyncio.sleep(0.05 * (attempt + 1))
        log.warning("could not remove the session cgroup(s) %s: processes still inside", self.dirs)
        return False


class Cgroups:
    """Makes the session cgroups of one engine; ``available`` is False (with ``reason``) where it cannot."""

    def __init__(self, setting: str, memory_bytes: int, max_processes: int) -> None:
        self.memory_bytes, self.max_processes = memory_bytes, max_processes
        self.parents: list[Path] = []
        self.v2 = True
        self.reason = ""
        if setting == "off":
            self.reason = "ASSISTD_CODE_CGROUP=off"
            return
        try:
            self.reason = self._find_parents(None if setting == "auto" else Path(setting))
            if not self.reason:
                self.create().remove_now()  # a probe: writable, and the limits are accepted
                self._remove_stale()
        except OSError as exc:
            self.reason = f"cgroups are not usable here ({exc.strerror or exc})"
        if self.reason:
            self.parents = []

    @property
    def available(self) -> bool:
        return bool(self.parents)

    def describe(self) -> str:
        if not self.available:
            return f"no per-session cgroup ({self.reason}): per-process limits only"
        kind = "v2" if self.v2 else "v1"
        return f"a cgroup {kind} per session under {', '.join(map(str, self.parents))}"

    def _find_parents(self, explicit: Path | None) -> str:
        if explicit is not None:
            return self._use_v2(explicit, move_self=False)
        own = _own_cgroups()
        for mount in (ROOT, ROOT / "unified"):
            controllers = mount / "cgroup.controllers"
            if controllers.exists() and {"memory", "pids"} <= set(controllers.read_text().split()):
                return self._use_v2(mount / own.get("", "/").lstrip("/"), move_self=True)
        memory, pids = ROOT / "memory", ROOT / "pids"
        if (memory / "memory.limit_in_bytes").exists() and "memory" in own:
            self.v2 = False
            self.parents = [memory / own["memory"].lstrip("/")]
            if (pids / "pids.max").exists() or (pids / "cgroup.procs").exists():
                if "pids" in own:
                    self.parents.append(pids / own["pids"].lstrip("/"))
            if not all(p.is_dir() for p in self.parents):
                return "the server's own cgroup is not visible under /sys/fs/cgroup"
            return ""
        return "no cgroup hierarchy with the memory and pids controllers"

    def _use_v2(self, parent: Path, *, move_self: bool) -> str:
        if not (parent / "cgroup.controllers").exists():
            return f"{parent} is not a cgroup v2 directory"
        missing = {"memory", "pids"} - set((parent / "cgroup.controllers").read_text().split())
        if missing:
            return f"{parent} lacks the {' and '.join(sorted(missing))} controller(s)"
        enabled = set((parent / "cgroup.subtree_control").read_text().split())
        if not {"memory", "pids"} <= enabled:
            try:
                (parent / "cgroup.subtree_control").write_text("+memory +pids")
            except OSError:
                if not move_self:
                    raise
                # v2 forbids controllers for children of a cgroup holding processes: if only this server
                # is in its cgroup, it moves into a leaf of its own and tries again
                others = [p for p in (parent / "cgroup.procs").read_text().split() if int(p) != os.getpid()]
                if others:
                    return (f"{parent} holds other processes, so it cannot enable memory and pids for "
                            "children: set ASSISTD_CODE_CGROUP to a delegated cgroup")
                leaf = parent / "assistd-server"
                leaf.mkdir(exist_ok=True)
                (leaf / "cgroup.procs").write_text(str(os.getpid()))
                (parent / "cgroup.subtree_control").write_text("+memory +pids")
        self.v2, self.parents = True, [parent]
        return ""

    def create(self) -> SessionCgroup:
        """A new, empty session cgroup with the limits set; raises OSError."""
        name = f"{PREFIX}{os.getpid()}-{next(_counter)}"
        made: list[Path] = []
        try:
            for parent in self.parents:
                d = parent / name
                d.mkdir()
                made.append(d)
                self._limit(d)
        except OSError:
            for d in made:
                with contextlib.suppress(OSError):
                    d.rmdir()
            raise
        return SessionCgroup(made, self.v2)

    def _limit(self, d: Path) -> None:
        if self.v2:
            (d / "memory.max").write_text(str(self.memory_bytes))
            with contextlib.suppress(FileNotFoundError):  # no swap accounting: no swap to bound
                (d / "memory.swap.max").write_text("0")
            (d / "pids.max").write_text(str(self.max_processes))
        elif (d / "memory.limit_in_bytes").exists():
            (d / "memory.limit_in_bytes").write_text(str(self.memory_bytes))
            with contextlib.suppress(OSError):  # memsw exists only with swap accounting
                (d / "memory.memsw.limit_in_bytes").write_text(str(self.memory_bytes))
        else:
            (d / "pids.max").write_text(str(self.max_processes))

    def _remove_stale(self) -> None:
        """Cgroups left by a server that died (its pid no longer runs): empty ones are removed."""
        for parent in self.parents:
            for d in parent.glob(PREFIX + "*"):
                pid = d.name[len(PREFIX):].split("-")[0]
                if pid.isdigit() and not Path(f"/proc/{pid}").exists():
                    with contextlib.suppress(OSError):
                        d.rmdir()


def _own_cgroups() -> dict[str, str]:
    """controller → this process's cgroup path (``""`` for v2's unified line)."""
    out: dict[str, str] = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for controller in controllers.split(",") if controllers else [""]:
            out[controller] = path
    return out
