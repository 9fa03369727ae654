"""``assistd keys create|list|revoke``: keys stored hashed in the database, secrets shown once."""

from __future__ import annotations

import argparse
import datetime

from assistd.config import Settings
from assistd.services.auth import hash_secret, new_secret, redact
from assistd.services.project_commands import limit_values, set_limits
from assistd.store import keys as key_store
from assistd.store.db import Database
from assistd.store.migrate import migrate


async def command(settings: Settings, args: argparse.Namespace) -> int:
    db = Database(settings.database_url)
    try:
        await migrate(db)
        if args.keys_command == "create":
            secret = new_secret()
            async with db.write() as conn:
                project_id = await key_store.ensure_project(conn, args.project)
                key_id = await key_store.add_key(conn, project_id, hash_secret(secret), redact(secret), args.name)
            await set_limits(db, project_id, limit_values(args))
            print(f"created key {key_id} for project {args.project!r}; the secret (shown only now):")
            print(secret)
            return 0
        if args.keys_command == "list":
            async with db.read() as conn:
                rows = await key_store.list_keys(conn)
            for row in rows:
                created = datetime.datetime.fromtimestamp(row["created_at"], datetime.UTC).isoformat()
                state = "revoked" if row["revoked_at"] else "active"
                print(f"{row['id']}\t{row['project']}\t{row['redacted']}\t{state}\t{created}\t{row['name'] or ''}")
            return 0
        async with db.write() as conn:
            if not await key_store.revoke(conn, args.key_id):
                print(f"no active key with id {args.key_id}")
                return 1
            _, active = await key_store.count_keys(conn)
        print(f"revoked {args.key_id}")
        if active == 0 and not settings.api_keys:
            # Fail closed, and say so: a revoked key keeps keyless dev mode off (services/auth.py).
            print("no active API key left: running servers refuse every request (401) until "
                  "`assistd keys create` (or ASSISTD_DEV_MODE=1)")
        return 0
    finally:
        await db.close()
