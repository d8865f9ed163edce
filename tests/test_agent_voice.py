"""Calls to an agent: a real SIP caller (`ivr call`, pjsua2) waits in a queue with music and
announcements, and an agent answers in the desktop's softphone in headless Chromium; the media
worker that holds the caller bridges the two legs.

What the caller hears is recorded (`--record`) and read by frequency: the built-in hold music
keeps clear of 440 Hz (ivr/channels/voice/music.py), and the agent's microphone is a 440 Hz tone,
so the recording tells music from the agent's voice. What the agent hears is Chromium's own
account of its inbound audio (`totalAudioEnergy`).
"""

from __future__ import annotations

import asyncio
import wave
from pathlib import Path
from typing import Any

import numpy as np
from playwright.async_api import Page, expect

from ivr.channels.voice import music
from ivr.conversation import Role, Status
from ivr.web.keys import STORE
from tests.agent_fixtures import add_agent, open_desk
from tests.browser import LaunchChromium, page_errors
from tests.serve_fixtures import ALICE, ServeApp, Served, wait_until
from tests.test_agent_desktop_page import Desktop
from tests.voice_fixtures import VoiceServer, start_voice_server

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


def share(samples: np.ndarray, tones: list[float]) -> float:
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
    stats = await page.evaluate(
        "async (id) => { const p = window.agentDesk.softphone(id); return p && p.inbound(); }",
        conv_id,
    )
    return stats or {"energy": 0.0, "samples": 0, "packets": 0}


async def queued_call(server: Served) -> str:
    """The id of the call's conversation, once it waits in a queue."""

    async def waiting() -> str | None:
        recent = await server.app[STORE].list_recent(1)
        return recent[0].id if recent and recent[0].status is Status.QUEUED else None

    return await wait_until(waiting, timeout=30.0)


async def test_a_caller_waits_with_music_then_talks_with_the_agent_in_the_desktop(
    serve_app: ServeApp, tmp_path: Path, chromium: LaunchChromium
) -> None:
    voice: VoiceServer = await start_voice_server(serve_app, tmp_path)
    server = voice.served
    await add_agent(server, "dana", name="Dana Scully")
    ready, done = tmp_path / "agent-ready", tmp_path / "agent-done"
    recording = tmp_path / "caller-heard.wav"
    caller_speech = tone_wav(tmp_path / "caller.wav", 700.0, 2.0)
    call = asyncio.ensure_future(
        voice.call(
            "1000",
            *ASK_FOR_AN_AGENT,
            f"wait-file {ready}",  # the agent is on the line: speak
            f"play {caller_speech}",
            f"wait-file {done}",
            "hangup",
            extra=["--record", str(recording)],
            timeout=40.0,
        )
    )
    context = await chromium(fake_audio=tone_wav(tmp_path / "agent.wav", AGENT_TONE_HZ, 40.0))
    page = await context.new_page()
    errors = page_errors(page)
    desktop = Desktop(page)
    await desktop.open(server, "dana")
    conv_id = await queued_call(server)
    await desktop.set_presence("available")
    await desktop.expect_offer(conv_id)
    await expect(desktop.offer.locator(".card-customer")).to_contain_text(ALICE["account"])
    await expect(desktop.offer.locator(".card-verified")).to_contain_text("Verified by pin on sip")
    await desktop.accept.click()

    held = desktop.conversation(conv_id)
    await expect(held.locator(".softphone")).to_have_attribute("data-state", "connected")
    await expect(held.locator(".card-intent")).to_contain_text("talk_to_agent")
    await expect(desktop.turns(held, "customer").first).to_have_text(ALICE["account"])
    assert ALICE["pin"] not in await desktop.page_text_without(conv_id)

    # The caller is silent: the agent hears nothing (no prompt of the bot, no music bleeds in),
    # while a second of the call's audio arrives.
    before = await wait_until(lambda: _with_packets(page, conv_id), timeout=10.0)
    after = await wait_until(
        lambda: _after_samples(page, conv_id, before["samples"] + 48000), timeout=10.0
    )
    assert after["energy"] - before["energy"] < 0.001, (before, after)

    ready.touch()  # the caller speaks: the agent hears them
    await wait_until(lambda: _louder(page, conv_id, after["energy"] + 0.05), timeout=15.0)
    done.touch()
    result = await asyncio.wait_for(call, 60.0)
    assert result.ok, (result.outcome, result.stderr[-2000:])
    await expect(held).to_have_attribute("data-state", "customer_left")
    await expect(held.locator(".softphone")).to_have_attribute("data-state", "ended")

    await held.locator("select.code").select_option("resolved")
    await held.locator("button.submit-wrap-up").click()
    await expect(held).to_have_count(0)
    assert not errors, errors

    # What the caller heard once bridged: the agent's voice (its tone), no music under it.
    heard = recorded(recording)
    bridged = window(
        heard, action_at(result.outcome, "play") - 1.0, action_at(result.outcome, "play") + 1.5
    )
    assert rms(bridged) > 300, rms(bridged)
    assert share(bridged, [AGENT_TONE_HZ]) > 0.5 and share(bridged, MUSIC_HZ) < 0.05

    conv = await server.conversation(conv_id)
    assert conv["status"] == "ended"
    assert conv["handoff"]["wrap_up"]["code"] == "resolved"
    said = [(t["role"], t["text"]) for t in conv["timeline"]]
    assert any(role == Role.BOT and "line" in text for role, text in said), said  # position
    assert (Role.SYSTEM, "Dana Scully joined") in said
    assert (Role.SYSTEM, "the customer left") in said


