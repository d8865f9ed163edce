"""Agents signing in and out of the desktop, their presence, and whom they can transfer to.

The router learns an agent the first time one of their tabs opens and keeps them, offline,
after the last one closes: a reload must find the conversations they hold (and their load, or
they would be offered past their capacity).
"""

from __future__ import annotations

from typing import Any

from ivr.routing.acd import AgentState, Presence
from ivr.routing.desks import Desk
from ivr.routing.offers import Offers
from ivr.routing.shared import PERSONAL_QUEUE, Shared


class Agents:
    def __init__(self, shared: Shared, offers: Offers) -> None:
        self.shared = shared
        self.offers = offers

    def opened(
        self, desk: Desk, agent: AgentState, name: str, username: str, phone: str | None
    ) -> None:
        self.shared.desks.opened(desk, name, username or agent.agent_id, phone)
        if self.shared.router.agent(agent.agent_id) is None:
            self.shared.router.upsert_agent(agent)

    def closed(self, desk: Desk) -> None:
        if not self.shared.desks.closed(desk):
            return
        # The agent's last tab closed: no more offers to them (offline, not forgotten).
        router = self.shared.router
        if router.agent(desk.agent_id) is not None:
            router.set_presence(desk.agent_id, Presence.OFFLINE, self.shared.clock())
        self.offers.route()

    async def set_presence(self, agent_id: str, presence: Presence, reason: str = "") -> None:
        """`reason`: why the server chose it for them (shown on the desk)."""
        withdrawn = self.shared.router.set_presence(agent_id, presence, self.shared.clock())
        await self.offers.withdrawn(withdrawn)  # ringing when they went on break
        frame = {"type": "presence", "state": str(presence)}
        if reason:
            frame["reason"] = reason
        await self.shared.desks.send(agent_id, frame)
        self.offers.route()

    async def tell_presence(self, agent_id: str) -> None:
        """The agent's desk learns the presence the router gave them (wrap-up, available)."""
        state = str(self.shared.presence(agent_id))
        await self.shared.desks.send(agent_id, {"type": "presence", "state": state})

    def transfer_targets(self, agent_id: str) -> dict[str, Any]:
        """Where an agent may transfer to: every queue, and the agents signed in now."""
        desks = self.shared.desks
        queues = sorted(self.shared.rules.policies())
        agents = [
            {
                "queue": f"{PERSONAL_QUEUE}{desks.username(a.agent_id)}",
                "name": desks.name(a.agent_id),
                "presence": str(a.presence),
            }
            for a in self.shared.router.agents()
            if a.agent_id != agent_id and desks.is_open(a.agent_id)
        ]
        return {"queues": queues, "agents": sorted(agents, key=lambda a: a["name"])}
