"""Bombs without compression: plain text that is cheap to upload and to parse but explodes once tokenized.
A 40 MB text file of emoji is 20 million tokens; chunked in the server it took the process from 0.3 to
2.4 GB and completed. The text a file yields is capped in tokens (the hosted API's 5,000,000 per file),
counted in the parse worker, so such a file fails as ``invalid_file`` before the server sees its text."""

from __future__ import annotations

import pytest

from assistd.retrieval.parse_limits import ParseLimits
from assistd.retrieval.parsing import InvalidFile, parse
from tests.security.test_parser_bombs import assert_invalid, ingest_bomb

EMOJI = "\U0001F600"  # two cl100k tokens, four UTF-8 bytes


@pytest.mark.parametrize(("text", "tokens"), [
    (EMOJI * 600, 1200), ("a" * 40_000, 5000), ("word " * 1200, 1200), ("\u00e9" * 1200, 1200),
])
def test_the_token_limit_applies_to_every_kind_of_text(text, tokens):
    assert parse(text.encode(), "t.txt", limits=ParseLimits(max_tokens=tokens + 10))
    with pytest.raises(InvalidFile, match="tokens"):
        parse(text.encode(), "t.txt", limits=ParseLimits(max_tokens=tokens // 2))


def test_the_token_limit_applies_to_structured_formats():
    html = ("<p>" + EMOJI * 300 + "</p>").encode()
    with pytest.raises(InvalidFile, match="tokens"):
        parse(html, "t.html", limits=ParseLimits(max_tokens=500))
    with pytest.raises(InvalidFile, match="tokens"):
        parse(b'{"k": "' + (EMOJI * 300).encode() + b'"}', "t.json", limits=ParseLimits(max_tokens=500))


def test_emoji_text_over_five_million_tokens_fails_as_invalid(client, http, server):
    data = (EMOJI * 2_600_000).encode()  # 10 MB, 5.2 million tokens
    assert_invalid(ingest_bomb(client, http, server, "emoji.txt", data), "tokens")
