"""What a change to how chunks are windowed costs at ingestion: model windows, word pieces and embedding
time of the evaluation corpus's chunks (``run.py``'s pages), this tree's windowing against another, in this
process, one model (same session and threads), interleaved rounds (A-B then B-A, so drift in the machine's
load favours neither).

    .venv/bin/python -m bench.retrieval_eval.cost [--rounds 4] [--threads 2]            # heading paths or not
    git show main:src/assistd/retrieval/embedding/minilm.py > /tmp/minilm_main.py
    .venv/bin/python -m bench.retrieval_eval.cost --compare /tmp/minilm_main.py          # another minilm.py's
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

Windowing = Callable[[str, Sequence[tuple[int, str]] | None], list[list[int]]]


def _windowing_from(path: str, model: Any) -> Windowing:
    """``MiniLM.windows`` as the minilm.py at ``path`` cuts them, run on ``model``'s tokenizer."""
    spec = importlib.util.spec_from_file_location("minilm_compared", path)
    assert spec is not None and spec.loader is not None
    other = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(other)
    return lambda text, contexts: [w for w, _ in other.MiniLM._windows(model, text, contexts)]


def main(argv: list[str] | None = None) -> int:
    from assistd.retrieval.embedding.minilm import MiniLM
    from assistd.retrieval.pipeline import parse_and_split
    from bench.retrieval_eval.run import pages

    parser = argparse.ArgumentParser(prog="python -m bench.retrieval_eval.cost", description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sample", type=int, help="every n-th chunk only (a quicker, rougher figure)")
    parser.add_argument("--compare", metavar="MINILM_PY",
                        help="another minilm.py: its windows (with heading paths) against this tree's")
    args = parser.parse_args(argv)
    pieces = [p for page in pages() for p in parse_and_split(page.read_bytes(), page.name)]
    pieces = pieces[::args.sample or 1]
    texts, contexts = [p.text for p in pieces], [p.contexts for p in pieces]
    model = MiniLM("onnx", args.threads)
    if args.compare:
        other = _windowing_from(args.compare, model)
        a, b = f"windows of {args.compare}", "windows of this tree"
        variants: dict[str, Windowing] = {a: other, b: model.windows}
        given: dict[str, list[Sequence[tuple[int, str]] | None]] = {a: list(contexts), b: list(contexts)}
    else:
        a, b = "text alone", "heading path"
        variants = {a: model.windows, b: model.windows}
        given = {a: [None] * len(texts), b: list(contexts)}
    windows = {name: [w for t, c in zip(texts, given[name], strict=True) for w in cut(t, c)]
               for name, cut in variants.items()}
    for name, ws in windows.items():
        print(f"{len(texts)} chunks, {name}: {len(ws)} windows, {sum(len(w) for w in ws)} word pieces")
    print(f"windows {len(windows[b]) / len(windows[a]):.3f}x, word pieces "
          f"{sum(map(len, windows[b])) / sum(map(len, windows[a])):.3f}x")
    model.embed_windows(texts[:8])  # warm up
    seconds: dict[str, list[float]] = {a: [], b: []}
    for r in range(args.rounds):
        for name in ([a, b] if r % 2 == 0 else [b, a]):
            t = time.perf_counter()
            model._embed_windows([w for t_, c in zip(texts, given[name], strict=True) for w in variants[name](t_, c)])
            seconds[name].append(time.perf_counter() - t)
        print(f"  round {r + 1}: " + ", ".join(f"{n} {len(texts) / s[-1]:.1f} chunks/s" for n, s in seconds.items()),
              flush=True)
    ratio = statistics.median(y / x for x, y in zip(seconds[a], seconds[b], strict=True))
    print(f"median time ratio, {b} / {a}: {ratio:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
