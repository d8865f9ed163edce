"""`CallbackLine`: a caller who chose to be called back, waiting in the queue without a call.

It keeps the caller's place (the queue service holds it like any line) but has nobody on it:
notices go nowhere and nothing can be abandoned. When an agent takes the conversation and their
softphone offers its audio, the line places the call (`PhoneService.dial`, with the context
headers) and, once the customer answers, bridges the agent to it: from then on it is the
answered call's `VoiceChannel` that carries everything.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from ivr.channels.voice.channel import VoiceChannel
from ivr.channels.voice.gateway import DialFailed, NoMediaWorker
from ivr.conversation import Conversation
from ivr.flow.channel import ChannelClosed, CustomerInput
from ivr.flow.steps.transfer import context_headers
from ivr.routing.line import AgentLeg

log = logging.getLogger("ivr.voice")


class Dialler(Protocol):
    async def dial(self, number: str, headers: dict[str, str]) -> VoiceChannel: ...


class CallbackLine:
    name = "sip"
    medium = "voice"
    can_refer = False  # there is no call to hand on until the agent's softphone places it

    def __init__(self, number: str, dialler: Dialler, headers: dict[str, str]) -> None:
        self.number = number
        self._dialler = dialler
        self._headers = headers
        self._call: VoiceChannel | None = None
        self._answered = asyncio.Event()

    @classmethod
    def for_conversation(cls, conv: Conversation, dialler: Dialler) -> CallbackLine:
        return cls(conv.contact["phone"], dialler, context_headers(conv))

    # ------------------------------------------------------------------ while waiting

    async def notify(self, text: str) -> None:
        if self._call is not None:
            await self._call.notify(text)

    async def hold(self, music: str | None, language: str) -> None:
        if self._call is not None:
            await self._call.hold(music, language)

    async def agent_joined(self, agent_name: str) -> None:
        """The agent greets the customer themselves once the call is answered."""

    async def from_agent(self, agent_name: str, text: str) -> None:
        """An agent speaks on the call itself."""

    async def from_customer(self) -> CustomerInput:
        """Nothing until the call is placed and answered (nobody can leave a line they are not
        on); then the call's own: ChannelClosed when the customer hangs up."""
        await self._answered.wait()
        if self._call is None:
            raise ChannelClosed("the callback was given up")
        return await self._call.from_customer()

    # ------------------------------------------------------------------ the agent's call

    async def bridge_agent(self, offer_sdp: str) -> AgentLeg:
        """Call the customer (once), then bridge the agent's softphone to them. ValueError
        with the reason when the call could not be made or was not answered."""
        if self._call is None or self._call.call.ended is not None:
            try:
                self._call = await self._dialler.dial(self.number, self._headers)
            except DialFailed as exc:
                why = f"{exc.status} {exc.reason}"
                raise ValueError(f"the customer did not answer: {why}") from None
            except NoMediaWorker as exc:
                raise ValueError(f"no line free to call the customer: {exc}") from None
            self._answered.set()
            log.info("called %s back", self.number)
        return await self._call.bridge_agent(offer_sdp)

    async def transfer_to_phone(self, uri: str, headers: dict[str, str]) -> None:
        raise ValueError("a callback is taken with the desktop's softphone")

    async def end(self, reason: str) -> None:
        if self._call is not None:
            await self._call.end(reason)
        self._answered.set()  # no call was placed: a waiting from_customer learns it is over
