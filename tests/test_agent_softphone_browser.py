"""The agent desktop's softphone when its leg changes mid-call, in headless Chromium: the agent
reconnects the audio, takes it over in a second tab, or loses it; a real SIP caller (`ivr call`,
pjsua2) holds on throughout.

As in tests/test_agent_voice.py, the agent's microphone is a 440 Hz tone and the built-in hold
music keeps clear of it, so the caller's recording tells which one they hear. The recording is
read while the call goes on (tests/softphone_fixtures.caller_hears): each check waits, bounded,
for a stretch of it recorded after the step under test. The caller dials a flow that goes straight
to the agents' queue (no identification first: that journey is test_agent_voice.py's).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.async_api import BrowserContext, Locator, Page, expect

from tests.agent_fixtures import add_agent, open_desk
from tests.browser import TIMEOUT_MS, LaunchChromium, page_errors
from tests.serve_fixtures import ServeApp, Served, wait_until
from tests.softphone_fixtures import (
    AGENT_TONE_HZ,
    MUSIC_HZ,
    caller_hears,
    heard_seconds,
    queued_call,
    tone_wav,
    with_packets,
)
from tests.test_agent_desktop_page import Desktop
from tests.voice_fixtures import CALL_TIMEOUT, CallResult, start_voice_server

NUMBER = "7000"
STRAIGHT_TO_CARDS = f"""\
flow: straight_to_cards
description: Straight to a person (these tests need no identification first)
language: en
numbers: ["{NUMBER}"]
start: agent
steps:
  agent:
    transfer: {{queue: cards, skills: [banking]}}
