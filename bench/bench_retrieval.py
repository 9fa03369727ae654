"""Retrieval benchmarks (no server): embedder packagings, ingestion throughput, query latency at 100k chunks.

1. ``embedders``: all-MiniLM-L6-v2 on the same chunks, in this process, same thread count, interleaved
   rounds: ONNX (the hand-built graph, what runs), PyTorch (transformers), and — when PyTorch can export —
   onnxruntime on a ``torch.onnx.export`` graph (a check that the hand-built graph loses nothing).
2. ``ingest``: files through the whole pipeline (parse → chunk → embed in the worker process → index in a
   write transaction) vs ``LocalEmbedder.embed`` alone on the very same chunks, interleaved; target ≥ 0.8×.
3. ``query``: p50/p90 of ``HybridIndex.search`` (vector + keyword, fused) over ``--chunks`` chunks (100k)
   on SQLite and on PostgreSQL (a throwaway database). Embeddings are SYNTHETIC (random unit vectors,
   384 dims) and chunk texts are synthetic too (100 words drawn from a Zipf-distributed 20k-word
   vocabulary), so the numbers measure the index, not the model. The first query (loading the store's
   vectors into memory) is reported separately.

    .venv/bin/python -m bench.bench_retrieval                       # everything
    .venv/bin/python -m bench.bench_retrieval --only query --chunks 100000 \
        --database-url postgresql://postgres@127.0.0.1:5432/postgres
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.harness import database

PG_DEFAULT = "postgresql://postgres@127.0.0.1:5432/postgres"


# ------------------------------------------------------------------------------------------- corpora


def prose(rng: random.Random, words: int) -> str:
    """English-like filler in paragraphs, with sentence ends (so chunking behaves as on real text)."""
    subjects = ["The committee", "A small team", "Our analysts", "The new system", "Every customer",
                "The harbour authority", "A junior engineer", "The board", "Most readers", "The library"]
    verbs = ["reviewed", "measured", "rejected", "approved", "described", "improved", "compared", "shipped"]
    objects = ["the quarterly budget", "a faster indexing method", "the safety report", "two legacy servers",
               "the annual forecast", "a customer complaint", "the migration plan", "several draft contracts"]
    tails = ["before the deadline", "with some hesitation", "after a long debate", "in the northern office",
             "despite the storm", "using the old tools", "for the third time", "without much fuss"]
    out: list[str] = []
    n = 0
    while n < words:
        para = " ".join(f"{rng.choice(subjects)} {rng.choice(verbs)} {rng.choice(objects)} {rng.choice(tails)}."
                        for _ in range(rng.randint(3, 7)))
        out.append(para)
        n += len(para.split())
    return "\n\n".join(out)


def sample_chunks(n: int = 96, seed: int = 1) -> list[str]:
    from assistd.retrieval import chunk

    rng = random.Random(seed)
    texts: list[str] = []
    while len(texts) < n:
        texts += [c.text for c in chunk(prose(rng, 3000))]
    return texts[:n]


# ----------------------------------------------------------------------------------------- embedders


def bench_embedders(rounds: int, threads: int) -> None:
    from assistd.retrieval.embedding.minilm import MiniLM

    texts = sample_chunks(48)
    pieces = sum(len(MiniLM.windows(_tok(), t)) for t in texts)
    print(f"## embedders: {len(texts)} chunks of ~800 cl100k tokens ({pieces} windows of <=256 word pieces), "
          f"{threads} threads, {rounds} interleaved rounds")
    models = {"onnx (hand-built graph, default)": MiniLM("onnx", threads), "pytorch (transformers)":
              MiniLM("torch", threads)}
    ref = models["pytorch (transformers)"].embed(texts[:8])
    exported = _exported_onnx(threads)  # from its own copy of the model: tracing alters the one it traces
    if exported is not None:
        m = MiniLM("onnx", threads)
        m.backend = exported
        models["onnx (torch.onnx.export graph)"] = m
    results: dict[str, list[float]] = {name: [] for name in models}
    for m in models.values():
        m.embed(texts[:4])  # warm up
    for name, m in models.items():
        print(f"  {name}: min cosine vs PyTorch on 8 chunks {float((m.embed(texts[:8]) * ref).sum(1).min()):.6f}")
    for i in range(rounds):
        for name, m in models.items():
            t = time.perf_counter()
            m.embed(texts)
            results[name].append(len(texts) / (time.perf_counter() - t))
            print(f"  round {i + 1} {name:<34} {results[name][-1]:6.1f} chunks/s", flush=True)
    torch_rate = statistics.median(results["pytorch (transformers)"])
    print("\n| packaging | chunks/s (median) | vs PyTorch |\n|---|---|---|")
    for name, rates in results.items():
        print(f"| {name} | {statistics.median(rates):.1f} | {statistics.median(rates) / torch_rate:.2f}x |")


def _tok():  # a MiniLM shell with only the tokenizer, for counting windows
    from tokenizers import Tokenizer

    from assistd.retrieval.embedding.minilm import MiniLM, model_dir

    shell = MiniLM.__new__(MiniLM)
    shell.tokenizer = Tokenizer.from_file(str(model_dir() / "tokenizer.json"))
    shell.tokenizer.no_truncation()
    shell.cls, shell.sep = shell.tokenizer.token_to_id("[CLS]"), shell.tokenizer.token_to_id("[SEP]")
    return shell


def _exported_onnx(threads: int):  # type: ignore[no-untyped-def]
    """onnxruntime on the graph torch.onnx.export makes of the same weights (None if export fails)."""
    try:
        import onnxruntime as ort
        import torch
        from transformers import AutoModel

        from assistd.retrieval.embedding.minilm import model_dir

        class Wrap(torch.nn.Module):
            def __init__(self, m):  # type: ignore[no-untyped-def]
                super().__init__()
                self.m = m

            def forward(self, input_ids, attention_mask):  # type: ignore[no-untyped-def]
                return self.m(input_ids=input_ids, attention_mask=attention_mask,
                              token_type_ids=torch.zeros_like(input_ids)).last_hidden_state

        path = Path(tempfile.mkdtemp()) / "minilm.onnx"
        ids = torch.ones((2, 8), dtype=torch.int64)
        axes = {0: "b", 1: "s"}
        fresh = AutoModel.from_pretrained(str(model_dir())).eval()
        torch.onnx.export(Wrap(fresh), (ids, ids), str(path), dynamo=False, opset_version=17,
                          input_names=["input_ids", "attention_mask"], output_names=["last_hidden_state"],
                          dynamic_axes={"input_ids": axes, "attention_mask": axes, "last_hidden_state": axes})
        opts = ort.SessionOptions()
        opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

        class Backend:
            def hidden(self, i, m):  # type: ignore[no-untyped-def]
                return session.run(None, {"input_ids": i, "attention_mask": m})[0]

        return Backend()
    except Exception as exc:  # the comparison row is optional
        print(f"  (torch.onnx.export unavailable: {type(exc).__name__}: {exc})")
        return None


# -------------------------------------------------------------------------------------------- ingest


def bench_ingest(rounds: int, files: int, words: int) -> None:
    from assistd.retrieval import HybridIndex, IndexedChunk, LocalEmbedder, prepare
    from assistd.retrieval.pipeline import parse_and_chunk
    from assistd.store.db import Database
    from assistd.store.migrate import migrate

    rng = random.Random(3)
    docs = [(f"doc{i}.md", prose(rng, words).encode()) for i in range(files)]
    chunk_texts = [t for name, data in docs for t, _ in parse_and_chunk(data, name)]
    print(f"\n## ingest: {files} files x ~{words} words -> {len(chunk_texts)} chunks (auto 800/400), "
          f"SQLite, local embedder (worker process), {rounds} interleaved rounds")

    async def run() -> tuple[list[float], list[float]]:
        workdir = Path(tempfile.mkdtemp())
        db = Database(f"sqlite:///{workdir / 'ingest.db'}", pool_size=4)
        await migrate(db)
        index, embedder = HybridIndex(), LocalEmbedder()
        await embedder.warm_up()
        pipeline_rates, embed_rates = [], []
        gate = asyncio.Semaphore(2)

        async def ingest(store: str, i: int, name: str, data: bytes) -> None:
            # One ingestion job: prepare outside any transaction, then index in one write transaction.
            async with gate:
                chunks = await prepare(data, name, "text/markdown", embedder)
                async with db.write() as conn:
                    await index.add(conn, store, f"file_{i}", name, chunks, {"n": i})

        async def pipeline(r: int) -> None:
            t = time.perf_counter()
            # Two jobs in flight, as the worker pool runs them: one file is parsed and chunked (or
            # indexed) while the embedder works on the other, so the model never waits for them.
            await asyncio.gather(*(ingest(f"vs_bench_{r}", i, n, d) for i, (n, d) in enumerate(docs)))
            pipeline_rates.append(len(chunk_texts) / (time.perf_counter() - t))

        async def embed_only() -> None:
            t = time.perf_counter()
            await embedder.embed(chunk_texts)
            embed_rates.append(len(chunk_texts) / (time.perf_counter() - t))

        try:
            for r in range(rounds):
                # A-B, then B-A: drift in the machine's load does not favour either side.
                for step in ((pipeline(r), embed_only()) if r % 2 == 0 else (embed_only(), pipeline(r))):
                    await step
                print(f"  round {r + 1}: pipeline {pipeline_rates[-1]:6.1f} chunks/s, embedder alone "
                      f"{embed_rates[-1]:6.1f} chunks/s", flush=True)
            # The pipeline's own work per chunk, outside the embedder (single-threaded, so load-independent
            # enough to explain the ratio): parsing + chunking, and the index write transaction.
            t = time.process_time()
            prepared = [parse_and_chunk(data, name) for name, data in docs]
            parse_ms = (time.process_time() - t) * 1e3 / len(chunk_texts)
            vectors = await embedder.embed(chunk_texts[:1]) * len(chunk_texts)
            t = time.perf_counter()
            k = 0
            for i, ((name, _), pieces) in enumerate(zip(docs, prepared, strict=True)):
                batch = [IndexedChunk(text, vectors[k + j], n) for j, (text, n) in enumerate(pieces)]
                k += len(pieces)
                async with db.write() as conn:
                    await index.add(conn, "vs_overhead", f"file_{i}", name, batch, {})
            index_ms = (time.perf_counter() - t) * 1e3 / len(chunk_texts)
            print(f"  outside the embedder, per chunk: parse+chunk {parse_ms:.2f} ms CPU, index write "
                  f"{index_ms:.2f} ms")
        finally:
            await embedder.aclose()
            await db.close()
        return pipeline_rates, embed_rates

    pipe, emb = asyncio.run(run())
    # Each round's two measurements are adjacent in time, so their ratio is the least noisy figure.
    ratio = statistics.median(p / e for p, e in zip(pipe, emb, strict=True))
    print(f"\n| pipeline (parse→chunk→embed→index) | embedder alone, same chunks | ratio (median of rounds) |\n"
          f"|---|---|---|\n| {statistics.median(pipe):.1f} chunks/s | {statistics.median(emb):.1f} chunks/s | "
          f"{ratio:.2f} |")


# --------------------------------------------------------------------------------------------- query


def bench_query(url: str | None, n_chunks: int, queries: int) -> None:
    from assistd.retrieval import HybridIndex, IndexedChunk
    from assistd.store.db import Database
    from assistd.store.migrate import migrate

    rng = np.random.default_rng(5)
    vocab = [f"w{i:05d}" for i in range(20_000)]
    weights = 1.0 / np.arange(1, len(vocab) + 1)
    weights /= weights.sum()

    def texts(k: int) -> list[str]:
        draws = rng.choice(len(vocab), size=(k, 100), p=weights)
        return [" ".join(vocab[j] for j in row) for row in draws]

    def vectors(k: int) -> np.ndarray:
        v = rng.standard_normal((k, 384), dtype=np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    with tempfile.TemporaryDirectory() as tmp, database(url, Path(tmp)) as db_url:
        backend = "PostgreSQL" if db_url.startswith("postgres") else "SQLite"

        async def run() -> tuple[float, float, float, dict[str, list[float]]]:
            db = Database(db_url, pool_size=4)
            await migrate(db)
            index = HybridIndex()
            t = time.perf_counter()
            per_file = 1000
            for f in range(0, n_chunks, per_file):
                k = min(per_file, n_chunks - f)
                batch = [IndexedChunk(tx, v, 130) for tx, v in zip(texts(k), vectors(k), strict=True)]
                async with db.write() as conn:
                    await index.add(conn, "vs_big", f"file_{f // per_file}", f"f{f}.txt", batch,
                                    {"part": f // per_file % 10})
            load_s = time.perf_counter() - t
            if backend == "PostgreSQL":  # what autovacuum would have done by now: planner statistics
                async with db.engine.connect() as conn:
                    await (await conn.execution_options(isolation_level="AUTOCOMMIT")).exec_driver_sql("ANALYZE")
            qv = vectors(queries + 1)
            # Query words from the middle of the frequency range, like a question's content words.
            qt = [" ".join(vocab[j] for j in rng.integers(50, 2000, size=4)) for _ in range(queries + 1)]
            t = time.perf_counter()
            async with db.read() as conn:
                await index.search(conn, ["vs_big"], qt[0], qv[0].tolist(), max_num_results=20)
            first = time.perf_counter() - t
            times: dict[str, list[float]] = {"hybrid": [], "vector only": [], "keyword only": []}
            for i in range(1, queries + 1):
                for mode, text, vector in (("hybrid", qt[i], qv[i].tolist()), ("vector only", None, qv[i].tolist()),
                                           ("keyword only", qt[i], None)):
                    t = time.perf_counter()
                    async with db.read() as conn:
                        hits = await index.search(conn, ["vs_big"], text, vector, max_num_results=20)
                    times[mode].append(time.perf_counter() - t)
                    assert hits
            # A file added to the store: the next query refreshes the matrix by that file alone.
            added = [IndexedChunk(tx, v, 130) for tx, v in zip(texts(100), vectors(100), strict=True)]
            async with db.write() as conn:
                await index.add(conn, "vs_big", "file_added", "added.txt", added, {"part": 0})
            t = time.perf_counter()
            async with db.read() as conn:
                await index.search(conn, ["vs_big"], qt[0], qv[0].tolist(), max_num_results=20)
            after_write = time.perf_counter() - t
            await db.close()
            return load_s, first, after_write, times

        load_s, first, after_write, by_mode = asyncio.run(run())
        for mode, ts in by_mode.items():
            print(f"  {mode:<13} p50 {statistics.median(ts) * 1e3:6.1f} ms")
        times = sorted(by_mode["hybrid"])
        p50, p90 = statistics.median(times) * 1e3, times[int(0.9 * len(times))] * 1e3
        print(f"\n## query: {backend}, {n_chunks:,} chunks (synthetic 384-d embeddings, 100-word Zipf texts), "
              f"{queries} hybrid queries, max_num_results=20\n  indexed in {load_s:.1f} s; first query "
              f"(loads the vectors) {first * 1e3:.0f} ms; first query after adding a 100-chunk file "
              f"{after_write * 1e3:.0f} ms\n\n| backend | chunks | p50 | p90 |\n|---|---|---|---|\n"
              f"| {backend} | {n_chunks:,} | {p50:.1f} ms | {p90:.1f} ms |", flush=True)


# ------------------------------------------------------------------------------------- sqlite-vec


def bench_sqlite_vec(n: int = 100_000, d: int = 384, queries: int = 20) -> None:
    """The option not taken: sqlite-vec's vec0 KNN vs the numpy path, same data (needs apsw + sqlite-vec)."""
    try:
        import apsw
        import sqlite_vec
    except ImportError:
        print("\n(sqlite-vec comparison skipped: pip install apsw sqlite-vec)")
        return
    rng = np.random.default_rng(0)
    m = rng.standard_normal((n, d), dtype=np.float32)
    m /= np.linalg.norm(m, axis=1, keepdims=True)
    with tempfile.TemporaryDirectory() as tmp:
        conn = apsw.Connection(str(Path(tmp) / "vec.db"))
        conn.enable_load_extension(True)
        conn.load_extension(sqlite_vec.loadable_path())
        cur = conn.cursor()
        cur.execute(f"CREATE VIRTUAL TABLE v USING vec0(embedding float[{d}] distance_metric=cosine)")
        with conn:
            cur.executemany("INSERT INTO v(rowid, embedding) VALUES (?, ?)",
                            ((i + 1, m[i].tobytes()) for i in range(n)))
        qs = rng.standard_normal((queries, d), dtype=np.float32)
        vec_t, np_t = [], []
        for q in qs:
            t = time.perf_counter()
            cur.execute("SELECT rowid FROM v WHERE embedding MATCH ? AND k = 60", (q.tobytes(),)).fetchall()
            vec_t.append(time.perf_counter() - t)
            t = time.perf_counter()
            s = m @ (q / np.linalg.norm(q))
            top = np.argpartition(-s, 60)[:60]
            top[np.argsort(-s[top])]
            np_t.append(time.perf_counter() - t)
        conn.close()
    print(f"\n## vector top-60 over {n:,} x {d}: sqlite-vec vec0 p50 {statistics.median(vec_t) * 1e3:.1f} ms, "
          f"numpy matmul p50 {statistics.median(np_t) * 1e3:.1f} ms")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_retrieval", description=__doc__.split("\n")[0])
    parser.add_argument("--only", choices=["embedders", "ingest", "query", "sqlite-vec"], action="append")
    parser.add_argument("--database-url", action="append",
                        help="query bench targets (default: a SQLite file and " + PG_DEFAULT + ")")
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--files", type=int, default=6)
    parser.add_argument("--words", type=int, default=2500, help="words per file in the ingest bench")
    parser.add_argument("--threads", type=int, default=0, help="embedder threads (0 = the default)")
    parser.add_argument("--seconds", type=float, help="ignored (scripts/bench passes it to every bench)")
    parser.add_argument("--connections", type=int, help="ignored")
    args = parser.parse_args(argv)
    only = set(args.only or ["embedders", "ingest", "query", "sqlite-vec"])
    from assistd.retrieval.embedding.minilm import default_threads

    print(f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}, Python {sys.version.split()[0]}")
    if "embedders" in only:
        bench_embedders(args.rounds, args.threads or default_threads())
    if "ingest" in only:
        bench_ingest(args.rounds, args.files, args.words)
    if "query" in only:
        for url in args.database_url or ["sqlite", PG_DEFAULT]:
            bench_query(url, args.chunks, args.queries)
    if "sqlite-vec" in only:
        bench_sqlite_vec()
    return 0


if __name__ == "__main__":
    sys.exit(main())
