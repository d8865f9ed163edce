"""`LinkStore`: what continue links need to outlive a restart and to be used once.

`secret(name)` gives a random secret made once and kept in `server_secrets` (every node of a
PostgreSQL store gets the same one: the first insert wins). `use(nonce, ...)` records that a
link was opened, insert-or-fail on its nonce, so of two concurrent redemptions exactly one wins;
`used(nonce)` asks without recording. Signing and checking tokens is `ivr.channels.links`'s.
"""

from __future__ import annotations

import secrets
import time

from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite

from ivr.store.database import Database
from ivr.store.schema import continue_links_used, server_secrets

# Used nonces are kept this long after their link expired, so a link stays refused ("used",
# not "valid again") even if [http] link_minutes is raised a little meanwhile.
KEEP_USED_SECONDS = 7 * 24 * 3600.0


class LinkStore:
    def __init__(self, database: Database) -> None:
        self._db = database
        self._insert = postgresql.insert if database.dialect == "postgresql" else sqlite.insert

    async def secret(self, name: str) -> bytes:
        """The secret called `name`, made (32 random bytes) the first time it is asked for."""
        fresh = secrets.token_urlsafe(32)
        insert = self._insert(server_secrets).values(name=name, value=fresh)
        query = select(server_secrets.c.value).where(server_secrets.c.name == name)
        async with self._db.begin(f"reading the server secret {name!r}") as conn:
            await conn.execute(insert.on_conflict_do_nothing())
            value = (await conn.execute(query)).scalar_one()
        return value.encode()

    async def used(self, nonce: str) -> bool:
        query = select(continue_links_used.c.nonce).where(continue_links_used.c.nonce == nonce)
        async with self._db.connect("reading used links") as conn:
            return (await conn.execute(query)).first() is not None

    async def use(
        self, nonce: str, conversation_id: str, expires_at: float, now: float | None = None
    ) -> bool:
        """Record the link `nonce` as used; False when it was used before (by anyone)."""
        now = time.time() if now is None else now
        row = {
            "nonce": nonce,
            "conversation_id": conversation_id,
            "used_at": now,
            "expires_at": expires_at,
        }
        purge = delete(continue_links_used).where(
            continue_links_used.c.expires_at < now - KEEP_USED_SECONDS
        )
        async with self._db.begin("recording a used link") as conn:
            result = await conn.execute(
                self._insert(continue_links_used).values(row).on_conflict_do_nothing()
            )
            await conn.execute(purge)
        return bool(result.rowcount)
