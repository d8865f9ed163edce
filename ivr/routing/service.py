"""The queue service: conversations handed to people, agents' desktops, and the ACD between them.

A flow's `transfer: {queue: ...}` step calls `enqueue` (this is the engine's `Handoff`). The
conversation waits, with the customer's channel kept open as a `CustomerLine` (music and
announcements on a call, notices in a chat), until the router (`acd.Router`) offers it to an
agent's desktop. The agent accepts (or declines, or lets the offer time out and the next agent
gets it); from then on what the customer and the agent say is relayed between them and recorded
on the conversation's timeline, so a later agent, channel or report sees everything. The agent
ends the conversation and files a wrap-up code and notes on it.

Time comes from `clock` (epoch seconds) so routing is testable; timers (offer expiry, waiting
notices, maximum wait, wrap-up) are asyncio tasks of this service. Queue state is written to the
store (`QueueStateStore`) at every change, so a restarted control plane finds who was waiting,
and since when.

`QueueService` is the face that the flow, the desktop, the wallboard and the channels call; it
wires the rooms that do the work and decides nothing itself. Each room is a module, and each
imports only those listed after it:

- `handling.py`: an agent handling a conversation: accept, relay, transfer, end, wrap-up;
- `phone.py`: a call taken by an agent whose phone is a SIP phone: transferred to it;
- `waiting.py`: the waiting room: enqueue, notices, maximum wait and overflow, abandonment,
  and the restore after a restart;
- `agents.py`: agents signing in and out, their presence, whom they can transfer to;
- `audio.py`: a call's audio: hold music, the agent's softphone leg bridged to the caller;
- `offers.py`: offers sent to desks, their expiry, and their end (`offer_gone`);
- `shared.py`: what they share: the router, the rules, the store, the live conversations;
- `desks.py`: the agents' open desktops, and the frames sent to them.
"""

from __future__ import annotations

import time
from typing import Any

from ivr.conversation import Conversation
from ivr.flow.channel import Channel, TransferTarget
from ivr.flow.engine import QueueClosed
from ivr.routing.acd import AgentState, Presence
from ivr.routing.agents import Agents
from ivr.routing.audio import CallAudio
from ivr.routing.desks import Desk, Desks
from ivr.routing.handling import Handling
from ivr.routing.line import CustomerLine, OtherWays
from ivr.routing.offers import Offers
from ivr.routing.phone import AgentPhones
from ivr.routing.rules import QueueRules
from ivr.routing.shared import (
    PERSONAL_QUEUE,
    Assignment,
    Clock,
    Conversations,
    NotAllowed,
    Persist,
    QueueStore,
    Shared,
)
from ivr.routing.waiting import WaitingRoom

