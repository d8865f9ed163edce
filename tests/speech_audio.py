"""Speech for the speech tests, synthesised at test time (no audio is committed).

English comes from flite (natural enough for PocketSphinx; the research notes found espeak-ng
English poorly recognised), Korean from espeak-ng. Everything is returned as 16 kHz mono s16le
with a little silence around it, as a caller's answer would arrive.
"""

from __future__ import annotations

import asyncio
import functools
import shutil
import subprocess
import tempfile
import time
import wave
from pathlib import Path

import numpy as np
import pytest
import soxr

RATE = 16000
CHUNK = 640  # 20 ms

needs_flite = pytest.mark.skipif(shutil.which("flite") is None, reason="flite is not installed")
needs_espeak = pytest.mark.skipif(
    shutil.which("espeak-ng") is None, reason="espeak-ng is not installed"
)


def wav_pcm16k(path: Path) -> bytes:
    with wave.open(str(path), "rb") as wav:
        assert wav.getsampwidth() == 2
        samples = np.frombuffer(wav.readframes(wav.getnframes()), "<i2")
        if wav.getnchannels() > 1:
            samples = samples.reshape(-1, wav.getnchannels()).mean(axis=1).astype("<i2")
        rate = wav.getframerate()
    if rate != RATE:
        samples = soxr.resample(samples, rate, RATE)
    return samples.astype("<i2").tobytes()


@functools.lru_cache(maxsize=256)
def _synth(tool: tuple[str, ...], text: str) -> bytes:
    with tempfile.TemporaryDirectory(prefix="ivr-speech-") as tmp:
        path = Path(tmp) / "out.wav"
        argv = [str(path) if arg == "{out}" else arg for arg in tool]
        subprocess.run(argv, check=True, capture_output=True, timeout=30)
        return pad(wav_pcm16k(path))


def flite(text: str, voice: str = "slt") -> bytes:
    """English speech by flite, 16 kHz mono s16le."""
    return _synth(("flite", "-voice", voice, "-t", text, "-o", "{out}"), text)


def espeak(text: str, voice: str = "ko") -> bytes:
    """Speech by espeak-ng (Korean by default), 16 kHz mono s16le."""
    return _synth(("espeak-ng", "-v", voice, "-w", "{out}", text), text)


def pad(pcm: bytes, before: float = 0.3, after: float = 0.3) -> bytes:
    return bytes(int(before * RATE) * 2) + pcm + bytes(int(after * RATE) * 2)


def chunks(pcm: bytes, size: int = CHUNK) -> list[bytes]:
    return [pcm[i : i + size] for i in range(0, len(pcm), size)]


async def wait_for_socket(path: str, proc: asyncio.subprocess.Process, timeout: float) -> float:
    """Poll until the worker's socket accepts (bounded); seconds it took. Fails fast if the
    process exits first."""
    started = time.monotonic()
    while True:
        if proc.returncode is not None:
            raise AssertionError(f"worker exited with {proc.returncode} before it was ready")
        try:
            _, writer = await asyncio.open_unix_connection(path)
        except OSError:
            if time.monotonic() - started > timeout:
                raise AssertionError(f"worker socket not ready in {timeout} s") from None
            await asyncio.sleep(0.05)  # polling a readiness condition, not synchronising
            continue
        writer.close()
        return time.monotonic() - started
