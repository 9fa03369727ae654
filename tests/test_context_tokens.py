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
        request, hit = asyncio.run(context.build_request(None, run, [], window=4096, search=None, searched=False,
                                                         code=None, coded=False, thread=thread))
        assert hit is None and len(request.messages) == 4, request.messages
        assert tokens.encoding.cache_info().currsize == 0, "tokenized a prompt that fits at a token a byte"
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
