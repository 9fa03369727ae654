"""What embedding each window after its heading path costs: model windows and embedding time of the
evaluation corpus's chunks (``run.py``'s pages), with and without the contexts, in this process, same
thread count, interleaved rounds (A-B then B-A, so drift in the machine's load favours neither).

    .venv/bin/python -m bench.retrieval_eval.cost [--rounds 4] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time


def main(argv: list[str] | None = None) -> int:
    from assistd.retrieval.embedding.minilm import MiniLM
    from assistd.retrieval.pipeline import parse_and_split
    from bench.retrieval_eval.run import pages

    parser = argparse.ArgumentParser(prog="python -m bench.retrieval_eval.cost", description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    pieces = [p for page in pages() for p in parse_and_split(page.read_bytes(), page.name)]
    texts, contexts = [p.text for p in pieces], [p.contexts for p in pieces]
    model = MiniLM("onnx", args.threads)
    plain = sum(len(model.windows(t)) for t in texts)
    led = sum(len(model.windows(t, c)) for t, c in zip(texts, contexts, strict=True))
    print(f"{len(texts)} chunks: {plain} windows as text alone, {led} led by their heading path "
          f"({led / plain:.3f}x)")
    model.embed_windows(texts[:8])  # warm up
    seconds: dict[str, list[float]] = {"text alone": [], "heading path": []}
    for r in range(args.rounds):
        order = ["text alone", "heading path"] if r % 2 == 0 else ["heading path", "text alone"]
        for name in order:
            t = time.perf_counter()
            model.embed_windows(texts, contexts if name == "heading path" else None)
            seconds[name].append(time.perf_counter() - t)
        print(f"  round {r + 1}: " + ", ".join(f"{n} {len(texts) / s[-1]:.1f} chunks/s" for n, s in seconds.items()),
              flush=True)
    ratio = statistics.median(b / a for a, b in zip(seconds["text alone"], seconds["heading path"], strict=True))
    print(f"median time ratio, heading path / text alone: {ratio:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
