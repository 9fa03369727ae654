"""A request without a valid key costs the server (almost) nothing, and a slow client cannot pin it.

Raw sockets against a server of its own with one-second timeouts: the point is what the server does
before, or instead of, reading what a client says it will send.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.servers import LiveProcess, free_port
from tests.test_files import rss_kib

KEY = "sk-cost-test-key-0123456789"
BIG = 30 * 1024 * 1024


@pytest.fixture(scope="module")
def proc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveProcess]:
    where: Path = tmp_path_factory.mktemp("cost")
    port = free_port()
    env = {"ASSISTD_DATABASE_URL": f"sqlite:///{where / 'cost.db'}", "ASSISTD_DATA_DIR": str(where),
           "ASSISTD_API_KEYS": KEY, "ASSISTD_WORKERS": "0",
           "ASSISTD_HEADER_TIMEOUT_SECONDS": "1", "ASSISTD_BODY_TIMEOUT_SECONDS": "1"}
    with LiveProcess(["serve", "--port", str(port)], port, env=env) as p:
        yield p


def connect(proc: LiveProcess) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", proc.port), timeout=20)  # a guard, not a measure
    return s


def head(path: str, length: int, *, key: str | None = None, content_type: str = "application/json") -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Type: {content_type}",
             f"Content-Length: {length}"]
    if key:
        lines.append(f"Authorization: Bearer {key}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def read_response(s: socket.socket) -> tuple[int, bytes]:
    """Status and raw head+body of one response (read until the peer closes or the body is complete)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    head_part, _, body = data.partition(b"\r\n\r\n")
    length = next((int(line.split(b":")[1]) for line in head_part.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    while len(body) < length:
        chunk = s.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(head_part.split(b" ")[1]), head_part + b"\r\n\r\n" + body


def closed_by_peer(s: socket.socket) -> bool:
    """Wait for the server to close the connection: True once it has (the guard timeout fails the test)."""
    try:
        while s.recv(65536):
            pass
    except ConnectionResetError:
        pass
    return True


def served(proc: LiveProcess) -> bool:
    return httpx.get(f"{proc.url}/v1/assistants", headers={"Authorization": f"Bearer {KEY}"}).status_code == 200


@pytest.mark.parametrize("key", [None, "sk-wrong-key-0123456789"])
@pytest.mark.parametrize("path", ["/v1/assistants", "/v1/threads/runs", "/v1/files", "/v1/vector_stores"])
def test_keyless_big_post_is_refused_before_its_body(proc, key, path):
    """The 401 comes back while not one byte of the announced 30 MiB was sent, and the connection closes."""
    ctype = "multipart/form-data; boundary=x" if path == "/v1/files" else "application/json"
    with connect(proc) as s:
        s.sendall(head(path, BIG, key=key, content_type=ctype))
        status, raw = read_response(s)
        assert status == 401, raw
        assert b"connection: close" in raw.lower()
        assert closed_by_peer(s)


def test_twenty_keyless_half_sent_bodies_pin_nothing(proc):
    """Twenty clients pushing the start of 30 MiB bodies without a key are cut off: nothing is buffered."""
    pid = proc.proc.pid
    assert served(proc)
    before = rss_kib(pid)
    sockets = []
    try:
        for _ in range(20):
            s = connect(proc)
            sockets.append(s)
            s.sendall(head("/v1/assistants", BIG))
            try:
                s.sendall(b'{"model": "m", "instructions": "' + b"x" * (1024 * 1024))  # then nothing more
            except (BrokenPipeError, ConnectionResetError):
                pass  # the server hung up first: what this is about
        assert served(proc)  # everyone else is served meanwhile
        for s in sockets:
            assert closed_by_peer(s)
        grown = rss_kib(pid) - before
        assert grown < 8 * 1024, f"server RSS grew by {grown} KiB for 20 keyless half-sent bodies"
    finally:
        for s in sockets:
            s.close()


def test_half_sent_bodies_with_a_key_are_dropped(proc):
    """With a valid key the body is read, but one that stops arriving is dropped (408, connection closed)."""
    sockets = []
    try:
        for _ in range(20):
            s = connect(proc)
            s.sendall(head("/v1/assistants", BIG, key=KEY))
            s.sendall(b'{"model": "m", "instructions": "' + b"x" * (256 * 1024))
            sockets.append(s)
        assert served(proc)  # while they hang, others are served
        for s in sockets:
            status, raw = read_response(s)
            assert status == 408, raw
            assert b"nothing was received for 1 seconds" in raw
            assert closed_by_peer(s)
    finally:
        for s in sockets:
            s.close()


def test_half_sent_upload_with_a_key_is_dropped(proc):
    with connect(proc) as s:
        s.sendall(head("/v1/files", BIG, key=KEY, content_type="multipart/form-data; boundary=x"))
        s.sendall(b'--x\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nassistants\r\n')
        status, raw = read_response(s)
        assert status == 408, raw
        assert closed_by_peer(s)


@pytest.mark.parametrize("sent", [b"", b"GET /v1/assistants HTTP/1.1\r\nHost: 127.0.0.1\r\n",
                                  b"POST /v1/assistants HTTP/1.1\r\nContent-Length: 10\r\nX-Slow: "])
def test_slow_request_heads_are_dropped(proc, sent):
    with connect(proc) as s:
        s.sendall(sent)  # and never the end of the head
        assert closed_by_peer(s)
    assert served(proc)


def test_a_trickled_head_is_dropped(proc):
    """One header byte at a time never completes a head before the deadline: the server hangs up."""
    with connect(proc) as s:
        s.sendall(b"GET /v1/assistants HTTP/1.1\r\nX-Trickle: ")
        for _ in range(200):  # 40 s at most, far beyond the 1 s deadline
            try:
                s.sendall(b"a")
            except (BrokenPipeError, ConnectionResetError):
                break
            time.sleep(0.2)
        else:
            pytest.fail("the connection was still open after 40 s of trickled header bytes")


def test_a_keep_alive_connection_gets_a_new_deadline(proc):
    """After a response, the next request's head must come in time too (uvicorn's keep-alive timer stops at
    its first byte)."""
    with connect(proc) as s:
        s.sendall(f"GET /v1/assistants HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {KEY}\r\n\r\n".encode())
        assert read_response(s)[0] == 200
        s.sendall(b"GET /v1/assistants HTTP/1.1\r\n")  # a second request that never finishes its head
        assert closed_by_peer(s)
