"""Offers to agents' desks: what the router offers is sent, rings, and stops ringing.

`route()` is called after every change that could make an offer possible (a conversation joins
a queue, an agent becomes free, an offer is declined or withdrawn): it sends the router's new
offers, takes back the expired ones (the router puts their agents on break), and sets one timer
for the next expiry. An offer that stops ringing for any reason tells the desk with
`offer_gone`.
"""

from __future__ import annotations

import asyncio

from ivr.routing.acd import Offer, RoutingError
from ivr.routing.shared import NotAllowed, Shared


class Offers:
    def __init__(self, shared: Shared) -> None:
        self.shared = shared
        self._expiry: asyncio.TimerHandle | None = None

    def route(self) -> None:
        """Offer whatever can be offered now, and set the timer for the next offer expiry."""
        shared = self.shared
        now = shared.clock()
        for offer in shared.router.expire(now):
            shared.spawn(self._missed(offer))
        for offer in shared.router.assign(now):
            shared.spawn(self._send(offer))
        self._arm_expiry()

    async def gone(self, agent_id: str, conversation_id: str, reason: str) -> None:
        """The offer stops ringing on the agent's desk (`reason`: declined, timeout, ...)."""
        frame = {"type": "offer_gone", "conversation_id": conversation_id, "reason": reason}
        await self.shared.desks.send(agent_id, frame)

    async def withdrawn(self, offer: Offer | None) -> None:
        """An offer the router took back when its agent stopped being available (a break,
        wrap-up): it stops ringing; the conversation goes to someone else."""
        if offer is not None:
            await self.gone(offer.agent_id, offer.conversation_id, "withdrawn")

    async def decline(self, agent_id: str, conversation_id: str) -> None:
        try:
            self.shared.router.decline(conversation_id, agent_id, self.shared.clock())
        except RoutingError as exc:
            raise NotAllowed(str(exc)) from None
        await self.gone(agent_id, conversation_id, "declined")
        self.route()

    def close(self) -> None:
        if self._expiry is not None:
            self._expiry.cancel()

    def _arm_expiry(self) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        deadline = self.shared.router.next_deadline()
        if deadline is not None:
            delay = max(0.0, deadline - self.shared.clock())
            self._expiry = asyncio.get_running_loop().call_later(delay + 0.01, self.route)

    async def _send(self, offer: Offer) -> None:
        shared = self.shared
        waiting = shared.waiting.get(offer.conversation_id)
        if waiting is None:
            return
        entry = shared.router.entry(offer.conversation_id)
        if entry is None:  # taken back meanwhile (the customer left)
            return
        card = await shared.card(waiting.conv, offer.queue, shared.clock() - entry.enqueued_at)
        await shared.record(shared.store.save_entry, entry, "offered", offer.agent_id)
        await shared.desks.send(
            offer.agent_id,
            {
                "type": "offer",
                "conversation_id": offer.conversation_id,
                "queue": offer.queue,
                "expires_in": max(0.0, offer.expires_at - shared.clock()),
                "card": card,
            },
        )

    async def _missed(self, offer: Offer) -> None:
        await self.gone(offer.agent_id, offer.conversation_id, "timeout")
        await self.shared.desks.send(
            offer.agent_id,
            {
                "type": "presence",
                "state": str(self.shared.presence(offer.agent_id)),
                "reason": "missed an offer",
            },
        )
