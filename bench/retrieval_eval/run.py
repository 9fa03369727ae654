"""Retrieval quality on real documentation: recall@1, recall@5 and MRR of ``HybridIndex.search``.

Corpus: the Python 3.11 tutorial (``tutorial/*.html``) and four FAQs (``faq/programming``, ``general``,
``library``, ``design``) as Debian's ``python3.11-doc`` package installs them under
``/usr/share/doc/python3.11/html`` (``apt-get install python3.11-doc``; nothing is downloaded here). The
HTML pages go through assistd's own parse → chunk (800/400 tokens) → local embedder (all-MiniLM-L6-v2,
ONNX) → ``HybridIndex`` (SQLite), as uploaded files would.

Questions: ``questions.txt`` (``doc | section id | kind | question``), written as users type them; ``lexical``
ones reuse the document's words, ``paraphrase`` ones avoid them. A hit is a result from the expected page
whose text holds the expected section's heading (the chunk where that section starts; with 50% overlap a
section's start is in one or two chunks).

    .venv/bin/python -m bench.retrieval_eval.run                  # hybrid, vector only, keyword only
    .venv/bin/python -m bench.retrieval_eval.run --embed-as title  # variants: see --help
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import html
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

DOCS = Path("/usr/share/doc/python3.11/html")
HERE = Path(__file__).parent
CACHE = Path(tempfile.gettempdir()) / "assistd-eval-cache"
_SECTION = re.compile(r'<section id="([^"]+)">\s*(?:<span[^>]*></span>\s*)*<h\d>(.*?)<a class="headerlink', re.S)


def pages() -> list[Path]:
    if not DOCS.is_dir():
        sys.exit(f"{DOCS} is missing: apt-get install python3.11-doc")
    return sorted(DOCS.glob("tutorial/*.html")) + [DOCS / f"faq/{n}.html" for n in
                                                    ("programming", "general", "library", "design")]


def norm(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "", text.lower())


def headings(page: Path) -> dict[str, str]:
    return {m.group(1): norm(html.unescape(re.sub("<[^>]+>", "", m.group(2))))
            for m in _SECTION.finditer(page.read_text())}


def questions() -> list[dict[str, str]]:
    out = []
    for line in (HERE / "questions.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            doc, section, kind, question = (part.strip() for part in line.split("|", 3))
            out.append({"doc": doc + ".html", "section": section, "kind": kind, "question": question})
    return out


class Embedder:
    """The local model in this process, with an on-disk cache by text (variants re-embed only what changes)."""

    def __init__(self) -> None:
        from assistd.retrieval.embedding.minilm import MiniLM

        self.model = MiniLM("onnx")
        CACHE.mkdir(exist_ok=True)

    def embed(self, texts: list[str]) -> np.ndarray:
        keys = [hashlib.sha256(t.encode()).hexdigest()[:32] for t in texts]
        missing = [i for i, k in enumerate(keys) if not (CACHE / f"{k}.npy").exists()]
        if missing:
            for i, v in zip(missing, self.model.embed([texts[i] for i in missing]), strict=True):
                np.save(CACHE / f"{keys[i]}.npy", v)
        return np.stack([np.load(CACHE / f"{k}.npy") for k in keys])

    def windows(self, texts: list[str]) -> list[np.ndarray]:
        """Each text's window vectors (what ``embed`` averages), cached like ``embed``."""
        out = []
        for text in texts:
            path = CACHE / f"{hashlib.sha256(text.encode()).hexdigest()[:32]}.windows.npy"
            if not path.exists():
                np.save(path, self.model._embed_windows(self.model.windows(text)))
            out.append(np.load(path))
        return out


def embedded_text(variant: str, name: str, title: str, text: str) -> str:
    """What a chunk is embedded as."""
    if variant == "title":
        return f"{title}\n{text}"
    return text


