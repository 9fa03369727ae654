"""Embedders: the local model (window pooling of long chunks, worker process) and the upstream client."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from types import SimpleNamespace

import httpx
import numpy as np
import pytest

from assistd.devupstream.server import embed as hashed_embed
from assistd.retrieval import LocalEmbedder, UpstreamEmbedder, create_embedder
from assistd.retrieval.embedding import minilm


@pytest.fixture(scope="module")
def model() -> minilm.MiniLM:
    return minilm.MiniLM("onnx", threads=1)


def long_text(words: int) -> str:
    vocab = ["river", "harbour", "ledger", "quantum", "orchard", "violin", "granite", "lantern", "meadow", "cipher"]
    return " ".join(f"{vocab[i % 10]}{i % 7}" for i in range(words))


def test_long_chunk_is_embedded_whole_by_pooling_windows(model: minilm.MiniLM) -> None:
    text = long_text(400)  # ~1,200 word pieces: five windows of at most 254
    windows = model.windows(text)
    assert len(windows) >= 4 and all(len(w) <= minilm.MAX_PIECES for w in windows)
    pieces = model.tokenizer.encode(text, add_special_tokens=False).ids
    # Windows overlap by WINDOW_OVERLAP pieces and together cover every piece, the last ones included.
    assert windows[0][1:-1] == pieces[:minilm.WINDOW] and windows[-1][-2] == pieces[-1]
    assert windows[1][1:1 + minilm.WINDOW_OVERLAP] == pieces[minilm.WINDOW - minilm.WINDOW_OVERLAP:minilm.WINDOW]
    [vector] = model.embed([text])
    per_window = model._embed_windows(windows)
    weights = np.array([len(w) - 2 for w in windows], np.float32)[:, None]
    expected = (per_window * weights).sum(axis=0)
    np.testing.assert_allclose(vector, expected / np.linalg.norm(expected), atol=1e-5)
    assert abs(float(np.linalg.norm(vector)) - 1.0) < 1e-5
    # Text past the first 256 pieces counts: changing only the tail changes the vector.
    [changed] = model.embed([text + " The final paragraph is about volcanoes erupting in Iceland."])
    assert float(vector @ changed) < 0.999


def test_window_vectors_are_the_pooled_vectors_parts(model: minilm.MiniLM) -> None:
    texts = ["A cat sat on the mat.", long_text(400)]
    vectors, counts, windows = model.embed_windows(texts)
    assert counts.tolist() == [1, len(model.windows(texts[1]))] and windows.shape == (int(counts.sum()), 384)
    np.testing.assert_allclose(vectors, model.embed(texts), atol=1e-6)
    np.testing.assert_allclose(windows[0], vectors[0], atol=1e-6)  # one window: the text's vector itself
    np.testing.assert_allclose(windows[1:], model._embed_windows(model.windows(texts[1])), atol=1e-5)


def test_a_sentence_past_the_first_window_is_closest_to_its_own_window(model: minilm.MiniLM) -> None:
    """Why search scores a chunk by its best window: the mean of a long chunk's windows dilutes a sentence."""
    filler = long_text(300)
    text = filler + " Volcanoes erupting in Iceland disrupted flights across northern Europe."
    vectors, counts, windows = model.embed_windows([text])
    [query] = model.embed(["which eruption grounded planes in europe"])
    assert counts[0] >= 3
    best = int(np.argmax(windows @ query))
    assert best == counts[0] - 1 and float(windows[best] @ query) > float(vectors[0] @ query) + 0.1


