"""The tables, all on one `MetaData` so `open_store` can create them with `create_all`.

A conversation is one row of `conversations` (its `Conversation.to_dict()` document as JSON text,
plus the columns we query by) and one append-only row of `turns` per timeline entry. Timestamps
are epoch seconds, as in `ivr.conversation`. Later features add their tables here.
"""

from __future__ import annotations

from sqlalchemy import Column, Double, ForeignKey, Index, Integer, MetaData, String, Table, Text

metadata = MetaData()

conversations = Table(
    "conversations",
    metadata,
    Column("id", String, primary_key=True),
    Column("flow", String, nullable=False),
    Column("status", String, nullable=False),
    Column("customer_id", String, nullable=True),  # identity.customer_id, once known
    Column("created_at", Double, nullable=False),
    Column("updated_at", Double, nullable=False),
    Column("document", Text, nullable=False),  # JSON of Conversation.to_dict()
    Index("ix_conversations_updated_at", "updated_at"),
    Index("ix_conversations_customer_id", "customer_id", "updated_at"),
)

turns = Table(
    "turns",
    metadata,
    Column(
        "conversation_id",
        String,
        ForeignKey("conversations.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("seq", Integer, primary_key=True, autoincrement=False),  # index in the timeline
    Column("ts", Double, nullable=False),
    Column("channel", String, nullable=False),
    Column("role", String, nullable=False),
    Column("text", Text, nullable=False),
    Column("meta", Text, nullable=False),  # JSON object
)
