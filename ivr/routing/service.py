"""The queue service: conversations handed to people, agents' desktops, and the ACD between them.

A flow's `transfer: {queue: ...}` step calls `enqueue` (this is the engine's `Handoff`). The
conversation waits, with the customer's channel kept open as a `CustomerLine` (music and
announcements on a call, notices in a chat), until the router (`acd.Router`) offers it to an
agent's desktop. The agent accepts (or declines, or lets the offer time out and the next agent
gets it); from then on what the customer and the agent say is relayed between them and recorded
on the conversation's timeline, so a later agent, channel or report sees everything. The agent
ends the conversation and files a wrap-up code and notes on it.

Time comes from `clock` (epoch seconds) so routing is testable; timers (offer expiry, waiting
notices, maximum wait) are asyncio tasks of this service. Queue state is written to the store
(`QueueStateStore`) at every change, so a restarted control plane finds who was waiting, and
since when.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from ivr.conversation import Conversation, Role, Status
from ivr.flow.channel import Channel, ChannelClosed, TransferTarget
from ivr.flow.engine import QueueClosed
from ivr.routing.acd import (
    AgentState,
    Medium,
    Offer,
    Presence,
    Router,
    RoutingError,
    WaitingEntry,
)
from ivr.routing.card import context_card
from ivr.routing.estimate import HandlingTimes, estimated_wait
from ivr.routing.line import AgentLeg, CustomerLine, VoiceLine
from ivr.routing.rules import QueueNotices, QueueRules
from ivr.store.database import StoreError

log = logging.getLogger("ivr.routing")

Clock = Callable[[], float]
Persist = Callable[[Conversation], Awaitable[None]]


class Desk(Protocol):
    """One open agent desktop (an agent may have several tabs: each gets every frame)."""

    agent_id: str

    async def send(self, frame: dict[str, Any]) -> None: ...


class QueueStore(Protocol):
    """Where queue state survives restarts (ivr.store.queues.QueueStateStore)."""

    async def save_entry(self, entry: WaitingEntry, state: str, agent_id: str | None) -> None: ...
    async def drop_entry(self, conversation_id: str) -> None: ...
    async def log(self, queue: str, conversation_id: str, event: str, **data: Any) -> None: ...


class Conversations(Protocol):
    async def get(self, conversation_id: str) -> Conversation | None: ...
    async def earlier(self, customer_id: str) -> list[Conversation]: ...


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

    @property
    def channel_name(self) -> str:
        return line_name(self.line)


@dataclass
class Waiting:
    """A waiting conversation's live side: its channel and its timers."""

    conv: Conversation
    line: CustomerLine | None
    step_skills: frozenset[str] = frozenset()  # the transfer step's own (an overflow keeps them)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)  # notices, listener, max wait

    @property
    def channel_name(self) -> str:
        return line_name(self.line)

    def stop(self) -> None:
        """Stop the waiting tasks, but the one calling (it is finishing this very work)."""
        for task in self.tasks:
            if task is not asyncio.current_task():
                task.cancel()


PERSONAL_QUEUE = "@"  # "@dana": the queue of the one agent dana (a transfer by name)


def describe(queue: str) -> str:
    if queue.startswith(PERSONAL_QUEUE):
        return f"agent {queue[len(PERSONAL_QUEUE) :]}"
    return f"queue {queue}"


class NotAllowed(Exception):
    """An agent asked for something that is not theirs to do (the text says what)."""