def test_each_window_is_led_by_the_heading_path_of_its_section(model: minilm.MiniLM) -> None:
    text = long_text(400)
    pieces = model.tokenizer.encode(text, add_special_tokens=False).ids
    second = len(text) // 2  # a section starting mid-text
    contexts = [(0, "Field guide > Rivers"), (second, "Field guide > Orchards")]
    heads = [model.tokenizer.encode(c, add_special_tokens=False).ids for _, c in contexts]
    windows = model.windows(text, contexts)
    assert model.windows(text, None) == model.windows(text) == model.windows(text, [])
    assert windows[0][1:1 + len(heads[0])] == heads[0] and windows[-1][1:1 + len(heads[1])] == heads[1]
    assert all(len(w) <= minilm.MAX_PIECES for w in windows) and len(windows) >= len(model.windows(text))
    # The text's own pieces are all still there, in order, the context taking room from each window.
    body = [w[1 + len(heads[0] if w[1:1 + len(heads[0])] == heads[0] else heads[1]):-1] for w in windows]
    assert body[0] == pieces[:len(body[0])] and body[-1][-1] == pieces[-1]
    vectors, counts, per_window = model.embed_windows([text, text], [contexts, None])
    assert counts.tolist() == [len(windows), len(model.windows(text))]
    assert float(vectors[0] @ vectors[1]) < 0.999  # what the windows are embedded as changed
    [query] = model.embed(["orchards"])
    assert float(per_window[len(windows) - 1] @ query) > float(per_window[-1] @ query)


def test_windows_never_cross_a_section_start(model: minilm.MiniLM) -> None:
    """A short section between two long ones is a window of its own, not a slice of its neighbours'."""
    before, after = long_text(150), long_text(120)
    short = "Volcanoes erupting in Iceland disrupted flights across northern Europe."
    text = f"{before}\n{short}\n{after}"
    contexts = [(0, "Field guide > Rivers"), (len(before) + 1, "Field guide > Volcanoes"),
                (len(before) + len(short) + 2, "Field guide > Orchards")]
    windows = model.windows(text, contexts)
    enc = model.tokenizer.encode
    pieces = [enc(part, add_special_tokens=False).ids for part in (before, short, after)]
    heads = [enc(c, add_special_tokens=False).ids for _, c in contexts]
    own = [w for w in windows if w[1:1 + len(heads[1])] == heads[1]]
    assert own == [[model.cls, *heads[1], *pieces[1], model.sep]]  # the section, whole, after its path
    for head, body in ((heads[0], pieces[0]), (heads[2], pieces[2])):
        mine = [w[1 + len(head):-1] for w in windows if w[1:1 + len(head)] == head]
        assert mine[0][:8] == body[:8] and mine[-1][-8:] == body[-8:]  # starts and ends with its section
        assert all(p in body for w in mine for p in w)
    assert sum(len(w) - 2 for w in windows) >= len(sum(pieces, []))  # every piece is in some window
    assert model.windows("", contexts[:1]) == [[model.cls, *heads[0], model.sep]]
    _, _, per_window = model.embed_windows([text], [contexts])
    [query] = model.embed(["which eruption grounded planes in europe"])
    assert int(np.argmax(per_window @ query)) == windows.index(own[0])


def test_short_texts_are_one_window_and_match_the_reference_model(model: minilm.MiniLM) -> None:
    texts = ["A cat sat on the mat.", "A feline rested on the rug.", "Quarterly revenue grew by eight percent."]
    assert all(len(model.windows(t)) == 1 for t in texts)
    v = model.embed(texts)
    assert v.shape == (3, 384) and v.dtype == np.float32
    assert float(v[0] @ v[1]) > 0.5 > float(v[0] @ v[2])  # paraphrases are close, unrelated texts are not
    # Reference values from sentence-transformers' all-MiniLM-L6-v2 (PyTorch) for texts[0], first 4 dims.
    np.testing.assert_allclose(v[0][:4], REFERENCE_CAT[:4], atol=2e-4)


REFERENCE_CAT = np.array([0.12081315, -0.02353621, -0.03668953, 0.05646264], np.float32)


