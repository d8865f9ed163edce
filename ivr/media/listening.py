"""Listening for one answer on a call: speech detection, DTMF rules and timers.

This is the media worker's equivalent of Asterisk's Read() or FreeSWITCH's play_and_detect_speech,
kept free of pjsua2 and sockets so it can be tested frame by frame. The call feeds it received
frames, digits and the moment its prompts finished; it tells the call (through `ListenerActions`)
to stop a prompt (barge-in), to stream an utterance to the recogniser, and finally what the
answer was. Time is passed in, never read, so tests need no clock.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np

from ivr.media.audio import FRAME_BYTES, FRAME_MS

AnswerKind = Literal["speech", "dtmf", "none"]

# Barge-in must stop a prompt within 100 ms of the caller starting to speak: decide on speech
# after 3 voiced frames out of the last 4 (60-80 ms), never on a single noisy frame.
START_VOICED = 3
START_WINDOW = 4
PREROLL_MS = 300  # audio before the decision goes to the recogniser too: first syllables count
MIN_RMS = 300.0  # ~ -40 dBFS: quieter frames are line noise whatever the VAD says


@dataclass(frozen=True)
class ListenSpec:
    """What the control plane asked for (the `collect` command's `spec`)."""

    speech: bool = True
    dtmf: bool = True
    barge_in: bool = True  # listen while the prompt plays, and cut it when the caller starts
    timeout: float = 5.0  # seconds of nothing after the prompt: no input
    end_silence: float = 0.3  # trailing silence that ends an utterance
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


class SpeechDetector:
    """Speech start/end from per-frame voice decisions (WebRTC VAD + an energy floor)."""

    def __init__(self, end_silence: float) -> None:
        self.end_frames = max(1, round(end_silence * 1000 / FRAME_MS))
        self.recent: deque[bool] = deque(maxlen=START_WINDOW)
        self.preroll: deque[bytes] = deque(maxlen=PREROLL_MS // FRAME_MS)
        self.in_speech = False
        self.silent_run = 0

    def reset(self) -> None:
        self.in_speech = False
        self.silent_run = 0
        self.recent.clear()
        self.preroll.clear()

    def push(self, frame: bytes, voiced: bool) -> Literal["start", "end"] | None:
        if not self.in_speech:
            self.preroll.append(frame)
            self.recent.append(voiced)
            if sum(self.recent) >= START_VOICED:
                self.in_speech = True
                self.silent_run = 0
                return "start"
            return None
        self.silent_run = 0 if voiced else self.silent_run + 1
        if self.silent_run >= self.end_frames:
            self.reset()
            return "end"
        return None


class Listener:
    """One answer: armed by `collect`, done when `give_answer` has been called once."""

    def __init__(self, spec: ListenSpec, actions: ListenerActions, now: float) -> None:
        self.spec = spec
        self.actions = actions
        self.detector = SpeechDetector(spec.end_silence)
        self.digits = ""
        self.prompts_done_at: float | None = None  # restarted by utterances that were noise
        self.first_done_at: float | None = None
        self.last_digit_at: float | None = None
        self.speech_started_at: float | None = None
        self.awaiting_transcript = False
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

    def frame(self, frame: bytes, voiced: bool, now: float) -> None:
        if not self.listening or not self.spec.speech or self.digits or self.awaiting_transcript:
            return
        event = self.detector.push(frame, voiced)
        if event == "start":
            self.speech_started_at = now
            self.actions.barge_in()
            self.actions.start_utterance(list(self.detector.preroll))
        elif self.detector.in_speech:
            self.actions.feed_utterance(frame)
        if event == "end":
            self._end_utterance()

    def digit(self, key: str, now: float) -> None:
        if not self.listening or not self.spec.dtmf:
            return
        if self.detector.in_speech or self.awaiting_transcript:  # keys win over speech
            self.actions.cancel_utterance()
            self.detector.reset()
            self.awaiting_transcript = False
        self.actions.barge_in()
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
                self._end_utterance()
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
        self.done = True

    # ---------------------------------------------------------------- internals

    def _end_utterance(self) -> None:
        self.awaiting_transcript = True
        self.actions.end_utterance()

    def _answer(self, answer: Answer) -> None:
        if not self.done:
            self.done = True
            self.actions.give_answer(answer)


def frame_is_voiced(vad: object, frame: bytes) -> bool:
    """WebRTC VAD's decision, vetoed for quiet frames (G.711 noise fools it)."""
    if len(frame) != FRAME_BYTES or rms(frame) < MIN_RMS:
        return False
    return bool(vad.is_speech(frame))  # type: ignore[attr-defined]
