"""Unauthenticated cost, the request head: a long header, many headers or a long URL cost the server at
most ``MAX_HEAD_BYTES`` each, then a 431 and a closed connection. httptools alone has no limit and joins a
long value in quadratic time on the event loop (one connection sending a 50 MB header stalled everything).
"""

from __future__ import annotations

import socket

import httpx
import pytest

from assistd.api.http_protocol import MAX_HEAD_BYTES
from tests.security.test_unauthenticated_cost import closed_by_peer, read_response


def _heads(total: int) -> dict[str, bytes]:
    """Request heads of exactly ``total`` bytes, over the limit three ways (no key: nobody to trust)."""
    def pad(start: bytes, end: bytes, fill: bytes) -> bytes:
        n = total - len(start) - len(end)
        return start + (fill * (n // len(fill) + 1))[:n] + end

    return {
        "one long header": pad(b"GET /v1/assistants HTTP/1.1\r\nHost: x\r\nX-Long: ", b"\r\n\r\n", b"a"),
        "many headers": pad(b"GET /v1/assistants HTTP/1.1\r\nHost: x\r\n", b"\r\n\r\n", b"X-H: a\r\n"),
        "long url": pad(b"GET /v1/assistants?q=", b" HTTP/1.1\r\nHost: x\r\n\r\n", b"a"),
        "long key": pad(b"POST /v1/threads HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sk-", b"\r\n\r\n", b"k"),
    }


@pytest.mark.parametrize("kind", list(_heads(100)))
def test_an_oversized_head_gets_431_and_is_closed(server, kind):
    head = _heads(MAX_HEAD_BYTES + 1)[kind]  # all of it is read before the limit is crossed: no reset
    with socket.create_connection(("127.0.0.1", server.port), timeout=20) as s:
        s.sendall(head)
        status, raw = read_response(s)
        assert status == 431, raw[:300]
        assert b'"type":"invalid_request_error"' in raw
        assert closed_by_peer(s)
    assert httpx.get(f"{server.url}/healthz").status_code == 200


def test_a_large_head_within_the_limit_is_parsed(server):
    head = _heads(256 * 1024)["one long header"]
    with socket.create_connection(("127.0.0.1", server.port), timeout=20) as s:
        s.sendall(head)
        status, _ = read_response(s)
    assert status == 401  # parsed, then refused for its missing key


def test_the_limit_is_per_request_on_a_keep_alive_connection(server):
    """Heads of pipelined requests are counted one by one, not summed over the connection."""
    one = _heads(MAX_HEAD_BYTES // 2)["many headers"]
    with socket.create_connection(("127.0.0.1", server.port), timeout=20) as s:
        for _ in range(3):
            s.sendall(one)
            status, _ = read_response(s)
            assert status == 401
