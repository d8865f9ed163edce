"""Calls to an agent's desktop softphone, for tests: the caller's recording read by frequency,
the agent's browser's account of its inbound audio, and waiting for a call to queue.

The built-in hold music keeps clear of 440 Hz (ivr/channels/voice/music.py) and the agent's fake
microphone is a 440 Hz tone (`tone_wav`), so a window of what the caller recorded (`--record`)
tells music (`MUSIC_HZ`) from the agent's voice (`AGENT_TONE_HZ`): `share(window(...), tones)`.
"""

from __future__ import annotations

import wave
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from playwright.async_api import Page

from ivr.channels.voice import music
from ivr.conversation import Status
from ivr.web.keys import STORE
from tests.serve_fixtures import ALICE, Served, wait_until

RATE = 16000
AGENT_TONE_HZ = 440.0
MUSIC_HZ = sorted({hz * k for phrase in music.PHRASES for hz in phrase for k in (1, 2)})
# The bank flow up to "Talk to an agent" (menu key 0), by keypad.
ASK_FOR_AN_AGENT = (
    "wait-prompt",
    f"dtmf {ALICE['account']}",
    "wait-prompt",
    f"dtmf {ALICE['pin']}",
    "wait-prompt",
    "dtmf 0",
)


def tone_wav(path: Path, hz: float, seconds: float, level: float = 0.3) -> Path:
    t = np.arange(int(RATE * seconds)) / RATE
    samples = (np.sin(2 * np.pi * hz * t) * level * 32767).astype("<i2")
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(RATE)
        wav.writeframes(samples.tobytes())
    return path


def recorded(path: Path) -> np.ndarray:
    with wave.open(str(path), "rb") as wav:
        assert wav.getframerate() == RATE
        return np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2").astype(float)


def share(samples: np.ndarray, tones: Sequence[float]) -> float:
    """How much of the window's energy lies within 15 Hz of any of `tones` (0..1)."""
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(samples.size))) ** 2
    freqs = np.fft.rfftfreq(samples.size, 1 / RATE)
    total = spectrum[freqs > 60].sum()
    near = np.zeros(freqs.size, dtype=bool)
    for hz in tones:
        near |= np.abs(freqs - hz) < 15
    return float(spectrum[near].sum() / total) if total else 0.0


def window(samples: np.ndarray, start: float, end: float) -> np.ndarray:
    return samples[int(start * RATE) : int(end * RATE)]


def rms(samples: np.ndarray) -> float:
    return float(np.sqrt((samples**2).mean())) if samples.size else 0.0


def action_at(outcome: dict[str, Any], prefix: str) -> float:
    return next(a["at"] for a in outcome["actions"] if a["do"].startswith(prefix))


async def inbound(page: Page, conv_id: str) -> dict[str, float]:
    """The call's audio as the agent's softphone in `page` hears it (zeros: no softphone)."""
    stats = await page.evaluate(
        "async (id) => { const p = window.agentDesk.softphone(id); return p && p.inbound(); }",
        conv_id,
    )
    return stats or {"energy": 0.0, "samples": 0, "packets": 0}


async def with_packets(page: Page, conv_id: str) -> dict[str, float] | None:
    stats = await inbound(page, conv_id)
    return stats if stats["packets"] > 10 else None


async def after_samples(page: Page, conv_id: str, samples: float) -> dict[str, float] | None:
    stats = await inbound(page, conv_id)
    return stats if stats["samples"] >= samples else None


async def louder(page: Page, conv_id: str, energy: float) -> dict[str, float] | None:
    stats = await inbound(page, conv_id)
    return stats if stats["energy"] >= energy else None


async def queued_call(server: Served) -> str:
    """The id of the call's conversation, once it waits in a queue."""

    async def waiting() -> str | None:
        recent = await server.app[STORE].list_recent(1)
        return recent[0].id if recent and recent[0].status is Status.QUEUED else None

    return await wait_until(waiting, timeout=30.0)


def heard_so_far(recording: Path) -> np.ndarray:
    """What the caller has recorded until now (`--record`, written as the call goes; the WAV
    header's lengths are patched only at the end, so the samples are read past it)."""
    data = recording.read_bytes()[44:] if recording.exists() else b""
    return np.frombuffer(data[: len(data) // 2 * 2], dtype="<i2").astype(float)


def heard_seconds(recording: Path) -> float:
    """How far into the call the caller's recording is now (seconds)."""
    return heard_so_far(recording).size / RATE


async def caller_hears(
    recording: Path,
    tones: Sequence[float],
    *,
    without: Sequence[float] = (),
    after: float = 0.0,
    seconds: float = 1.5,
    timeout: float = 10.0,
) -> float:
    """Wait until `seconds` the caller recorded, the last ones and all `after` that point of
    the recording, are loud and mostly `tones` (over half their energy) with next to nothing
    at the tones `without` (under 5 %); gives the recording's length then (seconds)."""

    async def hearing() -> float | None:
        heard = heard_so_far(recording)
        tail = heard[-int(seconds * RATE) :]
        if heard.size - tail.size < after * RATE or tail.size < int(seconds * RATE):
            return None
        if rms(tail) < 300 or share(tail, tones) < 0.5:
            return None
        if without and share(tail, without) >= 0.05:
            return None
        return heard.size / RATE

    return await wait_until(hearing, timeout=timeout, interval=0.1)