__all__ = ["PERSONAL_QUEUE", "Desk", "NotAllowed", "QueueService"]


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
        # A tab whose socket broke is closed as if the agent had closed it.
        self.desks = Desks(on_broken=self.desk_closed)
        shared = Shared(
            rules=rules,
            persist=persist,
            conversations=conversations,
            store=state,
            desks=self.desks,
            clock=clock,
        )
        self._shared = shared
        self.rules = rules
        self.router = shared.router
        self.handling = shared.handling_times
        self._offers = Offers(shared)
        self._agents = Agents(shared, self._offers)
        self._waiting_room = WaitingRoom(shared, self._offers)
        self._audio = CallAudio(shared)
        phones = AgentPhones(shared, self._offers, self._agents, self._waiting_room)
        self._handling = Handling(shared, self._offers, self._agents, self._waiting_room, phones)

    # ------------------------------------------------------------ the flow's side (Handoff)

    def now(self) -> float:
        """The service's clock (epoch seconds): the router's times are on it."""
        return self._shared.clock()

    def admit(self, queue: str) -> str | QueueClosed:
        return self._waiting_room.admit(queue)

    async def enqueue(
        self, conv: Conversation, target: TransferTarget, channel: Channel | None
    ) -> None:
        """The flow hands `conv` to `target.queue`; `channel` stays open while it waits."""
        await self._waiting_room.enqueue(conv, target, channel)

    async def restore(self) -> int:
        """Conversations stored as waiting wait again after a restart; returns how many."""
        return await self._waiting_room.restore()

    def reattach(self, conversation_id: str, line: CustomerLine) -> bool:
        """A customer back on a line (a text after a restart) for a conversation that waits
        without one: it keeps its place in line."""
        return self._waiting_room.reattach(conversation_id, line)

    def attach_other_ways(self, other_ways: OtherWays | None) -> None:
        """Callbacks and texts a queue may offer (`overflow: {offer: ...}`), given by the
        channels once they run; None when they stop."""
        if other_ways is None:
            self._waiting_room.shared.other_ways = None
        else:
            self._waiting_room.attach(other_ways)

    def stop_taking_leavers(self) -> None:
        """The server is shutting down: the sockets it closes are not customers leaving."""
        self._waiting_room.stop_taking_leavers()

    async def abandon(self, conversation_id: str, why: str) -> None:
        """The customer left before an agent took them."""
        await self._waiting_room.abandon(conversation_id, why)

    def holds(self, conversation_id: str) -> bool:
        """Is the conversation waiting here, or with an agent (its channel held open)?"""
        return self._handling.holds(conversation_id)

    # ------------------------------------------------------------ agents' side

    def desk_opened(
        self,
        desk: Desk,
        agent: AgentState,
        name: str,
        username: str = "",
        phone: str | None = None,
    ) -> None:
        """A desktop tab opened; `phone`: the SIP URI the agent's calls go to, if not here."""
        self._agents.opened(desk, agent, name, username, phone)

    def desk_closed(self, desk: Desk) -> None:
        self._agents.closed(desk)

    def presence(self, agent_id: str) -> Presence:
        return self._shared.presence(agent_id)

    async def set_presence(self, agent_id: str, presence: Presence) -> None:
        await self._agents.set_presence(agent_id, presence)

    def transfer_targets(self, agent_id: str) -> dict[str, Any]:
        """Where an agent may transfer to: every queue, and the agents signed in now."""
        return self._agents.transfer_targets(agent_id)

    async def accept(self, agent_id: str, conversation_id: str) -> dict[str, Any]:
        """The agent takes the conversation offered to them; returns its card."""
        return await self._handling.accept(agent_id, conversation_id)

    async def decline(self, agent_id: str, conversation_id: str) -> None:
        await self._offers.decline(agent_id, conversation_id)

    async def transfer(self, agent_id: str, conversation_id: str, queue: str, note: str) -> str:
        """On to another queue or `@username`; returns the queue it waits in."""
        return await self._handling.transfer(agent_id, conversation_id, queue, note)

    async def agent_says(self, agent_id: str, conversation_id: str, text: str) -> None:
        await self._handling.agent_says(agent_id, conversation_id, text)

    async def finish(self, agent_id: str, conversation_id: str, reason: str) -> None:
        """The agent ends the conversation (the customer is told, the channel closed)."""
        await self._handling.finish(agent_id, conversation_id, reason)

    async def wrap_up(self, agent_id: str, conversation_id: str, code: str, notes: str) -> None:
        await self._handling.wrap_up(agent_id, conversation_id, code, notes)

    async def card(self, conv: Conversation, queue: str, waited: float | None) -> dict[str, Any]:
        return await self._shared.card(conv, queue, waited)

    async def connect_audio(self, agent_id: str, conversation_id: str, offer_sdp: str) -> str:
        """The agent's softphone joins the caller; returns the SDP answer for its browser."""
        return await self._audio.connect(agent_id, conversation_id, offer_sdp)

    def audio_candidate(
        self,
        agent_id: str,
        conversation_id: str,
        candidate: str,
        mid: str | None,
        index: int | None,
    ) -> None:
        self._audio.candidate(agent_id, conversation_id, candidate, mid, index)

    def assignments_of(self, agent_id: str) -> list[Assignment]:
        return self._handling.assignments_of(agent_id)

    def handles(self, agent_id: str, conversation_id: str) -> bool:
        return self._handling.handles(agent_id, conversation_id)

    async def close(self) -> None:
        self._offers.close()
        self._handling.close()
        await self._shared.close()
