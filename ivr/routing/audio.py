"""A call's audio while it is held here: music for the caller, and the agent's own leg.

A waiting caller hears music (and the queue's notices over it). Once an agent has taken the
call, their browser softphone sends an offer; the caller's media worker answers it with a leg
bridged to the caller, and keeps the music on until that leg connects. Whenever the agent's leg
goes, the caller hears music again until a new one connects.
"""

from __future__ import annotations

import logging

from ivr.flow.channel import ChannelClosed
from ivr.routing.line import AgentLeg, CustomerLine, VoiceLine
from ivr.routing.rules import QueueRules
from ivr.routing.shared import Assignment, NotAllowed, Shared

log = logging.getLogger("ivr.routing")


async def hold_music(
    line: CustomerLine | None, rules: QueueRules, queue: str, language: str
) -> None:
    """Music for a waiting caller. Never fatal: no music is better than a lost place in the
    queue (a recording that cannot be converted, a TTS worker that is down)."""
    if not isinstance(line, VoiceLine):
        return
    try:
        await line.hold(rules.notices(queue).hold_music, language)
    except ChannelClosed:
        pass  # gone: the line's listener notices
    except Exception:
        log.exception("no hold music for a caller waiting in %s", queue)


class CallAudio:
    def __init__(self, shared: Shared) -> None:
        self.shared = shared

    async def connect(self, agent_id: str, conversation_id: str, offer_sdp: str) -> str:
        """The agent's softphone joins the caller: its leg is bridged to the call on the
        caller's media worker (which keeps the music on until the leg connects). A newer offer
        replaces an older leg. Returns the SDP answer for the agent's browser."""
        assignment = self.shared.own(agent_id, conversation_id)
        line = assignment.line
        if assignment.ended or assignment.customer_left or not isinstance(line, VoiceLine):
            raise NotAllowed("there is no call to speak on in this conversation")
        if assignment.phone is not None:
            raise NotAllowed(f"this call goes to your phone {assignment.phone}")
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
            await self.hold(assignment)
            raise NotAllowed(f"the call's audio could not be connected: {exc}") from None
        if assignment.audio_offers != this_offer or assignment.ended or assignment.customer_left:
            leg.hang_up()  # a newer offer came meanwhile, or the conversation is over
            raise NotAllowed("this softphone connection was replaced or is no longer needed")
        assignment.agent_leg = leg
        self.shared.spawn(self._watch(assignment, leg))
        return leg.answer_sdp

    def candidate(
        self,
        agent_id: str,
        conversation_id: str,
        candidate: str,
        mid: str | None,
        index: int | None,
    ) -> None:
        assignment = self.shared.own(agent_id, conversation_id)
        if assignment.agent_leg is None:
            raise NotAllowed("send the softphone's offer first")
        assignment.agent_leg.add_candidate(candidate, mid, index)

    async def hold(self, assignment: Assignment) -> None:
        """Music again for a caller whose agent's audio is not (or no longer) connected."""
        if assignment.ended or assignment.customer_left:
            return
        language = assignment.conv.language
        await hold_music(assignment.line, self.shared.rules, assignment.queue, language)

    async def _watch(self, assignment: Assignment, leg: AgentLeg) -> None:
        """The agent's audio leg ended on its own: said to the desk; the caller hears music
        until the agent's softphone connects again. (Replaced legs, and the end of the call or
        the conversation, are no news.)"""
        reason = await leg.ended()
        if assignment.agent_leg is not leg:
            return
        assignment.agent_leg = None
        if assignment.ended or assignment.customer_left:
            return
        await self.shared.desks.send(
            assignment.agent_id,
            {
                "type": "audio",
                "conversation_id": assignment.conv.id,
                "state": "ended",
                "reason": reason,
            },
        )
        await self.hold(assignment)
