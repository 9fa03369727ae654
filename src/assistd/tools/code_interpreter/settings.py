"""Settings of the code_interpreter engine, read from ``ASSISTD_CODE_*`` environment variables.

Kept apart from :class:`assistd.config.Settings` so the engine can be built and tested on its own; the
server passes its ``data_dir`` in. Defaults suit a shared server: every limit applies per session.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

GiB = 1024**3
MB = 1000**2


class CodeInterpreterSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ASSISTD_CODE_", extra="ignore")

    sandbox: Literal["bwrap", "none"] = Field(
        "bwrap",
        description="bwrap: every kernel in a bubblewrap sandbox (no network, private filesystem, own PID "
        "namespace). none: UNSAFE, kernels run as plain processes with only the resource limits; for a "
        "trusted single-user machine without user namespaces",
    )
    idle_seconds: float = Field(3600.0, gt=0, description="a thread's Python session ends this long after "
                                "its last execution (its variables are lost, /mnt/data files stay)")
    timeout_seconds: float = Field(120.0, gt=0, description="wall-clock limit of one execution: then "
                                   "KeyboardInterrupt, then the session is killed if it does not return")
    interrupt_grace_seconds: float = Field(3.0, gt=0, description="how long an interrupted execution has "
                                           "to return before its session is killed")
    startup_timeout_seconds: float = Field(30.0, gt=0, description="a new session must be ready by then")
    memory_bytes: int = Field(1 * GiB, gt=0, description="address-space limit of each sandboxed process")
    session_memory_bytes: int = Field(2 * GiB, gt=0, description="memory of a whole session: its processes "
                                      "together and its /tmp (a cgroup per session; see ASSISTD_CODE_CGROUP)")
    cgroup: str = Field("auto", description="auto: a cgroup per session (memory incl. swap and /tmp, "
                        "processes) under the server's own cgroup where cgroups are writable (root, or "
                        "delegated); a path: a cgroup v2 directory delegated to assistd; off: per-process "
                        "limits only")
    cpu_seconds: int = Field(3600, gt=0, description="CPU time of each sandboxed process over its life")
    max_processes: int = Field(64, gt=0, description="processes and threads of one session (fork bombs)")
    file_size_bytes: int = Field(100 * MB, gt=0, description="largest file a session can write")
    open_files: int = Field(256, gt=0, description="open file descriptors per sandboxed process")
    tmp_bytes: int = Field(256 * 1024**2, gt=0, description="size of the session's private /tmp (tmpfs)")
    max_output_chars: int = Field(20_000, gt=100, description="logs of one execution beyond this are cut "
                                  "in the middle (head and tail kept) with a marker")
    max_images: int = Field(10, ge=0, description="figures returned per execution")
    max_image_bytes: int = Field(2 * 1024**2, gt=0, description="largest PNG returned")
    max_sessions: int = Field(32, gt=0, description="live sessions per engine; the least recently used "
                              "idle one is ended to make room")
    threads: int = Field(2, gt=0, description="BLAS/OpenMP threads per session (OMP_NUM_THREADS …)")
    python: Path | None = Field(None, description="interpreter for kernels (needs numpy, pandas, "
                                "matplotlib); default: the one running assistd")
    uid_base: int = Field(2_000_000_000, gt=65535, description="when assistd runs as root, each session "
                          "runs as its own uid from base + (pid % 65536) * 1024 + slot")
