"""Browser calls: the visitor widget's WebRTC leg as a flow channel, with live captions.

The widget's websocket (`ivr.web.chat`) carries the signalling: the browser's SDP offer goes to
the least busy media worker (`MediaGateway.browser_call`), whose answer goes back the same way;
audio then flows between the browser and that worker directly. Over the call the flow speaks
through `BrowserCallChannel`, the phone call's channel under another name, which also tells the
widget what the bot says and what it heard (never a secure answer) and what it is doing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from ivr.channels.voice.channel import VoiceChannel
from ivr.channels.voice.gateway import CallHandle, MediaGateway
from ivr.channels.voice.prompts import PromptAudio
from ivr.flow.channel import CustomerInput, InputSpec, Prompt, TransferTarget

log = logging.getLogger("ivr.voice")

Send = Callable[[dict[str, Any]], Awaitable[None]]
SECRET_SHOWN = "••••"


@dataclass
class BrowserCalls:
    """What the widget's socket needs to place calls: the media workers and prompt audio."""

    gateway: MediaGateway
    prompts: PromptAudio
    end_silence: float
    complete_silence: float
    ice_servers: list[dict[str, object]]

    @property
    def available(self) -> bool:
        return self.gateway.takes_browser_calls

    async def place(self, offer_sdp: str) -> tuple[CallHandle, str]:
        """(the call, the SDP answer); see `MediaGateway.browser_call` for the errors."""
        return await self.gateway.browser_call(offer_sdp)

    def channel(self, call: CallHandle, send: Send) -> BrowserCallChannel:
        return BrowserCallChannel(call, self.prompts, send, self.end_silence, self.complete_silence)


class BrowserCallChannel(VoiceChannel):
    name = "webrtc"
    can_refer = False  # no SIP dialog: an agent with a SIP phone takes it in the desktop

    def __init__(
        self,
        call: CallHandle,
        prompts: PromptAudio,
        send: Send,
        end_silence: float = 0.3,
        complete_silence: float = 0.15,
    ) -> None:
        super().__init__(call, prompts, end_silence, complete_silence)
        self._send = send
        self._pending: set[asyncio.Task[None]] = set()
        call.observers.append(self._on_event)

    def _on_event(self, event: dict[str, Any]) -> None:
        """The media worker's live events, to the widget: what the bot is doing, partial
        transcripts (the worker sends none for secure answers)."""
        kind = event.get("event")
        if kind == "state":
            self._push({"type": "call_state", "state": event.get("state")})
        elif kind == "ended":
            self._push({"type": "call_state", "state": "ended", "reason": event.get("reason")})
        elif kind == "heard":
            self._push(
                {"type": "caption", "who": "customer", "text": event.get("text"), "final": False}
            )

    def _push(self, frame: dict[str, Any]) -> None:
        task = asyncio.ensure_future(self._deliver(frame))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _deliver(self, frame: dict[str, Any]) -> None:
        # The widget may have gone away; the call then ends through its own events.
        with contextlib.suppress(ConnectionError, RuntimeError):
            await self._send(frame)

    async def say(self, prompt: Prompt) -> None:
        await super().say(prompt)
        self._push({"type": "caption", "who": "bot", "text": prompt.text, "final": True})

    async def ask(self, prompt: Prompt, spec: InputSpec) -> CustomerInput | None:
        if prompt.text:
            self._check_open()
            # `secure`: the widget shows keys pressed for this question as dots, or as keys.
            self._push(
                {
                    "type": "caption",
                    "who": "bot",
                    "text": prompt.text,
                    "final": True,
                    "secure": spec.secure,
                }
            )
        answer = await super().ask(prompt, spec)
        if answer is not None:
            shown = SECRET_SHOWN if spec.secure else answer.as_text
            self._push({"type": "caption", "who": "customer", "text": shown, "final": True})
        return answer

    async def transfer(self, target: TransferTarget) -> bool:
        if target.sip_uri:
            # No SIP dialog to REFER: the caller stays with the bot (the flow's failure path).
            log.warning(
                "call %s: a browser call cannot be transferred to %s", self.call.key, target.sip_uri
            )
            return False
        return await super().transfer(target)
