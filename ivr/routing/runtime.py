"""The queue service inside `ivr serve`: built from the flows' queue files and the store.

Queue definitions (`queues:` files, `ivr.routing.model`) are read on every use, so a hot reload
of the flows changes offer timeouts, aging, hours and announcements for the next decision
(`ivr.routing.rules`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

from ivr.conversation import Conversation
from ivr.conversation_service import ConversationService
from ivr.flow.repository import FlowRepository
from ivr.routing.model import QueueDefinition
from ivr.routing.rules import QueueBook
from ivr.routing.service import QueueService
from ivr.store import ConversationStore
from ivr.store.queues import QueueStateStore


def definitions(flows: FlowRepository) -> Mapping[str, QueueDefinition]:
    current = flows.current
    return current.queues if current is not None else {}


class StoredConversations:
    """What the queue service reads of conversations: live ones first, then the store."""

    def __init__(self, conversations: ConversationService, store: ConversationStore) -> None:
        self._conversations = conversations
        self._store = store

    async def get(self, conversation_id: str) -> Conversation | None:
        return await self._conversations.get(conversation_id)

    async def earlier(self, customer_id: str) -> list[Conversation]:
        return await self._store.by_customer(customer_id, limit=6)


@asynccontextmanager
async def queue_service(
    flows: FlowRepository, conversations: ConversationService, store: ConversationStore
) -> AsyncIterator[QueueService]:
    service = QueueService(
        persist=conversations.services.persist,
        conversations=StoredConversations(conversations, store),
        state=QueueStateStore(store.database),
        rules=QueueBook(lambda: definitions(flows)),
    )
    conversations.services.queues = service
    await service.restore()
    try:
        yield service
    finally:
        conversations.services.queues = None
        await service.close()
