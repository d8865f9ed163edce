"""One SIP call in the media worker: pjsua2 objects on one side, loop-owned state on the other.

Threads: pjsua2 calls `IvrCall`'s callbacks on its own worker thread and `AudioPort`'s on the
conference clock thread. Those callbacks only copy what they need and hand it to the event loop
(`call_soon_threadsafe`), or move bytes through deques (atomic appends and pops). Everything
else — playback, listening, commands — happens in `CallLeg` on the loop thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import pjsua2 as pj

from ivr.media.audio import FRAME_BYTES, SILENCE
from ivr.media.endpoint import ThreadSafeDelete
from ivr.media.frames import frame_io
from ivr.media.listening import Answer, Listener, ListenSpec, frame_is_voiced
from ivr.media.playback import Playback

if TYPE_CHECKING:
    from ivr.media.worker import MediaWorker

log = logging.getLogger(__name__)

TYPEAHEAD_MAX = 32
RECEIVED_MAX = 100  # 2 s of caller audio waiting for the loop: more means the loop is stuck


class AudioPort(ThreadSafeDelete, pj.AudioMediaPort):
    """A call's audio as 20 ms frames: received ones appended to `received`, outgoing ones
    popped from `outgoing` (silence when there is nothing to say).

    Ports are never deleted, only lent to one call after another (`borrow_port`): pjmedia's
    bridge removes a port at its next tick, and a Python port freed before that is called
    half-destroyed (a crash in ~1 of 500 hung-up calls, measured)."""

    def __init__(self) -> None:
        super().__init__()
        self.received: deque[bytes] = deque(maxlen=1)
        self.outgoing: deque[bytes] = deque()
        self._read, self._write = frame_io()

    def lend(self, received: deque[bytes], outgoing: deque[bytes]) -> None:
        self.received, self.outgoing = received, outgoing  # attribute swaps: atomic

    def give_back(self) -> None:
        self.lend(deque(maxlen=1), deque())
        _spare_ports.append(self)

    def onFrameReceived(self, frame: pj.MediaFrame) -> None:
        try:
            data = self._read(frame.buf) if frame.type == pj.PJMEDIA_FRAME_TYPE_AUDIO else b""
            self.received.append(data if len(data) == FRAME_BYTES else SILENCE)
        except Exception:  # pjsua2 would print and swallow it, per frame
            pass

    def onFrameRequested(self, frame: pj.MediaFrame) -> None:
        try:
            try:
                data = self.outgoing.popleft()
            except IndexError:
                data = SILENCE
            frame.type = pj.PJMEDIA_FRAME_TYPE_AUDIO
            self._write(frame.buf, data)
            frame.size = len(data)
        except Exception:
            pass


_spare_ports: list[AudioPort] = []  # at most the calls a worker ever held at once
_port_numbers = itertools.count(1)


def borrow_port() -> AudioPort:
    if _spare_ports:
        return _spare_ports.pop()
    port = AudioPort()
    fmt = pj.MediaFormatAudio()
    fmt.init(pj.PJMEDIA_FORMAT_PCM, 16000, 1, 20000, 16)
    port.createPort(f"port-{next(_port_numbers)}", fmt)
    return port


class IvrCall(ThreadSafeDelete, pj.Call):
    """pjsua2's call object: its callbacks run on pjsua2's thread and only hand over."""

    def __init__(self, account: pj.Account, call_id: int, worker: MediaWorker, key: str) -> None:
        super().__init__(account, call_id)
        self.worker = worker
        self.key = key

    def _post(self, method: Callable[..., None], *args: Any) -> None:
        self.worker.loop.call_soon_threadsafe(method, self.key, *args)

    def onCallState(self, prm: pj.OnCallStateParam) -> None:
        try:
            info = self.getInfo()
            self._post(self.worker.on_call_state, info.state, info.lastStatusCode, info.lastReason)
        except Exception:
            log.exception("call state callback")

    def onCallMediaState(self, prm: pj.OnCallMediaStateParam) -> None:
        self._post(self.worker.on_media_state)

    def onDtmfDigit(self, prm: pj.OnDtmfDigitParam) -> None:
        self._post(self.worker.on_digit, prm.digit, prm.method)

    def onCallTransferStatus(self, prm: pj.OnCallTransferStatusParam) -> None:
        self._post(self.worker.on_transfer_status, prm.statusCode, prm.reason, prm.finalNotify)


@dataclass
class CallLeg:
    """The loop's view of one call: what it plays, what it listens for, what comes next."""

    key: str
    call: IvrCall
    worker: MediaWorker
    received: deque[bytes] = field(default_factory=lambda: deque(maxlen=RECEIVED_MAX))
    outgoing: deque[bytes] = field(default_factory=deque)
    port: AudioPort | None = None
    answered: bool = False
    ended: bool = False
    listener: Listener | None = None
    request: int | None = None  # the collect request the listener answers
    after_playback: list[Callable[[], None]] = field(default_factory=list)
    utterance: UtteranceStream | None = None
    started_at: float = 0.0
    hanging_up: bool = False
    typeahead: list[str] = field(default_factory=list)  # keys pressed between questions
    swallow: tuple[str, float] = ("", 0.0)  # a terminator to ignore until a moment

    def __post_init__(self) -> None:
        self.playback = Playback(self.outgoing)

    # ---------------------------------------------------------------- media

    def connect_audio(self) -> None:
        """Wire our port to the call's audio once media is active (again after re-INVITEs)."""
        info = self.call.getInfo()
        for index, media in enumerate(info.media):
            if media.type != pj.PJMEDIA_TYPE_AUDIO or media.status != pj.PJSUA_CALL_MEDIA_ACTIVE:
                continue
            call_audio = self.call.getAudioMedia(index)
            if self.port is None:
                self.port = borrow_port()
                self.port.lend(self.received, self.outgoing)
            call_audio.startTransmit(self.port)
            self.port.startTransmit(call_audio)
            return

    def tick(self, now: float, vad: Any) -> None:
        """Every loop tick: caller audio into the listener, our audio out, timers."""
        listener = self.listener
        while self.received:
            frame = self.received.popleft()
            if listener is not None and not listener.done:
                listener.interruptible = self.interruptible
                listener.frame(frame, frame_is_voiced(vad, frame), now)
        self.playback.feed()
        if listener is not None and not listener.done:
            if not self.playback.playing:
                listener.prompts_finished(now)
            listener.tick(now)
        if not self.playback.playing and self.after_playback:
            actions, self.after_playback = self.after_playback, []
            for action in actions:
                action()

    @property
    def interruptible(self) -> bool:
        """May the caller cut what is playing now (nothing playing counts as yes)?"""
        return not self.playback.playing or self.playback.bargeable_now

    def digit(self, key: str, now: float) -> None:
        terminator, until = self.swallow
        if key == terminator and now <= until:
            # "12345678#" to an 8-digit question: the entry was complete at the 8th key, and
            # the habitual # must not become an empty answer to the next question.
            self.swallow = ("", 0.0)
            return
        listener = self.listener
        if listener is None or listener.done:
            # Type-ahead: a caller who knows the menu keys before the question is asked. Kept
            # unless a notice that may not be interrupted is playing, or the keys are the
            # overflow of a secret (a 6-key PIN for a 4-key question must not be stored as
            # the answer to the next one).
            after_secret = listener is not None and listener.spec.secure
            if self.interruptible and not after_secret and len(self.typeahead) < TYPEAHEAD_MAX:
                self.typeahead.append(key)
            return
        listener.interruptible = self.interruptible
        listener.digit(key, now)

    # ---------------------------------------------------------------- listener actions

    def barge_in(self) -> None:
        if self.playback.barge_in():
            self.worker.emit({"event": "barge_in", "call": self.key})

    def start_utterance(self, preroll: list[bytes]) -> None:
        assert self.listener is not None
        spec = self.listener.spec
        self.utterance = UtteranceStream(self, spec.language, spec.grammar, spec.secure)
        for frame in preroll:
            self.utterance.feed(frame)

    def feed_utterance(self, frame: bytes) -> None:
        if self.utterance is not None:
            self.utterance.feed(frame)

    def end_utterance(self) -> None:
        if self.utterance is not None:
            self.utterance.finish()

    def cancel_utterance(self) -> None:
        if self.utterance is not None:
            self.utterance.cancel()
            self.utterance = None

    def give_answer(self, answer: Answer) -> None:
        self.utterance = None
        spec = self.listener.spec if self.listener is not None else None
        if (
            spec is not None
            and answer.kind == "dtmf"
            and spec.terminator
            and spec.max_digits
            and len(answer.digits or "") >= spec.max_digits
        ):
            self.swallow = (spec.terminator, self.worker.loop.time() + spec.inter_digit)
        self.worker.emit(
            {
                "event": "input",
                "call": self.key,
                "request": self.request,
                "kind": answer.kind,
                "text": answer.text,
                "digits": answer.digits,
                "confidence": answer.confidence,
            }
        )

    def transcript(self, text: str, confidence: float | None) -> None:
        if self.listener is not None:
            self.listener.transcript(text, confidence, self.worker.loop.time())

    # ---------------------------------------------------------------- commands

    def listen(self, request: int, spec: ListenSpec) -> None:
        if self.listener is not None:
            self.listener.cancel()
        self.request = request
        now = self.worker.loop.time()
        self.listener = Listener(spec, self, now)
        keys, self.typeahead = self.typeahead, []
        for key in keys:
            self.digit(key, now)

    def stop(self) -> None:
        if self.listener is not None:
            self.listener.cancel()
            self.listener = None
        self.playback.stop()

    def transfer(self, uri: str, headers: dict[str, str]) -> None:
        """Blind transfer: REFER with the context in the Refer-To URI's headers (pjsip copies
        those into the INVITE the transferee sends; headers of the REFER itself go nowhere)."""
        target = refer_to(uri, headers)
        self.call.xfer(target, pj.CallOpParam(True))

    def hangup(self, code: int = 480, reason: str = "") -> None:
        """BYE for an answered call; `code` as the final response to one not answered yet."""
        if self.ended or self.hanging_up:
            return
        self.hanging_up = True
        prm = pj.CallOpParam(True)
        if not self.answered:
            prm.statusCode = code
            if reason:
                prm.reason = reason
        with contextlib.suppress(pj.Error):
            self.call.hangup(prm)

    def release(self) -> None:
        """Drop the pjsua2 objects (on the loop thread, which is registered)."""
        self.ended = True
        if self.listener is not None:
            self.listener.cancel()
        self.playback.stop()
        if self.port is not None:
            self.port.give_back()
            self.port = None


