"""The embedding worker process: ``python -m assistd.retrieval.embedding.worker BACKEND THREADS``.

Protocol on stdin/stdout, one request at a time: a request is a 4-byte big-endian length and that many
bytes of UTF-8 JSON (a list of texts, or ``{"texts": [...], "windows": true, "contexts": [...]}``, contexts
optional: per text null or its ``[[offset, heading path], …]``, see minilm.py); the reply is a status byte
(0 = ok, 1 = error), a 4-byte length and either float32 little-endian bytes of the [len(texts), 384] matrix
(with ``windows``: preceded by uint32 little-endian window counts per text and followed by the windows'
[sum of counts, 384] matrix) or a UTF-8 error message. EOF on stdin
(the parent closed it, or died) ends the process. The model loads on the first request.
"""

from __future__ import annotations

import json
import os
import struct
import sys
from typing import IO


def read_exact(stream: IO[bytes], n: int) -> bytes | None:
    data = b""
    while len(data) < n:
        part = stream.read(n - len(data))
        if not part:
            return None
        data += part
    return data


def serve(backend: str, threads: int | None) -> None:
    # Frames own the real stdout; anything a library prints goes to stderr instead of corrupting them.
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    inp = sys.stdin.buffer
    model = None
    while (head := read_exact(inp, 4)) is not None:
        body = read_exact(inp, struct.unpack(">I", head)[0])
        if body is None:
            return
        try:
            if model is None:
                from assistd.retrieval.embedding.minilm import MiniLM

                model = MiniLM(backend, threads)
            request = json.loads(body)
            if isinstance(request, dict) and request.get("windows"):
                vectors, counts, windows = model.embed_windows(request["texts"], request.get("contexts"))
                reply = counts.astype("<u4").tobytes() + vectors.tobytes() + windows.tobytes()
            else:
                reply = model.embed(request).tobytes()
            status = 0
        except Exception as exc:  # reported to the caller, the worker stays up
            reply, status = f"{type(exc).__name__}: {exc}".encode(), 1
        out.write(struct.pack(">BI", status, len(reply)) + reply)
        out.flush()


if __name__ == "__main__":
    serve(sys.argv[1] if len(sys.argv) > 1 else "onnx", int(sys.argv[2]) if len(sys.argv) > 2 else None)