async def evaluate(args: argparse.Namespace) -> None:
    from assistd.retrieval import HybridIndex, IndexedChunk
    from assistd.retrieval.index import types
    from assistd.retrieval.pipeline import parse_and_chunk
    from assistd.store.db import Database
    from assistd.store.migrate import migrate

    types.RRF_K = args.rrf_k
    types.WEIGHTS["vector"] = args.vector_weight
    if args.common is not None:
        from assistd.retrieval.index import keyword

        keyword.COMMON = args.common
    qs = questions()
    embedder = Embedder()
    workdir = Path(tempfile.mkdtemp())
    db = Database(f"sqlite:///{workdir / 'eval.db'}", pool_size=2)
    await migrate(db)
    index = HybridIndex()
    t = time.perf_counter()
    marks: dict[str, dict[str, str]] = {}
    n_chunks = 0
    for page in pages():
        rel = str(page.relative_to(DOCS))
        marks[rel] = headings(page)
        data = page.read_bytes()
        title = re.search(r"<title>(.*?)</title>", data.decode(), re.S)
        title_text = html.unescape(title.group(1)).split("—")[0].strip() if title else page.stem
        pieces = parse_and_chunk(data, page.name)
        texts = [embedded_text(args.embed_as, page.name, title_text, p) for p, _ in pieces]
        vectors = embedder.embed(texts)
        windows = embedder.windows(texts) if args.vectors == "windows" else [None] * len(texts)
        async with db.write() as conn:
            await index.add(conn, "vs_eval", rel, page.name, [IndexedChunk(p, v, n, w) for (p, n), v, w in
                                                              zip(pieces, vectors, windows, strict=True)], {})
        n_chunks += len(pieces)
    print(f"indexed {len(marks)} pages, {n_chunks} chunks in {time.perf_counter() - t:.0f} s "
          f"(embed as: {args.embed_as}, RRF k={args.rrf_k}, "
          f"vector weight {args.vector_weight}, vectors: {args.vectors})")
    qvecs = embedder.embed([q["question"] for q in qs])
    unresolved = [q for q in qs if q["section"] not in marks.get(q["doc"], {})]
    if unresolved:
        sys.exit(f"questions naming unknown sections: {unresolved}")
    results: dict[str, dict[str, list[int | None]]] = {}
    for mode in ("hybrid", "vector", "keyword"):
        ranks: dict[str, list[int | None]] = {"lexical": [], "paraphrase": []}
        for q, v in zip(qs, qvecs, strict=True):
            text = q["question"] if mode != "vector" else None
            vector = v.tolist() if mode != "keyword" else None
            async with db.read() as conn:
                hits = await index.search(conn, ["vs_eval"], text, vector, max_num_results=10)
            want = marks[q["doc"]][q["section"]]
            rank = next((i for i, h in enumerate(hits, 1) if h.file_id == q["doc"] and want in norm(h.text)), None)
            ranks[q["kind"]].append(rank)
            if args.verbose and mode == "hybrid" and (rank is None or rank > 5):
                print(f"  miss ({q['kind']}): {q['question']!r} -> {q['doc']}#{q['section']}; got "
                      f"{[h.file_id.split('/')[-1] + ':' + str(h.chunk_index) for h in hits[:5]]}")
        results[mode] = ranks
    await db.close()
    print("\n| ranking | questions | recall@1 | recall@5 | MRR@10 |\n|---|---|---|---|---|")
    for mode, ranks in results.items():
        for kind, rs in (("all", ranks["lexical"] + ranks["paraphrase"]), ("lexical", ranks["lexical"]),
                         ("paraphrase", ranks["paraphrase"])):
            r1 = sum(1 for r in rs if r == 1) / len(rs)
            r5 = sum(1 for r in rs if r is not None and r <= 5) / len(rs)
            mrr = sum(1 / r for r in rs if r is not None) / len(rs)
            print(f"| {mode} | {kind} ({len(rs)}) | {r1:.2f} | {r5:.2f} | {mrr:.3f} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.retrieval_eval.run", description=__doc__.split("\n")[0])
    parser.add_argument("--embed-as", choices=["chunk", "title"], default="chunk",
                        help="what each chunk is embedded as: its text, or the page title + its text")
    parser.add_argument("--rrf-k", type=int, default=60, help="reciprocal rank fusion constant")
    parser.add_argument("--vector-weight", type=float, default=3.0,
                        help="weight of the vector list in RRF (the product's: 3)")
    parser.add_argument("--vectors", choices=["windows", "chunk"], default="windows",
                        help="vector ranking by each chunk's best window (the product) or by its one mean vector "
                             "(before migration 0008, or an upstream embedder)")
    parser.add_argument("--common", type=int, help="keyword.COMMON: chunks above which a word is common")
    parser.add_argument("-v", "--verbose", action="store_true", help="print the hybrid misses")
    asyncio.run(evaluate(parser.parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
