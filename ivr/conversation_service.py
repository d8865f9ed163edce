"""The control plane's conversations: starting, resuming and handing them between channels.

Every channel (web chat now; SIP, WebRTC and SMS next) asks this service to start a
conversation or to continue one; it runs the flow on that channel and persists after every
turn. A conversation has at most one live run: when another channel takes it over, the old
run is cancelled first (its state was already stored) and the new one continues at the stored
step, so nothing is asked twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from ivr.conversation import Conversation, Status
from ivr.flow.channel import Channel
from ivr.flow.engine import FlowRun, FlowServices, Stop
from ivr.flow.repository import FlowRepository
from ivr.store import ConversationStore, StoreError

log = logging.getLogger("ivr.conversations")


class UnknownFlow(LookupError):
    pass


def persister(store: ConversationStore) -> Callable[[Conversation], Awaitable[None]]:
    """Store a conversation; a store outage is logged, never a crashed conversation."""

    async def persist(conv: Conversation) -> None:
        try:
            await store.save(conv)
        except StoreError as exc:
            log.error("conversation %s not saved: %s", conv.id, exc)

    return persist


@dataclass
class LiveRun:
    conv: Conversation
    channel: Channel
    task: asyncio.Task[Stop]


class ConversationService:
    def __init__(
        self, flows: FlowRepository, store: ConversationStore, services: FlowServices
    ) -> None:
        self.flows = flows
        self.store = store
        self.services = services
        self._live: dict[str, LiveRun] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._takers: dict[str, list[asyncio.Future[None]]] = {}

    async def start(
        self, channel: Channel, flow_name: str, contact: dict[str, str] | None = None
    ) -> LiveRun:
        flow_set = self.flows.require()
        flow = flow_set.flows.get(flow_name)
        if flow is None:
            raise UnknownFlow(f"no flow named {flow_name!r}")
        conv = Conversation.start(flow.name, flow.header.start, flow.header.language)
        conv.contact.update(contact or {})
        return self._run(conv, channel)

    async def resume(self, conversation_id: str, channel: Channel) -> LiveRun:
        """Continue a conversation on `channel` at its stored step (taking it from any other).

        Takeovers of one conversation are serialised, so it never has two live runs."""
        lock = self._locks.setdefault(conversation_id, asyncio.Lock())
        try:
            return await self._take_over(conversation_id, channel, lock)
        finally:
            if conversation_id not in self._live and not lock.locked():
                self._locks.pop(conversation_id, None)  # refused: no run will remove it

    async def _take_over(
        self, conversation_id: str, channel: Channel, lock: asyncio.Lock
    ) -> LiveRun:
        async with lock:
            live = self._live.get(conversation_id)
            if live is not None:
                live.task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await live.task
                conv = live.conv
            else:
                loaded = await self.store.get(conversation_id)
                if loaded is None:
                    raise KeyError(conversation_id)
                conv = loaded
            if conv.status is Status.ENDED:
                raise ValueError(f"conversation {conversation_id} has ended")
            return self._run(conv, channel)

    def when_taken(self, conversation_id: str) -> asyncio.Future[None]:
        """Resolved when the conversation next goes on (on whatever channel): a call kept open
        after an escalation ends then. Cancel it when no longer waiting."""
        taken = asyncio.get_running_loop().create_future()
        waiting = self._takers.setdefault(conversation_id, [])
        waiting.append(taken)
        taken.add_done_callback(lambda _f: self._forget_taker(conversation_id, taken))
        return taken

    def _forget_taker(self, conversation_id: str, taken: asyncio.Future[None]) -> None:
        waiting = self._takers.get(conversation_id, [])
        if taken in waiting:
            waiting.remove(taken)
        if not waiting:
            self._takers.pop(conversation_id, None)

    def _run(self, conv: Conversation, channel: Channel) -> LiveRun:
        for taken in list(self._takers.get(conv.id, ())):
            if not taken.done():
                taken.set_result(None)
        run = FlowRun(self.flows.require(), conv, channel, self.services)
        task = asyncio.create_task(run.run(), name=f"conversation-{conv.id}")
        live = LiveRun(conv, channel, task)
        self._live[conv.id] = live
        task.add_done_callback(lambda t: self._finished(live, t))
        return live

    def _finished(self, live: LiveRun, task: asyncio.Task[Stop]) -> None:
        if self._live.get(live.conv.id) is live:
            del self._live[live.conv.id]
            lock = self._locks.get(live.conv.id)
            if lock is not None and not lock.locked():
                del self._locks[live.conv.id]
        if not task.cancelled() and task.exception() is not None:
            log.error(
                "conversation %s stopped by an error", live.conv.id, exc_info=task.exception()
            )

    def live(self, conversation_id: str) -> Conversation | None:
        run = self._live.get(conversation_id)
        return run.conv if run else None

    @property
    def live_count(self) -> int:
        return len(self._live)

    async def get(self, conversation_id: str) -> Conversation | None:
        return self.live(conversation_id) or await self.store.get(conversation_id)

    async def close(self) -> None:
        """Stop every run (their state is stored); used at shutdown."""
        runs = list(self._live.values())
        for run in runs:
            run.task.cancel()
        for run in runs:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await run.task
            await self.services.persist(run.conv)
