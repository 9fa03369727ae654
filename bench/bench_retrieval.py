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
import contextlib
import importlib.util
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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
    try:
        import torch  # noqa: F401  (only in the optional bench extra: make install-bench)
    except ImportError:
        print("  (skipped: PyTorch is not installed; `make install-bench` adds it for this comparison)")
        return
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


# --------------------------------------------------------------------------- synthetic large stores

# The head of an English-like vocabulary: the stop words a question is full of, then words common in
# technical documentation. Drawn Zipf-wise ahead of 20k synthetic content words, so a question as people
# type it ("how do I set the default timeout for w01234?") shares a few words with half the store.
COMMON = """the of and to a in is that for it as with be on by this are or not from at which can an if will
you use file set value default run server data time user system name type error list need make way work new
version config option command line page code test support change number string function return example
using used create get first also each one two may must should when all more other only see""".split()


class Corpus:
    """Synthetic chunks over one vocabulary: COMMON words first, then 20k ``w00000``-style content words,
    Zipf-distributed (s = 1); random 384-d unit vectors stand in for embeddings (the index, not a model)."""

    def __init__(self, seed: int = 5) -> None:
        self.rng = np.random.default_rng(seed)
        self.content = [f"w{i:05d}" for i in range(20_000)]
        self.vocab = COMMON + self.content
        w = 1.0 / np.arange(1, len(self.vocab) + 1)
        self.p = w / w.sum()

    def texts(self, k: int, words: int = 100) -> list[str]:
        draws = self.rng.choice(len(self.vocab), size=(k, words), p=self.p)
        return [" ".join(self.vocab[j] for j in row) for row in draws]

    def vectors(self, k: int) -> np.ndarray:
        v = self.rng.standard_normal((k, 384), dtype=np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    def keyword_query(self) -> str:
        """4 content words from the middle of the frequency range (what the bench used to send only)."""
        return " ".join(self.content[j] for j in self.rng.integers(50, 2000, size=4))

    def natural_question(self) -> str:
        """A question as typed: stop words, 2-3 common words and 1-2 content words."""
        r = self.rng
        common = [COMMON[j] for j in r.integers(33, len(COMMON), size=int(r.integers(2, 4)))]
        content = [self.content[j] for j in r.integers(20, 3000, size=int(r.integers(1, 3)))]
        opener = ["how do I", "why does the", "what is the", "can I", "where do I find the"][int(r.integers(0, 5))]
        return f"{opener} {common[0]} {content[0]} {' '.join(common[1:])} for my {' '.join(content[1:]) or 'code'}?"


# -------------------------------------------------------------------------------------- ingest scale


def bench_scale(url: str | None, levels: list[int], per_file: int, timed: int) -> None:
    """Ingestion cost as a store grows: the store is filled fast (index writes, file rows inserted in bulk)
    up to each level, then ``timed`` files of ``per_file`` chunks go through what an ingestion job's write
    transaction does (lock the store, index the chunks, the file ``completed``, the store's derived fields).
    Embeddings are synthetic and precomputed, so this is the per-file cost outside the embedder."""
    from sqlalchemy import insert

    from assistd.retrieval import IndexedChunk
    from assistd.services import vector_stores as stores
    from assistd.store import objects
    from assistd.store.db import Database
    from assistd.store.migrate import migrate
    from assistd.store.tables import vector_store_files

    corpus = Corpus(7)
    with tempfile.TemporaryDirectory() as tmp, database(url, Path(tmp)) as db_url:
        backend = "PostgreSQL" if db_url.startswith("postgres") else "SQLite"

        async def run() -> list[tuple[int, float]]:
            db = Database(db_url, pool_size=4)
            await migrate(db)
            index = stores.process_index()
            async with db.write() as conn:
                store = await stores.create_store(conn, "proj_bench", name="scale")
            sid = store["id"]
            chunks, files, out = 0, 0, []

            def file_obj(fid: str, status: str) -> dict:
                return {"id": fid, "object": "vector_store.file", "usage_bytes": 0, "created_at": 0,
                        "vector_store_id": sid, "status": status, "last_error": None,
                        "chunking_strategy": stores.chunking_object(800, 400), "attributes": {}}

            for level in levels:
                while chunks < level - timed * per_file:  # fill: 50 files per transaction, no derived fields
                    async with db.write() as conn:
                        rows = []
                        for _ in range(min(50, (level - timed * per_file - chunks) // per_file or 1)):
                            fid = f"file-{files:06d}"
                            batch = [IndexedChunk(t, v, 130) for t, v in
                                     zip(corpus.texts(per_file), corpus.vectors(per_file), strict=True)]
                            await index.add(conn, sid, fid, f"{fid}.txt", batch, {})
                            rows.append({"id": fid, "vector_store_id": sid, "project_id": "proj_bench",
                                         "created_at": 0, "status": "completed", "batch_id": None,
                                         "data": objects.dumps(file_obj(fid, "completed"))})
                            files += 1
                            chunks += per_file
                        await conn.execute(insert(vector_store_files), rows)
                async with db.write() as conn:  # the timed files, attached together (as a batch would)
                    store = await stores.lock_store(conn, None, sid)
                    specs = [stores.FileSpec({"id": f"file-{files + i:06d}"}, 800, 400, {}) for i in range(timed)]
                    await stores.add_files(conn, "proj_bench", store, specs)
                    await stores.refresh(conn, store, moved=None)  # recount: the fill bypassed the counts
                if backend == "PostgreSQL":  # what autovacuum does after a bulk load, done before timing
                    async with db.engine.connect() as conn:
                        auto = await conn.execution_options(isolation_level="AUTOCOMMIT")
                        await auto.exec_driver_sql("VACUUM ANALYZE")
                prepared = [[IndexedChunk(t, v, 130) for t, v in
                             zip(corpus.texts(per_file), corpus.vectors(per_file), strict=True)] for _ in range(timed)]
                t = time.perf_counter()
                for batch in prepared:  # ingestion.IngestFile's write transaction, one file at a time
                    fid = f"file-{files:06d}"
                    async with db.write() as conn:
                        store = await stores.lock_store(conn, None, sid)
                        await index.add(conn, sid, fid, f"{fid}.txt", batch, {})
                        obj = {**file_obj(fid, "completed"), "usage_bytes": sum(len(c.text) + 1536 for c in batch)}
                        await conn.execute(vector_store_files.update()
                                           .where(vector_store_files.c.vector_store_id == sid,
                                                  vector_store_files.c.id == fid)
                                           .values(status="completed", data=objects.dumps(obj)))
                        await _refresh_after_ingest(stores, conn, store)
                        await stores.refresh_batch(conn, None)
                    files += 1
                    chunks += per_file
                rate = timed * per_file / (time.perf_counter() - t)
                print(f"  {backend} at {chunks:,} chunks ({files:,} files): {rate:7.1f} chunks/s", flush=True)
                out.append((chunks, rate))
            async with db.read() as conn:
                final = await stores.get_store(conn, "proj_bench", sid)
                exact = await index.usage_bytes(conn, sid)
            assert final["file_counts"]["completed"] == files and final["usage_bytes"] == exact, final
            await db.close()
            return out

        rates = asyncio.run(run())
        print("\n| backend | " + " | ".join(f"{c:,} chunks" for c, _ in rates) + " |\n|---|"
              + "---|" * len(rates) + f"\n| {backend} | " + " | ".join(f"{r:.0f} chunks/s" for _, r in rates)
              + " |", flush=True)


async def _refresh_after_ingest(stores, conn, store) -> None:  # type: ignore[no-untyped-def]
    """What ingestion.py calls after a file completes (the file moved from in_progress to completed)."""
    await stores.refresh(conn, store, moved={"in_progress": -1, "completed": 1})


# --------------------------------------------------------------------------------------------- query


@contextlib.contextmanager
def _keyword_module(module: Any) -> Iterator[None]:
    """The hybrid index ranking keywords with ``module`` (another version of keyword.py) meanwhile."""
    from assistd.retrieval.index import hybrid

    if module is None:
        yield
        return
    saved = hybrid.keyword
    hybrid.keyword = module
    try:
        yield
    finally:
        hybrid.keyword = saved


def _module_from(path: str, name: str = "keyword_compared") -> Any:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@contextlib.contextmanager
def _vectors_module(module: Any) -> Iterator[None]:
    """The hybrid index scoring vectors with ``module``'s ``top_k`` (another version of vectors.py) meanwhile;
    its index must hold that module's ``VectorCache`` (``_index_with``)."""
    from assistd.retrieval.index import hybrid

    if module is None:
        yield
        return
    saved = hybrid.top_k
    hybrid.top_k = module.top_k
    try:
        yield
    finally:
        hybrid.top_k = saved


def _index_with(module: Any) -> Any:
    from assistd.retrieval import HybridIndex

    index = HybridIndex()
    if module is not None:
        index.cache = module.VectorCache(index.cache.max_bytes)
    return index


def _memory() -> str:
    """This process's resident memory now and at its peak (Linux)."""
    try:
        status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    except OSError:
        return "RSS unknown"
    return f"RSS {int(status['VmRSS'].split()[0]) // 1024} MB (peak {int(status['VmHWM'].split()[0]) // 1024} MB)"


def bench_query(url: str | None, n_chunks: int, queries: int, compare: str | None = None, windows: int = 1,
                compare_vectors: str | None = None, vectors_from: str | None = None, rounds_after_write: int = 1,
                only_natural: bool = False) -> None:
    """``compare``: the path of another keyword.py (e.g. an older commit's, from ``git show``), measured
    in the same run, query by query, beside this tree's; ``compare_vectors`` likewise for vectors.py (a
    second index with that module's cache). ``vectors_from``: vectors.py from this path instead of the
    tree's (to measure another version's memory alone in a process). ``windows``: vectors per chunk (the
    local model gives an 800-token chunk three; the matrix has a row per window)."""
    from assistd.retrieval import IndexedChunk
    from assistd.store.db import Database
    from assistd.store.migrate import migrate

    corpus = Corpus(5)
    with tempfile.TemporaryDirectory() as tmp, database(url, Path(tmp)) as db_url:
        backend = "PostgreSQL" if db_url.startswith("postgres") else "SQLite"

        async def run() -> tuple[float, float, float, dict[str, list[float]]]:
            db = Database(db_url, pool_size=4)
            await migrate(db)
            own_vectors = _module_from(vectors_from, "vectors_own") if vectors_from else None
            index = _index_with(own_vectors)
            t = time.perf_counter()
            per_file = 1000
            for f in range(0, n_chunks, per_file):
                k = min(per_file, n_chunks - f)
                batch = [IndexedChunk(tx, v, 130, corpus.vectors(windows) if windows > 1 else None)
                         for tx, v in zip(corpus.texts(k), corpus.vectors(k), strict=True)]
                async with db.write() as conn:
                    await index.add(conn, "vs_big", f"file_{f // per_file}", f"f{f}.txt", batch,
                                    {"part": f // per_file % 10})
            load_s = time.perf_counter() - t
            if backend == "PostgreSQL":  # what autovacuum would have done by now: planner statistics
                async with db.engine.connect() as conn:
                    await (await conn.execution_options(isolation_level="AUTOCOMMIT")).exec_driver_sql("ANALYZE")
            qv = corpus.vectors(queries + 1)
            keyword_like = [corpus.keyword_query() for _ in range(queries + 1)]
            natural = [corpus.natural_question() for _ in range(queries + 1)]
            t = time.perf_counter()
            async with db.read() as conn:
                await index.search(conn, ["vs_big"], keyword_like[0], qv[0].tolist(), max_num_results=20)
            first = time.perf_counter() - t
            memory = (f"{_memory()}, store in cache "
                      f"{sum(m.nbytes for m in index.cache._stores.values()) / 2**20:.0f} MB")
            times: dict[str, list[float]] = {}
            variants = {"": (index, None), **({f" [{compare}]": (index, _module_from(compare))} if compare else {})}
            if compare_vectors:
                other = _module_from(compare_vectors, "vectors_compared")
                variants[f" [{compare_vectors}]"] = (_index_with(other), other)
                async with db.read() as conn:  # loaded before timing, as this tree's was
                    with _vectors_module(other):
                        await variants[f" [{compare_vectors}]"][0].search(conn, ["vs_big"], keyword_like[0],
                                                                          qv[0].tolist(), max_num_results=20)
            modes = (("hybrid", "k"), ("vector only", "v"), ("keyword only", "k-"),
                     ("hybrid, natural question", "n"), ("keyword only, natural question", "n-"))
            if only_natural:
                modes = tuple(m for m in modes if "natural" in m[0] or m[0] == "vector only")
            for i in range(1, queries + 1):
                for mode, kind in modes:
                    text = None if kind == "v" else (natural[i] if kind.startswith("n") else keyword_like[i])
                    vector = None if kind.endswith("-") else qv[i].tolist()
                    order = list(variants.items()) if i % 2 else list(variants.items())[::-1]
                    for label, (idx, module) in order:  # interleaved: the machine's load hits both alike
                        if label.endswith(f"[{compare}]") and text is None:
                            continue
                        if compare_vectors and label.endswith(f"[{compare_vectors}]") and vector is None:
                            continue
                        is_vectors = compare_vectors is not None and label.endswith(f"[{compare_vectors}]")
                        with _keyword_module(None if is_vectors else module), \
                                _vectors_module(module if is_vectors else None):
                            t = time.perf_counter()
                            async with db.read() as conn:
                                hits = await idx.search(conn, ["vs_big"], text, vector, max_num_results=20)
                            times.setdefault(mode + label, []).append(time.perf_counter() - t)
                        assert hits
            # A file added to the store: the next query refreshes the matrix by that file alone.
            after_write: dict[str, list[float]] = {}
            for r in range(rounds_after_write):
                added = [IndexedChunk(tx, v, 130) for tx, v in zip(corpus.texts(100), corpus.vectors(100),
                                                                   strict=True)]
                async with db.write() as conn:
                    await index.add(conn, "vs_big", f"file_added_{r}", "added.txt", added, {"part": 0})
                order = list(variants.items()) if r % 2 == 0 else list(variants.items())[::-1]
                for label, (idx, module) in order:
                    if idx is index and label:
                        continue  # the keyword comparison shares this tree's index (and cache)
                    with _vectors_module(module if idx is not index else None):
                        t = time.perf_counter()
                        async with db.read() as conn:
                            await idx.search(conn, ["vs_big"], keyword_like[0], qv[0].tolist(), max_num_results=20)
                        after_write.setdefault(label, []).append(time.perf_counter() - t)
            await db.close()
            return load_s, first, memory, after_write, times

        load_s, first, memory, after_write, by_mode = asyncio.run(run())
        writes = "; ".join(f"{label or 'this tree'}: {' '.join(f'{t * 1e3:.0f}' for t in ts)} ms"
                           for label, ts in after_write.items())
        print(f"\n## query: {backend}, {n_chunks:,} chunks (synthetic 384-d embeddings, 100-word Zipf texts), "
              f"{windows} vector(s) a chunk, {queries} queries of each kind, max_num_results=20; "
              f"e.g. {corpus.natural_question()!r}\n"
              f"  indexed in {load_s:.1f} s; first query (loads the vectors) {first * 1e3:.0f} ms, then {memory}\n"
              f"  first query after adding a 100-chunk file ({rounds_after_write} rounds): {writes}\n"
              "\n| backend | query | p50 | p90 |\n|---|---|---|---|")
        for mode, ts in by_mode.items():
            ts = sorted(ts)
            print(f"| {backend} | {mode} | {statistics.median(ts) * 1e3:.1f} ms | "
                  f"{ts[int(0.9 * len(ts))] * 1e3:.1f} ms |", flush=True)


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
    parser.add_argument("--only", choices=["embedders", "ingest", "scale", "query", "sqlite-vec"], action="append")
    parser.add_argument("--database-url", action="append",
                        help="query bench targets (default: a SQLite file and " + PG_DEFAULT + ")")
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--windows", type=int, default=1, help="query bench: window vectors per chunk")
    parser.add_argument("--compare-keyword", metavar="PATH", help="query bench: also time this keyword.py")
    parser.add_argument("--compare-vectors", metavar="PATH", help="query bench: also time this vectors.py")
    parser.add_argument("--vectors-from", metavar="PATH", help="query bench: vectors.py from this path")
    parser.add_argument("--rounds-after-write", type=int, default=1,
                        help="query bench: files added one at a time, each followed by a timed query")
    parser.add_argument("--natural-only", action="store_true",
                        help="query bench: natural questions and vector only (no keyword-like queries)")
    parser.add_argument("--levels", default="10000,50000,100000", help="store sizes (chunks) of the scale bench")
    parser.add_argument("--timed-files", type=int, default=50, help="files of 20 chunks timed at each level")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--files", type=int, default=6)
    parser.add_argument("--words", type=int, default=2500, help="words per file in the ingest bench")
    parser.add_argument("--threads", type=int, default=0, help="embedder threads (0 = the default)")
    parser.add_argument("--seconds", type=float, help="ignored (scripts/bench passes it to every bench)")
    parser.add_argument("--connections", type=int, help="ignored")
    args = parser.parse_args(argv)
    only = set(args.only or ["embedders", "ingest", "query", "sqlite-vec"])  # scale: ~10 min, ask for it
    from assistd.retrieval.embedding.minilm import default_threads

    print(f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}, Python {sys.version.split()[0]}")
    if "embedders" in only:
        bench_embedders(args.rounds, args.threads or default_threads())
    if "ingest" in only:
        bench_ingest(args.rounds, args.files, args.words)
    if "scale" in only:
        for url in args.database_url or ["sqlite", PG_DEFAULT]:
            bench_scale(url, [int(x) for x in args.levels.split(",")], 20, args.timed_files)
    if "query" in only:
        for url in args.database_url or ["sqlite", PG_DEFAULT]:
            bench_query(url, args.chunks, args.queries, args.compare_keyword, args.windows, args.compare_vectors,
                        args.vectors_from, args.rounds_after_write, args.natural_only)
    if "sqlite-vec" in only:
        bench_sqlite_vec()
    return 0


if __name__ == "__main__":
    sys.exit(main())
