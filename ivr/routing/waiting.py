"""The waiting room: conversations in a queue until an agent takes them.

A flow's `transfer: {queue: ...}` step enqueues the conversation; the customer's channel stays
open as a `CustomerLine`. While they wait, a caller hears music, and every customer hears (or
reads) where they stand, once and then every `announce.every` seconds; what a chat customer
types goes on the timeline for the agent to read. A queue's `max_wait` moves them on to its
overflow queue, or tells them its message and lets them go. A customer who leaves abandons the
queue. After a restart, the stored queue state puts them back in line with their first place.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging

from ivr.conversation import Conversation, Role, Status
from ivr.flow.channel import Channel, ChannelClosed, TransferTarget
from ivr.flow.engine import QueueClosed
from ivr.routing.acd import Medium, WaitingEntry
from ivr.routing.audio import hold_music
from ivr.routing.estimate import estimated_wait
from ivr.routing.line import CustomerLine, OtherWays, VoiceLine
from ivr.routing.offers import Offers
from ivr.routing.rules import QueueNotices
from ivr.routing.shared import Shared, Waiting

log = logging.getLogger("ivr.routing")

# How each other way is offered ("press 1 ...") and named on the timeline.
OFFERS = {
    "callback": "and we will call you back as soon as an agent is free",
    "sms": "to go on by text message, keeping your place in line",
}
WAYS = {"callback": "to be called back", "sms": "to go on by text"}


class WaitingRoom:
    def __init__(self, shared: Shared, offers: Offers) -> None:
        self.shared = shared
        self.offers = offers
        self._shutting_down = False

    def admit(self, queue: str) -> str | QueueClosed:
        return self.shared.rules.admit(queue, self.shared.clock())

    async def enqueue(
        self, conv: Conversation, target: TransferTarget, channel: Channel | None
    ) -> None:
        """The flow hands `conv` to `target.queue`; `channel` stays open while it waits."""
        shared = self.shared
        queue = str(target.queue)
        shared.router.set_policies(shared.rules.policies().values())
        line = channel if isinstance(channel, CustomerLine) else None
        medium: Medium = "voice" if getattr(channel, "medium", "text") == "voice" else "text"
        if medium == "voice" and not isinstance(line, VoiceLine):
            # No way to bridge this call to an agent's audio: it ends after the flow's words
            # rather than ringing a desk that could not speak to the caller.
            log.warning("conversation %s: this call cannot be bridged to an agent", conv.id)
            return
        priority = target.priority if target.priority is not None else shared.rules.priority(queue)
        entry = WaitingEntry(
            conversation_id=conv.id,
            queue=queue,
            medium=medium,
            skills=frozenset(target.skills) | shared.rules.skills(queue),
            priority=priority,
            enqueued_at=shared.clock(),
        )
        conv.status = Status.QUEUED
        waiting = Waiting(conv, line, frozenset(target.skills))
        await self._line_up(waiting, entry)
        await hold_music(line, shared.rules, queue, conv.language)
        self._start(entry, waiting)
        # After the transfer step has returned and its run stored the conversation as queued.
        asyncio.get_running_loop().call_soon(self.offers.route)

    async def wait_again(
        self,
        conv: Conversation,
        line: CustomerLine | None,
        entry: WaitingEntry,
        skills: frozenset[str],
        *,
        logged: bool = True,
    ) -> None:
        """Back in line after an agent had the conversation (`entry`: where, and in which
        place); `skills`: the flow's transfer step's own; `logged`: a new "enqueued" event
        (not when it takes its old place again). The caller calls `offers.route()`."""
        conv.status = Status.QUEUED
        await self.shared.persist(conv)
        waiting = Waiting(conv, line, skills)
        await self._line_up(waiting, entry, logged=logged)
        self._start(entry, waiting)

    async def restore(self) -> int:
        """Back after a restart: conversations that were waiting (or with an agent, whose desk
        has gone too) wait again with their first place in line. A call did not survive the
        restart (the media workers went with it): it counts as abandoned. Returns how many
        wait again."""
        shared = self.shared
        restored = 0
        for stored in await shared.store.entries():
            entry = stored.entry
            conv = await shared.conversations.get(entry.conversation_id)
            if conv is None or conv.status is Status.ENDED:
                await shared.record(shared.store.drop_entry, entry.conversation_id)
                continue
            by_callback = (conv.handoff or {}).get("waiting_by") == "callback"
            if entry.medium == "voice" and not by_callback:
                # A call on an agent's SIP phone goes on there: only its wrap-up is lost.
                on_phone = stored.state == "on_phone"
                conv.add_turn(
                    "queue",
                    Role.SYSTEM,
                    "the server restarted while the call was on the agent's phone"
                    if on_phone
                    else "the call ended when the server restarted",
                )
                conv.status = Status.ENDED
                await shared.persist(conv)
                await shared.record(shared.store.drop_entry, entry.conversation_id)
                if not on_phone:
                    await shared.record(
                        shared.store.log, entry.queue, conv.id, "abandoned", seconds=None
                    )
                continue
            if stored.state == "assigned":
                conv.add_turn("queue", Role.SYSTEM, "back in the queue after a server restart")
            conv.status = Status.QUEUED
            await shared.persist(conv)
            waiting = Waiting(conv, None)  # the customer's channel comes back later
            await self._line_up(waiting, entry, logged=False)  # logged before the restart
            self._start(entry, waiting)
            restored += 1
        if restored:
            asyncio.get_running_loop().call_soon(self.offers.route)
        return restored

    def reattach(self, conversation_id: str, line: CustomerLine) -> bool:
        """A conversation waiting without a line (restored after a restart) has its customer
        back on `line`: it keeps its place. False when it is not waiting so."""
        waiting = self.shared.waiting.get(conversation_id)
        entry = self.shared.router.entry(conversation_id)
        if waiting is None or entry is None or waiting.line is not None:
            return False
        self._replace_line(entry, waiting, line)
        return True

    def _replace_line(
        self, entry: WaitingEntry, waiting: Waiting, line: CustomerLine, *, announce: bool = True
    ) -> None:
        fresh = Waiting(waiting.conv, line, waiting.step_skills)
        self.shared.waiting[entry.conversation_id] = fresh
        waiting.stop()
        self._start(entry, fresh, overflow=False, announce=announce)

    def attach(self, other_ways: OtherWays) -> None:
        """The channels' other ways are there (they start after this service): conversations
        restored while waiting for a callback get their line again."""
        self.shared.other_ways = other_ways
        for conversation_id, waiting in list(self.shared.waiting.items()):
            entry = self.shared.router.entry(conversation_id)
            line = other_ways.callback_line(waiting.conv) if waiting.line is None else None
            if line is not None and entry is not None:
                self._replace_line(entry, waiting, line, announce=False)

    def stop_taking_leavers(self) -> None:
        """The server is shutting down: the sockets it closes are not customers leaving, and
        the queue must be found as it was when it starts again."""
        self._shutting_down = True

    async def abandon(self, conversation_id: str, why: str) -> None:
        """The customer left before an agent took them."""
        if self._shutting_down:
            return
        shared = self.shared
        waiting = shared.waiting.pop(conversation_id, None)
        entry = shared.router.remove(conversation_id)
        if waiting is None or entry is None:
            return
        waiting.stop()
        if entry.offered_to is not None:  # ringing on a desk: stop it
            await self.offers.gone(entry.offered_to, conversation_id, "abandoned")
        waiting.conv.add_turn(waiting.channel_name, Role.SYSTEM, why)
        waiting.conv.status = Status.ENDED
        await shared.persist(waiting.conv)
        await shared.record(shared.store.drop_entry, conversation_id)
        waited = shared.clock() - entry.enqueued_at
        await shared.record(
            shared.store.log, entry.queue, conversation_id, "abandoned", seconds=waited
        )
        self.offers.route()

    # ------------------------------------------------------------ internals

    async def _line_up(
        self,
        waiting: Waiting,
        entry: WaitingEntry,
        *,
        source: str | None = None,
        logged: bool = True,
    ) -> None:
        """In line: in the router, in the stored queue state and (`logged`) in the queue's
        events; `source`: the queue it comes from (an overflow)."""
        shared = self.shared
        shared.waiting[entry.conversation_id] = waiting
        shared.router.enqueue(entry)
        await shared.record(shared.store.save_entry, entry, "waiting", None)
        if logged:
            moved = {"source": source} if source is not None else {}
            await shared.record(
                shared.store.log,
                entry.queue,
                entry.conversation_id,
                "enqueued",
                priority=entry.priority,
                **moved,
            )

    def _start(
        self, entry: WaitingEntry, waiting: Waiting, *, overflow: bool = True, announce: bool = True
    ) -> None:
        """The waiting conversation's timers: announcements (not to a callback's line: nobody
        is on it), what the customer says, and the queue's maximum wait (counted from when
        they joined this queue)."""
        shared = self.shared
        line = waiting.line
        if line is not None:
            if announce:
                waiting.tasks.append(shared.spawn(self._announce(entry, line)))
            waiting.tasks.append(shared.spawn(self._collect(entry, waiting)))
        limit = shared.rules.max_wait(entry.queue)
        if overflow and limit is not None and shared.rules.overflow(entry.queue) is not None:
            delay = max(0.0, entry.enqueued_at + limit - shared.clock())
            waiting.tasks.append(shared.spawn(self._overflow_after(entry, delay)))

    async def _overflow_after(self, entry: WaitingEntry, delay: float) -> None:
        await asyncio.sleep(delay)
        await self._overflow(entry.conversation_id)

    async def _overflow(self, conversation_id: str) -> None:
        """Waited the queue's `max_wait`: on to its overflow queue (if open), or its message
        and the end. An `offer` overflow (callback, SMS) keeps them waiting for now."""
        shared = self.shared
        waiting = shared.waiting.get(conversation_id)
        entry = shared.router.entry(conversation_id)
        if waiting is None or entry is None:
            return
        overflow = shared.rules.overflow(entry.queue)
        if overflow is not None and overflow.offer:
            await self._offer_other_ways(waiting, entry, overflow.offer)
            return
        if overflow is None or not (overflow.queue or overflow.message):
            log.info("conversation %s waited past max_wait: it waits on", conversation_id)
            return
        target = self.admit(overflow.queue) if overflow.queue else None
        message = overflow.message
        if isinstance(target, QueueClosed):
            message, target = target.message or overflow.message, None
        waited = shared.clock() - entry.enqueued_at
        if entry.offered_to is not None:  # ringing on a desk: it goes elsewhere now
            await self.offers.gone(entry.offered_to, conversation_id, "overflowed")
        shared.router.remove(conversation_id)
        waiting.stop()
        await shared.record(
            shared.store.log, entry.queue, conversation_id, "overflowed", to=target, seconds=waited
        )
        if target is not None:
            await self._move(waiting, entry, target)
        else:
            await self._end(waiting, entry.queue, message or "")

    async def _move(self, waiting: Waiting, entry: WaitingEntry, queue: str) -> None:
        """On to `queue`, keeping the priority; the wait there counts from now."""
        shared = self.shared
        conv = waiting.conv
        moved = WaitingEntry(
            conversation_id=conv.id,
            queue=queue,
            medium=entry.medium,
            skills=waiting.step_skills | shared.rules.skills(queue),
            priority=entry.priority,
            enqueued_at=shared.clock(),
        )
        fresh = Waiting(conv, waiting.line, waiting.step_skills)
        conv.handoff = {**(conv.handoff or {}), "queue": queue}
        conv.add_turn(waiting.channel_name, Role.SYSTEM, f"moved to queue {queue}")
        await shared.persist(conv)
        await self._line_up(fresh, moved, source=entry.queue)
        self._start(moved, fresh)
        self.offers.route()

    async def _end(self, waiting: Waiting, queue: str, message: str) -> None:
        """No agent after all: the customer is told `message` and the conversation ends."""
        shared = self.shared
        conv = waiting.conv
        del shared.waiting[conv.id]
        line = waiting.line
        if message:
            conv.add_turn(waiting.channel_name, Role.BOT, message, kind="notice")
        conv.add_turn(waiting.channel_name, Role.SYSTEM, f"left queue {queue} unanswered")
        conv.status = Status.ENDED
        await shared.persist(conv)
        await shared.record(shared.store.drop_entry, conv.id)
        if line is not None:
            with contextlib.suppress(ChannelClosed, ConnectionError, RuntimeError):
                if message:
                    await line.notify(message)
                await line.end("no agent could take the conversation")
        self.offers.route()

    async def _announce(self, entry: WaitingEntry, line: CustomerLine) -> None:
        """Where they stand in the queue: once, then every `announce.every` seconds."""
        shared = self.shared
        notices = shared.rules.notices(entry.queue)
        first = True
        try:
            while entry.conversation_id in shared.waiting:
                position = shared.router.position(entry.conversation_id, shared.clock())
                waiting = shared.waiting.get(entry.conversation_id)
                if waiting is not None and position is not None and (first or notices.every):
                    text = self._notice(entry.conversation_id, entry.queue, position, notices)
                    await line.notify(text)
                    # On the timeline: the agent (and a report) sees what the customer was told.
                    waiting.conv.add_turn(line.name, Role.BOT, text, kind="notice")
                    await shared.persist(waiting.conv)
                first = False
                await asyncio.sleep(notices.every or 3600)
        except ChannelClosed:
            await self.abandon(entry.conversation_id, "the customer left while waiting")

    async def _collect(self, entry: WaitingEntry, waiting: Waiting) -> None:
        """What a customer types while waiting goes on the timeline (the agent reads it); a
        customer who leaves abandons the queue."""
        line = waiting.line
        assert line is not None
        try:
            while self.shared.waiting.get(entry.conversation_id) is waiting:
                said = await line.from_customer()
                waiting.conv.add_turn(line.name, Role.CUSTOMER, said.as_text, kind=said.kind)
                await self.shared.persist(waiting.conv)
                way = waiting.choices.get((said.digits or said.as_text).strip())
                if way is not None and await self._switch(entry, waiting, way):
                    return
        except ChannelClosed:
            if self.shared.waiting.get(entry.conversation_id) is waiting:
                await self.abandon(entry.conversation_id, "the customer left while waiting")

    async def _offer_other_ways(
        self, waiting: Waiting, entry: WaitingEntry, offer: tuple[str, ...]
    ) -> None:
        """Waited `max_wait` in a queue whose overflow offers other ways: the customer hears
        (or reads) them, with a key each, and keeps their place while they choose."""
        shared = self.shared
        line = waiting.line
        ways = shared.other_ways.available(waiting.conv, line, offer) if shared.other_ways else []
        if line is None or not ways:
            log.info("conversation %s: none of %s can be offered: it waits on",
                     entry.conversation_id, list(offer))  # fmt: skip
            return
        waiting.choices = {str(key): way for key, way in enumerate(ways, start=1)}
        text = "You can keep waiting, or " + ", or ".join(
            f"press {key} {OFFERS[way]}" for key, way in waiting.choices.items()
        ) + "."  # fmt: skip
        waiting.conv.add_turn(line.name, Role.BOT, text, kind="notice")
        await shared.persist(waiting.conv)
        await shared.record(
            shared.store.log, entry.queue, entry.conversation_id, "offered", ways=ways
        )
        with contextlib.suppress(ChannelClosed, ConnectionError, RuntimeError):
            await line.notify(text)

    async def _switch(self, entry: WaitingEntry, waiting: Waiting, way: str) -> bool:
        """The customer took another way (a callback, going on by text): they keep their place
        in line on their new line, and the old one ends. False when it cannot be done (they
        were told, and wait on as they were)."""
        shared = self.shared
        conv, old = waiting.conv, waiting.line
        assert shared.other_ways is not None and old is not None
        try:
            line, farewell = await shared.other_ways.switch(conv, way)
        except ValueError as exc:
            log.warning("conversation %s: no %s: %s", conv.id, way, exc)
            with contextlib.suppress(ChannelClosed, ConnectionError, RuntimeError):
                await old.notify("Sorry, that is not possible right now. Please keep waiting.")
            return False
        fresh = Waiting(conv, line, waiting.step_skills)
        shared.waiting[conv.id] = fresh  # before the old line ends: that is not abandoning
        waiting.stop()
        medium: Medium = "voice" if getattr(line, "medium", "text") == "voice" else "text"
        if medium != entry.medium:  # by text now: an agent's chat capacity takes it
            if entry.offered_to is not None:
                await self.offers.gone(entry.offered_to, conv.id, "moved")
            shared.router.remove(conv.id)
            entry = dataclasses.replace(entry, medium=medium, offered_to=None, offer_expires=None)
            shared.router.enqueue(entry)
            await shared.record(shared.store.save_entry, entry, "waiting", None)
        conv.add_turn(old.name, Role.BOT, farewell, kind="notice")
        conv.add_turn(old.name, Role.SYSTEM, f"the customer chose {WAYS[way]}; same place in line")
        conv.handoff = {**(conv.handoff or {}), "waiting_by": way}
        await shared.persist(conv)
        await shared.record(shared.store.log, entry.queue, conv.id, way)
        with contextlib.suppress(ChannelClosed, ConnectionError, RuntimeError):
            await old.notify(farewell)
            await old.end(f"the customer chose {WAYS[way]}")
        # The offer was the overflow: not again. A callback's line has nobody to tell.
        self._start(entry, fresh, overflow=False, announce=way != "callback")
        self.offers.route()
        return True

    def _notice(
        self, conversation_id: str, queue: str, position: int, notices: QueueNotices
    ) -> str:
        router = self.shared.router
        parts = []
        if notices.position:
            parts.append(
                "You are next in line." if position == 1 else f"You are number {position} in line."
            )
        if notices.estimated_wait:
            entry = router.entry(conversation_id)
            seconds = estimated_wait(
                position,
                router.staffed(queue),
                self.shared.handling_times.average(queue),
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
