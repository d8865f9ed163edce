"""The other ways a queue may offer a waiting caller (`overflow: {offer: [callback, sms]}`).

`ChannelWays` is the channels' side of `ivr.routing.line.OtherWays`: a callback is a
`CallbackLine` (the call is placed when an agent takes the conversation); going on by text makes
the caller's SMS thread the conversation's line, where the agent will write. Either way the
customer keeps their place in line, and the call they were waiting on ends.
"""

from __future__ import annotations

from collections.abc import Sequence

from ivr.channels.sms.service import SmsConversations
from ivr.channels.voice.callback import CallbackLine, Dialler
from ivr.conversation import Conversation
from ivr.routing.line import CustomerLine

BY_TEXT_INTRO = (
    "You are still in line for an agent, who will write to you here. You can reply at any time."
)
BY_TEXT_FAREWELL = (
    "I have sent you a text message. An agent will write to you there, and you keep your "
    "place in line. Goodbye."
)


def spoken_number(number: str) -> str:
    """A phone number read out digit by digit ("5 5 5 0 1 0 0"), as a caller checks it."""
    return " ".join(number.lstrip("+"))


class ChannelWays:
    def __init__(self, dialler: Dialler | None, sms: SmsConversations | None) -> None:
        self.dialler = dialler  # None: no outbound calls ([sip] callback_uri unset, or no SIP)
        self.sms = sms

    def available(self, conv: Conversation, line: CustomerLine, offer: Sequence[str]) -> list[str]:
        number = conv.contact.get("phone")
        if not number or line.medium != "voice":
            return []  # nothing to call back or text; a chat is in writing already
        possible = {"callback": self.dialler is not None, "sms": self.sms is not None}
        return [way for way in offer if possible.get(way)]

    async def switch(self, conv: Conversation, way: str) -> tuple[CustomerLine, str]:
        number = conv.contact.get("phone")
        if not number:
            raise ValueError("no number to call back or text")
        if way == "callback" and self.dialler is not None:
            line = CallbackLine.for_conversation(conv, self.dialler)
            farewell = (
                f"We will call you back at {spoken_number(number)} as soon as an agent is free. "
                "Goodbye."
            )
            return line, farewell
        if way == "sms" and self.sms is not None:
            return await self.sms.waiting_line(number, conv, BY_TEXT_INTRO), BY_TEXT_FAREWELL
        raise ValueError(f"{way} is not available")

    def callback_line(self, conv: Conversation) -> CustomerLine | None:
        waiting_by = (conv.handoff or {}).get("waiting_by")
        if waiting_by != "callback" or self.dialler is None or not conv.contact.get("phone"):
            return None
        return CallbackLine.for_conversation(conv, self.dialler)
