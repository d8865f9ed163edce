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
from pathlib import Path
from typing import Any

from playwright.async_api import expect

from ivr.conversation import Role
from tests.agent_fixtures import add_agent, open_desk
from tests.browser import LaunchChromium, page_errors
from tests.serve_fixtures import ALICE, ServeApp, wait_until
from tests.softphone_fixtures import (
    AGENT_TONE_HZ,
    ASK_FOR_AN_AGENT,
    MUSIC_HZ,
    action_at,
    after_samples,
    louder,
    queued_call,
    recorded,
    rms,
    share,
    tone_wav,
    window,
    with_packets,
)
from tests.test_agent_desktop_page import Desktop
from tests.voice_fixtures import VoiceServer, start_voice_server


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
    before = await wait_until(lambda: with_packets(page, conv_id), timeout=10.0)
    after = await wait_until(
        lambda: after_samples(page, conv_id, before["samples"] + 48000), timeout=10.0
    )
    assert after["energy"] - before["energy"] < 0.001, (before, after)

    ready.touch()  # the caller speaks: the agent hears them
    await wait_until(lambda: louder(page, conv_id, after["energy"] + 0.05), timeout=15.0)
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
