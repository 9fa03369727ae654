"""Variants of the keyless dev mode's "direct local request" test (README: Keys and dev mode): every header
a proxy, CDN or tunnel adds makes a loopback connection non-local, not only the four best known; a Host
header that is not ``name[:port]`` is not a loopback name."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from assistd.api.authenticate import origin_of
from tests.security.test_auth_fail_closed import scope, serve, status

PROXY_HEADERS = [
    {"X-Forwarded-Proto": "https"}, {"X-Forwarded-Port": "443"}, {"X-Forwarded-Server": "edge"},
    {"X-Forwarded-Host": "api.example"}, {"X-Client-IP": "203.0.113.9"}, {"True-Client-IP": "203.0.113.9"},
    {"CF-Connecting-IP": "203.0.113.9"}, {"Fastly-Client-IP": "203.0.113.9"},
    {"X-Cluster-Client-IP": "203.0.113.9"}, {"X-Original-Forwarded-For": "203.0.113.9"},
    {"Client-IP": "203.0.113.9"}, {"Via": "1.1 proxy"},
]
BAD_HOSTS = ["localhost:80@evil.example", "localhost:evil", "[::1]evil.example", "[::1]:x"]


@pytest.mark.parametrize("headers", PROXY_HEADERS, ids=lambda h: next(iter(h)))
def test_any_proxy_header_is_not_local(headers):
    assert not origin_of(scope(host="127.0.0.1:8000", **{k.replace("-", "_"): v for k, v in headers.items()})).local


@pytest.mark.parametrize("host", BAD_HOSTS)
def test_a_malformed_host_is_not_loopback(host):
    assert not origin_of(scope(host=host)).local


@pytest.mark.parametrize("host", ["localhost", "localhost:8000", "127.0.0.1:8000", "[::1]", "[::1]:8000",
                                  "[::ffff:127.0.0.1]:8000", "LOCALHOST.:8000"])
def test_loopback_names_stay_local(host):
    assert origin_of(scope(host=host)).local


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    with serve(Path(tmp_path_factory.mktemp("devescapes"))) as proc:
        yield proc


def test_live_proxied_or_odd_host_requests_need_a_key(fresh):
    assert status(fresh) == 200  # a fresh database on loopback is keyless…
    for headers in [*PROXY_HEADERS, *({"Host": h} for h in BAD_HOSTS)]:  # … but not through these
        assert status(fresh, **headers) == 401, headers
        r = httpx.post(f"{fresh.url}/v1/threads", content=b"{}",
                       headers={"Content-Type": "application/json", **headers})
        assert r.status_code == 401, headers
