"""The tables, all on one `MetaData` so `open_store` can create them with `create_all`.

A conversation is one row of `conversations` (its `Conversation.to_dict()` document as JSON text,
plus the columns we query by) and one append-only row of `turns` per timeline entry. Timestamps
are epoch seconds, as in `ivr.conversation`. Human agents are `agents` (an argon2id hash, never
the password) and their signed-in browsers `agent_sessions` (a SHA-256 of the cookie's token,
never the token). Later features add their tables here.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    Double,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

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

agents = Table(
    "agents",
    metadata,
    Column("id", String, primary_key=True),  # uuid hex
    Column("username", String, nullable=False, unique=True),  # stored lowercased
    Column("display_name", String, nullable=False),
    Column("password_hash", String, nullable=False),  # argon2id, with its parameters
    Column("skills", Text, nullable=False),  # JSON object: skill -> proficiency 1..10
    Column("queues", Text, nullable=False),  # JSON list of queue names
    Column("capacity", Text, nullable=False),  # JSON object: medium -> conversations at once
    Column("created_at", Double, nullable=False),
    Column("disabled", Boolean, nullable=False, default=False),
)

agent_sessions = Table(
    "agent_sessions",
    metadata,
    Column("token_hash", String, primary_key=True),  # sha256 hex of the cookie's token
    Column(
        "agent_id",
        String,
        ForeignKey("agents.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("created_at", Double, nullable=False),
    Column("expires_at", Double, nullable=False),
    Column("last_seen", Double, nullable=False),
    Index("ix_agent_sessions_agent_id", "agent_id"),
    Index("ix_agent_sessions_expires_at", "expires_at"),  # purging expired sessions
)

# An agent's own SIP phone, where the calls they accept are transferred (none: the desktop's
# softphone). A table of its own: `create_all` adds new tables to an existing database, never
# new columns to an old table.
agent_phones = Table(
    "agent_phones",
    metadata,
    Column("agent_id", String, ForeignKey("agents.id", ondelete="CASCADE"), primary_key=True),
    Column("sip_uri", String, nullable=False),
)

# Conversations waiting in (or taken from) a human queue: the router's state, so a restarted
# control plane knows who was waiting and since when. A row goes when the agent wraps up.
queue_entries = Table(
    "queue_entries",
    metadata,
    Column("conversation_id", String, primary_key=True),
    Column("queue", String, nullable=False),
    Column("medium", String, nullable=False),  # voice | text
    Column("skills", Text, nullable=False),  # JSON list
    Column("priority", Integer, nullable=False),
    Column("enqueued_at", Double, nullable=False),
    Column("state", String, nullable=False),  # waiting | offered | assigned
    Column("agent_id", String, nullable=True),
    Column("updated_at", Double, nullable=False),
)

# What happened in the queues, one row an event (enqueued, answered, abandoned, handled,
# overflowed): the wallboard's service level, abandonment and handling times come from here.
queue_events = Table(
    "queue_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("ts", Double, nullable=False),
    Column("queue", String, nullable=False),
    Column("conversation_id", String, nullable=False),
    Column("event", String, nullable=False),
    Column("agent_id", String, nullable=True),
    Column("seconds", Double, nullable=True),  # waited (answered, abandoned) or handled
    Column("data", Text, nullable=False),  # JSON object: code, priority, ...
    Index("ix_queue_events_ts", "ts"),
)

# Texts to send, durably queued: a sender works through `queued` rows with back-off, so nothing
# is lost while the gateway or this server is down. `held` rows are the outbox gateway's (no
# gateway configured): kept for the agent desktop to show. Delivery reports update `state`.
sms_outbox = Table(
    "sms_outbox",
    metadata,
    Column("id", String, primary_key=True),
    Column("conversation_id", String, nullable=True),
    Column("to_number", String, nullable=False),
    Column("from_number", String, nullable=False),
    Column("text", Text, nullable=False),
    # queued | sent | delivered | failed | held | suppressed (opted out)
    Column("state", String, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", Double, nullable=False),
    Column("last_error", Text, nullable=True),
    Column("created_at", Double, nullable=False),
    Column("updated_at", Double, nullable=False),
    Index("ix_sms_outbox_state", "state", "created_at"),
    Index("ix_sms_outbox_conversation", "conversation_id"),
)

# Texts received, stored before the gateway is answered (so a crash loses none) and keyed by
# the gateway's message id (so its retries are not taken twice). Once handled, the text is
# cleared: it lives on in the conversation's timeline, where secure answers are masked.
sms_inbox = Table(
    "sms_inbox",
    metadata,
    Column("key", String, primary_key=True),
    Column("from_number", String, nullable=False),
    Column("to_number", String, nullable=False),
    Column("text", Text, nullable=True),
    Column("received_at", Double, nullable=False),
    Column("state", String, nullable=False),  # new | done
    Column("conversation_id", String, nullable=True),
    Index("ix_sms_inbox_state", "state", "received_at"),
)

# Numbers that texted STOP: nothing more is sent to them until they text START.
sms_opt_outs = Table(
    "sms_opt_outs",
    metadata,
    Column("number", String, primary_key=True),
    Column("at", Double, nullable=False),
)

# The open conversation of each number's SMS thread: a reply continues it.
sms_threads = Table(
    "sms_threads",
    metadata,
    Column("number", String, primary_key=True),
    Column("conversation_id", String, nullable=False),
    Column("updated_at", Double, nullable=False),
)

# Secrets the server makes once and keeps across restarts (the key that signs continue links,
# when [http] link_secret is not set), so what was sent before a restart still works.
server_secrets = Table(
    "server_secrets",
    metadata,
    Column("name", String, primary_key=True),
    Column("value", String, nullable=False),
)

# Continue links (`/c/<token>`) already opened: one row per link's nonce, inserted once, so a
# link is used once even when two browsers race. Rows go some time after the link expired.
continue_links_used = Table(
    "continue_links_used",
    metadata,
    Column("nonce", String, primary_key=True),
    Column("conversation_id", String, nullable=False),
    Column("used_at", Double, nullable=False),
    Column("expires_at", Double, nullable=False),
    Index("ix_continue_links_used_expires_at", "expires_at"),
)
