"""One SIP call in the media worker: pjsua2 objects on one side, loop-owned state on the other.

Threads: pjsua2 calls `IvrCall`'s callbacks on its own worker thread and `AudioPort`'s on the
conference clock thread. Those callbacks only copy what they need and hand it to the event loop
(`call_soon_threadsafe`), or move bytes through deques (atomic appends and pops). Everything
else — playback, listening, commands — happens in `CallLeg` on the loop thread.

The loop looks at received audio every 20 ms, at a moment unrelated to the bridge's clock. For
the two decisions where 10-20 ms count (speech starting: hold or cut the prompt; the answer
ended) the clock thread wakes the loop itself, as the frame arrives: it measures each frame's
level (~3 µs) and posts a wake-up when a frame is loud or quiet enough that a decision may be
due. That is a post or two per decision, not one per frame (a post costs ~0.15 % of a core per
call at 50 a second); the decisions themselves stay on the loop, in `Listener`.
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
from ivr.media.listening import (
    MIN_RMS,
    Answer,
    Ear,
    Listener,
    ListenSpec,
    rms,
)
from ivr.media.playback import Playback

if TYPE_CHECKING:
    from ivr.media.worker import MediaWorker

log = logging.getLogger(__name__)

TYPEAHEAD_MAX = 32
RECEIVED_MAX = 100  # 2 s of caller audio waiting for the loop: more means the loop is stuck

Received = tuple[bytes, float]  # a frame and its RMS


class AudioPort(ThreadSafeDelete, pj.AudioMediaPort):
    """A call's audio as 20 ms frames: received ones appended to `received` with their level,
    outgoing ones popped from `outgoing` (silence when there is nothing to say).

    Wake-up hints, set by the loop (plain attribute writes, read here on the clock thread): with
    `wake_on_start`, a frame at or above `loud_rms` wakes the loop (speech may be starting: the
    prompt is held or cut); with `wake_after_quiet` = n, the n-th quiet frame in a row does (the
    answer may be over). Each hint fires once and is set again by the loop if still wanted. A
    wrong hint costs one needless look; a missed one leaves the decision to the next tick.

    Ports are never deleted, only lent to one call after another (`borrow_port`): pjmedia's
    bridge removes a port at its next tick, and a Python port freed before that is called
    half-destroyed (a crash in ~1 of 500 hung-up calls, measured)."""

    def __init__(self) -> None:
        super().__init__()
        self.received: deque[Received] = deque(maxlen=1)
        self.outgoing: deque[bytes] = deque()
        self._read, self._write = frame_io()
        self.wake: Callable[[], None] | None = None
        self.loud_rms = MIN_RMS
        self.wake_on_start = False
        self.wake_after_quiet = 0
        self._quiet_run = 0

    def lend(
        self,
        received: deque[Received],
        outgoing: deque[bytes],
        wake: Callable[[], None] | None = None,
    ) -> None:
        self.wake = None  # first: no hint for the old call fires on the new one's loop
        self.wake_on_start = False
        self.wake_after_quiet = 0
        self.received, self.outgoing = received, outgoing  # attribute swaps: atomic
        self.wake = wake

    def give_back(self) -> None:
        self.lend(deque(maxlen=1), deque())
        _spare_ports.append(self)

    def onFrameReceived(self, frame: pj.MediaFrame) -> None:
        try:
            data = self._read(frame.buf) if frame.type == pj.PJMEDIA_FRAME_TYPE_AUDIO else b""
            if len(data) != FRAME_BYTES:
                data = SILENCE
            level = rms(data)
            self.received.append((data, level))
            wake = self.wake
            if wake is None:
                return
            loud = level >= self.loud_rms
            self._quiet_run = 0 if loud else self._quiet_run + 1
            if (self.wake_on_start and loud) or (
                self.wake_after_quiet and self._quiet_run == self.wake_after_quiet
            ):
                self.wake_on_start = False
                self.wake_after_quiet = 0
                wake()
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
    received: deque[Received] = field(default_factory=lambda: deque(maxlen=RECEIVED_MAX))
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
    ear: Ear = field(default_factory=lambda: Ear(None))  # the worker gives it the call's VAD
    wake: Callable[[], None] | None = None  # the clock thread's way to get `tick` run now
    # RTP inactivity: the stream we expect the caller's RTP on (None: on hold, or media not
    # up yet, or a recvonly caller), its packet count at the last look, and when it last grew.
    audio_index: int | None = None
    rtp_seen: int = 0
    rtp_heard_at: float = 0.0
    rtp_check_at: float = 0.0
    jitter_ms: int | None = None  # the server's jitter buffer delay at the last look
    end_reason: str = ""  # why we hung up, for the record (else the SIP side's reason)
    held_at: float | None = None  # when the prompt was held for what may be speech

    def __post_init__(self) -> None:
        self.playback = Playback(self.outgoing)

    # ---------------------------------------------------------------- media

    def connect_audio(self, now: float) -> None:
        """Wire our port to the call's audio once media is active (again after re-INVITEs)."""
        info = self.call.getInfo()
        self.audio_index = None
        for index, media in enumerate(info.media):
            if media.type != pj.PJMEDIA_TYPE_AUDIO or media.status != pj.PJSUA_CALL_MEDIA_ACTIVE:
                continue  # on hold (sendonly/inactive): no RTP to expect either
            call_audio = self.call.getAudioMedia(index)
            if self.port is None:
                self.port = borrow_port()
                self.port.lend(self.received, self.outgoing, self.wake)
            call_audio.startTransmit(self.port)
            self.port.startTransmit(call_audio)
            if media.dir & pj.PJMEDIA_DIR_DECODING:  # the caller sends (not recvonly)
                self.audio_index = index
                self.rtp_seen = 0  # a new stream counts from 0; an old one has grown anyway
                self.rtp_heard_at = now
            return

    def tick(self, now: float) -> None:
        """Every loop tick (and when the clock thread wakes us): caller audio into the
        listener, our audio out, timers."""
        self.hear(now)
        self.playback.feed()
        listener = self.listener
        if listener is not None and not listener.done:
            if not self.playback.playing:
                listener.prompts_finished(now)
            listener.tick(now)
        if not self.playback.playing and self.after_playback:
            actions, self.after_playback = self.after_playback, []
            for action in actions:
                action()

    def hear(self, now: float) -> None:
        """Received frames into the listener, then the clock thread's wake-up hints."""
        listener = self.listener
        while self.received:
            frame, level = self.received.popleft()
            if listener is not None:
                listener.interruptible = self.interruptible
            self.ear.hear(listener, frame, level, now)
        port = self.port
        if port is not None:
            port.loud_rms = self.ear.floor.threshold
            if listener is not None and not listener.done:
                port.wake_on_start = listener.waiting_for_speech
                port.wake_after_quiet = listener.silence_to_end
            else:
                port.wake_on_start = False
                port.wake_after_quiet = 0

    def watch_rtp(self, now: float, timeout: float) -> None:
        """Asterisk's rtptimeout: hang up when the caller has sent no RTP (nor RTCP) for
        `timeout` seconds: a dead phone, a lost NAT binding or a lost BYE. Calls on hold and
        callers that only listen are exempt (`audio_index` is None)."""
        if self.audio_index is None or not self.answered or self.hanging_up or self.ended:
            return
        try:
            stat = self.call.getStreamStat(self.audio_index)
        except pj.Error:
            return  # the stream is being replaced (re-INVITE): look again next time
        self.jitter_ms = int(stat.jbuf.avgDelayMsec)
        # RTCP reports count too: a caller with silence suppression sends no RTP while quiet.
        seen = int(stat.rtcp.rxStat.pkt) + int(stat.rtcp.txStat.updateCount)
        if seen != self.rtp_seen:
            self.rtp_seen = seen
            self.rtp_heard_at = now
        elif timeout and now - self.rtp_heard_at >= timeout:
            log.warning("call %s: no RTP from the caller for %.0f s, hanging up", self.key, timeout)
            self.hangup(because=f"no RTP from the caller for {timeout:g} s")

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
        held_at, self.held_at = self.held_at, None
        if self.playback.barge_in():
            # `at`: when the prompt fell silent here (the bench compares it with the caller's
            # clock): when it was held for this speech, or now.
            at = held_at if held_at is not None else self.worker.loop.time()
            self.worker.emit({"event": "barge_in", "call": self.key, "at": at})

    def hold_prompt(self) -> None:
        if self.playback.hold():
            self.held_at = self.worker.loop.time()

    def resume_prompt(self) -> None:
        self.held_at = None
        self.playback.resume()

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
                # when the utterance was judged over (for the bench's breakdown of a turn)
                "ended_at": self.listener.speech_ended_at if self.listener is not None else None,
            }
        )

    def transcript(self, text: str, confidence: float | None) -> None:
        if self.listener is not None:
            self.listener.transcript(text, confidence, self.worker.loop.time())

    def heard(self, text: str, secure: bool) -> None:
        """A partial transcript: it may end the answer sooner (a complete grammar phrase), and
        goes to the control plane for live captions (never for secure answers)."""
        if self.listener is not None:
            self.listener.partial(text, self.worker.loop.time())
        if not secure:
            self.worker.emit({"event": "heard", "call": self.key, "text": text})

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

    def hangup(self, code: int = 480, reason: str = "", because: str = "") -> None:
        """BYE for an answered call; `code` as the final response to one not answered yet.
        `because`: why, for the conversation's record (the `ended` event's reason)."""
        if self.ended or self.hanging_up:
            return
        self.hanging_up = True
        self.end_reason = because
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
        self.secure = secure
        self.pending: list[bytes] = []
        self.utterance: Any = None
        self.cancelled = False
        self.task = leg.worker.spawn(self._run(language, grammar))
        self.finishing = False

    def _partial(self, text: str) -> None:
        """What the recogniser has so far (see `CallLeg.heard`)."""
        if not self.cancelled and text:
            self.leg.heard(text, self.secure)

    async def _run(self, language: str, grammar: tuple[str, ...] | None) -> None:
        try:
            client = await self.leg.worker.asr_client(self.leg)
            self.utterance = await client.recognize(
                language,
                list(grammar) if grammar is not None else None,
                on_partial=self._partial,
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
