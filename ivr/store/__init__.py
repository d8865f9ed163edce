"""Durable storage: conversations (and later queues, agents, SMS outbox...) in one database.

SQLite by default (a file, nothing to install) and PostgreSQL when several nodes share state;
the code is the same, only the URL differs:

    async with open_store("sqlite:///var/ivr.db") as store:
        await store.save(conversation)

Modules: `database` (URLs, engine, `open_store`), `schema` (tables), `conversations`
(`ConversationStore`).
"""

from ivr.store.conversations import ConversationStore
from ivr.store.database import StoreError, open_store

__all__ = ["ConversationStore", "StoreError", "open_store"]
