"""Text to a 16 kHz prompt file with pyttsx3/espeak-ng, and recorded prompts to the same format.

pyttsx3's rules, learnt on this machine (research: speech-engines-detail.md §3):
- its engine is one per process (`init()` returns a cached one; espeak is a C global) and is not
  thread-safe: two threads sharing it deadlocked or lost prompts. So the process has one
  dedicated thread for it (`_Synthesiser`, shared by every `Renderer`), and every pyttsx3 call
  happens there, one job after the other;
- one `save_to_file` per `runAndWait` (queuing several writes only the last file), and never
  `say()` (it would overwrite the last saved file);
- its espeak driver prints "Audio saved to ..." on stdout, which in our workers is a log: that
  `print` is routed to our logger at DEBUG instead;
- an unknown voice name is silently ignored (the previous voice keeps speaking), so voice names
  are resolved against espeak-ng's list first and refused when nothing matches;
- output is 22.05 kHz mono: resampled to 16 kHz with soxr (high quality).
A render takes ~10 ms (a `time.sleep(0.01)` in the driver loop, 3 ms CPU for 10 words).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import os
import tempfile
import threading
import time
import wave
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ivr.speech.langmap import check_language, parse_language_map
from ivr.speech.tts.cache import (
    SAMPLE_RATE,
    cache_path,
    recording_cache_path,
    wav_seconds,
    write_wav_atomic,
)

log = logging.getLogger(__name__)

DEFAULT_RATE = 170  # words per minute; espeak-ng's own default is 175, pyttsx3's 200
RENDER_TIMEOUT = 30.0  # one render takes ~10 ms; this long means espeak is stuck
MAX_TEXT_CHARS = 5000


class TtsError(Exception):
    """A prompt could not be rendered or converted."""


class RendererStuck(TtsError):
    """pyttsx3 did not finish a render in time: the process should be restarted."""


class AudioFormatError(TtsError, ValueError):
    """A file that is not a WAV we can read (PCM, 8/16/24/32-bit)."""


@dataclass(frozen=True)
class Rendered:
    path: Path
    seconds: float
    cached: bool


def parse_voices(text: str) -> dict[str, str]:
    """`"en=en-us, ko=ko"` -> {"en": "en-us", "ko": "ko"}; empty text: no overrides."""
    return parse_language_map(text, "voice")


# ---------------------------------------------------------------------- audio files


def read_wav(path: str | os.PathLike[str]) -> tuple[np.ndarray, int]:
    """Samples as float32 in [-1, 1), shape (frames, channels), and the sample rate."""
    try:
        with wave.open(os.fspath(path), "rb") as wav:
            channels, width, rate = wav.getnchannels(), wav.getsampwidth(), wav.getframerate()
            raw = wav.readframes(wav.getnframes())
    except (wave.Error, EOFError) as exc:
        raise AudioFormatError(
            f"{path}: not a WAV file we can read ({exc or 'truncated'}); "
            "expected PCM WAV, 8/16/24/32-bit"
        ) from None
    if width == 1:  # 8-bit WAV is unsigned
        samples = (np.frombuffer(raw, np.uint8).astype(np.float32) - 128.0) / 128.0
    elif width == 2:
        samples = np.frombuffer(raw, "<i2").astype(np.float32) / 32768.0
    elif width == 3:
        b = np.frombuffer(raw, np.uint8).reshape(-1, 3).astype(np.int32)
        ints = (b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)) << 8 >> 8  # sign-extend 24 bits
        samples = ints.astype(np.float32) / 8388608.0
    elif width == 4:
        samples = np.frombuffer(raw, "<i4").astype(np.float32) / 2147483648.0
    else:
        raise AudioFormatError(f"{path}: {width * 8}-bit samples are not supported")
    if not samples.size or not rate:
        raise AudioFormatError(f"{path}: the WAV file holds no audio")
    return samples.reshape(-1, channels), rate


def to_16k_mono(samples: np.ndarray, rate: int) -> bytes:
    """float32 (frames, channels) at `rate` -> 16 kHz mono s16le bytes."""
    import soxr

    mono = samples.mean(axis=1, dtype=np.float32) if samples.shape[1] > 1 else samples[:, 0]
    if rate != SAMPLE_RATE:
        mono = soxr.resample(mono, rate, SAMPLE_RATE, quality="HQ")
    return np.clip(np.round(mono * 32767.0), -32768, 32767).astype("<i2").tobytes()


def normalize_wav(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> float:
    """Convert the WAV `src` (any rate, mono or stereo, 8/16/24/32-bit PCM) to 16 kHz mono s16
    at `dst` (written atomically). Returns its length in seconds. AudioFormatError for a file
    that is not such a WAV, OSError when it cannot be read."""
    samples, rate = read_wav(src)
    pcm = to_16k_mono(samples, rate)
    write_wav_atomic(Path(dst), pcm)
    return len(pcm) / 2 / SAMPLE_RATE


def convert_recording(cache_dir: str | os.PathLike[str], source: str) -> Rendered:
    """The normalised copy of the recorded prompt `source` (an absolute path) in the cache."""
    if not os.path.isabs(source):
        raise TtsError(f"{source!r}: give an absolute path")
    try:
        dest = recording_cache_path(cache_dir, source)
    except OSError as exc:
        raise TtsError(f"{source}: {exc.strerror or exc}") from None
    if dest.is_file():
        return Rendered(dest, wav_seconds(dest), cached=True)
    try:
        seconds = normalize_wav(source, dest)
    except OSError as exc:
        raise TtsError(f"{source}: {exc.strerror or exc}") from None
    return Rendered(dest, seconds, cached=False)


# ---------------------------------------------------------------------- pyttsx3


def _has_audio(path: str) -> bool:
    try:
        with wave.open(path, "rb") as wav:
            return wav.getnframes() > 0
    except (OSError, wave.Error, EOFError):
        return False


def _driver_print(*args: Any, **_: Any) -> None:
    log.debug("pyttsx3: %s", " ".join(str(a) for a in args))


def _resolve_voice(name: str, voices: list[Any]) -> str | None:
    """The pyttsx3 voice id for an espeak-ng voice or language name: "en-us", "gmw/en-us",
    "ko", "English (America)". Exact ids first, then the id's last part, then languages."""
    wanted = name.strip().lower()
    tests = (
        lambda v: v.id.lower() == wanted,
        lambda v: v.id.lower().rsplit("/", 1)[-1] == wanted,
        lambda v: wanted in (str(lang).lower() for lang in (v.languages or ())),
        lambda v: str(v.name).lower() == wanted,
    )
    for test in tests:
        for voice in voices:
            if test(voice):
                return str(voice.id)
    return None


