"""Token counting for truncation (runner/context.py): exact cl100k_base counts when something may have to
be dropped, none at all when every message fits even at a token a byte."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from assistd.retrieval import tokens
from assistd.runner import context

TEXTS = ["plain English words", "代码解释器会运行模型写的 Python。", "emoji 💡🚀 and ✓ marks", "x = {'a': [1, 2]}\n",
         "", "ünïcödé façade naïve", "a" * 5000]


@pytest.mark.parametrize("text", TEXTS)
def test_bytes_bound_the_tokens(text: str) -> None:
    assert context.exact_tokens(text) == tokens.count(text) <= context.byte_bound(text)


def test_a_short_prompt_is_never_tokenized() -> None:
    code = textwrap.dedent("""
        import asyncio
        from assistd.retrieval import tokens
        from assistd.runner import context
        run = {"id": "run_x", "thread_id": "thread_x", "model": "m", "instructions": "Be brief.", "tools": [],
               "truncation_strategy": {"type": "auto", "last_messages": None}, "max_prompt_tokens": 500}
        thread = [{"id": f"msg_{i}", "role": "user", "content": [{"type": "text", "text": {"value": "hi"}}]}
                  for i in range(3)]
        request, hit = asyncio.run(context.build_request(None, run, [], window=4096, thread=thread))
        assert hit is None and len(request.messages) == 4, request.messages
        assert tokens.encoding.cache_info().currsize == 0, "tokenized a prompt that fits at a token a byte"
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]


def test_search_results_fit_their_budget_by_the_chunks_own_token_counts() -> None:
    from assistd.retrieval.index.types import SearchHit
    from assistd.tools.file_search import trim_to_budget

    def hit(text: str, n: int) -> SearchHit:
        return SearchHit(file_id="f", file_name="f.txt", score=1.0, text=text, attributes={}, chunk_index=0,
                         tokens=n)

    wide = "代码" * 100  # 600 bytes: ~150 "tokens" by bytes/4, 100 counted at indexing
    hits = [hit(wide, 100), hit(wide, 100), hit(wide, 100)]
    assert len(trim_to_budget(hits, 250)) == 2  # (100 + 16) × 2 ≤ 250 < (100 + 16) × 3
    assert len(trim_to_budget(hits, 10)) == 1  # the best hit always