class QueueService:
    def __init__(
        self,
        *,
        persist: Persist,
        conversations: Conversations,
        state: QueueStore,
        rules: QueueRules,
        clock: Clock = time.time,
    ) -> None:
        self.rules = rules
        self.router = Router(rules.policies().values())
        self.handling = HandlingTimes()
        self._persist = persist
        self._conversations = conversations
        self._state = state
        self._clock = clock
        self._waiting: dict[str, Waiting] = {}
        self._assigned: dict[str, Assignment] = {}
        self._desks: dict[str, set[Desk]] = {}
        self._names: dict[str, str] = {}  # agent id -> display name
        self._usernames: dict[str, str] = {}  # agent id -> username (their own queue's name)
        self._expiry: asyncio.TimerHandle | None = None
        self._wrap_up_timers: dict[str, asyncio.TimerHandle] = {}  # agent id -> back available
        self._tasks: set[asyncio.Task[Any]] = set()
        self._shutting_down = False

    # ------------------------------------------------------------ the flow's side (Handoff)

    def now(self) -> float:
        """The service's clock (epoch seconds): the router's times are on it."""
        return self._clock()

    def admit(self, queue: str) -> str | QueueClosed:
        return self.rules.admit(queue, self._clock())

    async def enqueue(
        self, conv: Conversation, target: TransferTarget, channel: Channel | None
    ) -> None:
        """The flow hands `conv` to `target.queue`; `channel` stays open while it waits."""
        queue = str(target.queue)
        self.router.set_policies(self.rules.policies().values())
        line = channel if isinstance(channel, CustomerLine) else None
        medium: Medium = "voice" if getattr(channel, "medium", "text") == "voice" else "text"
        if medium == "voice" and not isinstance(line, VoiceLine):
            # No way to bridge this call to an agent's audio: it ends after the flow's words
            # rather than ringing a desk that could not speak to the caller.
            log.warning("conversation %s: this call cannot be bridged to an agent", conv.id)
            return
        now = self._clock()
        priority = target.priority if target.priority is not None else self.rules.priority(queue)
        entry = WaitingEntry(
            conversation_id=conv.id,
            queue=queue,
            medium=medium,
            skills=frozenset(target.skills) | self.rules.skills(queue),
            priority=priority,
            enqueued_at=now,
        )
        conv.status = Status.QUEUED
        self.router.enqueue(entry)
        waiting = Waiting(conv, line, frozenset(target.skills))
        self._waiting[conv.id] = waiting
        await self._record_state(self._state.save_entry, entry, "waiting", None)
        await self._record_state(self._state.log, queue, conv.id, "enqueued", priority=priority)
        await self._hold_music(line, queue, conv.language)
        self._start_waiting(entry, waiting)
        # After the transfer step has returned and its run stored the conversation as queued.
        asyncio.get_running_loop().call_soon(self._route)

    async def restore(self) -> int:
        """Back after a restart: conversations that were waiting (or with an agent, whose desk
        has gone too) wait again with their first place in line. A call did not survive the
        restart (the media workers went with it): it counts as abandoned. Returns how many
        wait again."""
        restored = 0
        for stored in await self._state.entries():
            entry = stored.entry
            conv = await self._conversations.get(entry.conversation_id)
            if conv is None or conv.status is Status.ENDED:
                await self._record_state(self._state.drop_entry, entry.conversation_id)
                continue
            if entry.medium == "voice":
                conv.add_turn("queue", Role.SYSTEM, "the call ended when the server restarted")
                conv.status = Status.ENDED
                await self._persist(conv)
                await self._record_state(self._state.drop_entry, entry.conversation_id)
                await self._record_state(
                    self._state.log, entry.queue, conv.id, "abandoned", seconds=None
                )
                continue
            if stored.state == "assigned":
                conv.add_turn("queue", Role.SYSTEM, "back in the queue after a server restart")
            conv.status = Status.QUEUED
            await self._persist(conv)
            self.router.enqueue(entry)
            waiting = Waiting(conv, None)  # the customer's channel comes back later
            self._waiting[conv.id] = waiting
            await self._record_state(self._state.save_entry, entry, "waiting", None)
            self._start_waiting(entry, waiting)
            restored += 1
        if restored:
            asyncio.get_running_loop().call_soon(self._route)
        return restored

    def _start_waiting(self, entry: WaitingEntry, waiting: Waiting) -> None:
        """The waiting conversation's timers: announcements, what the customer says, and the
        queue's maximum wait (counted from when they joined this queue)."""
        line = waiting.line
        if line is not None:
            waiting.tasks.append(self._spawn(self._announce(entry, line)))
            waiting.tasks.append(self._spawn(self._collect_while_waiting(entry, waiting)))
        limit = self.rules.max_wait(entry.queue)
        if limit is not None and self.rules.overflow(entry.queue) is not None:
            delay = max(0.0, entry.enqueued_at + limit - self._clock())
            waiting.tasks.append(self._spawn(self._overflow_after(entry, delay)))

    async def _overflow_after(self, entry: WaitingEntry, delay: float) -> None:
        await asyncio.sleep(delay)
        await self._overflow(entry.conversation_id)

    async def _overflow(self, conversation_id: str) -> None:
        """Waited the queue's `max_wait`: on to its overflow queue (if open), or its message
        and the end. An `offer` overflow (callback, SMS) keeps them waiting for now."""
        waiting = self._waiting.get(conversation_id)
        entry = self.router.entry(conversation_id)
        if waiting is None or entry is None:
            return
        overflow = self.rules.overflow(entry.queue)
        if overflow is None or not (overflow.queue or overflow.message):
            log.info("conversation %s waited past max_wait: it waits on", conversation_id)
            return
        target = self.rules.admit(overflow.queue, self._clock()) if overflow.queue else None
        message = overflow.message
        if isinstance(target, QueueClosed):
            message, target = target.message or overflow.message, None
        waited = self._clock() - entry.enqueued_at
        if entry.offered_to is not None:  # ringing on a desk: it goes elsewhere now
            await self._offer_gone(entry.offered_to, conversation_id, "overflowed")
        self.router.remove(conversation_id)
        waiting.stop()
        await self._record_state(
            self._state.log, entry.queue, conversation_id, "overflowed", to=target, seconds=waited
        )
        if target is not None:
            await self._move(waiting, entry, target)
        else:
            await self._end_waiting(waiting, entry.queue, message or "")

    async def _move(self, waiting: Waiting, entry: WaitingEntry, queue: str) -> None:
        """On to `queue`, keeping the priority; the wait there counts from now."""
        conv = waiting.conv
        moved = WaitingEntry(
            conversation_id=conv.id,
            queue=queue,
            medium=entry.medium,
            skills=waiting.step_skills | self.rules.skills(queue),
            priority=entry.priority,
            enqueued_at=self._clock(),
        )
        fresh = Waiting(conv, waiting.line, waiting.step_skills)
        self._waiting[conv.id] = fresh
        conv.handoff = {**(conv.handoff or {}), "queue": queue}
        conv.add_turn(waiting.channel_name, Role.SYSTEM, f"moved to queue {queue}")
        await self._persist(conv)
        self.router.enqueue(moved)
        await self._record_state(self._state.save_entry, moved, "waiting", None)
        await self._record_state(
            self._state.log, queue, conv.id, "enqueued", priority=moved.priority, source=entry.queue
        )
        self._start_waiting(moved, fresh)
        self._route()

    async def _end_waiting(self, waiting: Waiting, queue: str, message: str) -> None:
        """No agent after all: the customer is told `message` and the conversation ends."""
        conv = waiting.conv
        del self._waiting[conv.id]
        line = waiting.line
        if message:
            conv.add_turn(waiting.channel_name, Role.BOT, message, kind="notice")
        conv.add_turn(waiting.channel_name, Role.SYSTEM, f"left queue {queue} unanswered")
        conv.status = Status.ENDED
        await self._persist(conv)
        await self._record_state(self._state.drop_entry, conv.id)
        if line is not None:
            with contextlib.suppress(ChannelClosed, ConnectionError, RuntimeError):
                if message:
                    await line.notify(message)
                await line.end("no agent could take the conversation")
        self._route()

    async def _announce(self, entry: WaitingEntry, line: CustomerLine) -> None:
        """Where they stand in the queue: once, then every `announce.every` seconds."""
        notices = self.rules.notices(entry.queue)
        first = True
        try:
            while entry.conversation_id in self._waiting:
                position = self.router.position(entry.conversation_id, self._clock())
                waiting = self._waiting.get(entry.conversation_id)
                if waiting is not None and position is not None and (first or notices.every):
                    text = self._wait_notice(entry.conversation_id, entry.queue, position, notices)
                    await line.notify(text)
                    # On the timeline: the agent (and a report) sees what the customer was told.
                    waiting.conv.add_turn(line.name, Role.BOT, text, kind="notice")
                    await self._persist(waiting.conv)
                first = False
                await asyncio.sleep(notices.every or 3600)
        except ChannelClosed:
            await self.abandon(entry.conversation_id, "the customer left while waiting")

    async def _collect_while_waiting(self, entry: WaitingEntry, waiting: Waiting) -> None:
        """What a customer types while waiting goes on the timeline (the agent reads it); a
        customer who leaves abandons the queue."""
        line = waiting.line
        assert line is not None
        try:
            while entry.conversation_id in self._waiting:
                said = await line.from_customer()
                waiting.conv.add_turn(line.name, Role.CUSTOMER, said.as_text, kind=said.kind)
                await self._persist(waiting.conv)
        except ChannelClosed:
            await self.abandon(entry.conversation_id, "the customer left while waiting")

    def _wait_notice(
        self, conversation_id: str, queue: str, position: int, notices: QueueNotices
    ) -> str:
        parts = []
        if notices.position:
            parts.append(
                "You are next in line." if position == 1 else f"You are number {position} in line."
            )
        if notices.estimated_wait:
            entry = self.router.entry(conversation_id)
            seconds = estimated_wait(
                position,
                self.router.staffed(queue),
                self.handling.average(queue),
                free_agents=1 if entry is not None and entry.offered_to else 0,
            )
            if seconds < 60:
                parts.append("Someone will be with you in less than a minute.")
            else:
                minutes = round(seconds / 60)
                parts.append(
                    f"Your expected wait is about {minutes} minute{'s' if minutes > 1 else ''}."
                )
        return " ".join(parts) or "Thank you for waiting."

    def stop_taking_leavers(self) -> None:
        """The server is shutting down: the sockets it closes are not customers leaving, and
        the queue must be found as it was when it starts again."""
        self._shutting_down = True

    async def abandon(self, conversation_id: str, why: str) -> None:
        """The customer left before an agent took them."""
        if self._shutting_down:
            return
        waiting = self._waiting.pop(conversation_id, None)
        entry = self.router.remove(conversation_id)
        if waiting is None or entry is None:
            return
        waiting.stop()
        if entry.offered_to is not None:  # ringing on a desk: stop it
            await self._offer_gone(entry.offered_to, conversation_id, "abandoned")
        waiting.conv.add_turn(waiting.channel_name, Role.SYSTEM, why)
        waiting.conv.status = Status.ENDED
        await self._persist(waiting.conv)
        await self._record_state(self._state.drop_entry, conversation_id)
        waited = self._clock() - entry.enqueued_at
        await self._record_state(
            self._state.log, entry.queue, conversation_id, "abandoned", seconds=waited
        )
        self._route()

    # ------------------------------------------------------------ agents' side

    def desk_opened(self, desk: Desk, agent: AgentState, name: str, username: str = "") -> None:
        self._desks.setdefault(agent.agent_id, set()).add(desk)
        self._names[agent.agent_id] = name
        self._usernames[agent.agent_id] = username or agent.agent_id
        known = self.router.agent(agent.agent_id)
        if known is None:
            self.router.upsert_agent(agent)

    def desk_closed(self, desk: Desk) -> None:
        desks = self._desks.get(desk.agent_id)
        if desks is None:
            return
        desks.discard(desk)
        if not desks:  # the agent's last tab closed: no more offers to them
            del self._desks[desk.agent_id]
            # Offline, not forgotten: a reload must find the conversations they hold (and
            # their load, or they would be offered past their capacity).
            if self.router.agent(desk.agent_id) is not None:
                self.router.set_presence(desk.agent_id, Presence.OFFLINE, self._clock())
            self._route()

    def presence(self, agent_id: str) -> Presence:
        agent = self.router.agent(agent_id)
        return agent.presence if agent else Presence.OFFLINE

    async def set_presence(self, agent_id: str, presence: Presence) -> None:
        withdrawn = self.router.set_presence(agent_id, presence, self._clock())
        if withdrawn is not None:  # ringing when they went on break: it goes to someone else
            await self._offer_gone(withdrawn.agent_id, withdrawn.conversation_id, "withdrawn")
        await self._to_agent(agent_id, {"type": "presence", "state": str(presence)})
        self._route()

    async def accept(self, agent_id: str, conversation_id: str) -> dict[str, Any]:
        now = self._clock()
        try:
            entry = self.router.accept(conversation_id, agent_id, now)
        except RoutingError as exc:
            raise NotAllowed(str(exc)) from None
        waiting = self._waiting.pop(conversation_id)
        waiting.stop()
        conv = waiting.conv
        name = self._names.get(agent_id, agent_id)
        conv.status = Status.WITH_AGENT
        conv.handoff = {**(conv.handoff or {}), "agent": {"id": agent_id, "name": name, "at": now}}
        channel = waiting.channel_name
        conv.add_turn(channel, Role.SYSTEM, f"{name} joined", agent=agent_id)
        await self._persist(conv)
        await self._record_state(self._state.save_entry, entry, "assigned", agent_id)
        await self._record_state(
            self._state.log,
            entry.queue,
            conversation_id,
            "answered",
            agent=agent_id,
            seconds=now - entry.enqueued_at,
        )
        assignment = Assignment(
            conv,
            agent_id,
            name,
            entry.queue,
            entry.medium,
            now,
            waiting.line,
            priority=entry.priority,
            step_skills=waiting.step_skills,
        )
        assignment.customer_left = waiting.line is None  # restored after a restart: gone
        self._assigned[conversation_id] = assignment
        if waiting.line is not None:
            with contextlib.suppress(ChannelClosed):
                await waiting.line.agent_joined(name)
            assignment.relay = self._spawn(self._relay(assignment))
        card = await self.card(conv, entry.queue, now - entry.enqueued_at)
        await self._to_agent(agent_id, {"type": "assigned", "card": card})
        self._route()
        return card

    async def transfer(self, agent_id: str, conversation_id: str, queue: str, note: str) -> str:
        """The agent hands the conversation on: to another queue, or to one agent's own queue
        (`@username`), with a note the next agent reads on the timeline. The customer waits
        again (a caller with music), keeping their priority; this agent is free at once.
        Returns the queue it waits in (a closed queue's overflow, if it has one)."""
        assignment = self._own(agent_id, conversation_id)
        if assignment.ended or assignment.customer_left:
            raise NotAllowed("the customer is no longer here")
        if queue.startswith(PERSONAL_QUEUE):
            if queue[len(PERSONAL_QUEUE) :] not in self._usernames.values():
                raise NotAllowed(f"no agent {queue[len(PERSONAL_QUEUE) :]!r} has signed in")
        elif queue not in self.rules.policies():
            raise NotAllowed(f"no queue {queue!r}")
        admitted = self.rules.admit(queue, self._clock())
        if isinstance(admitted, QueueClosed):
            raise NotAllowed(f"queue {admitted.queue} is closed now")
        if admitted == assignment.queue and not queue.startswith(PERSONAL_QUEUE):
            raise NotAllowed(f"the conversation is in queue {queue} already")
        now = self._clock()
        assignment.ended = True
        if assignment.relay is not None:
            assignment.relay.cancel()
        leg, assignment.agent_leg = assignment.agent_leg, None
        if leg is not None:
            leg.hang_up()  # the caller's bridge goes with it
        del self._assigned[conversation_id]
        conv = assignment.conv
        said = f"{assignment.agent_name} transferred the conversation to {describe(admitted)}"
        conv.add_turn(
            assignment.channel_name,
            Role.SYSTEM,
            f"{said}: {note}" if note else said,
            agent=agent_id,
            kind="transfer",
        )
        conv.handoff = {**(conv.handoff or {}), "queue": admitted}
        conv.handoff.pop("agent", None)
        await self._record_state(
            self._state.log,
            assignment.queue,
            conversation_id,
            "transferred",
            agent=agent_id,
            to=admitted,
            seconds=now - assignment.started,
        )
        withdrawn = self.router.release(agent_id, assignment.medium, now, wrap_up=False)
        if withdrawn is not None:
            await self._offer_gone(withdrawn.agent_id, withdrawn.conversation_id, "withdrawn")
        line = assignment.line
        with contextlib.suppress(ChannelClosed, ConnectionError, RuntimeError):
            if line is not None:
                await line.notify("I am transferring you to a colleague who can help. One moment.")
        await self._hold_music(line, admitted, conv.language)
        by_name = admitted.startswith(PERSONAL_QUEUE)  # their skills are not in question
        entry = WaitingEntry(
            conversation_id=conversation_id,
            queue=admitted,
            medium=assignment.medium,
            skills=frozenset() if by_name else assignment.step_skills | self.rules.skills(admitted),
            priority=assignment.priority,
            enqueued_at=now,
        )
        conv.status = Status.QUEUED
        await self._persist(conv)
        waiting = Waiting(conv, line, assignment.step_skills)
        self._waiting[conversation_id] = waiting
        self.router.enqueue(entry)
        await self._record_state(self._state.save_entry, entry, "waiting", None)
        await self._record_state(
            self._state.log, admitted, conversation_id, "enqueued", priority=entry.priority
        )
        self._start_waiting(entry, waiting)
        await self._to_agent(agent_id, {"type": "presence", "state": str(self.presence(agent_id))})
        await self._to_agent(
            agent_id,
            {"type": "transferred", "conversation_id": conversation_id, "to": describe(admitted)},
        )
        self._route()
        return admitted

    def transfer_targets(self, agent_id: str) -> dict[str, Any]:
        """Where an agent may transfer to: every queue, and the agents signed in now."""
        queues = sorted(self.rules.policies())
        agents = [
            {
                "queue": f"{PERSONAL_QUEUE}{self._usernames.get(a.agent_id, a.agent_id)}",
                "name": self._names.get(a.agent_id, a.agent_id),
                "presence": str(a.presence),
            }
            for a in self.router.agents()
            if a.agent_id != agent_id and a.agent_id in self._desks
        ]
        return {"queues": queues, "agents": sorted(agents, key=lambda a: a["name"])}

    async def decline(self, agent_id: str, conversation_id: str) -> None:
        try:
            self.router.decline(conversation_id, agent_id, self._clock())
        except RoutingError as exc:
            raise NotAllowed(str(exc)) from None
        await self._offer_gone(agent_id, conversation_id, "declined")
        self._route()

    async def agent_says(self, agent_id: str, conversation_id: str, text: str) -> None:
        assignment = self._own(agent_id, conversation_id)
        if assignment.ended or assignment.customer_left or assignment.line is None:
            raise NotAllowed("the customer is no longer here")
        channel = assignment.line.name
        try:
            await assignment.line.from_agent(assignment.agent_name, text)
        except ChannelClosed:
            await self._customer_left(assignment)
            raise NotAllowed("the customer has left; the message was not delivered") from None
        assignment.conv.add_turn(channel, Role.AGENT, text, agent=agent_id)
        await self._persist(assignment.conv)
        await self._to_agent(agent_id, self._message(conversation_id, channel, "agent", text))

    async def finish(self, agent_id: str, conversation_id: str, reason: str) -> None:
        """The agent ends the conversation (the customer is told, the channel closed)."""
        assignment = self._own(agent_id, conversation_id)
        if assignment.ended:
            return
        assignment.ended = True
        if assignment.relay is not None:
            assignment.relay.cancel()
        if assignment.agent_leg is not None:
            assignment.agent_leg.hang_up()
        if assignment.line is not None and not assignment.customer_left:
            with contextlib.suppress(ChannelClosed, ConnectionError, RuntimeError):
                await assignment.line.end(reason)
        assignment.conv.add_turn(
            assignment.channel_name,
            Role.SYSTEM,
            f"{assignment.agent_name} ended the conversation",
        )
        assignment.conv.status = Status.ENDED
        await self._persist(assignment.conv)
        withdrawn = self.router.release(agent_id, assignment.medium, self._clock(), wrap_up=True)
        if withdrawn is not None:
            await self._offer_gone(withdrawn.agent_id, withdrawn.conversation_id, "withdrawn")
        self._limit_wrap_up(agent_id, self.rules.wrap_up_seconds(assignment.queue))
        await self._to_agent(agent_id, {"type": "presence", "state": str(self.presence(agent_id))})
        await self._to_agent(
            agent_id, {"type": "ended", "conversation_id": conversation_id, "by": "agent"}
        )

    async def wrap_up(self, agent_id: str, conversation_id: str, code: str, notes: str) -> None:
        """Wrap-up code and notes go on the conversation; the agent is free again."""
        assignment = self._own(agent_id, conversation_id)
        codes = self.rules.wrap_up_codes(assignment.queue)
        if codes and code not in codes:
            raise NotAllowed(f"the wrap-up code must be one of: {', '.join(codes)}")
        if not assignment.ended:
            await self.finish(agent_id, conversation_id, "the agent has ended the conversation")
        now = self._clock()
        conv = assignment.conv
        conv.handoff = {
            **(conv.handoff or {}),
            "wrap_up": {"code": code, "notes": notes, "at": now, "agent": agent_id},
        }
        await self._persist(conv)
        handled = now - assignment.started
        self.handling.record(assignment.queue, handled)
        await self._record_state(self._state.drop_entry, conversation_id)
        await self._record_state(
            self._state.log,
            assignment.queue,
            conversation_id,
            "handled",
            agent=agent_id,
            seconds=handled,
            code=code,
        )
        del self._assigned[conversation_id]
        still_busy = any(a.agent_id == agent_id for a in self._assigned.values())
        if not still_busy and self.presence(agent_id) is Presence.WRAP_UP:  # not a chosen break
            await self.set_presence(agent_id, Presence.AVAILABLE)
        await self._to_agent(agent_id, {"type": "wrapped_up", "conversation_id": conversation_id})

    def _limit_wrap_up(self, agent_id: str, seconds: float) -> None:
        """A queue's `wrap_up` seconds: then the agent is offered conversations again, code
        filed or not (0: wrap-up lasts until they file it)."""
        if seconds <= 0:
            return
        previous = self._wrap_up_timers.pop(agent_id, None)
        if previous is not None:
            previous.cancel()

        def over() -> None:
            self._wrap_up_timers.pop(agent_id, None)
            if self.presence(agent_id) is Presence.WRAP_UP:  # not a break chosen meanwhile
                self._spawn(self.set_presence(agent_id, Presence.AVAILABLE))

        loop = asyncio.get_running_loop()
        self._wrap_up_timers[agent_id] = loop.call_later(seconds, over)

    async def card(self, conv: Conversation, queue: str, waited: float | None) -> dict[str, Any]:
        earlier = (
            await self._conversations.earlier(conv.identity.customer_id)
            if conv.identity.customer_id
            else []
        )
        live = self._assigned.get(conv.id) or self._waiting.get(conv.id)
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
        return card

    async def connect_audio(self, agent_id: str, conversation_id: str, offer_sdp: str) -> str:
        """The agent's softphone joins the caller: its leg is bridged to the call on the
        caller's media worker (which keeps the music on until the leg connects). A newer offer
        replaces an older leg. Returns the SDP answer for the agent's browser."""
        assignment = self._own(agent_id, conversation_id)
        line = assignment.line
        if assignment.ended or assignment.customer_left or not isinstance(line, VoiceLine):
            raise NotAllowed("there is no call to speak on in this conversation")
        previous, assignment.agent_leg = assignment.agent_leg, None  # its end is not news now
        if previous is not None:
            previous.hang_up()
        assignment.audio_offers += 1
        this_offer = assignment.audio_offers
        try:
            leg = await line.bridge_agent(offer_sdp)
        except ChannelClosed:
            raise NotAllowed("the caller has hung up") from None
        except (ValueError, TimeoutError) as exc:
            await self._hold(assignment)
            raise NotAllowed(f"the call's audio could not be connected: {exc}") from None
        if assignment.audio_offers != this_offer or assignment.ended or assignment.customer_left:
            leg.hang_up()  # a newer offer came meanwhile, or the conversation is over
            raise NotAllowed("this softphone connection was replaced or is no longer needed")
        assignment.agent_leg = leg
        self._spawn(self._watch_audio(assignment, leg))
        return leg.answer_sdp

    def audio_candidate(
        self,
        agent_id: str,
        conversation_id: str,
        candidate: str,
        mid: str | None,
        index: int | None,
    ) -> None:
        assignment = self._own(agent_id, conversation_id)
        if assignment.agent_leg is None:
            raise NotAllowed("send the softphone's offer first")
        assignment.agent_leg.add_candidate(candidate, mid, index)

    async def _watch_audio(self, assignment: Assignment, leg: AgentLeg) -> None:
        """The agent's audio leg ended on its own: said to the desk; the caller hears music
        until the agent's softphone connects again. (Replaced legs, and the end of the call or
        the conversation, are no news.)"""
        reason = await leg.ended()
        if assignment.agent_leg is not leg:
            return
        assignment.agent_leg = None
        if assignment.ended or assignment.customer_left:
            return
        conv_id = assignment.conv.id
        await self._to_agent(
            assignment.agent_id,
            {"type": "audio", "conversation_id": conv_id, "state": "ended", "reason": reason},
        )
        await self._hold(assignment)

    async def _hold(self, assignment: Assignment) -> None:
        if assignment.ended or assignment.customer_left:
            return
        await self._hold_music(assignment.line, assignment.queue, assignment.conv.language)

    async def _hold_music(self, line: CustomerLine | None, queue: str, language: str) -> None:
        """Music for a waiting caller. Never fatal: no music is better than a lost place in
        the queue (a recording that cannot be converted, a TTS worker that is down)."""
        if not isinstance(line, VoiceLine):
            return
        try:
            await line.hold(self.rules.notices(queue).hold_music, language)
        except ChannelClosed:
            pass  # gone: the line's listener notices
        except Exception:
            log.exception("no hold music for a caller waiting in %s", queue)

    def holds(self, conversation_id: str) -> bool:
        """Is the conversation waiting here, or with an agent (its channel held open)?"""
        assignment = self._assigned.get(conversation_id)
        return conversation_id in self._waiting or (assignment is not None and not assignment.ended)

    def assignments_of(self, agent_id: str) -> list[Assignment]:
        return [a for a in self._assigned.values() if a.agent_id == agent_id]

    def handles(self, agent_id: str, conversation_id: str) -> bool:
        assignment = self._assigned.get(conversation_id)
        return assignment is not None and assignment.agent_id == agent_id

    # ------------------------------------------------------------ internals

    async def _relay(self, assignment: Assignment) -> None:
        """The customer's messages to the agent, each recorded on the timeline first."""
        line = assignment.line
        assert line is not None
        try:
            while True:
                said = await line.from_customer()
                text = said.as_text
                assignment.conv.add_turn(line.name, Role.CUSTOMER, text, kind=said.kind)
                await self._persist(assignment.conv)
                await self._to_agent(
                    assignment.agent_id,
                    self._message(assignment.conv.id, line.name, "customer", text),
                )
        except ChannelClosed:
            await self._customer_left(assignment)

    async def _customer_left(self, assignment: Assignment) -> None:
        if assignment.customer_left or assignment.ended:
            return
        assignment.customer_left = True
        channel = assignment.channel_name
        assignment.conv.add_turn(channel, Role.SYSTEM, "the customer left")
        await self._persist(assignment.conv)
        await self._to_agent(
            assignment.agent_id,
            self._message(assignment.conv.id, channel, "system", "the customer left"),
        )
        await self._to_agent(
            assignment.agent_id, {"type": "customer_left", "conversation_id": assignment.conv.id}
        )

    async def _record_state(
        self, write: Callable[..., Awaitable[None]], *args: Any, **kw: Any
    ) -> None:
        """Queue state and events are written through; a store outage is logged, never a
        conversation left half-routed (the router in memory stays the truth meanwhile)."""
        try:
            await write(*args, **kw)
        except StoreError as exc:
            log.error("queue state not stored: %s", exc)

    def _own(self, agent_id: str, conversation_id: str) -> Assignment:
        assignment = self._assigned.get(conversation_id)
        if assignment is None or assignment.agent_id != agent_id:
            raise NotAllowed(f"conversation {conversation_id} is not yours")
        return assignment

    def _route(self) -> None:
        """Offer whatever can be offered now, and set the timer for the next offer expiry."""
        now = self._clock()
        for offer in self.router.expire(now):
            self._spawn(self._offer_missed(offer))
        for offer in self.router.assign(now):
            self._spawn(self._send_offer(offer))
        self._arm_expiry()

    def _arm_expiry(self) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        deadline = self.router.next_deadline()
        if deadline is not None:
            delay = max(0.0, deadline - self._clock())
            self._expiry = asyncio.get_running_loop().call_later(delay + 0.01, self._route)

    async def _send_offer(self, offer: Offer) -> None:
        waiting = self._waiting.get(offer.conversation_id)
        if waiting is None:
            return
        entry = self.router.entry(offer.conversation_id)
        if entry is None:  # taken back meanwhile (the customer left)
            return
        card = await self.card(waiting.conv, offer.queue, self._clock() - entry.enqueued_at)
        await self._record_state(self._state.save_entry, entry, "offered", offer.agent_id)
        await self._to_agent(
            offer.agent_id,
            {
                "type": "offer",
                "conversation_id": offer.conversation_id,
                "queue": offer.queue,
                "expires_in": max(0.0, offer.expires_at - self._clock()),
                "card": card,
            },
        )

    async def _offer_gone(self, agent_id: str, conversation_id: str, reason: str) -> None:
        """The offer stops ringing on the agent's desk (`reason`: declined, timeout, ...)."""
        frame = {"type": "offer_gone", "conversation_id": conversation_id, "reason": reason}
        await self._to_agent(agent_id, frame)

    async def _offer_missed(self, offer: Offer) -> None:
        await self._offer_gone(offer.agent_id, offer.conversation_id, "timeout")
        await self._to_agent(
            offer.agent_id,
            {
                "type": "presence",
                "state": str(self.presence(offer.agent_id)),
                "reason": "missed an offer",
            },
        )

    async def _to_agent(self, agent_id: str, frame: dict[str, Any]) -> None:
        for desk in list(self._desks.get(agent_id, ())):
            try:
                await desk.send(frame)
            except (ConnectionError, RuntimeError):
                self.desk_closed(desk)

    def _spawn(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("queue task failed", exc_info=task.exception())

    def _message(self, conversation_id: str, channel: str, role: str, text: str) -> dict[str, Any]:
        return {
            "type": "message",
            "conversation_id": conversation_id,
            "channel": channel,
            "role": role,
            "text": text,
            "ts": self._clock(),
        }

    async def close(self) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
        for timer in self._wrap_up_timers.values():
            timer.cancel()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
