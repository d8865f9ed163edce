"""What the queue service's rooms share: the router and the rules, the clock, the store, the
desks, and the live side of every conversation held here (waiting, or with an agent).

The waiting room (`waiting.py`), the offers (`offers.py`), the agents' presence (`agents.py`),
a call's audio (`audio.py`) and an agent's handling of a conversation (`handling.py`) each hold
the one `Shared` of their service. Nothing here decides anything: it keeps, reads and writes
through. It imports none of those rooms.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from ivr.conversation import Conversation
from ivr.routing.acd import Medium, Presence, Router, WaitingEntry
from ivr.routing.card import context_card
from ivr.routing.desks import Desks
from ivr.routing.estimate import HandlingTimes
from ivr.routing.line import AgentLeg, CustomerLine, OtherWays
from ivr.routing.rules import QueueRules
from ivr.store.database import StoreError

if TYPE_CHECKING:
    from ivr.store.queues import StoredEntry

log = logging.getLogger("ivr.routing")

Clock = Callable[[], float]
Persist = Callable[[Conversation], Awaitable[None]]

PERSONAL_QUEUE = "@"  # "@dana": the queue of the one agent dana (a transfer by name)


class QueueStore(Protocol):
    """Where queue state survives restarts (ivr.store.queues.QueueStateStore)."""

    async def save_entry(self, entry: WaitingEntry, state: str, agent_id: str | None) -> None: ...
    async def drop_entry(self, conversation_id: str) -> None: ...
    async def log(self, queue: str, conversation_id: str, event: str, **data: Any) -> None: ...
    async def entries(self) -> list[StoredEntry]: ...


class Conversations(Protocol):
    async def get(self, conversation_id: str) -> Conversation | None: ...
    async def earlier(self, customer_id: str) -> list[Conversation]: ...


class NotAllowed(Exception):
    """An agent asked for something that is not theirs to do (the text says what)."""


def describe(queue: str) -> str:
    if queue.startswith(PERSONAL_QUEUE):
        return f"agent {queue[len(PERSONAL_QUEUE) :]}"
    return f"queue {queue}"


def line_name(line: CustomerLine | None) -> str:
    """The channel's name on the timeline ("queue" when the customer's line is gone)."""
    return line.name if line is not None else "queue"


@dataclass
class Assignment:
    """A conversation an agent has taken: who, since when, and the relay of customer messages."""

    conv: Conversation
    agent_id: str
    agent_name: str
    queue: str
    medium: Medium
    started: float
    line: CustomerLine | None
    relay: asyncio.Task[None] | None = None
    customer_left: bool = False
    ended: bool = False
    agent_leg: AgentLeg | None = None  # a call's: the agent's softphone, bridged to the caller
    priority: int = 1  # as it waited: a transfer keeps it
    step_skills: frozenset[str] = frozenset()  # the flow's transfer step's own
    audio_offers: int = 0  # softphone offers so far: only the latest one's leg is kept
    phone: str | None = None  # a call on its way to the agent's SIP phone: the phone's URI
    on_phone: bool = False  # the phone took it: the call has left us, by design
    place: WaitingEntry | None = None  # as it waited: a phone that fails puts it back there

    @property
    def channel_name(self) -> str:
        return line_name(self.line)

    @property
    def phone_state(self) -> str | None:
        if self.phone is None:
            return None
        return "transferred" if self.on_phone else "ringing"


@dataclass
class Waiting:
    """A waiting conversation's live side: its channel and its timers."""

    conv: Conversation
    line: CustomerLine | None
    step_skills: frozenset[str] = frozenset()  # the transfer step's own (an overflow keeps them)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)  # notices, listener, max wait
    choices: dict[str, str] = field(default_factory=dict)  # key -> other way offered (callback)

    @property
    def channel_name(self) -> str:
        return line_name(self.line)

    def stop(self) -> None:
        """Stop the waiting tasks, but the one calling (it is finishing this very work)."""
        for task in self.tasks:
            if task is not asyncio.current_task():
                task.cancel()


class Shared:
    def __init__(
        self,
        *,
        rules: QueueRules,
        persist: Persist,
        conversations: Conversations,
        store: QueueStore,
        desks: Desks,
        clock: Clock,
    ) -> None:
        self.rules = rules
        self.router = Router(rules.policies().values())
        self.handling_times = HandlingTimes()
        self.persist = persist
        self.conversations = conversations
        self.store = store
        self.desks = desks
        self.clock = clock
        self.waiting: dict[str, Waiting] = {}  # conversation id -> waiting here
        self.other_ways: OtherWays | None = None  # callbacks, texts: given by the channels
        self.assigned: dict[str, Assignment] = {}  # conversation id -> with an agent
        self._tasks: set[asyncio.Task[Any]] = set()

    def presence(self, agent_id: str) -> Presence:
        agent = self.router.agent(agent_id)
        return agent.presence if agent else Presence.OFFLINE

    def own(self, agent_id: str, conversation_id: str) -> Assignment:
        """The agent's assignment of that conversation; NotAllowed when it is not theirs."""
        assignment = self.assigned.get(conversation_id)
        if assignment is None or assignment.agent_id != agent_id:
            raise NotAllowed(f"conversation {conversation_id} is not yours")
        return assignment

    async def record(self, write: Callable[..., Awaitable[None]], *args: Any, **kw: Any) -> None:
        """Queue state and events are written through; a store outage is logged, never a
        conversation left half-routed (the router in memory stays the truth meanwhile)."""
        try:
            await write(*args, **kw)
        except StoreError as exc:
            log.error("queue state not stored: %s", exc)

    async def card(self, conv: Conversation, queue: str, waited: float | None) -> dict[str, Any]:
        earlier = (
            await self.conversations.earlier(conv.identity.customer_id)
            if conv.identity.customer_id
            else []
        )
        live = self.assigned.get(conv.id) or self.waiting.get(conv.id)
        line = live.line if live is not None else None
        card = context_card(
            conv,
            queue=queue,
            waited=waited,
            earlier=earlier,
            medium=getattr(line, "medium", None),
            line=getattr(line, "name", None),
            customer_left=isinstance(live, Assignment) and live.customer_left,
        )
        # A call whose audio is with a softphone already: another tab of the agent's offers to
        # take it over rather than taking it at once.
        card["audio_connected"] = isinstance(live, Assignment) and live.agent_leg is not None
        if isinstance(live, Assignment) and live.medium == "voice":
            # Where the agent hears the call: the desktop's softphone, or their SIP phone
            # (which rings with it, or has it): then the desktop opens no microphone.
            card["audio"] = "softphone" if live.phone is None else "phone"
            if live.phone is not None:
                card["phone"] = {"uri": live.phone, "state": live.phone_state}
        return card

    async def answered(self, assignment: Assignment, now: float) -> None:
        """The queue's "answered" event: a person has the customer now (a call to an agent's
        SIP phone: once the phone has taken it)."""
        place = assignment.place
        await self.record(
            self.store.log,
            assignment.queue,
            assignment.conv.id,
            "answered",
            agent=assignment.agent_id,
            seconds=now - place.enqueued_at if place is not None else None,
        )

    def spawn(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        """A task of the service: kept until done, its failure logged, cancelled at close."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("queue task failed", exc_info=task.exception())

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