class _Synthesiser:
    """The process's one pyttsx3 engine and the one thread that may touch it. pyttsx3.init()
    hands every caller the same engine, so two Renderers must share this too."""

    _instance: _Synthesiser | None = None
    _instance_lock = threading.Lock()

    def __init__(self) -> None:
        self.executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="tts")
        self.engine: Any = None
        self.voices: list[Any] = []
        self.broken = False
        self.executor.submit(self._init).result(timeout=RENDER_TIMEOUT)

    @classmethod
    def get(cls) -> _Synthesiser:
        with cls._instance_lock:
            if cls._instance is None:
                cls._instance = cls()
            return cls._instance

    def _init(self) -> None:
        import pyttsx3
        import pyttsx3.drivers.espeak as espeak_driver

        espeak_driver.print = _driver_print  # type: ignore[attr-defined]  # see module doc
        self.engine = pyttsx3.init("espeak")
        self.voices = list(self.engine.getProperty("voices"))

    def speak_to_file(self, text: str, voice_id: str, rate: int, path: str) -> None:
        """On the engine's thread only: one save_to_file per runAndWait.

        espeak synthesises on a thread of its own and still counts as "playing" for a moment
        after pyttsx3 saw the end of the last text; a render started in that moment is
        cancelled by pyttsx3 itself (runAndWait -> stop() -> IsPlaying -> Cancel), and other
        races in its callback remain. Back to back, ~1 render in 40 came out empty; waiting
        for espeak to be idle made it ~1 in 300, and the rest is caught by checking the file
        and rendering again (deterministic, ~10 ms)."""
        from pyttsx3.drivers import _espeak

        for attempt in range(1, 4):
            deadline = time.monotonic() + 1.0
            while _espeak.IsPlaying() and time.monotonic() < deadline:
                time.sleep(0.001)
            self.engine.setProperty("voice", voice_id)
            self.engine.setProperty("rate", rate)
            self.engine.save_to_file(text, path)
            self.engine.runAndWait()
            if _has_audio(path):
                return
            log.warning("pyttsx3 wrote no audio for %r (attempt %d)", text[:40], attempt)
        raise TtsError("espeak-ng produced no audio")


