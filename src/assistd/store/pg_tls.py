"""TLS for PostgreSQL connections to this machine: off unless the configuration asks for it.

asyncpg's default (libpq's ``sslmode=prefer``) first asks every TCP connection for TLS, building an
``SSLContext`` each time; a loopback connection gains nothing from it (the traffic never leaves the host),
and a busy process opening connections pays for it again and again. So for a URL whose every host is
loopback (``localhost``, ``127.0.0.0/8``, ``::1``) or a Unix socket, connections are made with
``ssl=False`` — unless the URL or the environment says anything about TLS (``?ssl=…``, ``?sslmode=…``,
``PGSSLMODE``, ``PGSSLNEGOTIATION`` …): an explicit setting is never weakened.
"""

from __future__ import annotations

import ipaddress
import os
from typing import Any

from sqlalchemy.engine import make_url

_TLS_PARAMS = ("ssl", "sslmode", "direct_tls", "sslnegotiation")
_TLS_ENV = ("PGSSLMODE", "PGSSLNEGOTIATION")


def _is_local(host: str) -> bool:
    host = host.strip()
    if not host or host.startswith("/") or host.startswith("@"):  # a Unix socket directory (or abstract socket)
        return True
    host = host.removeprefix("[").split("]")[0]
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _hosts(url: str) -> list[str]:
    u = make_url(url)
    hosts: list[str] = []
    if u.host:
        hosts += u.host.split(",")
    query_host = u.query.get("host")
    for value in (query_host if isinstance(query_host, tuple) else [query_host] if query_host else []):
        hosts += [h.rsplit(":", 1)[0] if not h.startswith(("/", "[")) and h.count(":") == 1 else h
                  for h in value.split(",")]
    if not hosts:  # asyncpg's defaults: PGHOST, else the local Unix sockets, then localhost
        hosts = (os.environ.get("PGHOST") or "").split(",")
    return hosts


def local_tls_args(url: str) -> dict[str, Any]:
    """Keyword arguments for ``asyncpg.connect`` (or SQLAlchemy's ``connect_args``) on ``url``:
    ``{"ssl": False}`` when every host is on this machine and nothing configures TLS, else ``{}``."""
    u = make_url(url)
    if u.get_backend_name() not in ("postgresql", "postgres"):
        return {}
    if any(key in u.query for key in _TLS_PARAMS) or any(os.environ.get(name) for name in _TLS_ENV):
        return {}
    return {"ssl": False} if all(_is_local(h) for h in _hosts(url)) else {}