"""
AGENT = [AGENT_TONE_HZ]
SOFTPHONE_OF = "(id) => window.agentDesk.softphone(id)"
AUDIO_LOST = "the call's audio was lost"  # agent.js's urgent announcement
CONNECT_MS = TIMEOUT_MS  # a softphone's (re)connection, or the server noticing a leg's end


@dataclass
class WaitingCall:
    """A caller waiting in the cards queue for Dana, and the browser her desktop runs in."""

    server: Served
    conv_id: str
    recording: Path  # what the caller hears, written as the call goes
    browser: BrowserContext  # its pages share Dana's cookie once one has signed in
    call: asyncio.Future[CallResult]
    hang_up_file: Path

    async def hang_up(self) -> CallResult:
        self.hang_up_file.touch()
        result = await asyncio.wait_for(self.call, CALL_TIMEOUT)
        assert result.ok, (result.outcome, result.stderr[-2000:])
        return result


@pytest.fixture
async def waiting_call(
    serve_app: ServeApp,
    tmp_path: Path,
    flow_files: tuple[Path, Path],
    chromium: LaunchChromium,
) -> AsyncIterator[WaitingCall]:
    (flow_files[0] / "straight_to_cards.yaml").write_text(STRAIGHT_TO_CARDS)
    voice = await start_voice_server(serve_app, tmp_path)
    await add_agent(voice.served, "dana", name="Dana Scully")
    recording, hang_up = tmp_path / "caller-heard.wav", tmp_path / "hang-up"
    call = asyncio.ensure_future(
        voice.call(
            NUMBER,
            f"wait-file {hang_up}",
            "hangup",
            extra=["--record", str(recording)],
            timeout=CALL_TIMEOUT,
        )
    )
    try:
        browser = await chromium(fake_audio=tone_wav(tmp_path / "agent.wav", AGENT_TONE_HZ, 60.0))
        conv_id = await queued_call(voice.served)
        yield WaitingCall(voice.served, conv_id, recording, browser, call, hang_up)
    finally:
        hang_up.touch()  # a failed test's caller hangs up too
        with contextlib.suppress(Exception):
            await asyncio.wait_for(call, CALL_TIMEOUT)


async def signed_in(call: WaitingCall) -> tuple[Desktop, list[str]]:
    page = await call.browser.new_page()
    errors = page_errors(page)
    desktop = Desktop(page)
    await desktop.open(call.server, "dana")
    return desktop, errors


async def another_tab(call: WaitingCall) -> tuple[Desktop, list[str]]:
    """The desktop in another tab of the same browser: signed in by the shared cookie."""
    page = await call.browser.new_page()
    errors = page_errors(page)
    desktop = Desktop(page)
    await page.goto(call.server.url + "/agent")
    await expect(desktop.desk).to_have_attribute("data-connected", "true")
    return desktop, errors


async def take_call(desktop: Desktop, call: WaitingCall) -> Locator:
    """Dana goes available and accepts the call in this tab: its softphone connects."""
    await desktop.set_presence("available")
    await desktop.expect_offer(call.conv_id)
    await desktop.accept.click()
    held = desktop.conversation(call.conv_id)
    await expect(held.locator(".softphone")).to_have_attribute(
        "data-state", "connected", timeout=CONNECT_MS
    )
    await caller_hears(call.recording, AGENT, without=MUSIC_HZ)
    return held


async def agent_hears_the_call(page: Page, conv_id: str) -> None:
    """This tab's softphone receives the call's audio."""
    await wait_until(lambda: with_packets(page, conv_id), timeout=10.0)


async def still_with_dana(call: WaitingCall) -> None:
    conv = await call.server.conversation(call.conv_id)
    assert conv["status"] == "with_agent", conv["status"]
    said = [t["text"] for t in conv["timeline"]]
    assert "the customer left" not in said, said


async def caller_leaves(call: WaitingCall, *helds: Locator) -> None:
    await call.hang_up()
    for held in helds:
        await expect(held).to_have_attribute("data-state", "customer_left")


async def test_reconnecting_the_audio_mid_call_replaces_the_leg_and_the_caller_hears_the_agent(
    waiting_call: WaitingCall,
) -> None:
    call = waiting_call
    desktop, errors = await signed_in(call)
    page = desktop.page
    held = await take_call(desktop, call)
    phone = held.locator(".softphone")
    reconnect = phone.locator("button.reconnect-audio")
    await expect(reconnect).to_have_text("Reconnect audio")

    await page.evaluate(f"(id) => {{ window.oldPhone = ({SOFTPHONE_OF})(id); }}", call.conv_id)
    clicked_at = heard_seconds(call.recording)
    await reconnect.click()
    await expect(phone).to_have_attribute("data-state", "connected", timeout=CONNECT_MS)
    replaced = await page.evaluate(
        f"""(id) => {{
            const phone = ({SOFTPHONE_OF})(id), old = window.oldPhone;
            return phone !== old && phone.state === "connected" && old.state === "ended"
                && old.pc === null;
        }}""",
        call.conv_id,
    )
    assert replaced, "the softphone did not replace its leg"

    # The caller hears the agent on the new leg, and goes on hearing them: the old leg's end
    # (hung up when the new offer came) ended neither the conversation nor the new softphone.
    heard = await caller_hears(call.recording, AGENT, without=MUSIC_HZ, after=clicked_at)
    await caller_hears(call.recording, AGENT, without=MUSIC_HZ, after=heard)
    await agent_hears_the_call(page, call.conv_id)
    await expect(phone).to_have_attribute("data-state", "connected")
    await expect(held).to_have_attribute("data-state", "active")
    await expect(page.locator("#announce-urgent")).not_to_contain_text(AUDIO_LOST)
    await still_with_dana(call)

    await caller_leaves(call, held)
    await expect(phone).to_have_attribute("data-state", "ended")
    assert not errors, errors


async def test_a_second_tab_takes_the_audio_and_the_first_one_lets_it_go(
    waiting_call: WaitingCall,
) -> None:
    call = waiting_call
    first, first_errors = await signed_in(call)
    second, second_errors = await another_tab(call)
    held_first = await take_call(first, call)

    # The second tab shows the call, its audio elsewhere, and opens no microphone.
    held_second = second.conversation(call.conv_id)
    await expect(held_second).to_be_visible()
    phone_second = held_second.locator(".softphone")
    await expect(phone_second).to_have_attribute("data-state", "elsewhere")
    await expect(phone_second.locator(".softphone-state")).to_have_text(
        "The call's audio is in another tab or window."
    )
    await expect(phone_second.locator("button.mute")).to_be_hidden()
    assert await second.page.evaluate(SOFTPHONE_OF, call.conv_id) is None
    take = phone_second.locator("button.reconnect-audio")
    await expect(take).to_have_text("Take the audio here")

    moved_at = heard_seconds(call.recording)
    await take.click()
    await expect(phone_second).to_have_attribute("data-state", "connected", timeout=CONNECT_MS)
    phone_first = held_first.locator(".softphone")
    await expect(phone_first).to_have_attribute("data-state", "elsewhere")
    await expect(phone_first.locator("button.reconnect-audio")).to_have_text("Take the audio here")
    assert await first.page.evaluate(SOFTPHONE_OF, call.conv_id) is None  # microphone let go

    await caller_hears(call.recording, AGENT, without=MUSIC_HZ, after=moved_at)
    await agent_hears_the_call(second.page, call.conv_id)
    await expect(held_first).to_have_attribute("data-state", "active")
    await still_with_dana(call)

    await caller_leaves(call, held_first, held_second)
    assert not first_errors and not second_errors, (first_errors, second_errors)


async def test_when_the_agents_leg_fails_the_caller_hears_music_until_the_agent_reconnects(
    waiting_call: WaitingCall,
) -> None:
    call = waiting_call
    desktop, errors = await signed_in(call)
    page = desktop.page
    held = await take_call(desktop, call)
    phone = held.locator(".softphone")

    # The leg's media goes (as when the agent's network does); only the server can tell.
    lost_at = heard_seconds(call.recording)
    await page.evaluate(f"(id) => ({SOFTPHONE_OF})(id).pc.close()", call.conv_id)
    await expect(phone).to_have_attribute("data-state", "ended", timeout=CONNECT_MS)
    await expect(page.locator("#announce-urgent")).to_contain_text(AUDIO_LOST)
    reconnect = phone.locator("button.reconnect-audio")
    await expect(reconnect).to_be_visible()
    await expect(reconnect).to_have_text("Reconnect audio")
    await caller_hears(call.recording, MUSIC_HZ, without=AGENT, after=lost_at)

    # The conversation stays Dana's: this tab keeps it, and another tab is given it too.
    await expect(held).to_have_attribute("data-state", "active")
    await still_with_dana(call)
    other_tab = await open_desk(call.server, "dana", available=False)
    try:
        cards = {card["conversation_id"]: card for card in other_tab.hello["assigned"]}
    finally:
        await other_tab.close()
    assert call.conv_id in cards, cards
    assert cards[call.conv_id]["audio_connected"] is False

    back_at = heard_seconds(call.recording)
    await reconnect.click()
    await expect(phone).to_have_attribute("data-state", "connected", timeout=CONNECT_MS)
    await caller_hears(call.recording, AGENT, without=MUSIC_HZ, after=back_at)
    await agent_hears_the_call(page, call.conv_id)

    await caller_leaves(call, held)
    assert not errors, errors
