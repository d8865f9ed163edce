"""Audio for the test softphone, away from SIP: speech synthesis, WAV files, the far end's
speech detector and the recording of what was heard.

Everything is 16 kHz mono signed 16-bit PCM in 20 ms frames of 640 bytes (the internal format of
the whole project). Nothing here touches pjsua2, and nothing here runs on pjsua2's clock thread:
the frame callbacks only queue bytes and one RMS value per frame (`frame_rms`).
"""

from __future__ import annotations

import math
import shutil
import subprocess
import tempfile
import wave
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

SAMPLE_RATE = 16000
FRAME_MS = 20
FRAME_BYTES = SAMPLE_RATE * FRAME_MS // 1000 * 2  # 640
SILENCE_FRAME = bytes(FRAME_BYTES)

# RMS of a 20 ms frame (int16 scale) above which the far end counts as speaking: about -38 dBFS.
# Synthetic speech sits at 1000-8000 in voiced frames; G.711 silence decodes to exactly 0 and
# line/comfort noise stays well under 100, so this leaves a wide margin on both sides.
DEFAULT_THRESHOLD = 400.0
PROMPT_END_MS = 700  # this much quiet after speech ends a prompt (`wait-prompt`)
ONSET_FRAMES = 2  # loud frames in a row that start speech: a lone click does not


class AudioError(Exception):
    """A WAV that cannot be read or converted, or a synthesiser that failed."""


def frame_rms(pcm: bytes) -> float:
    """RMS of s16 samples: a few µs for 320 samples, cheap enough for the clock thread."""
    if not pcm:
        return 0.0
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float32)
    return math.sqrt(float(np.dot(samples, samples)) / len(samples))


def split_frames(pcm: bytes) -> list[bytes]:
    """640-byte frames; the last one padded with silence (a short frame would never be sent)."""
    if len(pcm) % 2:
        pcm = pcm[:-1]
    frames = [pcm[i : i + FRAME_BYTES] for i in range(0, len(pcm), FRAME_BYTES)]
    if frames and len(frames[-1]) < FRAME_BYTES:
        frames[-1] = frames[-1] + bytes(FRAME_BYTES - len(frames[-1]))
    return frames


def silence(seconds: float) -> bytes:
    return bytes(round(seconds * 1000 / FRAME_MS) * FRAME_BYTES)


# ------------------------------------------------------------------ WAV in


def read_wav(path: str | Path) -> bytes:
    """A WAV file as 16 kHz mono s16 PCM. PCM WAVs of any rate, width and channel count are
    converted here (numpy + soxr); other encodings (float, A-law, ...) go through `sox`."""
    path = Path(path)
    try:
        with wave.open(str(path), "rb") as wav:
            rate, channels, width = wav.getframerate(), wav.getnchannels(), wav.getsampwidth()
            raw = wav.readframes(wav.getnframes())
    except FileNotFoundError:
        raise AudioError(f"{path}: no such file") from None
    except (wave.Error, EOFError) as exc:
        # The stdlib reads PCM only; sox reads the rest (and says clearly what it cannot).
        return _read_with_sox(path, str(exc))
    except OSError as exc:
        raise AudioError(f"{path}: {exc.strerror}") from None
    return to_internal(raw, rate, channels, width, str(path))


