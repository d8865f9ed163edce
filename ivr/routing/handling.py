"""An agent handling a conversation: from accepting the offer to filing the wrap-up.

Once accepted, what the customer and the agent say is relayed between them and recorded on the
conversation's timeline first (a call's audio goes through `audio.py` instead). The agent may
hand the conversation on to another queue or a colleague (the customer waits again, keeping
their priority), or end it; a customer who leaves is said on the desk. The wrap-up code and
notes go on the conversation, and the agent is free again: when they file it, or after the
queue's `wrap_up` seconds. A call the agent takes on their SIP phone goes there (`phone.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from ivr.conversation import Role, Status
from ivr.flow.channel import ChannelClosed
from ivr.flow.engine import QueueClosed
from ivr.routing.acd import Presence, RoutingError, WaitingEntry
from ivr.routing.agents import Agents
from ivr.routing.audio import hold_music
from ivr.routing.offers import Offers
from ivr.routing.phone import AgentPhones
from ivr.routing.shared import PERSONAL_QUEUE, Assignment, NotAllowed, Shared, describe
from ivr.routing.waiting import WaitingRoom


class Handling:
    def __init__(
        self,
        shared: Shared,
        offers: Offers,
        agents: Agents,
        waiting_room: WaitingRoom,
        phones: AgentPhones,
    ) -> None:
        self.shared = shared
        self.offers = offers
        self.agents = agents
        self.waiting_room = waiting_room
        self.phones = phones
        self._wrap_up_timers: dict[str, asyncio.TimerHandle] = {}  # agent id -> back available

    async def accept(self, agent_id: str, conversation_id: str) -> dict[str, Any]:
        shared = self.shared
        now = shared.clock()
        try:
            entry = shared.router.accept(conversation_id, agent_id, now)
        except RoutingError as exc:
            raise NotAllowed(str(exc)) from None
        waiting = shared.waiting.pop(conversation_id)
        waiting.stop()
        conv = waiting.conv
        name = shared.desks.name(agent_id)
        conv.status = Status.WITH_AGENT
        conv.handoff = {**(conv.handoff or {}), "agent": {"id": agent_id, "name": name, "at": now}}
        conv.add_turn(waiting.channel_name, Role.SYSTEM, f"{name} joined", agent=agent_id)
        await shared.persist(conv)
        await shared.record(shared.store.save_entry, entry, "assigned", agent_id)
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
            phone=self.phones.phone_for(agent_id, waiting.line),
            place=entry,
        )
        if assignment.phone is None:  # else once their phone has taken the call
            await shared.answered(assignment, now)
        assignment.customer_left = waiting.line is None  # restored after a restart: gone
        shared.assigned[conversation_id] = assignment
        if waiting.line is not None:
            with contextlib.suppress(ChannelClosed):
                await waiting.line.agent_joined(name)
            if assignment.phone is None:
                assignment.relay = shared.spawn(self._relay(assignment))
        card = await shared.card(conv, entry.queue, now - entry.enqueued_at)
        await shared.desks.send(agent_id, {"type": "assigned", "card": card})
        if assignment.phone is not None and not assignment.ended:
            # The line's one reader instead of the relay; its frames follow the card's.
            assignment.relay = shared.spawn(self._ring_phone(assignment))
        self.offers.route()
        return card

    async def transfer(self, agent_id: str, conversation_id: str, queue: str, note: str) -> str:
        """The agent hands the conversation on: to another queue, or to one agent's own queue
        (`@username`), with a note the next agent reads on the timeline. The customer waits
        again (a caller with music), keeping their priority; this agent is free at once.
        Returns the queue it waits in (a closed queue's overflow, if it has one)."""
        shared = self.shared
        assignment = shared.own(agent_id, conversation_id)
        if assignment.ended or assignment.customer_left:
            raise NotAllowed("the customer is no longer here")
        if assignment.phone is not None:
            raise NotAllowed("the call is your phone's: transfer it there")
        if queue.startswith(PERSONAL_QUEUE):
            if not shared.desks.has_username(queue[len(PERSONAL_QUEUE) :]):
                raise NotAllowed(f"no agent {queue[len(PERSONAL_QUEUE) :]!r} has signed in")
        elif queue not in shared.rules.policies():
            raise NotAllowed(f"no queue {queue!r}")
        admitted = shared.rules.admit(queue, shared.clock())
        if isinstance(admitted, QueueClosed):
            raise NotAllowed(f"queue {admitted.queue} is closed now")
        if admitted == assignment.queue and not queue.startswith(PERSONAL_QUEUE):
            raise NotAllowed(f"the conversation is in queue {queue} already")
        now = shared.clock()
        self._stop(assignment)
        del shared.assigned[conversation_id]
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
        await shared.record(
            shared.store.log,
            assignment.queue,
            conversation_id,
            "transferred",
            agent=agent_id,
            to=admitted,
            seconds=now - assignment.started,
        )
        withdrawn = shared.router.release(agent_id, assignment.medium, now, wrap_up=False)
        await self.offers.withdrawn(withdrawn)
        line = assignment.line
        with contextlib.suppress(ChannelClosed, ConnectionError, RuntimeError):
            if line is not None:
                await line.notify("I am transferring you to a colleague who can help. One moment.")
        await hold_music(line, shared.rules, admitted, conv.language)
        by_name = admitted.startswith(PERSONAL_QUEUE)  # their skills are not in question
        entry = WaitingEntry(
            conversation_id=conversation_id,
            queue=admitted,
            medium=assignment.medium,
            skills=frozenset()
            if by_name
            else assignment.step_skills | shared.rules.skills(admitted),
            priority=assignment.priority,
            enqueued_at=now,
        )
        await self.waiting_room.wait_again(conv, line, entry, assignment.step_skills)
        await self.agents.tell_presence(agent_id)
        await shared.desks.send(
            agent_id,
            {"type": "transferred", "conversation_id": conversation_id, "to": describe(admitted)},
        )
        self.offers.route()
        return admitted

    async def agent_says(self, agent_id: str, conversation_id: str, text: str) -> None:
        shared = self.shared
        assignment = shared.own(agent_id, conversation_id)
        if assignment.ended or assignment.customer_left or assignment.line is None:
            raise NotAllowed("the customer is no longer here")
        channel = assignment.line.name
        try:
            await assignment.line.from_agent(assignment.agent_name, text)
        except ChannelClosed:
            await self._customer_left(assignment)
            raise NotAllowed("the customer has left; the message was not delivered") from None
        assignment.conv.add_turn(channel, Role.AGENT, text, agent=agent_id)
        await shared.persist(assignment.conv)
        await shared.desks.send(agent_id, self._message(conversation_id, channel, "agent", text))

    async def finish(self, agent_id: str, conversation_id: str, reason: str) -> None:
        """The agent ends the conversation (the customer is told, the channel closed)."""
        shared = self.shared
        assignment = shared.own(agent_id, conversation_id)
        if assignment.ended:
            return
        self._stop(assignment)
        if assignment.line is not None and not (assignment.customer_left or assignment.on_phone):
            with contextlib.suppress(ChannelClosed, ConnectionError, RuntimeError):
                await assignment.line.end(reason)
        assignment.conv.add_turn(
            assignment.channel_name,
            Role.SYSTEM,
            f"{assignment.agent_name} ended the conversation",
        )
        assignment.conv.status = Status.ENDED
        await shared.persist(assignment.conv)
        now = shared.clock()
        withdrawn = shared.router.release(agent_id, assignment.medium, now, wrap_up=True)
        await self.offers.withdrawn(withdrawn)
        self._limit_wrap_up(agent_id, shared.rules.wrap_up_seconds(assignment.queue))
        await self.agents.tell_presence(agent_id)
        await shared.desks.send(
            agent_id, {"type": "ended", "conversation_id": conversation_id, "by": "agent"}
        )

    async def wrap_up(self, agent_id: str, conversation_id: str, code: str, notes: str) -> None:
        """Wrap-up code and notes go on the conversation; the agent is free again."""
        shared = self.shared
        assignment = shared.own(agent_id, conversation_id)
        codes = shared.rules.wrap_up_codes(assignment.queue)
        if codes and code not in codes:
            raise NotAllowed(f"the wrap-up code must be one of: {', '.join(codes)}")
        if not assignment.ended:
            await self.finish(agent_id, conversation_id, "the agent has ended the conversation")
        now = shared.clock()
        conv = assignment.conv
        conv.handoff = {
            **(conv.handoff or {}),
            "wrap_up": {"code": code, "notes": notes, "at": now, "agent": agent_id},
        }
        await shared.persist(conv)
        handled = now - assignment.started
        shared.handling_times.record(assignment.queue, handled)
        await shared.record(shared.store.drop_entry, conversation_id)
        await shared.record(
            shared.store.log,
            assignment.queue,
            conversation_id,
            "handled",
            agent=agent_id,
            seconds=handled,
            code=code,
        )
        del shared.assigned[conversation_id]
        still_busy = any(a.agent_id == agent_id for a in shared.assigned.values())
        if not still_busy and shared.presence(agent_id) is Presence.WRAP_UP:  # not a break
            await self.agents.set_presence(agent_id, Presence.AVAILABLE)
        await shared.desks.send(
            agent_id, {"type": "wrapped_up", "conversation_id": conversation_id}
        )

    def holds(self, conversation_id: str) -> bool:
        """Is the conversation waiting here, or with an agent (its channel held open)? Not
        once an agent's SIP phone has the call: it left us."""
        assignment = self.shared.assigned.get(conversation_id)
        if conversation_id in self.shared.waiting:
            return True
        return assignment is not None and not (assignment.ended or assignment.on_phone)

    def assignments_of(self, agent_id: str) -> list[Assignment]:
        return [a for a in self.shared.assigned.values() if a.agent_id == agent_id]

    def handles(self, agent_id: str, conversation_id: str) -> bool:
        assignment = self.shared.assigned.get(conversation_id)
        return assignment is not None and assignment.agent_id == agent_id

    def close(self) -> None:
        for timer in self._wrap_up_timers.values():
            timer.cancel()

    # ------------------------------------------------------------ internals

    def _stop(self, assignment: Assignment) -> None:
        """The agent's part is over: no more relay of messages, no more audio leg."""
        assignment.ended = True
        if assignment.relay is not None:
            assignment.relay.cancel()
        leg, assignment.agent_leg = assignment.agent_leg, None  # so its end is no news
        if leg is not None:
            leg.hang_up()  # the caller's bridge goes with it

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
            if self.shared.presence(agent_id) is Presence.WRAP_UP:  # not a break chosen since
                self.shared.spawn(self.agents.set_presence(agent_id, Presence.AVAILABLE))

        loop = asyncio.get_running_loop()
        self._wrap_up_timers[agent_id] = loop.call_later(seconds, over)

    async def _relay(self, assignment: Assignment) -> None:
        """The customer's messages to the agent, each recorded on the timeline first."""
        line = assignment.line
        assert line is not None
        try:
            while True:
                said = await line.from_customer()
                text = said.as_text
                assignment.conv.add_turn(line.name, Role.CUSTOMER, text, kind=said.kind)
                await self.shared.persist(assignment.conv)
                await self.shared.desks.send(
                    assignment.agent_id,
                    self._message(assignment.conv.id, line.name, "customer", text),
                )
        except ChannelClosed:
            await self._customer_left(assignment)

    async def _ring_phone(self, assignment: Assignment) -> None:
        try:
            await self.phones.ring(assignment)
        except ChannelClosed:
            await self._customer_left(assignment)

    async def _customer_left(self, assignment: Assignment) -> None:
        if assignment.customer_left or assignment.ended:
            return
        assignment.customer_left = True
        channel = assignment.channel_name
        conv_id = assignment.conv.id
        assignment.conv.add_turn(channel, Role.SYSTEM, "the customer left")
        await self.shared.persist(assignment.conv)
        send = self.shared.desks.send
        await send(
            assignment.agent_id, self._message(conv_id, channel, "system", "the customer left")
        )
        await send(assignment.agent_id, {"type": "customer_left", "conversation_id": conv_id})

    def _message(self, conversation_id: str, channel: str, role: str, text: str) -> dict[str, Any]:
        return {
            "type": "message",
            "conversation_id": conversation_id,
            "channel": channel,
            "role": role,
            "text": text,
            "ts": self.shared.clock(),
        }