def test_local_embedder_runs_in_a_worker_process_started_lazily() -> None:
    code = textwrap.dedent("""
        import asyncio, os, sys
        from assistd.retrieval import LocalEmbedder
        async def main():
            e = LocalEmbedder(threads=1)
            assert e.worker_pid is None                  # nothing started until the first embed
            [a, b] = await e.embed(["A cat sat on the mat.", "x " * 2000])
            pid = e.worker_pid
            assert pid and pid != os.getpid()
            os.kill(pid, 9)                              # a dead worker is replaced, the call retried
            [c] = await e.embed(["A cat sat on the mat."])
            assert e.worker_pid not in (None, pid) and max(abs(x - y) for x, y in zip(a, c)) < 1e-5
            [(v1, w1), (v2, w2)] = await e.embed_windows(["A cat sat on the mat.", "x " * 2000])
            assert max(abs(x - y) for x, y in zip(a, v1)) < 1e-5 and max(abs(x - y) for x, y in zip(b, v2)) < 1e-5
            assert w1.shape == (1, 384) and w2.shape[0] >= 7 and w2.shape[1] == 384
            [(v3, w3)] = await e.embed_windows(["x " * 2000], [[(0, "Notes > Letters")]])  # led by a heading path
            assert w3.shape[0] >= w2.shape[0] and max(abs(x - y) for x, y in zip(v2, v3)) > 1e-3
            await e.aclose()
            assert e.worker_pid is None
            return a
        a = asyncio.run(main())
        assert len(a) == 384 and abs(sum(x * x for x in a) - 1) < 1e-4
        heavy = [m for m in ("onnxruntime", "torch", "transformers", "tokenizers", "onnx") if m in sys.modules]
        assert not heavy, heavy                          # the model lives in the worker only
        print("%.6f" % a[0])
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    assert abs(float(out.stdout.strip()) - REFERENCE_CAT[0]) < 2e-4


def test_upstream_embedder_batches_against_the_dev_upstream(upstream) -> None:
    base = f"{upstream.url}/v1"
    httpx.delete(f"{upstream.url}/_requests")
    texts = [f"document number {i} about harbours and ledgers" for i in range(300)]

    async def go() -> list[list[float]]:
        e = UpstreamEmbedder(base, "key", "text-embedding-3-small", dimensions=64)
        try:
            return await e.embed(texts)
        finally:
            await e.aclose()

    vectors = asyncio.run(go())
    assert len(vectors) == 300 and all(len(v) == 64 for v in vectors)
    for i in (0, 150, 299):  # order kept across batches
        np.testing.assert_allclose(vectors[i], hashed_embed(texts[i], 64), atol=1e-6)
    calls = [r for r in httpx.get(f"{upstream.url}/_requests").json()["data"] if "embeddings" in str(r)]
    assert len(calls) == 2  # 256 + 44


def test_create_embedder_reads_the_setting(upstream) -> None:
    settings = SimpleNamespace(llm_base_url=f"{upstream.url}/v1", llm_api_key="k")
    assert isinstance(create_embedder(settings), LocalEmbedder)
    settings.embeddings = "upstream:text-embedding-3-large"
    e = create_embedder(settings)
    assert isinstance(e, UpstreamEmbedder) and e.model == "text-embedding-3-large" and e.dimensions == 3072
    for bad in ("upstream:", "remote"):
        settings.embeddings = bad
        with pytest.raises(ValueError):
            create_embedder(settings)


def test_an_idle_local_embedding_worker_is_stopped_and_started_again_on_use() -> None:
    code = textwrap.dedent("""
        import asyncio, os, time
        from assistd.retrieval import LocalEmbedder
        async def main():
            e = LocalEmbedder(threads=1, idle_seconds=0.5)
            [a] = await e.embed(["A cat sat on the mat."])
            pid = e.worker_pid
            assert pid is not None
            deadline = time.monotonic() + 20
            while e.worker_pid is not None:              # idle: stopped, not killed mid-call
                assert time.monotonic() < deadline, "the idle worker was not stopped"
                await asyncio.sleep(0.05)
            while True:                                  # and its process exits (and is reaped)
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                assert time.monotonic() < deadline, "the worker process is still there"
                await asyncio.sleep(0.05)
            [b] = await e.embed(["A cat sat on the mat."])  # a new worker, the same answer
            assert e.worker_pid not in (None, pid) and max(abs(x - y) for x, y in zip(a, b)) < 1e-5
            await e.aclose()
        asyncio.run(main())
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
