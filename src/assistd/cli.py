"""The ``assistd`` command: serve, migrate, keys, export/import, dev-upstream."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from typing import Any

from assistd.config import Settings

_ENV_HELP = """
configuration (environment, prefix ASSISTD_; flags above override):
  ASSISTD_DATABASE_URL   sqlite:///./.assistd/assistd.db (default) or postgresql://user@host:5432/db
  ASSISTD_DATA_DIR       where uploaded files live (default ./.assistd)
  ASSISTD_API_KEYS       comma list of keys, each `secret` or `secret:project`
  ASSISTD_DEV_MODE       keyless dev mode. Unset: only while no key was ever stored (`assistd keys create`;
                         revoked keys count) and ASSISTD_API_KEYS is unset, for direct loopback connections.
                         1: whenever no key is active, from any host. 0: never. Otherwise, no valid key = 401
  ASSISTD_LLM_BASE_URL   OpenAI-compatible upstream; unset (and no models file): the scripted dev model,
                         served in-process (see the log and the console's banner)
  ASSISTD_LLM_API_KEY    key sent to the upstream
  ASSISTD_MODELS_FILE    TOML file routing model names to upstreams
  ASSISTD_REWRITE_MODEL  the model rewriting vector store search queries (`rewrite_query`; default gpt-4o-mini)
  ASSISTD_EMBEDDINGS     local (default: all-MiniLM-L6-v2 on CPU) or upstream:MODEL
  ASSISTD_EMBEDDINGS_IDLE_SECONDS  the local embedding worker stops after this long unused (default 600; 0 = never)
  ASSISTD_DB_POOL_SIZE   database connections per process, opened as needed and kept (default 20)
  ASSISTD_DB_MAX_OVERFLOW connections opened beyond the pool under load, closed after use (default 0)
  ASSISTD_WORKERS        concurrent runs executed by this process (default 8; 0 = API only)
  ASSISTD_LEASE_SECONDS  a dead worker's runs are resumed elsewhere this long after it stops (default 10)
  ASSISTD_RUN_TTL_SECONDS runs expire this long after creation (default 600, as the hosted API)
  ASSISTD_REDIS_URL      redis://… carries run events between processes (default on PostgreSQL: LISTEN/NOTIFY)
  ASSISTD_MAX_BODY_BYTES largest JSON request body accepted (default 32 MiB)
  ASSISTD_HEADER_TIMEOUT_SECONDS  a connection must send a complete request head this soon after connecting
                         or after its previous response, or it is closed (default 10)
  ASSISTD_BODY_TIMEOUT_SECONDS  a request body that sends nothing for this long is dropped with 408 (default 30)
  ASSISTD_PARSE_MAX_BYTES documents may decompress to / yield at most this (default 256 MiB)
  ASSISTD_PARSE_MAX_ENTRIES most entries of a zip-based document such as DOCX (default 10000)
  ASSISTD_PARSE_TIMEOUT_SECONDS parsing one document is stopped after this long (default 120)
  ASSISTD_PARSE_MEMORY_BYTES address-space limit of the process parsing a document (default 2 GiB)
  ASSISTD_LOG_FORMAT     auto (default: text on a terminal, else JSON), json (one object per line) or text
  ASSISTD_ACCESS_LOG     one log line per request (default 1)
  ASSISTD_METRICS        Prometheus metrics on /metrics (default 1; 0 = off)
  ASSISTD_METRICS_PROJECT_LABEL  token counters labelled by project (default 1; 0 bounds cardinality)
  ASSISTD_METRICS_PORT   `assistd worker`: serve /metrics on this port (default: none)
  ASSISTD_RATE_LIMIT_RPM default requests per minute per project (0 = unlimited, the default;
                         `assistd projects limits NAME --rpm N` sets one project's)
  ASSISTD_RATE_LIMIT_TPM default tokens per minute per project (0 = unlimited)
  ASSISTD_RATE_LIMIT_CONCURRENT_RUNS default active runs per project (0 = unlimited)
  ASSISTD_DRAIN_SECONDS  on SIGTERM, /readyz says 503 this long before the server stops (default 0)
  (ASSISTD_MAX_FILE_BYTES and the code_interpreter's ASSISTD_CODE_*: see the README)
"""


def _settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {}
    if getattr(args, "database_url", None):
        overrides["database_url"] = args.database_url
    if getattr(args, "workers", None) is not None:
        overrides["workers"] = args.workers
    if getattr(args, "access_log", None) is not None:
        overrides["access_log"] = args.access_log
    if getattr(args, "metrics_port", None) is not None:
        overrides["metrics_port"] = args.metrics_port
    return Settings(**overrides)


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from assistd.api.http_protocol import protocol_with_header_timeout
    from assistd.app import create_app
    from assistd.observability.draining import DrainingServer

    settings = _settings(args)
    _configure_logging(settings)
    _warn_about_exposure(settings, args.host)
    _private_data_dir(settings)
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        loop="uvloop",
        http=protocol_with_header_timeout(settings.header_timeout_seconds),
        log_level=settings.log_level,
        log_config=None,  # our handlers (observability/logging_setup.py); our access line replaces uvicorn's
        access_log=False,
        timeout_graceful_shutdown=30,
    )
    DrainingServer(config, app.state, settings.drain_seconds).run()
    return 0


def _private_data_dir(settings: Settings) -> None:
    from assistd.private_files import private_dir, warn_if_shared

    if settings.data_dir.exists():
        warn_if_shared(settings.data_dir)
    else:
        private_dir(settings.data_dir)


def _warn_about_exposure(settings: Settings, host: str) -> None:
    """Keyless dev mode on a non-loopback bind: said loudly (services/auth.py decides per request)."""
    if settings.api_keys or host in ("127.0.0.1", "localhost", "::1"):
        return
    log = logging.getLogger("assistd.auth")
    if settings.dev_mode:
        log.warning("ASSISTD_DEV_MODE=1 on %s: while no API key is active, ANYONE who can reach this port "
                    "can use the server (runs, code execution, your upstream key) without a key", host)
    elif settings.dev_mode is None:
        log.warning("listening on %s: without an active API key, requests from other hosts are refused "
                    "(401); only this machine's loopback connections may go keyless", host)


def _worker(args: argparse.Namespace) -> int:
    from assistd.runner.worker_main import run_worker

    settings = _settings(args)
    _configure_logging(settings)
    _private_data_dir(settings)
    if settings.database_url.startswith("sqlite"):
        print("assistd worker needs PostgreSQL: with SQLite, `assistd serve` executes runs itself")
        return 2
    asyncio.run(run_worker(settings, settings.workers or 8))
    return 0


def _configure_logging(settings: Settings) -> None:
    from assistd.observability import logging_setup

    secrets = [key.split(":", 1)[0] for key in settings.api_keys] + [settings.llm_api_key]
    logging_setup.configure(settings.log_level, settings.log_format, secrets)


def _migrate(args: argparse.Namespace) -> int:
    from assistd.store.db import Database
    from assistd.store.migrate import migrate

    async def run() -> None:
        db = Database(_settings(args).database_url)
        try:
            await migrate(db)
        finally:
            await db.close()

    asyncio.run(run())
    print("database is up to date")
    return 0


def _keys(args: argparse.Namespace) -> int:
    from assistd.services import api_keys

    return asyncio.run(api_keys.command(_settings(args), args))


def _projects(args: argparse.Namespace) -> int:
    from assistd.services import project_commands

    return asyncio.run(project_commands.limits_command(_settings(args), args))


def _usage(args: argparse.Namespace) -> int:
    from assistd.services import project_commands

    return asyncio.run(project_commands.usage_command(_settings(args), args))


def _dev_upstream(args: argparse.Namespace) -> int:
    from assistd.devupstream import serve

    serve(args.host, args.port)
    return 0


def _limit_flags(parser: argparse.ArgumentParser) -> None:
    from assistd.services.project_commands import add_limit_flags

    add_limit_flags(parser)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="assistd", description="Drop-in OpenAI Assistants API v2 server")
    sub = parser.add_subparsers(dest="command", required=True)

    def db_flag(p: argparse.ArgumentParser) -> None:
        p.add_argument("--database-url", help="overrides ASSISTD_DATABASE_URL")

    serve = sub.add_parser("serve", help="run the API server (migrates first)", epilog=_ENV_HELP,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, help="overrides ASSISTD_WORKERS")
    serve.add_argument("--access-log", action=argparse.BooleanOptionalAction, default=None,
                       help="one log line per request (overrides ASSISTD_ACCESS_LOG, default on)")
    db_flag(serve)
    serve.set_defaults(func=_serve)

    worker = sub.add_parser("worker", help="execute runs only (no HTTP), beside `serve` on PostgreSQL",
                            epilog=_ENV_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    worker.add_argument("--workers", type=int, help="concurrent runs (overrides ASSISTD_WORKERS)")
    worker.add_argument("--metrics-port", type=int, help="serve Prometheus /metrics on this port "
                        "(overrides ASSISTD_METRICS_PORT)")
    db_flag(worker)
    worker.set_defaults(func=_worker)

    migrate = sub.add_parser("migrate", help="apply database migrations")
    db_flag(migrate)
    migrate.set_defaults(func=_migrate)

    keys = sub.add_parser("keys", help="manage API keys stored in the database")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    create = keys_sub.add_parser("create", help="create a key; the secret is printed once")
    create.add_argument("--project", required=True, help="project name (created when new)")
    create.add_argument("--name", help="a label for the key")
    _limit_flags(create)
    db_flag(create)
    listing = keys_sub.add_parser("list", help="list keys (never their secrets)")
    db_flag(listing)
    revoke = keys_sub.add_parser("revoke", help="revoke a key by id")
    revoke.add_argument("key_id")
    db_flag(revoke)
    keys.set_defaults(func=_keys)

    from assistd.transfer.command import add_commands as add_transfer_commands

    add_transfer_commands(sub, db_flag)  # export, import

    project = sub.add_parser("projects", help="per-project settings")
    project_sub = project.add_subparsers(dest="projects_command", required=True)
    limits = project_sub.add_parser("limits", help="show or set a project's rate limits (-1: back to default)")
    limits.add_argument("name", help="project name (created when new)")
    _limit_flags(limits)
    db_flag(limits)
    project.set_defaults(func=_projects)

    usage = sub.add_parser("usage", help="a project's tokens by model and day, and runs by final status")
    usage.add_argument("--project", required=True, help="project name")
    usage.add_argument("--days", type=int, default=30, help="the last N days (default 30)")
    db_flag(usage)
    usage.set_defaults(func=_usage)

    upstream = sub.add_parser("dev-upstream", help="run the scripted OpenAI-compatible model for tests/demos")
    upstream.add_argument("--host", default="127.0.0.1")
    upstream.add_argument("--port", type=int, default=8001)
    upstream.set_defaults(func=_dev_upstream)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
