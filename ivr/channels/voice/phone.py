"""Answering phone calls: which flow takes a call, and the life of its conversation.

The dialled number (the Request-URI's user, then the To header's) picks the flow that lists it
in its `numbers:`, else `[sip] default_flow`. The caller's number becomes the conversation's
contact phone, so a later SMS escalation knows where to write.

`dial` calls a customer back through `[sip] callback_uri`, for the control plane to speak on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from urllib.parse import quote

from ivr.channels.voice.channel import VoiceChannel
from ivr.channels.voice.gateway import CallHandle, MediaGateway, NoMediaWorker
from ivr.channels.voice.prompts import PromptAudio
from ivr.config import SipSettings
from ivr.conversation import Role, Status
from ivr.conversation_service import ConversationService, LiveRun, UnknownFlow
from ivr.flow.channel import ChannelClosed, Prompt
from ivr.flow.problems import FlowError

log = logging.getLogger("ivr.voice")

# An escalation that keeps the call open (`keep_call`) holds it at most this long.
KEEP_CALL_SECONDS = 600.0
CONTINUED_ELSEWHERE = "You can go on in writing now. Goodbye."
# A number to call back: digits and what phone numbers and SIP users carry, nothing that could
# end the URI's user part (@ ; > and spaces would reach the trunk as another address).
CALLABLE = re.compile(r"[+]?[0-9A-Za-z*#._-]{1,64}")


class PhoneService:
    def __init__(
        self,
        sip: SipSettings,
        conversations: ConversationService,
        prompts: PromptAudio,
        end_silence: float,
        complete_silence: float = 0.15,
    ) -> None:
        self.sip = sip
        self.conversations = conversations
        self.prompts = prompts
        self.end_silence = end_silence
        self.complete_silence = complete_silence
        self.active: set[CallHandle] = set()
        self.gateway: MediaGateway | None = None  # set once the media gateway is up (runtime)

    def flow_for(self, *numbers: str) -> str | None:
        flows = self.conversations.flows.current
        if flows is not None:
            for number in numbers:
                flow = flows.flow_for_number(number)
                if flow is not None:
                    return flow.name
        return self.sip.default_flow or None

    async def on_incoming(self, call: CallHandle) -> None:
        details = call.details
        flow = self.flow_for(str(details.get("request_user", "")), str(details.get("to_user", "")))
        if flow is None:
            call.send("reject", code=404, reason="Not Found")
            return
        channel = VoiceChannel(call, self.prompts, self.end_silence, self.complete_silence)
        contact = {"phone": str(details["from_user"])} if details.get("from_user") else {}
        try:
            live = await self.conversations.start(channel, flow, contact=contact)
        except UnknownFlow:
            log.error("call %s: [sip] routes it to flow %r, which does not exist", call.key, flow)
            call.send("reject", code=404, reason="Not Found")
            return
        except FlowError as exc:  # no valid flows loaded at all
            log.error("call %s: cannot answer: %s", call.key, exc)
            call.send("reject", code=503, reason="Service Unavailable")
            return
        call.send("answer")
        log.info(
            "call %s from %s to %s: conversation %s, flow %s",
            call.key,
            details.get("from_user") or "anonymous",
            details.get("request_user"),
            live.conv.id,
            flow,
        )
        self.active.add(call)
        try:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await live.task
            if live.conv.status in (Status.QUEUED, Status.WITH_AGENT) and self._held(live):
                await call.over.wait()  # the queue service has the caller now, until they part
            elif live.conv.status is Status.ESCALATED and (live.conv.handoff or {}).get(
                "keep_call"
            ):
                await self._until_taken(call, channel, live)
        finally:
            self.active.discard(call)
            if call.ended is None:
                # The run is over and the call is still up: its flow failed before hanging up,
                # or the conversation moved to another channel. Never leave a caller in
                # silence: hang up after what is queued.
                call.send("hangup")

    async def dial(self, number: str, headers: dict[str, str]) -> VoiceChannel:
        """Call `number` back (the INVITE carries `headers`, e.g. X-Conversation-Id): the
        channel on the answered call, to say things on and bridge an agent to.

        ValueError when `[sip] callback_uri` is not set or `number` cannot be dialled;
        NoMediaWorker when no line is free; DialFailed when the far end refused (486, 603...)
        or did not answer (408)."""
        template = self.sip.callback_uri
        if not template:
            raise ValueError(
                "[sip] callback_uri is not set: outbound calls need the URI to dial, "
                "like sip:{number}@trunk.example.com"
            )
        if not CALLABLE.fullmatch(number):
            raise ValueError(f"cannot call {number!r} back: not a phone number or SIP user")
        if self.gateway is None:
            raise NoMediaWorker("phone calls are not up")
        # replace, not format: a literal brace elsewhere in the template stays as written.
        uri = template.replace("{number}", quote(number, safe="+*._-"))
        call = await self.gateway.dial(uri, headers)
        log.info("call %s: called %s back", call.key, number)
        return VoiceChannel(call, self.prompts, self.end_silence, self.complete_silence)

    async def _until_taken(self, call: CallHandle, channel: VoiceChannel, live: LiveRun) -> None:
        """`escalate: {keep_call: true}`: the caller stays on the line, with music, until the
        conversation goes on elsewhere (the link is opened, a text answered), then hears that
        it did; or until they hang up, or KEEP_CALL_SECONDS pass."""
        taken = self.conversations.when_taken(live.conv.id)
        over = asyncio.ensure_future(call.over.wait())
        try:
            with contextlib.suppress(ChannelClosed):
                await channel.hold(None, live.conv.language)
            done, _ = await asyncio.wait({taken, over}, timeout=KEEP_CALL_SECONDS,
                                         return_when=asyncio.FIRST_COMPLETED)  # fmt: skip
            if taken in done and call.ended is None:
                now = self.conversations.live(live.conv.id)  # the other channel's, to record on
                if now is not None:
                    now.add_turn(channel.name, Role.BOT, CONTINUED_ELSEWHERE)
                with contextlib.suppress(ChannelClosed):
                    await channel.say(Prompt(CONTINUED_ELSEWHERE, language=live.conv.language))
        finally:
            taken.cancel()
            over.cancel()

    def _held(self, live: LiveRun) -> bool:
        """Does a queue hold this call (a flow's transfer to one of our queues)?"""
        queues = self.conversations.services.queues
        return queues is not None and queues.holds(live.conv.id)
