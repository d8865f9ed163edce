"""The built-in hold music: a quiet arpeggio made here, so a fresh install has music without
shipping a recording (a queue's `hold_music` names a recorded prompt to use instead).

Written once into the prompt cache as a 16 kHz mono WAV, our internal format. Its notes keep
clear of 440 Hz, the tone tests give the agent's microphone, so a test can tell which is heard.
"""

from __future__ import annotations

import array
import asyncio
import math
import os
import wave
from pathlib import Path

RATE = 16000
NAME = "hold-music-v1.wav"
# Arpeggios of C major, E minor, G major, C major: no A, so neither a note nor its octave
# harmonic is near 440 Hz.
PHRASES = (
    (261.63, 329.63, 392.00, 523.25, 392.00, 329.63),
    (164.81, 196.00, 246.94, 329.63, 246.94, 196.00),
    (196.00, 246.94, 293.66, 392.00, 293.66, 246.94),
    (261.63, 329.63, 392.00, 523.25, 392.00, 261.63),
)
NOTE_SECONDS = 0.5
LEVEL = 0.2  # of full scale: music under announcements, not over them


def render() -> bytes:
    """The whole loop as 16-bit PCM samples."""
    samples = array.array("h")
    per_note = int(RATE * NOTE_SECONDS)
    for phrase in PHRASES:
        for frequency in phrase:
            step = 2 * math.pi * frequency / RATE
            for n in range(per_note):
                attack = min(1.0, n / 400)  # 25 ms: no click at the note's start
                decay = math.exp(-3.0 * n / per_note)
                tone = math.sin(step * n) + 0.3 * math.sin(2 * step * n)
                samples.append(int(32767 * LEVEL * attack * decay * tone / 1.3))
    return samples.tobytes()


def write(path: Path) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    with wave.open(str(temporary), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(RATE)
        wav.writeframes(render())
    temporary.replace(path)  # whole or absent: a worker never reads half a file


async def hold_music_file(cache_dir: Path) -> Path:
    """The built-in music's file, made on first use (about 0.2 s, off the loop)."""
    path = cache_dir / NAME
    if not path.is_file():
        cache_dir.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(write, path)
    return path
