"""How a kernel process is started: the bubblewrap command line, its environment and resource limits.

Inside the sandbox a kernel sees: /usr (and the /lib, /bin… links), the Python it runs (read-only), the
kernel's own code at /opt/assistd-kernel, a private /proc, a minimal read-only /dev, a private size-limited
/tmp and /dev/shm, and its thread's directory at /mnt/data — nothing else of the host (no /etc/shadow, no
/home, no data dir).
Namespaces: new network (no interface but its own loopback: no route anywhere, the host's 127.0.0.1
included), PID (host processes cannot be seen or signalled), IPC, UTS and, where possible, cgroup.

Two ways to get there:

* assistd runs as an ordinary user: bwrap creates a user namespace too (``--unshare-user``), the kernel
  is uid 1000 inside it with no capabilities, and ``--disable-userns`` forbids nested user namespaces.
* assistd runs as root: bwrap runs privileged (no user namespace, which would map the sandbox to host
  root, for which the kernel never enforces RLIMIT_NPROC) and keeps only CAP_SETUID/CAP_SETGID, which
  the kernel uses once, before any user code, to become the session's own uid (``uid_base + …``). That
  uid owns nothing on the host, and per-session uids make the process limit per session.

Resource limits are set by the kernel itself before it reads any code (see kernel/repl.py): RLIMIT_NPROC
must be set after the user namespace exists to count only the sandbox's processes, and doing all limits
there avoids ``preexec_fn`` in a threaded server. Hard limits, so the code cannot raise them.

As root, ``--disable-userns`` is not available (it needs bwrap's own user namespace): a seccomp filter
(seccomp.py) refuses new user namespaces instead.

Memory and processes are also bounded per session, all processes and the /tmp tmpfs together, by a cgroup
per session where cgroups can be used (cgroups.py); elsewhere only per process.

Descriptors: the kernel is started by spawn.py, so only its pipes reach the sandbox.

Known gaps: /mnt/data is on the host's disk with no quota (each file is capped by RLIMIT_FSIZE, not their
number). The kernel reaps what the code leaves running after each execution, so nothing runs between
executions.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from assistd.tools.code_interpreter import seccomp
from assistd.tools.code_interpreter.cgroups import Cgroups
from assistd.tools.code_interpreter.results import SandboxUnavailable
from assistd.tools.code_interpreter.settings import CodeInterpreterSettings

log = logging.getLogger("assistd.code_interpreter")

KERNEL_DIR = Path(__file__).resolve().parent / "kernel"
KERNEL_MOUNT = "/opt/assistd-kernel"
SANDBOX_UID = 1000  # the uid the code sees when bwrap makes a user namespace
SYSTEM_LINKS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
ETC_FILES = ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/localtime", "/etc/alternatives", "/etc/fonts")
PASSTHROUGH_ENV = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")  # set on some CPUs where old OpenBLAS crashes
INSTALL_HINT = ("install bubblewrap (scripts/install-sandbox, or apt-get install bubblewrap), or set "
                "ASSISTD_CODE_SANDBOX=none to run code WITHOUT isolation (unsafe)")


def is_root() -> bool:
    return os.geteuid() == 0


def python_prefixes(python: Path) -> tuple[Path, list[Path]]:
    """The interpreter and the directories it needs (its prefixes: stdlib, site-packages)."""
    if python == Path(sys.executable):
        prefixes = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    else:
        out = subprocess.run(
            [str(python), "-I", "-c", "import sys, json; print(json.dumps([sys.prefix, sys.base_prefix, "
             "sys.exec_prefix, sys.base_exec_prefix]))"],
            capture_output=True, text=True, timeout=30, check=True,
        ).stdout
        prefixes = set(json.loads(out))
    paths = sorted({Path(p).resolve() for p in prefixes} | {python.resolve().parent.parent})
    # keep the outermost ones: a bind inside another bind is redundant
    return python, [p for p in paths if not any(q != p and p.is_relative_to(q) for q in paths)]


class Sandbox:
    """Builds kernel commands for one engine; ``check()`` probes bwrap once and caches the verdict."""

    def __init__(self, settings: CodeInterpreterSettings) -> None:
        self.settings = settings
        self.enabled = settings.sandbox == "bwrap"
        self.python, self.prefixes = python_prefixes(settings.python or Path(sys.executable))
        self._verdict: str | None = None  # "" = usable, else why not
        self._cgroups: Cgroups | None = None

    def cgroups(self) -> Cgroups:
        """The per-session cgroups (probed on first use; blocking: call from a thread)."""
        if self._cgroups is None:
            s = self.settings
            self._cgroups = Cgroups(s.cgroup, s.session_memory_bytes, s.max_processes)
            log.info("code_interpreter sessions: %s", self._cgroups.describe())
        return self._cgroups

    def check(self) -> None:
        """Raise :class:`SandboxUnavailable` (with the reason) unless kernels can be started here."""
        if not self.enabled:
            return
        if self._verdict is None:
            self._verdict = self._probe()
        if self._verdict:
            raise SandboxUnavailable(f"code_interpreter sandbox unavailable: {self._verdict}; {INSTALL_HINT}")

    def _probe(self) -> str:
        if shutil.which("bwrap") is None:
            return "bubblewrap (bwrap) is not installed"
        with tempfile.TemporaryDirectory(prefix="assistd-probe-") as work:
            filter_fd = self.seccomp_fd()
            cmd = self.command(Path(work), info_fd=None, seccomp_fd=filter_fd) + [
                "-c", "import os; assert os.getpid() == 1"]
            try:
                proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30,
                                      pass_fds=() if filter_fd is None else (filter_fd,))
            except (OSError, subprocess.TimeoutExpired) as exc:
                return f"bwrap could not be run ({exc})"
            finally:
                if filter_fd is not None:
                    os.close(filter_fd)
        if proc.returncode != 0:
            detail = (proc.stderr or proc.stdout).strip().splitlines()
            return "bwrap failed to create the sandbox: " + (detail[-1] if detail else f"exit {proc.returncode}")
        return ""

    def seccomp_fd(self) -> int | None:
        """As root, a readable fd holding the sandbox's seccomp filter (seccomp.py: no nested user
        namespaces), for ``command``; the caller passes it to the child and closes it after the start."""
        return seccomp.filter_fd() if self.enabled and is_root() else None

    def command(self, workdir: Path, info_fd: int | None, seccomp_fd: int | None = None) -> list[str]:
        """argv starting the interpreter in the sandbox (or bare); the kernel script is appended by the
        caller, who also passes ``info_fd`` (bwrap writes the kernel's host pid there) and ``seccomp_fd``
        (``seccomp_fd()``)."""
        python = [str(self.python), "-I", "-B", "-u"]
        if not self.enabled:
            return python
        args = ["bwrap", "--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts",
                "--unshare-cgroup-try", "--die-with-parent", "--new-session", "--hostname", "sandbox",
                # the kernel is pid 1 of its namespace: bwrap reports its host pid (for SIGINT), and its
                # death ends every process of the sandbox
                "--as-pid-1"]
        if is_root():
            args += ["--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
        else:
            args += ["--unshare-user", "--disable-userns", "--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID)]
        made: set[str] = {"/"}

        def ancestors(dest: str) -> list[str]:
            # bwrap makes missing parents 0700, which an unprivileged kernel could not cross
            out: list[str] = []
            for parent in reversed(Path(dest).parents):
                if str(parent) not in made:
                    made.add(str(parent))
                    out += ["--perms", "0755", "--dir", str(parent)]
            return out

        # The private /tmp first: mounted after the binds it would hide any of them that live under /tmp
        # (a checkout, and so its .venv, in /tmp — as CI's clones may be).
        args += ["--perms", "1777", "--size", str(self.settings.tmp_bytes), "--tmpfs", "/tmp"]
        made.add("/tmp")
        args += ["--ro-bind", "/usr", "/usr"]
        made.add("/usr")
        for link in SYSTEM_LINKS:
            if os.path.islink(link):
                args += ["--symlink", os.readlink(link), link]
            elif os.path.isdir(link):
                args += ["--ro-bind", link, link]
        for path in ETC_FILES:
            if os.path.exists(path):
                args += ancestors(path) + ["--ro-bind", path, path]
        for prefix in self.prefixes:
            if not prefix.is_relative_to("/usr"):
                args += ancestors(str(prefix)) + ["--ro-bind", str(prefix), str(prefix)]
        args += ancestors(KERNEL_MOUNT) + ["--ro-bind", str(KERNEL_DIR), KERNEL_MOUNT]
        args += ["--proc", "/proc", "--dev", "/dev"]
        # /dev/shm (POSIX shared memory, multiprocessing's semaphores) on a bounded tmpfs of its own: on
        # bwrap's /dev it would be unbounded RAM, and writable where bwrap runs unprivileged
        args += ["--perms", "1777", "--size", str(self.settings.tmp_bytes), "--tmpfs", "/dev/shm"]
        args += ancestors("/mnt/data") + ["--bind", str(workdir), "/mnt/data"]
        # the root and /dev are tmpfs too (unbounded, and owned by the sandbox's uid in a user namespace):
        # read-only once every mount point exists, so /tmp, /dev/shm and /mnt/data are the only places
        # the code can write
        args += ["--remount-ro", "/dev", "--remount-ro", "/"]
        args += ["--clearenv"]
        for key, value in self.environment("/mnt/data").items():
            args += ["--setenv", key, value]
        if info_fd is not None:
            args += ["--info-fd", str(info_fd)]
        if seccomp_fd is not None:
            args += ["--seccomp", str(seccomp_fd)]
        return args + ["--"] + python

    def kernel_workdir(self, workdir: Path) -> str:
        # the kernel changes into it itself: as root, bwrap (without CAP_DAC_OVERRIDE) cannot enter a
        # directory owned by the session's uid
        return "/mnt/data" if self.enabled else str(workdir)

    def kernel_script(self) -> str:
        return f"{KERNEL_MOUNT}/repl.py" if self.enabled else str(KERNEL_DIR / "repl.py")

    def environment(self, workdir: str) -> dict[str, str]:
        threads = str(self.settings.threads)
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "HOME": "/tmp",
            "USER": "sandbox",
            "LANG": "C.UTF-8",
            "TMPDIR": "/tmp",
            "MPLBACKEND": "module://_assistd_mpl",
            "MPLCONFIGDIR": "/tmp/.matplotlib",
            "PWD": workdir,
            **{name: threads for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")},
        }
        if not self.enabled:  # no private /tmp: the host's, with caches out of the thread's directory
            tmp = tempfile.gettempdir()
            env |= {"HOME": tmp, "TMPDIR": tmp, "MPLCONFIGDIR": os.path.join(tmp, "assistd-code-matplotlib")}
        return env | {k: os.environ[k] for k in PASSTHROUGH_ENV if k in os.environ}

    def limits(self) -> dict[str, int]:
        s = self.settings
        return {"AS": s.memory_bytes, "CPU": s.cpu_seconds, "NPROC": s.max_processes,
                "FSIZE": s.file_size_bytes, "NOFILE": s.open_files, "CORE": 0}
