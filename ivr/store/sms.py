"""`SmsStore`: the durable side of SMS: the outbox, the inbox, opt-outs and open threads.

The outbox is a queue in a table: `queue()` writes a text before anything is tried, the sender
(`ivr.channels.sms.outbox`) takes due rows and records each attempt, so a gateway outage or a
restart loses nothing. The inbox keys every received text by the gateway's message id: a retried
delivery is recognised and not taken twice (`receive` answers False).
"""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.dialects import postgresql, sqlite

from ivr.store.database import Database
from ivr.store.schema import sms_inbox, sms_opt_outs, sms_outbox, sms_threads

_LINK_TOKEN = re.compile(r"(/c/)[A-Za-z0-9._~-]+")


@dataclass(frozen=True)
class OutgoingText:
    id: str
    to_number: str
    from_number: str
    text: str
    conversation_id: str | None
    state: str
    attempts: int
    next_attempt_at: float
    last_error: str | None
    created_at: float
    updated_at: float

    def shown(self) -> dict[str, Any]:
        """`public_view`, but a continue link's token is left out of a text a gateway carried
        (it opens the customer's conversation: it is theirs alone). A held text (the outbox
        gateway) keeps it whole: whoever reads the outbox is the customer's stand-in."""
        view = self.public_view()
        if self.state != "held":
            view["text"] = _LINK_TOKEN.sub(r"\1…", self.text)
        return view

    def public_view(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "to": self.to_number,
            "from": self.from_number,
            "text": self.text,
            "conversation_id": self.conversation_id,
            "state": self.state,
            "attempts": self.attempts,
            "last_error": self.last_error,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


@dataclass(frozen=True)
class IncomingText:
    key: str
    from_number: str
    to_number: str
    text: str
    received_at: float


# Which states a delivery report may replace, by the state it reports.
_REPORTABLE_OVER = {
    "sent": ("queued", "sent"),
    "delivered": ("queued", "sent", "delivered", "failed"),
    "failed": ("queued", "sent", "failed"),
}


class SmsStore:
    def __init__(self, database: Database) -> None:
        self._db = database
        self._insert = postgresql.insert if database.dialect == "postgresql" else sqlite.insert

    # ------------------------------------------------------------------ outbox

    async def queue(
        self,
        to_number: str,
        from_number: str,
        text: str,
        conversation_id: str | None,
        state: str = "queued",
        now: float | None = None,
    ) -> OutgoingText:
        now = time.time() if now is None else now
        row = {
            "id": uuid.uuid4().hex,
            "conversation_id": conversation_id,
            "to_number": to_number,
            "from_number": from_number,
            "text": text,
            "state": state,
            "attempts": 0,
            "next_attempt_at": now,
            "last_error": None,
            "created_at": now,
            "updated_at": now,
        }
        async with self._db.begin(f"queueing a text to {to_number}") as conn:
            await conn.execute(sms_outbox.insert(), row)
        return OutgoingText(**row)

    async def queued(self, limit: int = 500) -> list[OutgoingText]:
        """Texts still to send, oldest first (the sender keeps each number's order)."""
        query = (
            select(sms_outbox)
            .where(sms_outbox.c.state == "queued")
            .order_by(sms_outbox.c.created_at, sms_outbox.c.id)
            .limit(limit)
        )
        async with self._db.connect("reading the SMS outbox") as conn:
            rows = (await conn.execute(query)).all()
        return [OutgoingText(**row._mapping) for row in rows]

    async def texts(
        self, conversation_id: str | None = None, limit: int = 200
    ) -> list[OutgoingText]:
        """The newest texts first, all or one conversation's."""
        query = select(sms_outbox).order_by(sms_outbox.c.created_at.desc()).limit(limit)
        if conversation_id is not None:
            query = query.where(sms_outbox.c.conversation_id == conversation_id)
        async with self._db.connect("reading the SMS outbox") as conn:
            rows = (await conn.execute(query)).all()
        return [OutgoingText(**row._mapping) for row in rows]

    async def get_text(self, text_id: str) -> OutgoingText | None:
        query = select(sms_outbox).where(sms_outbox.c.id == text_id)
        async with self._db.connect("reading the SMS outbox") as conn:
            row = (await conn.execute(query)).first()
        return OutgoingText(**row._mapping) if row else None

    async def record_attempt(
        self,
        text_id: str,
        state: str,
        attempts: int,
        next_attempt_at: float,
        error: str | None = None,
    ) -> None:
        values = {
            "state": state,
            "attempts": attempts,
            "next_attempt_at": next_attempt_at,
            "last_error": error,
            "updated_at": time.time(),
        }
        # Only over `queued`: a delivery report may already have come in while the gateway's
        # answer was on its way, and it is the later news.
        query = (
            update(sms_outbox)
            .where(sms_outbox.c.id == text_id)
            .where(sms_outbox.c.state == "queued")
            .values(values)
        )
        async with self._db.begin(f"recording a sending attempt of {text_id}") as conn:
            await conn.execute(query)

    async def delivery_report(self, text_id: str, state: str, error: str | None) -> bool:
        """A gateway's report on a text we sent; False for an unknown (or forged) id."""
        values: dict[str, Any] = {"state": state, "updated_at": time.time()}
        if error:
            values["last_error"] = error
        query = (
            update(sms_outbox)
            .where(sms_outbox.c.id == text_id)
            # Reports may come out of order (a long text's parts each have theirs): "sent"
            # never takes back "delivered" or "failed".
            .where(sms_outbox.c.state.in_(_REPORTABLE_OVER[state]))
            .values(values)
        )
        async with self._db.begin(f"recording the delivery of {text_id}") as conn:
            result = await conn.execute(query)
        return bool(result.rowcount)

    # ------------------------------------------------------------------ inbox

    async def receive(
        self, key: str, from_number: str, to_number: str, text: str, now: float | None = None
    ) -> bool:
        """Store a received text; False when `key` was received before (a gateway's retry)."""
        row = {
            "key": key,
            "from_number": from_number,
            "to_number": to_number,
            "text": text,
            "received_at": time.time() if now is None else now,
            "state": "new",
            "conversation_id": None,
        }
        query = self._insert(sms_inbox).values(row).on_conflict_do_nothing()
        async with self._db.begin(f"storing a text from {from_number}") as conn:
            result = await conn.execute(query)
        return bool(result.rowcount)

    async def unhandled(self) -> list[IncomingText]:
        """Received but not yet handled (the server stopped in between), oldest first."""
        query = (
            select(sms_inbox)
            .where(sms_inbox.c.state == "new")
            .order_by(sms_inbox.c.received_at, sms_inbox.c.key)
        )
        async with self._db.connect("reading the SMS inbox") as conn:
            rows = (await conn.execute(query)).all()
        return [
            IncomingText(r.key, r.from_number, r.to_number, r.text or "", r.received_at)
            for r in rows
        ]

    async def handled(self, key: str, conversation_id: str | None) -> None:
        """The text is in its conversation now; its copy here is cleared (it may be a PIN)."""
        values = {"state": "done", "text": None, "conversation_id": conversation_id}
        async with self._db.begin(f"marking text {key} handled") as conn:
            await conn.execute(update(sms_inbox).where(sms_inbox.c.key == key).values(values))

    # ------------------------------------------------------------------ opt-outs

    async def opted_out(self, number: str) -> bool:
        query = select(sms_opt_outs.c.number).where(sms_opt_outs.c.number == number)
        async with self._db.connect("reading SMS opt-outs") as conn:
            return (await conn.execute(query)).first() is not None

    async def opt_out(self, number: str) -> None:
        query = (
            self._insert(sms_opt_outs)
            .values(number=number, at=time.time())
            .on_conflict_do_nothing()
        )
        # Texts still queued for the number (waiting for a retry) are not sent after its STOP.
        suppress = (
            update(sms_outbox)
            .where(sms_outbox.c.to_number == number, sms_outbox.c.state == "queued")
            .values(state="suppressed", updated_at=time.time())
        )
        async with self._db.begin(f"opting {number} out") as conn:
            await conn.execute(query)
            await conn.execute(suppress)

    async def opt_in(self, number: str) -> None:
        async with self._db.begin(f"opting {number} in") as conn:
            await conn.execute(delete(sms_opt_outs).where(sms_opt_outs.c.number == number))

    # ------------------------------------------------------------------ threads

    async def thread(self, number: str) -> str | None:
        query = select(sms_threads.c.conversation_id).where(sms_threads.c.number == number)
        async with self._db.connect("reading SMS threads") as conn:
            return (await conn.execute(query)).scalar()

    async def bind(self, number: str, conversation_id: str) -> None:
        insert = self._insert(sms_threads).values(
            number=number, conversation_id=conversation_id, updated_at=time.time()
        )
        query = insert.on_conflict_do_update(
            index_elements=[sms_threads.c.number],
            set_={"conversation_id": conversation_id, "updated_at": time.time()},
        )
        async with self._db.begin(f"binding {number}'s thread") as conn:
            await conn.execute(query)

    async def unbind(self, number: str, conversation_id: str | None = None) -> None:
        query = delete(sms_threads).where(sms_threads.c.number == number)
        if conversation_id is not None:
            query = query.where(sms_threads.c.conversation_id == conversation_id)
        async with self._db.begin(f"closing {number}'s thread") as conn:
            await conn.execute(query)
