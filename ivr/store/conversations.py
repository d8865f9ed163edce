"""`ConversationStore`: save a conversation after every flow step, load it back anywhere.

`save` writes the document row (everything but the timeline) and appends the timeline turns not
stored yet, in one transaction. A turn's key is its place in the timeline, and turns are inserted
"on conflict do nothing": two processes saving the same timeline, or a restarted one that sends
it again, never duplicate a turn (the first one stored at a place wins). Which turns this store
already wrote is remembered (for the most recent conversations) so a save sends only new ones.

Every flow step is saved, so a save is on every call's path: its statements are built once
(SQLAlchemy then reuses their compiled form) and it costs one round trip per statement.
"""

from __future__ import annotations

import json
from collections import OrderedDict, defaultdict
from typing import Any

from sqlalchemy import Insert, Select, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from ivr.conversation import Conversation, Turn
from ivr.store.database import Database, StoreError
from ivr.store.schema import conversations, turns


def _dumps(value: Any, what: str) -> str:
    try:
        return json.dumps(value, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise StoreError(f"{what} cannot be stored as JSON: {exc}") from exc


REMEMBERED = 10_000  # conversations whose stored turn count is kept (LRU); others resend all

_UPDATED = ("flow", "status", "customer_id", "updated_at", "document")


def _statements(dialect: str) -> tuple[Insert, Insert]:
    """(upsert of a conversation row, insert of turns that skips those already stored)."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    upsert = insert(conversations)
    upsert = upsert.on_conflict_do_update(
        index_elements=[conversations.c.id],
        set_={key: upsert.excluded[key] for key in _UPDATED},
    )
    append = insert(turns).on_conflict_do_nothing(
        index_elements=[turns.c.conversation_id, turns.c.seq]
    )
    return upsert, append


class ConversationStore:
    def __init__(self, database: Database) -> None:
        self._db = database
        self._upsert, self._append = _statements(database.dialect)
        self._stored: OrderedDict[str, int] = OrderedDict()  # id -> turns known to be stored

    @property
    def database(self) -> Database:
        """The open database, for the other stores on it (agents)."""
        return self._db

    async def save(self, conv: Conversation) -> None:
        """Store the conversation and append its new turns; all or nothing."""
        document = conv.to_dict()
        row = {
            "id": conv.id,
            "flow": conv.flow,
            "status": str(conv.status),
            "customer_id": conv.identity.customer_id,
            "created_at": conv.created_at,
            "updated_at": conv.updated_at,
            "document": _dumps(document, f"conversation {conv.id}"),
        }
        first_new = self._stored.get(conv.id, 0)
        new = [
            {
                "conversation_id": conv.id,
                "seq": seq,
                "ts": turn.ts,
                "channel": turn.channel,
                "role": str(turn.role),
                "text": turn.text,
                "meta": _dumps(turn.meta, f"turn {seq} of conversation {conv.id}"),
            }
            for seq, turn in enumerate(conv.timeline[first_new:], first_new)
        ]
        async with self._db.begin(f"saving conversation {conv.id}") as conn:
            await conn.execute(self._upsert, row)
            if new:
                await conn.execute(self._append, new)
        # What this save wrote, not the timeline's length now: a turn added while it awaited
        # the database (another run took the conversation over) is not stored yet.
        self._stored[conv.id] = max(self._stored.get(conv.id, 0), first_new + len(new))
        self._stored.move_to_end(conv.id)
        if len(self._stored) > REMEMBERED:
            self._stored.popitem(last=False)

    async def get(self, conversation_id: str) -> Conversation | None:
        """The conversation with its whole timeline, or None if it was never saved."""
        query = select(conversations.c.id, conversations.c.document).where(
            conversations.c.id == conversation_id
        )
        found = await self._load(query, f"loading conversation {conversation_id}")
        return found[0] if found else None

    async def list_recent(self, limit: int = 50) -> list[Conversation]:
        """The most recently updated conversations, newest first."""
        query = (
            select(conversations.c.id, conversations.c.document)
            .order_by(conversations.c.updated_at.desc(), conversations.c.id.desc())
            .limit(limit)
        )
        return await self._load(query, "listing recent conversations")

    async def by_customer(self, customer_id: str, limit: int = 20) -> list[Conversation]:
        """A customer's conversations, newest first."""
        query = (
            select(conversations.c.id, conversations.c.document)
            .where(conversations.c.customer_id == customer_id)
            .order_by(conversations.c.updated_at.desc(), conversations.c.id.desc())
            .limit(limit)
        )
        return await self._load(query, f"listing conversations of customer {customer_id}")

    async def count(self) -> int:
        async with self._db.connect("counting conversations") as conn:
            return await conn.scalar(select(func.count()).select_from(conversations)) or 0

    async def _load(self, query: Select[Any], action: str) -> list[Conversation]:
        async with self._db.connect(action) as conn:
            rows = (await conn.execute(query)).all()
            timelines = await self._timelines(conn, [row.id for row in rows])
        return [
            Conversation.from_dict(json.loads(row.document), timelines.get(row.id, []))
            for row in rows
        ]

    @staticmethod
    async def _timelines(conn: AsyncConnection, ids: list[str]) -> dict[str, list[Turn]]:
        timelines: dict[str, list[Turn]] = defaultdict(list)
        if not ids:
            return timelines
        query = (
            select(turns)
            .where(turns.c.conversation_id.in_(ids))
            .order_by(turns.c.conversation_id, turns.c.seq)
        )
        for row in await conn.execute(query):
            timelines[row.conversation_id].append(
                Turn.from_dict(
                    {
                        "ts": row.ts,
                        "channel": row.channel,
                        "role": row.role,
                        "text": row.text,
                        "meta": json.loads(row.meta),
                    }
                )
            )
        return timelines
