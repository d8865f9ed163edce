"""`QueueStateStore`: who waits in which queue (survives a restart), and the queues' event log.

`queue_entries` mirrors the router's entries (waiting, offered, assigned): written at every
change, read back when the control plane starts. `queue_events` is append-only: the wallboard's
figures (service level, abandonment, handling time) are computed from it.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite

from ivr.routing.acd import WaitingEntry
from ivr.store.database import Database
from ivr.store.schema import queue_entries, queue_events


@dataclass(frozen=True)
class StoredEntry:
    entry: WaitingEntry
    state: str  # waiting | offered | assigned
    agent_id: str | None


@dataclass(frozen=True)
class QueueEvent:
    ts: float
    queue: str
    conversation_id: str
    event: str
    agent_id: str | None
    seconds: float | None
    data: dict[str, Any]


class QueueStateStore:
    def __init__(self, database: Database) -> None:
        self._db = database
        insert = postgresql.insert if database.dialect == "postgresql" else sqlite.insert
        upsert = insert(queue_entries)
        self._upsert = upsert.on_conflict_do_update(
            index_elements=[queue_entries.c.conversation_id],
            set_={
                key: upsert.excluded[key]
                for key in (
                    "queue",
                    "medium",
                    "skills",
                    "priority",
                    "state",
                    "agent_id",
                    "updated_at",
                )
            },
        )

    async def save_entry(self, entry: WaitingEntry, state: str, agent_id: str | None) -> None:
        row = {
            "conversation_id": entry.conversation_id,
            "queue": entry.queue,
            "medium": entry.medium,
            "skills": json.dumps(sorted(entry.skills)),
            "priority": entry.priority,
            "enqueued_at": entry.enqueued_at,
            "state": state,
            "agent_id": agent_id,
            "updated_at": time.time(),
        }
        async with self._db.begin(f"saving queue entry {entry.conversation_id}") as conn:
            await conn.execute(self._upsert, row)

    async def drop_entry(self, conversation_id: str) -> None:
        async with self._db.begin(f"removing queue entry {conversation_id}") as conn:
            await conn.execute(
                delete(queue_entries).where(queue_entries.c.conversation_id == conversation_id)
            )

    async def entries(self) -> list[StoredEntry]:
        """Every stored entry, oldest first."""
        query = select(queue_entries).order_by(queue_entries.c.enqueued_at)
        async with self._db.connect("loading queue entries") as conn:
            rows = (await conn.execute(query)).all()
        return [
            StoredEntry(
                WaitingEntry(
                    conversation_id=row.conversation_id,
                    queue=row.queue,
                    medium=row.medium,
                    skills=frozenset(json.loads(row.skills)),
                    priority=row.priority,
                    enqueued_at=row.enqueued_at,
                ),
                row.state,
                row.agent_id,
            )
            for row in rows
        ]

    async def log(self, queue: str, conversation_id: str, event: str, **data: Any) -> None:
        agent_id = data.pop("agent", None)
        seconds = data.pop("seconds", None)
        async with self._db.begin(f"logging {event} of {conversation_id}") as conn:
            await conn.execute(
                queue_events.insert(),
                {
                    "ts": time.time(),
                    "queue": queue,
                    "conversation_id": conversation_id,
                    "event": event,
                    "agent_id": agent_id,
                    "seconds": seconds,
                    "data": json.dumps(data),
                },
            )

    async def events_since(self, since: float) -> list[QueueEvent]:
        query = select(queue_events).where(queue_events.c.ts >= since).order_by(queue_events.c.id)
        async with self._db.connect("reading queue events") as conn:
            rows = (await conn.execute(query)).all()
        return [
            QueueEvent(
                row.ts,
                row.queue,
                row.conversation_id,
                row.event,
                row.agent_id,
                row.seconds,
                json.loads(row.data),
            )
            for row in rows
        ]