def refer_to(uri: str, headers: dict[str, str]) -> str:
    """`<sip:agent@pbx?X-Conversation-Id=abc&User-to-User=...>` with the values escaped."""
    bare = uri.strip()
    if bare.startswith("<") and bare.endswith(">"):
        bare = bare[1:-1]
    if not headers:
        return f"<{bare}>"
    joined = "&".join(
        f"{quote(name, safe='-')}={quote(value, safe='')}" for name, value in headers.items()
    )
    separator = "&" if "?" in bare else "?"
    return f"<{bare}{separator}{joined}>"


class UtteranceStream:
    """One utterance on its way to the speech worker. Frames arrive before the recogniser's
    connection is ready; they wait in a list (a few hundred ms at most) and are sent in order."""

    def __init__(
        self, leg: CallLeg, language: str, grammar: tuple[str, ...] | None, secure: bool
    ) -> None:
        self.leg = leg
        self.pending: list[bytes] = []
        self.utterance: Any = None
        self.cancelled = False
        self.task = leg.worker.spawn(self._run(language, grammar, secure))
        self.finishing = False

    def _partial(self, text: str) -> None:
        """What the recogniser has so far: for live captions (never for secure answers)."""
        if not self.cancelled and text:
            self.leg.worker.emit({"event": "heard", "call": self.leg.key, "text": text})

    async def _run(self, language: str, grammar: tuple[str, ...] | None, secure: bool) -> None:
        try:
            client = await self.leg.worker.asr_client(self.leg)
            self.utterance = await client.recognize(
                language,
                list(grammar) if grammar is not None else None,
                on_partial=None if secure else self._partial,
            )
            for frame in self.pending:
                self.utterance.feed(frame)
            self.pending.clear()
        except Exception as exc:
            # No recogniser: finish() reports an empty transcript, so the question goes on
            # (keys still work, and no input ends it) instead of waiting for ever.
            log.warning("call %s: speech recognition unavailable: %s", self.leg.key, exc)
            self.utterance = None
            self.pending.clear()

    def feed(self, frame: bytes) -> None:
        if self.utterance is not None:
            try:
                self.utterance.feed(frame)
            except Exception:  # the worker went away mid-utterance: finish() tells the listener
                self.utterance = None
        elif not self.task.done():
            self.pending.append(frame)

    def finish(self) -> None:
        async def final() -> None:
            await asyncio.gather(self.task, return_exceptions=True)
            text, confidence = "", None
            if self.utterance is not None and not self.cancelled:
                try:
                    text, confidence = await self.utterance.finish(timeout=5.0)
                except Exception as exc:
                    log.warning("call %s: no transcript: %s", self.leg.key, exc)
            if not self.cancelled:
                self.leg.transcript(text, confidence)

        self.leg.worker.spawn(final())

    def cancel(self) -> None:
        self.cancelled = True

        async def drop() -> None:
            with contextlib.suppress(Exception):
                await self.task
                if self.utterance is not None:
                    await self.utterance.cancel()

        self.leg.worker.spawn(drop())
