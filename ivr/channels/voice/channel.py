"""A phone call as a flow channel: prompts become audio files, questions become `collect`.

`say` queues its prompt in the media worker and returns at once, so the flow carries on (a
lookup runs while "one moment please" plays); the worker plays queued prompts in order and only
hangs up or transfers once they are heard. `ask` queues its prompt with a listening spec and
waits for the worker's answer: speech (transcribed by a speech worker), keys, or nothing.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from ivr.channels.voice.gateway import CallHandle, browser_leg
from ivr.channels.voice.music import hold_music_file
from ivr.channels.voice.prompts import PromptAudio
from ivr.flow.channel import ChannelClosed, CustomerInput, InputSpec, Prompt, TransferTarget

log = logging.getLogger("ivr.voice")

DIGITS_GRAMMAR = "<digits>"  # the recogniser's built-in rule for spoken digit strings
TRANSFER_TIMEOUT = 30.0  # seconds to wait for the far end's final NOTIFY
HANGUP_GRACE = 10.0  # beyond the queued prompts' length, when ending a call
WAIT_FOR_AGENT_LIMIT = 24 * 3600.0  # [sip] max_call_seconds ends a call long before
LISTEN_SLACK = 90.0  # beyond prompts + no-input time: the worker's own cap is 60 s of noise


class VoiceChannel:
    name = "sip"
    medium = "voice"
    can_refer = True  # to an agent's SIP phone (`ivr.routing.line.VoiceLine`)

    def __init__(
        self,
        call: CallHandle,
        prompts: PromptAudio,
        end_silence: float = 0.3,
        complete_silence: float = 0.15,
    ) -> None:
        self.call = call
        self.prompts = prompts
        self.end_silence = end_silence
        self.complete_silence = complete_silence
        self.queued_seconds = 0.0  # prompt audio sent since the last answer (for hang-up waits)
        self._agent_legs = 0

    async def say(self, prompt: Prompt) -> None:
        self._check_open()
        files, seconds = await self.prompts.files(prompt)
        self.queued_seconds += seconds
        self.call.send("play", files=files, barge_in=prompt.barge_in)

    async def ask(self, prompt: Prompt, spec: InputSpec) -> CustomerInput | None:
        self._check_open()
        files, seconds = await self.prompts.files(prompt) if prompt.text else ([], 0.0)
        request = self.call.next_request()
        self.call.send(
            "collect",
            request=request,
            files=files,
            spec=listen_spec(prompt, spec, self.end_silence, self.complete_silence),
        )
        # Bounded: every prompt queued, the no-input time, and slack for a long utterance.
        limit = self.queued_seconds + seconds + spec.timeout + LISTEN_SLACK
        self.queued_seconds = 0.0
        try:
            event = await self._wait(
                lambda e: e.get("event") == "input" and e.get("request") == request, limit
            )
        except TimeoutError:  # the worker never answered: treat it as no input, ask again
            log.warning("call %s: no answer from the media worker in %.0f s", self.call.key, limit)
            self.call.send("stop")
            return None
        kind = event.get("kind")
        if kind == "speech":
            return CustomerInput(
                kind="speech", text=str(event.get("text") or ""), confidence=event.get("confidence")
            )
        if kind == "dtmf":
            return CustomerInput(kind="dtmf", digits=str(event.get("digits") or ""))
        return None

    async def transfer(self, target: TransferTarget) -> bool:
        if not target.sip_uri:
            # One of our queues: the caller stays on the line, which the queue service holds
            # from now on (music, announcements, then the agent's bridge).
            return True
        try:
            await self.transfer_to_phone(target.sip_uri, target.headers)
        except (ValueError, TimeoutError):
            return False  # logged: the flow takes its failure branch
        return True

    async def transfer_to_phone(self, uri: str, headers: dict[str, str]) -> None:
        """REFER the caller to `uri` with the context in the Refer-To; returns on the far end's
        2xx (the worker then hangs up our leg), else ValueError("486 Busy Here") or
        TimeoutError (`ivr.routing.line.VoiceLine`; a flow's `transfer: {sip: ...}` too)."""
        self._check_open()
        headers = dict(headers)
        headers.setdefault("User-to-User", user_to_user(headers))
        self.call.send("transfer", uri=uri, headers=headers)
        limit = self.queued_seconds + TRANSFER_TIMEOUT
        self.queued_seconds = 0.0
        try:
            event = await self._wait(
                lambda e: e.get("event") == "transfer" and bool(e.get("final")), limit
            )
        except TimeoutError:
            log.warning("call %s: no final NOTIFY for the transfer in %.0f s", self.call.key, limit)
            raise TimeoutError(f"no answer from {uri} within {limit:.0f} s") from None
        status = int(event.get("status", 0))
        if not 200 <= status < 300:
            log.warning("call %s: transfer to %s failed: %s", self.call.key, uri, status)
            raise ValueError(f"{status} {event.get('reason') or ''}".strip())

    # ---------------------------------------------------------------- waiting for an agent
    # (ivr.routing.line.CustomerLine: after a transfer to a queue)

    async def notify(self, text: str) -> None:
        await self.say(Prompt(text))

    async def agent_joined(self, agent_name: str) -> None:
        """Nothing is said: the music stops when the agent's audio is bridged, and the agent
        greets the caller themselves (a prompt would only delay their first words)."""

    async def hold(self, music: str | None, language: str) -> None:
        self._check_open()
        recorded = await self.prompts.recording(music, language) if music else None
        if music and recorded is None:
            log.warning(
                "hold music %r has no recording in %s: playing the built-in", music, language
            )
        path = recorded or await hold_music_file(self.prompts.cache_dir)
        self.call.send("music", files=[str(path)])

    async def bridge_agent(self, offer_sdp: str) -> BridgedAgentLeg:
        self._check_open()
        self._agent_legs += 1
        key = f"{self.call.key}-agent{self._agent_legs}"
        handle, answer = await browser_leg(self.call.worker, key, offer_sdp, bridge=self.call.key)
        return BridgedAgentLeg(handle, answer)

    async def from_agent(self, agent_name: str, text: str) -> None:
        """An agent speaks on the call itself, not through the bot."""

    async def from_customer(self) -> CustomerInput:
        """A key the caller presses while waiting with music (a choice the queue offered);
        what they say goes to the agent on the bridge, not through here. ChannelClosed when
        they hang up (which is how a queue notices abandonment)."""
        event = await self._wait(lambda e: e.get("event") == "dtmf", WAIT_FOR_AGENT_LIMIT)
        return CustomerInput(kind="dtmf", digits=str(event.get("digit", "")))

    async def end(self, reason: str) -> None:
        if self.call.ended is not None:
            return
        self.call.send("hangup")
        try:
            await self._wait(lambda e: False, self.queued_seconds + HANGUP_GRACE)
        except ChannelClosed:
            return
        except TimeoutError:
            self.call.send("hangup", now=True)

    # ---------------------------------------------------------------- internals

    def _check_open(self) -> None:
        if self.call.ended is not None:
            raise ChannelClosed(str(self.call.ended.get("reason", "the caller hung up")))

    async def _wait(self, wanted: Any, limit: float) -> dict[str, Any]:
        """The next event `wanted` accepts; ChannelClosed when the call ends first."""
        async with asyncio.timeout(limit):
            while True:
                event = await self.call.events.get()
                if event.get("event") == "ended":
                    self.call.events.put_nowait(event)  # later waits see it too
                    raise ChannelClosed(str(event.get("reason", "the caller hung up")))
                if wanted(event):
                    return event


class BridgedAgentLeg:
    """The agent's browser leg on the caller's media worker (`ivr.routing.line.AgentLeg`)."""

    def __init__(self, handle: CallHandle, answer_sdp: str) -> None:
        self.handle = handle
        self.answer_sdp = answer_sdp

    def add_candidate(self, candidate: str, mid: str | None, index: int | None) -> None:
        self.handle.send("candidate", candidate=candidate, sdpMid=mid, sdpMLineIndex=index)

    async def ended(self) -> str:
        await self.handle.over.wait()
        assert self.handle.ended is not None
        return str(self.handle.ended.get("reason") or "ended")

    def hang_up(self) -> None:
        self.handle.send("hangup", now=True)


def listen_spec(
    prompt: Prompt, spec: InputSpec, end_silence: float, complete_silence: float = 0.15
) -> dict[str, Any]:
    """The media worker's listening spec for a flow's question."""
    return {
        "speech": "speech" in spec.modes,
        "dtmf": "dtmf" in spec.modes,
        "barge_in": prompt.barge_in,
        "timeout": spec.timeout,
        "end_silence": spec.end_silence or end_silence,
        "complete_silence": spec.complete_silence or complete_silence,
        "max_digits": spec.max_digits,
        "terminator": spec.terminator,
        "language": prompt.language,
        "grammar": grammar_for(spec),
        "secure": spec.secure,
    }


def grammar_for(spec: InputSpec) -> list[str] | None:
    """Phrases to constrain recognition to (far more accurate and ~10x cheaper than free
    speech), or None for free speech."""
    if spec.expect in ("digits", "number", "date"):
        return [DIGITS_GRAMMAR]
    if spec.hints:
        return list(dict.fromkeys(h.lower() for h in spec.hints if h.strip()))
    return None


def user_to_user(headers: dict[str, str]) -> str:
    """RFC 7433 User-to-User: a short context as hex-encoded JSON (PBXs pass it on to their
    ACD). ISDN-style UUI holds 128 octets, so only the conversation id and intent go in."""
    context = {"id": headers.get("X-Conversation-Id", "")}
    if headers.get("X-Intent"):
        context["intent"] = headers["X-Intent"]
    payload = json.dumps(context, separators=(",", ":")).encode()
    if len(payload) > 128:
        payload = json.dumps({"id": context["id"]}, separators=(",", ":")).encode()
    return f"{payload.hex()};encoding=hex"
