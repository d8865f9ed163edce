"""Durable storage: conversations (and later queues, agents, SMS outbox...) in one database.

SQLite by default (a file, nothing to install) and PostgreSQL when several nodes share state;
the code is the same, only the URL differs:

    async with open_store("sqlite:///var/ivr.db") as store:
        await store.save(conversation)

Modules: `database` (URLs, engine, `open_store`), `schema` (tables), `conversations`
(`ConversationStore`), `agents` (`AgentStore`: agents' accounts and sessions, on the same
database: `AgentStore(store.database)`).
"""

from ivr.store.agents import AgentExists, AgentInputError, AgentRecord, AgentStore
from ivr.store.conversations import ConversationStore
from ivr.store.database import StoreError, open_store

__all__ = [
    "AgentExists",
    "AgentInputError",
    "AgentRecord",
    "AgentStore",
    "ConversationStore",
    "StoreError",
    "open_store",
]
