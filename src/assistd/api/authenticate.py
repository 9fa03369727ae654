"""Every ``/v1`` request is authenticated from its headers before a byte of its body is read.

A request without a valid key costs one dictionary lookup (or one cached query) and a 401: no body is
read, parsed or buffered beyond what uvicorn holds per connection (64 KiB), and a large unread body
closes the connection (api/asgi.py). The project found travels to the routes in the ASGI scope
(``PROJECT_KEY``), so ``api.deps.project_id`` does not look again.

Keyless dev mode needs to know where a request comes from (services/auth.py): ``origin_of`` reads it
from the socket and headers. "Local" means the connection arrived on a loopback address, carries no
proxy header (a reverse proxy on the same host would make the whole internet local), and names a
loopback host (a public name resolving to 127.0.0.1 is DNS rebinding: another site's page talking to
this server). "Cross-site" is a browser request made by another origin's page.
"""

from __future__ import annotations

import ipaddress
from functools import partial
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from assistd.api.asgi import close_after_refusal, header, send_error
from assistd.errors import APIError
from assistd.services.auth import Origin

PROJECT_KEY = "assistd.project_id"
PREFIX = "/v1/"

# Headers only a proxy (or a CDN, a tunnel, a load balancer) adds: any ``X-Forwarded-*`` and the usual
# names for "the client's real address". One of them on a loopback connection means it is not local.
_PROXY_HEADERS = frozenset({
    b"forwarded", b"via", b"x-real-ip", b"x-client-ip", b"client-ip", b"true-client-ip", b"cf-connecting-ip",
    b"fastly-client-ip", b"x-cluster-client-ip", b"x-original-forwarded-for", b"x-envoy-external-address",
    b"x-proxyuser-ip", b"cf-ray", b"x-amzn-trace-id", b"x-azure-clientip",
})
_PROXY_PREFIXES = (b"x-forwarded-", b"x-original-")


def _is_proxy_header(name: bytes) -> bool:
    return name in _PROXY_HEADERS or name.startswith(_PROXY_PREFIXES)


def origin_of(scope: Scope) -> Origin:
    server = scope.get("server")
    on_loopback = server is None or _is_loopback(str(server[0])) or not _is_ip(str(server[0]))  # unix socket
    host = header(scope, b"host")
    proxied = any(_is_proxy_header(name) for name, _ in scope["headers"])
    local = on_loopback and not proxied and (host is None or _is_loopback(_hostname(host)))
    return Origin(local=local, cross_site=_cross_site(scope, host))


def _cross_site(scope: Scope, host: str | None) -> bool:
    fetch_site = header(scope, b"sec-fetch-site")  # what the browser itself decided, when it says
    if fetch_site is not None:
        return fetch_site.lower() in ("cross-site", "same-site")
    origin = header(scope, b"origin")
    if origin is None:
        return False
    scheme = scope.get("scheme", "http")
    return host is None or origin.lower() != f"{scheme}://{host}".lower()


def _hostname(host: str) -> str:
    """The name in a Host header, or "" when it is not ``name``, ``name:port`` or ``[v6]:port``."""
    if host.startswith("["):  # [::1]:8000
        name, _, port = host[1:].partition("]")
        return name if port in ("", ":") or (port[:1] == ":" and port[1:].isdigit()) else ""
    if host.count(":") == 1:
        name, _, port = host.rpartition(":")
        return name if port.isdigit() or port == "" else ""
    return host


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _is_loopback(name: str) -> bool:
    name = name.lower().rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


class Authenticate:
    """ASGI middleware: 401 before the body for ``/v1`` requests without a valid key."""

    def __init__(self, app: ASGIApp, state: Any) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(PREFIX) and PROJECT_KEY not in scope:
            auth = getattr(self.state, "auth", None)
            if auth is not None:
                try:
                    scope[PROJECT_KEY] = await auth.project_for(header(scope, b"authorization"),
                                                                partial(origin_of, scope))
                except APIError as exc:
                    await send_error(send, exc.status_code, exc.message, code=exc.code,
                                     close=close_after_refusal(scope))
                    return
        await self.app(scope, receive, send)
