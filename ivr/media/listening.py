"""Listening for one answer on a call: speech detection, DTMF rules and timers.

This is the media worker's equivalent of Asterisk's Read() or FreeSWITCH's play_and_detect_speech,
kept free of pjsua2 and sockets so it can be tested frame by frame. The call feeds it received
frames, digits, the recogniser's partial texts and the moment its prompts finished; it tells the
call (through `ListenerActions`) to hold or stop a prompt (barge-in), to stream an utterance to
the recogniser, and finally what the answer was. Time is passed in, never read, so tests need
no clock.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np

from ivr.media.audio import FRAME_BYTES, FRAME_MS
from ivr.speech.asr.grammar import normalize_phrase

AnswerKind = Literal["speech", "dtmf", "none"]

# Barge-in must stop a prompt within 100 ms of the caller starting to speak: speech starts on 2
# speech-like frames out of the last 3 (20-40 ms after the first one), provided one of them is
# periodic (a vowel or a voiced consonant). Clicks, coughs, breaths and hiss are speech-like to
# the VAD and loud enough, but aperiodic: they never start speech this way, whatever their length
# up to the sustained rule below. Words that open with a hiss ("six", "check") start at their
# vowel, 60-120 ms later; the preroll still gives the recogniser their first consonant.
START_VOICED = 2
START_WINDOW = 3
# Speech-like but aperiodic for half a second (whispering): speech too. Longer than a cough; a
# hiss that starts mid-call gets here too before the background level catches up with it (2 s).
SUSTAINED_VOICED = 25
SUSTAINED_WINDOW = 30
MAX_HOLD_FRAMES = 15  # a prompt held longer than 300 ms for what is not speech plays on...
HOLD_BACKOFF_FRAMES = 50  # ...and is not held again for 1 s
PREROLL_MS = 300  # audio before the decision goes to the recogniser too: first syllables count
# Trailing silence the recogniser gets: enough to close the last word. More only costs time at
# the end: PocketSphinx searches the last frames it was given when the utterance ends, and in
# silence its language-model search is at its widest (end_utt: ~12 ms after 160 ms of silence,
# 50-100 ms after 300 ms, on answers over G.711). Silence withheld is sent after all if the
# caller speaks again.
FEED_TAIL_FRAMES = 8
MIN_RMS = 300.0  # ~ -40 dBFS: quieter frames are line noise whatever the VAD says
# Speech stands out of the line's own background (hiss, hum, a street) by ~10 dB: frames closer
# to it are background whatever the VAD says (it calls a steady hiss speech for a second or more).
NOISE_MARGIN = 3.0
FLOOR_BLOCK = 25  # frames per minimum (0.5 s)...
FLOOR_BLOCKS = 4  # ...the background is the quietest frame of the last 1.5-2 s
PERIODIC = 0.5  # normalised autocorrelation at the pitch period: vowels 0.6-0.95, hiss < 0.3
# The prompt falls silent already at the first speech-like frame that sounds somewhat voiced
# (an onset frame is part silence: it scores lower), and plays on from where it stopped if
# speech is not confirmed within the window: 20 ms sooner for most words ("yes", "hello"),
# while a stray sound costs the prompt a 40-60 ms pause, never its rest. Clicks, coughs and
# steady hiss stay below this (coughs < 0.35; hiss 0.24 typically, above 0.4 in 0.1 % of
# its frames, and on a quiet line hiss is not speech-like at all).
HOLD_PERIODIC = 0.4
# Pitch periods looked for, in samples at 8 kHz: 500 Hz down to 53 Hz (deep voices).
LAG_MIN, LAG_MAX = 16, 150
TEMPLATE = 160  # the last 20 ms, compared with the 20 ms one period earlier
# Pre-emphasis: flattens the spectrum, so that rumble (wind, traffic) and formants, which
# correlate at every short lag, do not pass for a pitch.
PRE_EMPHASIS = 0.95


@dataclass(frozen=True)
class ListenSpec:
    """What the control plane asked for (the `collect` command's `spec`)."""

    speech: bool = True
    dtmf: bool = True
    barge_in: bool = True  # listen while the prompt plays, and cut it when the caller starts
    timeout: float = 5.0  # seconds of nothing after the prompt: no input
    end_silence: float = 0.3  # trailing silence that ends an utterance
    # VoiceXML's completetimeout: the trailing silence that ends an utterance once what the
    # recogniser heard so far is a whole phrase of a closed grammar that no longer phrase
    # continues ("yes" among yes/no). Free speech, <digits> and unfinished phrases wait
    # end_silence (the incompletetimeout).
    complete_silence: float = 0.15
    max_speech: float = 15.0  # an utterance is cut here (a TV in the background...)
    max_digits: int | None = None
    terminator: str | None = "#"
    inter_digit: float = 3.0  # seconds after a key press that end a keyed entry
    max_listen: float = 60.0  # after the prompt, however much noise restarts the clock
    language: str = "en"
    grammar: tuple[str, ...] | None = None  # phrases for the recogniser; None: free speech
    secure: bool = False  # a PIN or the like: no partial transcripts leave the worker

    @classmethod
    def from_message(cls, spec: dict[str, object]) -> ListenSpec:
        known = {k: v for k, v in spec.items() if k in cls.__dataclass_fields__}
        if isinstance(known.get("grammar"), list):
            known["grammar"] = tuple(str(p) for p in known["grammar"])  # type: ignore[union-attr]
        if known.get("complete_silence") is None:  # an older control plane: the default
            known.pop("complete_silence", None)
        return cls(**known)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Answer:
    kind: AnswerKind
    text: str | None = None
    digits: str | None = None
    confidence: float | None = None


class ListenerActions(Protocol):
    """What the listener asks of its call."""

    def barge_in(self) -> None: ...  # stop the prompt now (only bargeable parts)
    def hold_prompt(self) -> None: ...  # silence it now, keeping its place (speech may follow)
    def resume_prompt(self) -> None: ...  # it was not speech: play on from where it stopped
    def start_utterance(self, preroll: list[bytes]) -> None: ...
    def feed_utterance(self, frame: bytes) -> None: ...
    def end_utterance(self) -> None: ...  # ask for the transcript: on_transcript() follows
    def cancel_utterance(self) -> None: ...
    def give_answer(self, answer: Answer) -> None: ...


def rms(frame: bytes) -> float:
    """Root mean square of 16-bit samples (~2 µs for a 20 ms frame)."""
    samples = np.frombuffer(frame, dtype="<i2").astype(np.float32)
    if samples.size == 0:
        return 0.0
    return float(np.sqrt(np.dot(samples, samples) / samples.size))


def periodicity(window: bytes) -> float:
    """How periodic the last 20 ms of `window` (40 ms, the previous frame and this one) are,
    0..1: the highest peak of the normalised autocorrelation at a pitch period. ~25 µs, so it
    is only computed for speech-like frames before speech has started.

    At 8 kHz (what a phone line carries) and pre-emphasised, so that a hum or a strong formant,
    which correlate at every short lag, do not look like a pitch."""
    samples = np.frombuffer(window, dtype="<i2").astype(np.float32)
    x = samples[0::2] + samples[1::2]
    x = x[1:] - PRE_EMPHASIS * x[:-1]
    if x.size < TEMPLATE + LAG_MAX + 1:
        return 0.0
    template = x[-TEMPLATE:]
    # correlate(x, template)[k] compares the template with x[k:k+TEMPLATE]: lag x.size-TEMPLATE-k.
    products = np.correlate(x, template, "valid")[::-1]
    power = np.concatenate(([0.0], np.cumsum(x * x, dtype=np.float64)))
    ends = x.size - np.arange(products.size)
    energies = power[ends] - power[ends - TEMPLATE]
    scores = products / np.sqrt(energies * energies[0] + 1e-3)
    lags = scores[LAG_MIN - 1 : LAG_MAX + 2]
    middle = lags[1:-1]
    peaks = middle[(middle >= lags[:-2]) & (middle > lags[2:])]
    return float(peaks.max()) if peaks.size else 0.0


class NoiseFloor:
    """The line's background level: the quietest 20 ms of the last 1.5-2 s (minimum statistics,
    as codecs' noise estimators do). Speech pauses (stop consonants, breaths) far more often
    than that, so it never lifts the floor; a steady hiss or hum does, within 2 s."""

    def __init__(self) -> None:
        self.minima: deque[float] = deque(maxlen=FLOOR_BLOCKS - 1)
        self.block_min = math.inf
        self.in_block = 0

    def update(self, level: float) -> None:
        self.block_min = min(self.block_min, level)
        self.in_block += 1
        if self.in_block >= FLOOR_BLOCK:
            self.minima.append(self.block_min)
            self.block_min = math.inf
            self.in_block = 0

    @property
    def level(self) -> float:
        low = min(self.block_min, min(self.minima, default=math.inf))
        return 0.0 if low == math.inf else low

    @property
    def threshold(self) -> float:
        """The RMS a frame needs to be speech-like on this line."""
        return max(MIN_RMS, NOISE_MARGIN * self.level)


class SpeechDetector:
    """Speech start from per-frame decisions (WebRTC VAD, energy over the line's background,
    periodicity), and the run of silence since the last speech-like frame."""

    def __init__(self) -> None:
        self.recent: deque[tuple[bool, bool]] = deque(maxlen=SUSTAINED_WINDOW)  # (like, periodic)
        self.preroll: deque[bytes] = deque(maxlen=PREROLL_MS // FRAME_MS)
        self.in_speech = False
        self.silent_run = 0

    def reset(self) -> None:
        self.in_speech = False
        self.silent_run = 0
        self.recent.clear()
        self.preroll.clear()

    def push(self, frame: bytes, voiced: bool) -> Literal["start", "maybe"] | None:
        """`voiced`: speech-like (the VAD says so and the frame stands out of the background).
        "maybe": not speech yet, but this frame may begin it (see HOLD_PERIODIC)."""
        if self.in_speech:
            self.silent_run = 0 if voiced else self.silent_run + 1
            return None
        previous = self.preroll[-1] if self.preroll else bytes(len(frame))
        self.preroll.append(frame)
        # Only speech-like frames are worth the autocorrelation (~25 µs).
        score = periodicity(previous + frame) if voiced else 0.0
        self.recent.append((voiced, score >= PERIODIC))
        last = list(self.recent)[-START_WINDOW:]
        quick = sum(v for v, _ in last) >= START_VOICED and any(p for _, p in last)
        sustained = sum(v for v, _ in self.recent) >= SUSTAINED_VOICED
        if quick or sustained:
            self.in_speech = True
            self.silent_run = 0
            return "start"
        return "maybe" if score >= HOLD_PERIODIC else None


def closed_grammar(grammar: tuple[str, ...] | None) -> tuple[frozenset[str], frozenset[str]]:
    """(phrases, proper beginnings of phrases) of a closed grammar, normalised as recognisers
    write them; two empty sets for free speech and for <digits> (never complete)."""
    if not grammar or any(p.strip().startswith("<") for p in grammar):
        return frozenset(), frozenset()
    phrases = {normalize_phrase(p) for p in grammar} - {""}
    beginnings = set()
    for phrase in phrases:
        words = phrase.split()
        beginnings.update(" ".join(words[:n]) for n in range(1, len(words)))
    return frozenset(phrases), frozenset(beginnings)


class Listener:
    """One answer: armed by `collect`, done when `give_answer` has been called once."""

    def __init__(self, spec: ListenSpec, actions: ListenerActions, now: float) -> None:
        self.spec = spec
        self.actions = actions
        self.detector = SpeechDetector()
        self.end_frames = max(1, round(spec.end_silence * 1000 / FRAME_MS))
        self.complete_frames = min(
            self.end_frames, max(1, round(spec.complete_silence * 1000 / FRAME_MS))
        )
        self.phrases, self.beginnings = closed_grammar(spec.grammar)
        self.hypothesis = ""  # the recogniser's partial text for the current utterance
        self.withheld: list[bytes] = []  # trailing silence not sent to the recogniser (yet)
        self.digits = ""
        self.prompts_done_at: float | None = None  # restarted by utterances that were noise
        self.first_done_at: float | None = None
        self.last_digit_at: float | None = None
        self.speech_started_at: float | None = None
        self.speech_ended_at: float | None = None  # when the last utterance was closed
        self.awaiting_transcript = False
        self.holding = 0  # > 0: the prompt is held; frames left to confirm speech in
        self.held_frames = 0  # how long the prompt has been held for this "maybe"
        self.no_hold = 0  # frames during which no new hold is made (after a long one)
        self.done = False
        self.armed_at = now
        # Set by the call before each frame and key: is what plays now allowed to be cut? A
        # legal notice queued before the question is heard in full, keys and all.
        self.interruptible = True

    # ---------------------------------------------------------------- inputs

    @property
    def listening(self) -> bool:
        """Is caller input taken now? During a prompt only when it may be interrupted."""
        if self.done:
            return False
        return self.prompts_done_at is not None or (self.spec.barge_in and self.interruptible)

    def prompts_finished(self, now: float) -> None:
        if self.prompts_done_at is None:
            self.prompts_done_at = now
        if self.first_done_at is None:
            self.first_done_at = now

    @property
    def takes_speech(self) -> bool:
        """Would a frame be looked at now (for speech to start or to go on)?"""
        return (
            self.listening and self.spec.speech and not self.digits and not self.awaiting_transcript
        )

    @property
    def waiting_for_speech(self) -> bool:
        return self.takes_speech and not self.detector.in_speech

    @property
    def silence_to_end(self) -> int:
        """Frames of silence, counted from the last speech-like one, at which the current
        utterance may end next (0: none in progress): the caller wakes the loop there."""
        if not self.takes_speech or not self.detector.in_speech:
            return 0
        if self.phrases and self.detector.silent_run < self.complete_frames:
            return self.complete_frames
        return self.end_frames

    def frame(self, frame: bytes, voiced: bool, now: float) -> None:
        """A received 20 ms frame; `voiced`: speech-like (`frame_is_voiced`)."""
        if not self.takes_speech:
            return
        event = self.detector.push(frame, voiced)
        if event == "start":
            self.speech_started_at = now
            self.hypothesis = ""
            self.withheld.clear()
            self.holding = 0
            self.actions.barge_in()  # drops what was held too
            self.actions.start_utterance(list(self.detector.preroll))
        elif self.detector.in_speech:
            run = self.detector.silent_run
            if run == 0:
                for quiet in self.withheld:  # a pause inside the answer: the recogniser hears it
                    self.actions.feed_utterance(quiet)
                self.withheld.clear()
            if run <= FEED_TAIL_FRAMES:
                self.actions.feed_utterance(frame)
            else:
                self.withheld.append(frame)
            self._maybe_end(now)
        elif event == "maybe" and self.prompts_done_at is None and not self.no_hold:
            if not self.holding:
                self.actions.hold_prompt()
                self.held_frames = 0
            self.holding = START_WINDOW - 1  # frames in which speech may still be confirmed
        elif self.holding:
            self.holding -= 1
            if not self.holding:
                self.actions.resume_prompt()
        self.no_hold = max(0, self.no_hold - 1)
        if self.holding:
            self.held_frames += 1
            if self.held_frames >= MAX_HOLD_FRAMES:
                # Voiced sound that never becomes speech (music, a TV): the prompt plays on,
                # and is not held again for a while (speech still cuts it).
                self.holding = 0
                self.no_hold = HOLD_BACKOFF_FRAMES
                self.actions.resume_prompt()

    def partial(self, text: str, now: float) -> None:
        """The recogniser's hypothesis so far: a complete answer may end the utterance sooner."""
        if self.takes_speech and self.detector.in_speech:
            self.hypothesis = normalize_phrase(text)
            self._maybe_end(now)

    @property
    def complete(self) -> bool:
        """Is what was heard so far a whole phrase of a closed grammar, and the beginning of no
        longer one? Then nothing else is expected: a short pause ends the answer."""
        return self.hypothesis in self.phrases and self.hypothesis not in self.beginnings

    def digit(self, key: str, now: float) -> None:
        if not self.listening or not self.spec.dtmf:
            return
        if self.detector.in_speech or self.awaiting_transcript:  # keys win over speech
            self.actions.cancel_utterance()
            self.detector.reset()
            self.awaiting_transcript = False
        self.actions.barge_in()
        self.holding = 0  # a held prompt was cut by the key
        self.last_digit_at = now
        if self.spec.terminator and key == self.spec.terminator:
            self._answer(Answer("dtmf", digits=self.digits))
            return
        self.digits += key
        if self.spec.max_digits and len(self.digits) >= self.spec.max_digits:
            self._answer(Answer("dtmf", digits=self.digits))

    def transcript(self, text: str, confidence: float | None, now: float) -> None:
        """The recogniser's final result for the utterance `end_utterance` closed."""
        if self.done or not self.awaiting_transcript:
            return
        self.awaiting_transcript = False
        if text.strip():
            self._answer(Answer("speech", text=text.strip(), confidence=confidence))
        else:
            # A cough or line noise: not an answer. Keep listening; the no-input clock restarts
            # so the caller is not cut off for having coughed.
            self.speech_started_at = None
            if self.prompts_done_at is not None:
                self.prompts_done_at = now

    def tick(self, now: float) -> None:
        """Timers: no input, end of keyed entry, longest utterance."""
        if self.done:
            return
        if self.detector.in_speech and self.speech_started_at is not None:
            if now - self.speech_started_at >= self.spec.max_speech:
                self.detector.reset()
                self._end_utterance(now)
            return
        if self.awaiting_transcript:
            return
        if self.digits and self.last_digit_at is not None:
            if now - self.last_digit_at >= self.spec.inter_digit:
                self._answer(Answer("dtmf", digits=self.digits))
            return
        if self.prompts_done_at is not None and now - self.prompts_done_at >= self.spec.timeout:
            self._answer(Answer("none"))
        elif self.first_done_at is not None and now - self.first_done_at >= self.spec.max_listen:
            self._answer(Answer("none"))  # noise kept restarting the clock: give up, ask again

    def cancel(self) -> None:
        """The call ended or the control plane asked for something else."""
        if self.detector.in_speech or self.awaiting_transcript:
            self.actions.cancel_utterance()
        self._release_prompt()
        self.done = True

    # ---------------------------------------------------------------- internals

    def _maybe_end(self, now: float) -> None:
        run = self.detector.silent_run
        if run >= self.end_frames or (run >= self.complete_frames and self.complete):
            self.detector.reset()
            self._end_utterance(now)

    def _end_utterance(self, now: float) -> None:
        self.withheld.clear()
        self.awaiting_transcript = True
        self.speech_ended_at = now
        self.actions.end_utterance()

    def _answer(self, answer: Answer) -> None:
        if not self.done:
            self._release_prompt()
            self.done = True
            self.actions.give_answer(answer)

    def _release_prompt(self) -> None:
        """A prompt held for speech that was not confirmed plays on (never stays stuck)."""
        if self.holding:
            self.holding = 0
            self.actions.resume_prompt()


class Ear:
    """One call's hearing: the line's background level (followed on every frame, a question
    asked or not) and the call's own VAD, turning received frames into the listener's
    speech-like decisions."""

    def __init__(self, vad: object) -> None:
        self.vad = vad
        self.floor = NoiseFloor()

    def hear(self, listener: Listener | None, frame: bytes, level: float, now: float) -> None:
        """`level`: the frame's RMS (the clock thread measured it already)."""
        threshold = self.floor.threshold  # the background before this frame
        self.floor.update(level)
        if listener is not None and not listener.done:
            voiced = listener.takes_speech and frame_is_voiced(self.vad, frame, level, threshold)
            listener.frame(frame, voiced, now)


def frame_is_voiced(
    vad: object, frame: bytes, level: float | None = None, threshold: float = MIN_RMS
) -> bool:
    """Is the frame speech-like? WebRTC VAD's decision, vetoed for frames quieter than
    `threshold` (`NoiseFloor.threshold`: G.711 noise and steady hiss fool the VAD). `level`:
    the frame's RMS when already known."""
    if len(frame) != FRAME_BYTES:
        return False
    if (rms(frame) if level is None else level) < threshold:
        return False
    return bool(vad.is_speech(frame))  # type: ignore[attr-defined]
