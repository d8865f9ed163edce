"""What a queue needs from the customer's channel once the flow has handed them over.

The flow engine talks to a channel through say / ask / transfer / end (`ivr.flow.channel`). After
a `transfer` to a queue the flow's run is over, but the customer is still there: on a call,
waiting with music and announcements; in a chat, waiting for a person to type. A channel that can
carry a customer to an agent also implements `CustomerLine`; the queue service (`service.py`)
drives it, and knows nothing else of the channel.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from ivr.conversation import Conversation
from ivr.flow.channel import CustomerInput


@runtime_checkable
class CustomerLine(Protocol):
    name: str  # the channel's name on the timeline: "chat", "sip", "webrtc", "sms"
    medium: str  # "voice" or "text"

    async def notify(self, text: str) -> None:
        """A notice while they wait (position, estimated wait, closing): spoken or sent."""
        ...

    async def agent_joined(self, agent_name: str) -> None:
        """A person has taken the conversation."""
        ...

    async def from_agent(self, agent_name: str, text: str) -> None:
        """What the agent typed (text channels; a call's agent speaks on the bridge)."""
        ...

    async def from_customer(self) -> CustomerInput:
        """The customer's next message to the agent; ChannelClosed when they leave (a call's
        line raises it on hang-up, which is how abandonment is noticed)."""
        ...

    async def end(self, reason: str) -> None:
        """The conversation is over on this channel: hang up, close the chat."""
        ...


@runtime_checkable
class AgentLeg(Protocol):
    """The agent's own audio leg, bridged to a caller (their browser softphone)."""

    answer_sdp: str

    def add_candidate(self, candidate: str, mid: str | None, index: int | None) -> None:
        """One of the agent's browser's trickled ICE candidates."""
        ...

    async def ended(self) -> str:
        """Returns, with the reason, when this leg has ended (the agent's side or the call)."""
        ...

    def hang_up(self) -> None: ...


@runtime_checkable
class VoiceLine(CustomerLine, Protocol):
    """A caller's line: music while they wait, then a bridge to the agent's own audio leg, or
    a transfer to the agent's SIP phone."""

    can_refer: bool  # a SIP dialog that a transfer can hand on (a browser call has none)

    async def hold(self, music: str | None, language: str) -> None:
        """Music until an agent is bridged: the recorded prompt `music` (in `language`), else
        the built-in."""
        ...

    async def bridge_agent(self, offer_sdp: str) -> AgentLeg:
        """Answer the agent's browser offer with a leg bridged to the caller. ValueError
        (refused, or the call is gone) or TimeoutError when it cannot be made."""
        ...

    async def transfer_to_phone(self, uri: str, headers: dict[str, str]) -> None:
        """Hand the call to an agent's own SIP phone at `uri` (a blind transfer carrying the
        context `headers`). Returns once the phone has it: the call has left us. ValueError
        with the far end's answer ("486 Busy Here") when it refused, TimeoutError when no
        final answer came (the caller is still with us either way), ChannelClosed when the
        caller hung up meanwhile."""
        ...


class OtherWays(Protocol):
    """Other ways to wait for an agent that a queue may offer a waiting customer (its
    `overflow: {offer: [callback, sms]}`): implemented by the channels (`ivr.channels.other_ways`),
    which the queue service knows only through this."""

    def available(self, conv: Conversation, line: CustomerLine, offer: Sequence[str]) -> list[str]:
        """Of `offer`, what this customer can be given now (a callback needs a number to call
        and outbound calls configured; a text needs a number and SMS)."""
        ...

    async def switch(self, conv: Conversation, way: str) -> tuple[CustomerLine, str]:
        """The customer's new line for `way` ("callback": a call placed when an agent takes
        the conversation; "sms": their SMS thread), and what to tell them on the old line
        before it ends. ValueError when it cannot be done."""
        ...

    def callback_line(self, conv: Conversation) -> CustomerLine | None:
        """The line of a conversation waiting for a callback (after a restart), if any."""
        ...
