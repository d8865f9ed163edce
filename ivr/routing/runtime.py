"""The queue service inside `ivr serve`: built from the flows' queue files and the store.

Queue definitions (`queues:` files, `ivr.routing.model`) are read on every use, so a hot reload
of the flows changes offer timeouts, aging and announcements for the next decision.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

from ivr.conversation import Conversation
from ivr.conversation_service import ConversationService
from ivr.flow.repository import FlowRepository
from ivr.routing.acd import QueuePolicy
from ivr.routing.model import QueueDefinition
from ivr.routing.service import QueueNotices, QueueService
from ivr.store import ConversationStore
from ivr.store.queues import QueueStateStore

NO_AGING_SECONDS = 1e9  # ~32 years


def definitions(flows: FlowRepository) -> Mapping[str, QueueDefinition]:
    current = flows.current
    return current.queues if current is not None else {}


def policy(name: str, queue: QueueDefinition) -> QueuePolicy:
    return QueuePolicy(
        name=name,
        # aging 0 = none: a span no wait reaches, so priority alone orders (finite: the
        # router's sort keys are enqueued_at - priority * aging_seconds).
        aging_seconds=float(queue.aging) if queue.aging else NO_AGING_SECONDS,
        offer_timeout=float(queue.offer_timeout),
    )


def notices(queue: QueueDefinition | None) -> QueueNotices:
    announce = queue.announce if queue is not None else None
    music = queue.hold_music if queue is not None else None
    if announce is None:  # told once where they stand, then left to wait
        return QueueNotices(every=0.0, hold_music=music)
    return QueueNotices(
        every=float(announce.every),
        position=announce.position,
        estimated_wait=announce.estimated_wait,
        hold_music=music,
    )


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
        policies=lambda: {n: policy(n, q) for n, q in definitions(flows).items()},
        notices=lambda name: notices(definitions(flows).get(name)),
        skills=lambda name: frozenset(getattr(definitions(flows).get(name), "skills", ())),
    )
    conversations.services.queues = service
    await service.restore()
    try:
        yield service
    finally:
        conversations.services.queues = None
        await service.close()
