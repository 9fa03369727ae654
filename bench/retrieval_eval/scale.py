"""Does the two-stage vector search keep its recall in a large store? The evaluation corpus (``run.py``) in
one store with ``--distractors`` synthetic chunks beside it, searched with the vector path as a large store
runs it (chunks first picked by their mean vector, then ranked by their best window, rows held as float16)
and exactly (every window scored, float32), on the same store, the same questions.

Distractors are made to crowd the real chunks: each has four windows, each window a real window of the
corpus (at random) moved by noise to cosine ~0.8 of it, so their means fall among the real chunks' means
and their windows near the real windows. Their texts are the corpus's words, shuffled across chunks.

    .venv/bin/python -m bench.retrieval_eval.scale --distractors 100000
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.retrieval_eval.run import DOCS, Embedder, headings, norm, pages, questions


async def evaluate(args: argparse.Namespace) -> None:
    from assistd.retrieval import HybridIndex, IndexedChunk
    from assistd.retrieval.index import vectors
    from assistd.retrieval.pipeline import parse_and_split
    from assistd.store.db import Database
    from assistd.store.migrate import migrate

    qs = questions()
    embedder = Embedder()
    db = Database(f"sqlite:///{Path(tempfile.mkdtemp()) / 'scale.db'}", pool_size=2)
    await migrate(db)
    writer = HybridIndex()
    marks: dict[str, dict[str, str]] = {}
    real_windows: list[np.ndarray] = []
    words: list[str] = []
    for page in pages():
        rel = str(page.relative_to(DOCS))
        marks[rel] = headings(page)
        data = page.read_bytes()
        pieces = parse_and_split(data, page.name)
        texts = [p.text for p in pieces]
        embedded = embedder.windows(texts, [p.contexts for p in pieces])  # as the product embeds them
        real_windows += [w for _, w in embedded]
        words += " ".join(texts).split()
        async with db.write() as conn:
            await writer.add(conn, "vs_eval", rel, page.name, [IndexedChunk(p.text, v, p.tokens, w) for p, (v, w) in
                                                               zip(pieces, embedded, strict=True)], {})
    pool = np.concatenate(real_windows)
    vocabulary = np.array(words)
    rng = np.random.default_rng(11)
    t = time.perf_counter()
    per_file = 1000
    for f in range(0, args.distractors, per_file):
        k = min(per_file, args.distractors - f)
        source = pool[rng.integers(0, len(pool), size=(k, 4))]
        noise = rng.standard_normal(source.shape).astype(np.float32) * (0.75 / np.sqrt(pool.shape[1]))
        windows = source + noise
        windows /= np.linalg.norm(windows, axis=2, keepdims=True)
        texts = vocabulary[rng.integers(0, len(vocabulary), size=(k, 150))]
        batch = [IndexedChunk(" ".join(t), w.mean(0), 200, w) for t, w in zip(texts, windows, strict=True)]
        async with db.write() as conn:
            await writer.add(conn, "vs_eval", f"distractor_{f // per_file}", "d.txt", batch, {})
    print(f"{sum(len(w) for w in real_windows)} real windows in {len(real_windows)} chunks + "
          f"{args.distractors:,} distractor chunks of 4 windows, added in {time.perf_counter() - t:.0f} s")
    qvecs = embedder.embed([q["question"] for q in qs])
    default_rows, default_candidates = vectors.EXACT_ROWS, vectors.CANDIDATES_PER_RESULT
    print("\n| vector search | ranking | questions | recall@1 | recall@5 | MRR@10 | p50 ms |\n"
          "|---|---|---|---|---|---|---|")
    runs = [(f"two stages ({c} candidates a result), float16 rows", default_rows, c)
            for c in args.candidates or [default_candidates]]
    for label, exact_rows, candidates in runs + [("exact, float32", 10**12, default_candidates)]:
        vectors.EXACT_ROWS, vectors.CANDIDATES_PER_RESULT = exact_rows, candidates
        index = HybridIndex()  # its own cache, loaded in this mode
        for mode in ("vector", "hybrid"):
            ranks: dict[str, list[int | None]] = {"lexical": [], "paraphrase": []}
            times = []
            for q, v in zip(qs, qvecs, strict=True):
                start = time.perf_counter()
                async with db.read() as conn:
                    hits = await index.search(conn, ["vs_eval"], q["question"] if mode == "hybrid" else None,
                                              v.tolist(), max_num_results=10)
                times.append(time.perf_counter() - start)
                want = marks[q["doc"]][q["section"]]
                ranks[q["kind"]].append(next((i for i, h in enumerate(hits, 1)
                                              if h.file_id == q["doc"] and want in norm(h.text)), None))
            for kind, rs in (("all", ranks["lexical"] + ranks["paraphrase"]), ("paraphrase", ranks["paraphrase"])):
                r1 = sum(1 for r in rs if r == 1) / len(rs)
                r5 = sum(1 for r in rs if r is not None and r <= 5) / len(rs)
                mrr = sum(1 / r for r in rs if r is not None) / len(rs)
                print(f"| {label} | {mode} | {kind} ({len(rs)}) | {r1:.2f} | {r5:.2f} | {mrr:.3f} | "
                      f"{sorted(times)[len(times) // 2] * 1e3:.1f} |", flush=True)
    vectors.EXACT_ROWS, vectors.CANDIDATES_PER_RESULT = default_rows, default_candidates
    await db.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.retrieval_eval.scale", description=__doc__.split("\n")[0])
    parser.add_argument("--distractors", type=int, default=100_000, help="synthetic chunks added to the store")
    parser.add_argument("--candidates", type=int, action="append",
                        help="vectors.CANDIDATES_PER_RESULT of a two-stage run (repeatable; default: the product's)")
    asyncio.run(evaluate(parser.parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