async def _with_packets(page: Page, conv_id: str) -> dict[str, float] | None:
    stats = await inbound(page, conv_id)
    return stats if stats["packets"] > 10 else None


async def _after_samples(page: Page, conv_id: str, samples: float) -> dict[str, float] | None:
    stats = await inbound(page, conv_id)
    return stats if stats["samples"] >= samples else None


async def _louder(page: Page, conv_id: str, energy: float) -> dict[str, float] | None:
    stats = await inbound(page, conv_id)
    return stats if stats["energy"] >= energy else None


async def test_a_waiting_caller_hears_their_place_then_music_and_hanging_up_abandons(
    serve_app: ServeApp, tmp_path: Path
) -> None:
    voice = await start_voice_server(serve_app, tmp_path)
    server = voice.served
    await add_agent(server, "dana", name="Dana Scully")
    desk = await open_desk(server, "dana", available=False)  # nobody takes the call yet
    recording = tmp_path / "caller-heard.wav"
    hang_up = tmp_path / "hang-up"
    call = asyncio.ensure_future(
        voice.call(
            "1000",
            *ASK_FOR_AN_AGENT,
            "silence 12",  # the caller waits: "connecting you", their place, then music
            f"wait-file {hang_up}",
            "hangup",
            extra=["--record", str(recording)],
            timeout=30.0,
        )
    )
    conv_id = await queued_call(server)
    await desk.presence("available")  # rings on the desk, unanswered
    await desk.expect("offer", conversation_id=conv_id)
    hang_up.touch()
    result = await asyncio.wait_for(call, 60.0)
    assert result.ok, result.outcome
    await desk.expect("offer_gone", conversation_id=conv_id, reason="abandoned")

    async def ended() -> dict[str, Any] | None:
        conv = await server.conversation(conv_id)
        return conv if conv["status"] == "ended" else None

    conv = await wait_until(ended, timeout=10.0)
    said = [(t["role"], t["text"]) for t in conv["timeline"]]
    notices = [text for role, text in said if role == "bot" and text.startswith("You are next")]
    assert notices and "expected wait" in notices[0], said  # nobody staffed: minutes, not "soon"
    assert said[-1] == ("system", "the customer left while waiting")
    await desk.close()

    # The last seconds of the wait were the built-in music (the prompts are over by then).
    heard = recorded(recording)
    waited = action_at(result.outcome, "silence")
    music_heard = window(heard, waited + 9.0, waited + 12.0)
    assert rms(music_heard) > 300, rms(music_heard)
    assert share(music_heard, MUSIC_HZ) > 0.5, share(music_heard, MUSIC_HZ)