def to_internal(raw: bytes, rate: int, channels: int, width: int, name: str = "audio") -> bytes:
    """PCM of any common layout to 16 kHz mono s16."""
    if width == 2 and channels == 1 and rate == SAMPLE_RATE:
        return raw
    if width == 1:  # WAV 8-bit is unsigned
        samples = (np.frombuffer(raw, dtype=np.uint8).astype(np.float32) - 128.0) * 256.0
    elif width == 2:
        samples = np.frombuffer(raw, dtype="<i2").astype(np.float32)
    elif width == 3:
        b = np.frombuffer(raw[: len(raw) // 3 * 3], dtype=np.uint8).reshape(-1, 3)
        as_int = (b[:, 0].astype(np.int32) << 8) | (b[:, 1].astype(np.int32) << 16)
        as_int |= b[:, 2].astype(np.int32) << 24
        samples = (as_int >> 16).astype(np.float32)
    elif width == 4:
        samples = (np.frombuffer(raw, dtype="<i4") >> 16).astype(np.float32)
    else:
        raise AudioError(f"{name}: {8 * width}-bit samples are not supported")
    if channels > 1:
        samples = samples[: len(samples) // channels * channels].reshape(-1, channels).mean(1)
    if rate != SAMPLE_RATE:
        import soxr  # imported late: only needed for audio that is not 16 kHz already

        samples = soxr.resample(samples, rate, SAMPLE_RATE)
    return np.clip(np.rint(samples), -32768, 32767).astype("<i2").tobytes()


def _read_with_sox(path: Path, why: str) -> bytes:
    sox = shutil.which("sox")
    if sox is None:
        raise AudioError(f"{path}: not a PCM WAV ({why}) and sox is not installed to convert it")
    result = subprocess.run(
        [sox, str(path), "-t", "raw", "-r", str(SAMPLE_RATE), "-c", "1", "-b", "16",
         "-e", "signed-integer", "-L", "-"],
        capture_output=True,
        timeout=60,
    )  # fmt: skip
    if result.returncode != 0:
        message = result.stderr.decode(errors="replace").strip().splitlines()
        raise AudioError(f"{path}: cannot convert: {message[-1] if message else why}")
    return result.stdout


# ------------------------------------------------------------------ speech synthesis

TTS_ENGINES = ("flite", "espeak-ng")
DEFAULT_VOICES = {"flite": "slt", "espeak-ng": "en"}


def synthesise(text: str, engine: str = "flite", voice: str | None = None) -> bytes:
    """`text` spoken by flite or espeak-ng, as 16 kHz mono s16 PCM.

    Runs the engine's command line (a separate process, so no GIL is held while it works) into
    a temporary WAV. Done before dialling, so a call never waits for synthesis."""
    if engine not in TTS_ENGINES:
        raise AudioError(f"unknown speech synthesiser {engine!r} (use {' or '.join(TTS_ENGINES)})")
    program = shutil.which(engine)
    if program is None:
        raise AudioError(f"{engine} is not installed (Debian package {engine})")
    voice = voice or DEFAULT_VOICES[engine]
    with tempfile.TemporaryDirectory(prefix="ivr-say-") as tmp:
        out = Path(tmp) / "say.wav"
        if engine == "flite":
            command = [program, "-voice", voice, "-t", text, "-o", str(out)]
        else:
            command = [program, "-v", voice, "-w", str(out), "--", text]
        try:
            result = subprocess.run(command, capture_output=True, timeout=60)
        except subprocess.TimeoutExpired:
            raise AudioError(f"{engine} took more than 60 s") from None
        if result.returncode != 0 or not out.exists() or out.stat().st_size <= 44:
            detail = result.stderr.decode(errors="replace").strip() or f"exit {result.returncode}"
            raise AudioError(f"{engine} (voice {voice!r}) failed: {detail}")
        return read_wav(out)


# ------------------------------------------------------------------ what the far end says


@dataclass
class SpeechDetector:
    """Speech/quiet of the far end from per-frame RMS, counted in audio time (frames), never in
    wall-clock time, so a slow event loop cannot make a prompt look finished early.

    `onsets` counts starts of speech, `prompts` counts ends (speech then PROMPT_END_MS quiet):
    a waiting action remembers the counter when it starts and waits for it to grow."""

    threshold: float = DEFAULT_THRESHOLD
    end_frames: int = PROMPT_END_MS // FRAME_MS
    frames: int = 0  # frames seen
    loud_frames: int = 0  # frames above the threshold: `heard_seconds`
    onsets: int = 0
    prompts: int = 0
    speaking: bool = False
    _loud_run: int = 0
    _quiet_run: int = 0

    def feed(self, rms: float) -> None:
        self.frames += 1
        if rms >= self.threshold:
            self.loud_frames += 1
            self._loud_run += 1
            self._quiet_run = 0
            if not self.speaking and self._loud_run >= ONSET_FRAMES:
                self.speaking = True
                self.onsets += 1
            return
        self._loud_run = 0
        self._quiet_run += 1
        if self.speaking and self._quiet_run >= self.end_frames:
            self.speaking = False
            self.prompts += 1

    @property
    def heard_seconds(self) -> float:
        return self.loud_frames * FRAME_MS / 1000


@dataclass
class WavRecorder:
    """Writes received frames to a 16 kHz mono s16 WAV as they are drained (not an
    AudioMediaRecorder: those are limited to 32 per process and need their own bridge slot)."""

    path: Path
    _wav: wave.Wave_write | None = field(default=None, init=False)

    def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        wav = wave.open(str(self.path), "wb")  # noqa: SIM115 (closed by close())
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(SAMPLE_RATE)
        self._wav = wav

    def write(self, pcm: bytes) -> None:
        if self._wav is not None:
            self._wav.writeframesraw(pcm)

    def close(self) -> None:
        if self._wav is not None:
            self._wav.close()  # patches the header's lengths
            self._wav = None
