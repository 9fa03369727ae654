"""One PostgreSQL URL, one TLS setting for every connection assistd opens (the SQLAlchemy pool, the fast
readers in store/pg_readers.py, the event bus's LISTEN and NOTIFY connections).

The three consumers read a URL differently: asyncpg's DSN parser knows libpq's ``sslmode`` but passes an
unknown ``?ssl=…`` to the server as a setting, while SQLAlchemy hands every query parameter to
``asyncpg.connect`` as a keyword (``ssl=`` works, ``sslmode=`` is a TypeError). So ``pg_connect()`` takes the
TLS parameters out of the URL once and turns them into ``asyncpg.connect`` keywords that all three pass
unchanged: ``ssl`` as ``sslmode`` or ``ssl`` (``disable``, ``allow``, ``prefer``, ``require``, ``verify-ca``,
``verify-full``), with ``sslrootcert``/``sslcert``/``sslkey``/``sslcrl``/``sslpassword`` an ``SSLContext``
built here as libpq would; ``sslnegotiation``/``direct_tls`` as ``direct_tls``.

asyncpg's default (libpq's ``sslmode=prefer``) first asks every TCP connection for TLS, building an
``SSLContext`` each time; a loopback connection gains nothing from it (the traffic never leaves the host),
and a busy process opening connections pays for it again and again. So for a URL whose every host is
loopback (``localhost``, ``127.0.0.0/8``, ``::1``) or a Unix socket, connections are made with
``ssl=False`` — unless the URL or the environment says anything about TLS (``PGSSLMODE``,
``PGSSLNEGOTIATION`` …): an explicit setting is never weakened.
"""

from __future__ import annotations

import ipaddress
import os
import ssl as ssl_module
from typing import Any, NamedTuple

from sqlalchemy.engine import make_url

_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
_FILE_PARAMS = ("sslrootcert", "sslcert", "sslkey", "sslcrl", "sslpassword")
_TLS_PARAMS = ("ssl", "sslmode", "direct_tls", "sslnegotiation", *_FILE_PARAMS)
_TLS_ENV = ("PGSSLMODE", "PGSSLNEGOTIATION")


class PgConnect(NamedTuple):
    """``asyncpg.connect(dsn, **kwargs)``; SQLAlchemy: ``async_url(dsn)`` with ``connect_args=kwargs``."""

    dsn: str  # postgresql://… without any TLS parameter
    kwargs: dict[str, Any]


def pg_connect(url: str) -> PgConnect:
    """Split a ``postgresql://`` (or ``postgresql+driver://``) URL into a TLS-free DSN and the keywords
    that carry its TLS setting; raises ``ValueError`` for a TLS setting asyncpg could not honour."""
    u = make_url(url)
    query = dict(u.query)
    tls = {key: _last(query.pop(key)) for key in _TLS_PARAMS if key in query}
    dsn = u.set(drivername="postgresql", query=query).render_as_string(hide_password=False)
    kwargs: dict[str, Any] = {}
    mode = _mode(tls)
    if mode is not None:
        files = {key: tls[key] for key in _FILE_PARAMS if key in tls}
        kwargs["ssl"] = _context(mode, files) if files and mode != "disable" else _asyncpg_ssl(mode)
    negotiation = tls.get("sslnegotiation", tls.get("direct_tls"))
    if negotiation is not None:
        kwargs["direct_tls"] = negotiation.lower() in ("direct", "true", "1", "on", "yes")
    if not tls and not any(os.environ.get(name) for name in _TLS_ENV) and all(_is_local(h) for h in _hosts(url)):
        kwargs["ssl"] = False
    return PgConnect(dsn, kwargs)


def _last(value: str | tuple[str, ...]) -> str:
    return value[-1] if isinstance(value, tuple) else value


def _mode(tls: dict[str, str]) -> str | None:
    modes = {_spelled(key, tls[key]) for key in ("ssl", "sslmode") if key in tls}
    if len(modes) > 1:
        raise ValueError(f"database URL: ssl and sslmode disagree ({tls.get('ssl')!r}, {tls.get('sslmode')!r})")
    if modes:
        return modes.pop()
    if any(key in tls for key in _FILE_PARAMS):  # libpq's default mode, which certificates do not change
        return os.environ.get("PGSSLMODE") or "prefer"
    return None


def _spelled(key: str, value: str) -> str:
    value = value.strip().lower()
    if key == "ssl" and value in ("true", "1", "on", "yes"):
        return "verify-full"  # asyncpg's ssl=True: the system's CAs, the host name checked
    if key == "ssl" and value in ("false", "0", "off", "no"):
        return "disable"
    if value not in _MODES:
        raise ValueError(f"database URL: {key}={value!r} is not one of {', '.join(_MODES)}")
    return value


def _asyncpg_ssl(mode: str) -> Any:
    return False if mode == "disable" else mode  # asyncpg takes libpq's mode names as ``ssl=``


def _context(mode: str, files: dict[str, str]) -> ssl_module.SSLContext:
    """The ``SSLContext`` libpq would use for ``mode`` with these files. asyncpg treats any context as
    ``require`` at least, so a mode that would fall back to plain text cannot be given certificates."""
    if mode in ("allow", "prefer"):
        raise ValueError(f"database URL: sslrootcert/sslcert/sslkey need sslmode=require, verify-ca or "
                         f"verify-full (not {mode}): asyncpg cannot fall back to plain text with them")
    context = ssl_module.SSLContext(ssl_module.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl_module.TLSVersion.TLSv1_2
    context.check_hostname = mode == "verify-full"
    default_root = os.path.expanduser("~/.postgresql/root.crt")
    rootcert = (files.get("sslrootcert") or os.environ.get("PGSSLROOTCERT")
                or (default_root if os.path.exists(default_root) else None))
    if rootcert:  # libpq: with a root certificate, require checks the chain as verify-ca does
        context.load_verify_locations(cafile=os.path.expanduser(rootcert))
        context.verify_mode = ssl_module.CERT_REQUIRED
    elif mode == "require":
        context.verify_mode = ssl_module.CERT_NONE
    else:
        context.load_default_certs()
        context.verify_mode = ssl_module.CERT_REQUIRED
    if files.get("sslcrl"):
        context.load_verify_locations(cafile=os.path.expanduser(files["sslcrl"]))
        context.verify_flags |= ssl_module.VERIFY_CRL_CHECK_CHAIN
    if files.get("sslcert"):
        password = files.get("sslpassword", "")
        context.load_cert_chain(os.path.expanduser(files["sslcert"]),
                                keyfile=os.path.expanduser(files["sslkey"]) if files.get("sslkey") else None,
                                password=lambda: password)
    return context


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
