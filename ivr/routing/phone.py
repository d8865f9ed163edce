"""An agent whose phone is a SIP phone: a call they accept is transferred to that phone.

The caller's call leaves our media worker for the agent's phone (a REFER carrying the same
context headers as a flow's `transfer: {sip: ...}`), and the desk keeps the card: the agent
ends the conversation and files the wrap-up there as usual. We do not see the call after that:
its end on our side is the transfer working, not the customer leaving.

A phone that does not take the call (busy, declined, no answer) leaves the caller with us: they
hear the music again and wait at the place they had (priority, time of joining), and the agent
is put on break, as for an offer they let time out: a phone that does not answer says they are
not at it, and they say when they are back (rather than have every call that comes ring it).
Chats, and browser calls (which have no SIP dialog to transfer), stay in the desktop.
"""

from __future__ import annotations

import logging

from ivr.conversation import Role
from ivr.flow.steps.transfer import context_headers
from ivr.routing.acd import Presence, WaitingEntry
from ivr.routing.agents import Agents
from ivr.routing.audio import hold_music
from ivr.routing.line import CustomerLine, VoiceLine
from ivr.routing.offers import Offers
from ivr.routing.shared import Assignment, Shared
from ivr.routing.waiting import WaitingRoom

log = logging.getLogger("ivr.routing")


class AgentPhones:
    def __init__(
        self, shared: Shared, offers: Offers, agents: Agents, waiting_room: WaitingRoom
    ) -> None:
        self.shared = shared
        self.offers = offers
        self.agents = agents
        self.waiting_room = waiting_room

    def phone_for(self, agent_id: str, line: CustomerLine | None) -> str | None:
        """Where the agent takes this call: their SIP phone's URI, or None (the desktop)."""
        phone = self.shared.desks.phone(agent_id)
        return phone if isinstance(line, VoiceLine) and line.can_refer else None

    async def ring(self, assignment: Assignment) -> None:
        """Transfers the call to the agent's phone and tells the desk how it went.
        ChannelClosed when the caller hangs up first (they left: the caller of this says so)."""
        line, uri = assignment.line, assignment.phone
        assert isinstance(line, VoiceLine) and uri is not None
        await self._tell(assignment, "ringing")
        try:
            await line.transfer_to_phone(uri, context_headers(assignment.conv))
        except (ValueError, TimeoutError) as exc:
            await self._failed(assignment, str(exc) or "no answer")
        else:
            await self._transferred(assignment)

    async def _transferred(self, assignment: Assignment) -> None:
        shared = self.shared
        assignment.on_phone = True
        conv = assignment.conv
        conv.add_turn(
            assignment.channel_name,
            Role.SYSTEM,
            f"transferred to {assignment.agent_name}'s phone {assignment.phone}",
            agent=assignment.agent_id,
        )
        conv.handoff = {**(conv.handoff or {}), "phone": assignment.phone}
        await shared.persist(conv)
        if assignment.place is not None:  # a restart finds it with the phone, not abandoned
            await shared.record(
                shared.store.save_entry, assignment.place, "on_phone", assignment.agent_id
            )
        await shared.answered(assignment, shared.clock())
        await self._tell(assignment, "transferred")

    async def _failed(self, assignment: Assignment, reason: str) -> None:
        shared = self.shared
        conv, place, agent_id = assignment.conv, assignment.place, assignment.agent_id
        assert place is not None
        log.info("conversation %s: %s's phone did not take it: %s", conv.id, agent_id, reason)
        assignment.ended = True  # the agent's part is over: nothing else acts on it now
        del shared.assigned[conv.id]
        conv.add_turn(
            assignment.channel_name,
            Role.SYSTEM,
            f"{assignment.agent_name}'s phone did not take the call ({reason}): "
            f"back in queue {place.queue}",
            agent=agent_id,
        )
        if conv.handoff:
            conv.handoff.pop("agent", None)
        shared.router.release(agent_id, assignment.medium, shared.clock(), wrap_up=False)
        # On break at once (no await in between): the call is not offered straight back.
        why = f"your phone did not take the call ({reason})"
        await self.agents.set_presence(agent_id, Presence.BREAK, reason=why)
        await hold_music(assignment.line, shared.rules, place.queue, conv.language)
        entry = WaitingEntry(
            conversation_id=conv.id,
            queue=place.queue,
            medium=place.medium,
            skills=place.skills,
            priority=place.priority,
            enqueued_at=place.enqueued_at,
        )
        # The same place in line, and not a second "enqueued" (nor was it "answered").
        await self.waiting_room.wait_again(
            conv, assignment.line, entry, assignment.step_skills, logged=False
        )
        await self._tell(assignment, "failed", reason=reason)
        self.offers.route()

    async def _tell(self, assignment: Assignment, state: str, **more: str) -> None:
        frame = {
            "type": "phone",
            "conversation_id": assignment.conv.id,
            "state": state,
            "uri": assignment.phone,
            **more,
        }
        await self.shared.desks.send(assignment.agent_id, frame)
