"""One voice leg in the media worker, whatever carries its audio: the shared voice pipeline.

A phone call (pjsua2, `ivr.media.call`) and a browser call (aiortc, `ivr.media.webrtc`) differ
only at the edge: how 20 ms frames of 16 kHz PCM come in (`received`) and go out (`outgoing`),
and how the leg hangs up or transfers. What happens between — prompts and barge-in, speech and
key detection, the utterance sent to a speech worker, the answer reported to the control
plane — is this class, on the loop thread, the same for both.

Wake-up hints (`WakeHints`): the loop looks at received audio every 20 ms, at a moment unrelated
to when frames arrive. For the two decisions where 10-20 ms count (speech starting: hold or cut
the prompt; the answer ended) whoever delivers frames checks the hints as each frame arrives and
gets `tick` run at once when a decision may be due (see `ivr.media.call.AudioPort`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ivr.media.bridge import Relay
from ivr.media.listening import MIN_RMS, Answer, Ear, Listener, ListenSpec
from ivr.media.playback import Playback, Source

if TYPE_CHECKING:
    from ivr.media.worker import MediaWorker

log = logging.getLogger("ivr.media")

TYPEAHEAD_MAX = 32
RECEIVED_MAX = 100  # 2 s of caller audio waiting for the loop: more means the loop is stuck

Received = tuple[bytes, float]  # a frame and its RMS


class WakeHints:
    """When a received frame should get the leg's `tick` run now rather than at the next tick.

    Set by the loop (plain attribute writes; read on whatever thread delivers frames): with
    `on_start`, a frame at or above `loud_rms` is due (speech may be starting); with
    `after_quiet` = n, the n-th quiet frame in a row is (the answer may be over). Each hint
    fires once and is set again by the loop if still wanted. A wrong hint costs one needless
    look; a missed one leaves the decision to the next tick."""

    __slots__ = ("_quiet_run", "after_quiet", "loud_rms", "on_start")

    def __init__(self) -> None:
        self.loud_rms = MIN_RMS
        self.on_start = False
        self.after_quiet = 0
        self._quiet_run = 0

    def due(self, level: float) -> bool:
        loud = level >= self.loud_rms
        self._quiet_run = 0 if loud else self._quiet_run + 1
        if (self.on_start and loud) or (self.after_quiet and self._quiet_run == self.after_quiet):
            self.on_start = False
            self.after_quiet = 0
            return True
        return False

    def clear(self) -> None:
        self.on_start = False
        self.after_quiet = 0


@dataclass(eq=False)
class VoiceLeg:
    """The loop's view of one call: what it plays, what it listens for, what comes next.

    Subclasses bring the transport: `hangup`, `transfer`, `release`, and optionally
    `watch_media` (called about once a second to notice a caller who went silent for good)."""

    key: str
    worker: MediaWorker
    received: deque[Received] = field(default_factory=lambda: deque(maxlen=RECEIVED_MAX))
    outgoing: deque[bytes] = field(default_factory=deque)
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
    hints: WakeHints = field(default_factory=WakeHints)
    end_reason: str = ""  # why we hung up, for the record (else the transport's reason)
    held_at: float | None = None  # when the prompt was held for what may be speech
    media_check_at: float = 0.0  # when `watch_media` is due next
    # Browser callers see what the bot is doing ("speaking", "listening"); phone callers
    # cannot, so SIP legs do not report it (one event less per prompt).
    report_state: bool = False
    # Bridged to another leg (`bridged_to`): what this leg receives goes to `relay_out`, which
    # the other leg plays; no listener hears it (the bot is out of the conversation).
    bridged_to: str | None = None
    relay_out: Relay | None = None
    serves: str | None = None  # an agent's leg: the caller's leg it was made for, and ends with
    hears_peer: bool = False  # bridged and the other leg connected: its voice replaced the music
    music: Source | None = None  # hold music, kept while bridged (back if the other leg goes)
    _state: str = ""

    def __post_init__(self) -> None:
        self.playback = Playback(self.outgoing)

    # ---------------------------------------------------------------- transport (subclasses)

    def answer(self, now: float) -> None:
        self.answered = True
        self.started_at = now

    def hangup(self, code: int = 480, reason: str = "", because: str = "") -> None:
        raise NotImplementedError

    def transfer(self, uri: str, headers: dict[str, str]) -> None:
        raise NotImplementedError

    def release(self) -> None:
        """The call is over: stop listening and playing (subclasses drop their transport)."""
        self.ended = True
        if self.listener is not None:
            self.listener.cancel()
        self.playback.stop()

    def watch_media(self, now: float, timeout: float) -> None:
        """Hang up a caller whose media stopped for `timeout` seconds (0: never)."""

    # ---------------------------------------------------------------- media

    def tick(self, now: float) -> None:
        """Every loop tick (and when a frame's hint is due): caller audio into the listener,
        our audio out, timers."""
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
        if self.report_state:
            self._report_state()

    def hear(self, now: float) -> None:
        """Received frames into the listener, then the wake-up hints for the next ones."""
        relay = self.relay_out
        if relay is not None:  # bridged: the other leg plays what this one hears
            while self.received:
                relay.push(self.received.popleft()[0])
            self.hints.clear()
            return
        listener = self.listener
        while self.received:
            frame, level = self.received.popleft()
            if listener is not None:
                listener.interruptible = self.interruptible
            self.ear.hear(listener, frame, level, now)
        hints = self.hints
        hints.loud_rms = self.ear.floor.threshold
        if listener is not None and not listener.done:
            hints.on_start = listener.waiting_for_speech
            hints.after_quiet = listener.silence_to_end
        else:
            hints.clear()

    def _report_state(self) -> None:
        listener = self.listener
        if self.playback.playing and self.playback.held is None:
            state = "speaking"
        elif listener is not None and not listener.done:
            state = "listening"
        else:
            state = "waiting"  # between turns: the bot is thinking or looking something up
        if state != self._state:
            self._state = state
            self.worker.emit({"event": "state", "call": self.key, "state": state})

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
        if (listener is None or listener.done) and self.music is not None:
            # Waiting for an agent (hold music): keys are a choice offered in the queue
            # (a callback, going on by text), for the control plane.
            self.worker.emit({"event": "dtmf", "call": self.key, "digit": key})
            return
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


class UtteranceStream:
    """One utterance on its way to the speech worker. Frames arrive before the recogniser's
    connection is ready; they wait in a list (a few hundred ms at most) and are sent in order."""

    def __init__(
        self, leg: VoiceLeg, language: str, grammar: tuple[str, ...] | None, secure: bool
    ) -> None:
        self.leg = leg
        self.secure = secure
        self.pending: list[bytes] = []
        self.utterance: Any = None
        self.cancelled = False
        self.task = leg.worker.spawn(self._run(language, grammar))
        self.finishing = False

    def _partial(self, text: str) -> None:
        """What the recogniser has so far (see `VoiceLeg.heard`)."""
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
