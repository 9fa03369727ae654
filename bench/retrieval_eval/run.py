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

Halves: a question is in the *tuning* half when the first byte of sha256("doc#section") is even, else in
the *held-out* half (both questions of a section fall in the same half; 74 and 76 questions). Choose
settings on the tuning half only; the held-out half says whether a choice generalises.

    .venv/bin/python -m bench.retrieval_eval.run                     # hybrid, vector only, keyword only
    .venv/bin/python -m bench.retrieval_eval.run --context none      # variants: see --help
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


def half(doc: str, section: str) -> str:
    """The fixed split: "tuning" or "held-out" (see the module's docstring)."""
    return "tuning" if hashlib.sha256(f"{doc}#{section}".encode()).digest()[0] % 2 == 0 else "held-out"


def questions() -> list[dict[str, str]]:
    out = []
    for line in (HERE / "questions.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            doc, section, kind, question = (part.strip() for part in line.split("|", 3))
            out.append({"doc": doc + ".html", "section": section, "kind": kind, "question": question,
                        "half": half(doc, section)})
    return out


_OPENER = re.compile(r"^\s*(?:(?:how|what|why|when|where|which|who)\b(?:'s)?(?:\s+(?:do|does|did|can|could|should|"
                     r"would|is|are|was|were|to)\b)?(?:\s+(?:i|we|you|my|one)\b)?|(?:is|are)\s+there\b|"
                     r"(?:can|could|should|do|does)\s+(?:i|we|you)\b)\s*", re.I)


def context_variant(variant: str, contexts: list[tuple[int, str]]) -> list[tuple[int, str]]:
    """Experiments on the product's heading paths (``headings``: as they are)."""
    out = []
    for offset, context in contexts:
        path = context.split(" > ")
        if variant == "notitle" and len(path) > 1:
            path = path[1:]
        elif variant == "deepest":
            path = path[-1:]
        elif variant == "shorttitle":
            path = [path[0].split(" \u2014 ")[0], *path[1:]]
        out.append((offset, " > ".join(path)))
    return out


def query_text(variant: str, question: str) -> str:
    """What the vector side embeds for a question."""
    if variant == "opener":  # the question words dropped
        return _OPENER.sub("", question).rstrip(" ?") or question
    return question


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

    def windows(self, texts: list[str],
                contexts: list[list[tuple[int, str]] | None]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Each text's (vector, window vectors), as the local embedder's ``embed_windows``; cached by the word
        pieces of its windows (a change in how a text is windowed is embedded anew)."""
        out = []
        for text, context in zip(texts, contexts, strict=True):
            key = hashlib.sha256(repr(self.model.windows(text, context)).encode()).hexdigest()[:32]
            path = CACHE / f"{key}.windowed.npz"
            if not path.exists():
                vectors, _, windows = self.model.embed_windows([text], [context])
                np.savez(path, vector=vectors[0], windows=windows)
            data = np.load(path)
            out.append((data["vector"], data["windows"]))
        return out


async def evaluate(args: argparse.Namespace) -> None:
    from assistd.retrieval import HybridIndex, IndexedChunk
    from assistd.retrieval.index import types
    from assistd.retrieval.pipeline import parse_and_split
    from assistd.store.db import Database
    from assistd.store.migrate import migrate

    types.RRF_K = args.rrf_k
    if args.vector_weight is None:
        args.vector_weight = types.WEIGHTS["vector"]
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
        pieces = parse_and_split(page.read_bytes(), page.name)
        texts = [p.text for p in pieces]
        if args.vectors == "windows":
            contexts = [None if args.context == "none" else context_variant(args.context, p.contexts) for p in pieces]
            embedded = embedder.windows(texts, contexts)
        else:
            embedded = [(v, None) for v in embedder.embed(texts)]
        async with db.write() as conn:
            await index.add(conn, "vs_eval", rel, page.name, [IndexedChunk(p.text, v, p.tokens, w) for p, (v, w)
                                                              in zip(pieces, embedded, strict=True)], {})
        n_chunks += len(pieces)
    print(f"indexed {len(marks)} pages, {n_chunks} chunks in {time.perf_counter() - t:.0f} s "
          f"(context: {args.context}, query: {args.query}, RRF k={args.rrf_k}, "
          f"vector weight {args.vector_weight}, vectors: {args.vectors})")
    qvecs = embedder.embed([query_text(args.query, q["question"]) for q in qs])
    unresolved = [q for q in qs if q["section"] not in marks.get(q["doc"], {})]
    if unresolved:
        sys.exit(f"questions naming unknown sections: {unresolved}")
    results: dict[str, list[int | None]] = {}
    for mode in ("hybrid", "vector", "keyword"):
        ranks: list[int | None] = []
        for q, v in zip(qs, qvecs, strict=True):
            text = q["question"] if mode != "vector" else None
            vector = v.tolist() if mode != "keyword" else None
            async with db.read() as conn:
                hits = await index.search(conn, ["vs_eval"], text, vector, max_num_results=10)
            want = marks[q["doc"]][q["section"]]
            rank = next((i for i, h in enumerate(hits, 1) if h.file_id == q["doc"] and want in norm(h.text)), None)
            ranks.append(rank)
            if args.verbose and mode == "hybrid" and (rank is None or rank > 5):
                print(f"  miss ({q['half']}, {q['kind']}): {q['question']!r} -> {q['doc']}#{q['section']}; got "
                      f"{[h.file_id.split('/')[-1] + ':' + str(h.chunk_index) for h in hits[:5]]}")
        results[mode] = ranks
    await db.close()
    print("\n| ranking | half | all R@1 | all R@5 | all MRR | lexical R@5 | paraphrase R@1 | paraphrase R@5 "
          "| paraphrase MRR |\n|---|---|---|---|---|---|---|---|---|")
    for mode, ranks in results.items():
        for part in ("tuning", "held-out", "whole"):
            def pick(kind: str | None, part: str = part, ranks: list[int | None] = ranks) -> list[int | None]:
                return [r for q, r in zip(qs, ranks, strict=True)
                        if part in ("whole", q["half"]) and kind in (None, q["kind"])]
            every, lexical, para = pick(None), pick("lexical"), pick("paraphrase")
            print(f"| {mode} | {part} ({len(every)}: {len(lexical)} + {len(para)}) | {_r(every, 1)} | {_r(every, 5)} "
                  f"| {_mrr(every)} | {_r(lexical, 5)} | {_r(para, 1)} | {_r(para, 5)} | {_mrr(para)} |")


def _r(ranks: list[int | None], k: int) -> str:
    return f"{sum(1 for r in ranks if r is not None and r <= k) / len(ranks):.2f}"


def _mrr(ranks: list[int | None]) -> str:
    return f"{sum(1 / r for r in ranks if r is not None) / len(ranks):.3f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.retrieval_eval.run", description=__doc__.split("\n")[0])
    parser.add_argument("--context", choices=["headings", "none", "notitle", "deepest", "shorttitle"],
                        default="headings",
                        help="each window embedded after its heading path (the product), or its text alone (before)")
    parser.add_argument("--query", choices=["question", "opener"], default="question",
                        help="what the vector side embeds: the question as typed, or without its question words")
    parser.add_argument("--rrf-k", type=int, default=30, help="reciprocal rank fusion constant (the product's: 30)")
    parser.add_argument("--vector-weight", type=float, default=None,
                        help="weight of the vector list in RRF (default: the product's, types.WEIGHTS)")
    parser.add_argument("--vectors", choices=["windows", "chunk"], default="windows",
                        help="vector ranking by each chunk's best window (the product) or by its one mean vector "
                             "(before migration 0008, or an upstream embedder)")
    parser.add_argument("--common", type=int, help="keyword.COMMON: chunks above which a word is common")
    parser.add_argument("-v", "--verbose", action="store_true", help="print the hybrid misses")
    asyncio.run(evaluate(parser.parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