class Renderer:
    """Renders text into the prompt cache with the process's pyttsx3 engine, on its thread.

    `voices` maps languages to espeak-ng voice names (a language without one uses its own code
    as the voice: "en" -> an English voice, "ko" -> Korean). Voices given here are checked now:
    ValueError when espeak-ng has no such voice."""

    def __init__(
        self,
        cache_dir: str | os.PathLike[str],
        voices: Mapping[str, str] | None = None,
        rate: int = DEFAULT_RATE,
    ) -> None:
        self.cache_dir = Path(cache_dir)
        self.voices = dict(voices or {})
        self.rate = int(rate)
        if not 50 <= self.rate <= 500:
            raise ValueError(f"rate {rate}: expected 50 to 500 words per minute")
        self._voice_ids: dict[str, str] = {}  # voice name -> pyttsx3 id
        self._lock = threading.Lock()
        self._synth = _Synthesiser.get()
        for language, voice in self.voices.items():
            check_language(language)
            if self._voice_id(voice) is None:
                raise ValueError(f"{language}={voice}: espeak-ng has no voice {voice!r}")

    @property
    def broken(self) -> bool:
        return self._synth.broken

    @broken.setter
    def broken(self, value: bool) -> None:
        self._synth.broken = value

    def _voice_id(self, voice: str) -> str | None:
        with self._lock:
            if voice not in self._voice_ids:
                found = _resolve_voice(voice, self._synth.voices)
                if found is None:
                    return None
                self._voice_ids[voice] = found
            return self._voice_ids[voice]

    def voice_for(self, language: str) -> str:
        """The voice name that renders `language` (and is part of the cache key)."""
        return self.voices.get(language, language)

    def path_for(self, text: str, language: str) -> Path:
        return cache_path(self.cache_dir, text, language, self.voice_for(language), self.rate)

    def submit(self, text: str, language: str) -> concurrent.futures.Future[Rendered]:
        """Queue a render on the engine's thread (a cache hit resolves at once). Raises
        TtsError/ValueError for bad input before anything is queued."""
        if not isinstance(text, str) or not text.strip():
            raise TtsError("nothing to say: the text is empty")
        if len(text) > MAX_TEXT_CHARS:
            raise TtsError(f"text of {len(text)} characters; at most {MAX_TEXT_CHARS}")
        if self.broken:
            raise RendererStuck("the speech synthesiser is stuck; the worker must restart")
        dest = self.path_for(text, language)  # ValueError for a bad language
        future: concurrent.futures.Future[Rendered] = concurrent.futures.Future()
        if dest.is_file():
            future.set_result(Rendered(dest, wav_seconds(dest), cached=True))
            return future
        voice = self.voice_for(language)
        voice_id = self._voice_id(voice)
        if voice_id is None:
            raise TtsError(f"no espeak-ng voice for language {language!r} (voice {voice!r})")
        return self._synth.executor.submit(self._render, text, voice_id, dest)

    def render(self, text: str, language: str) -> Rendered:
        """Render (or find) `text` and wait for it; from any thread."""
        future = self.submit(text, language)
        try:
            return future.result(timeout=RENDER_TIMEOUT)
        except concurrent.futures.TimeoutError:
            self.broken = True
            raise RendererStuck(f"render took over {RENDER_TIMEOUT:.0f} s") from None

    def _render(self, text: str, voice_id: str, dest: Path) -> Rendered:
        """On the engine's thread only."""
        if dest.is_file():  # rendered meanwhile for another request
            return Rendered(dest, wav_seconds(dest), cached=True)
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, raw = tempfile.mkstemp(dir=dest.parent, prefix=".tts.", suffix=".wav")
        os.close(fd)
        try:
            self._synth.speak_to_file(text, voice_id, self.rate, raw)
            samples, rate = read_wav(raw)
            pcm = to_16k_mono(samples, rate)
            write_wav_atomic(dest, pcm)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(raw)
        return Rendered(dest, len(pcm) / 2 / SAMPLE_RATE, cached=False)

    def close(self) -> None:
        """Nothing to release: the engine and its thread live as long as the process."""
