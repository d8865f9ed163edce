"""Browser calls from the visitor widget, in Debian's headless Chromium against a real server
(speech and media workers): speech from a fake microphone recognised by the flow, the keypad as
keys, the bot heard in the browser, and one conversation across chat, call and chat again.

The microphone is a flite WAV played once (`--use-file-for-fake-audio-capture`); the widget's
echo canceller is off (`data-echo-cancellation="off"`), as for a headset: Chromium's canceller
garbles speech that overlaps the bot's prompt, and barge-in is what these calls use.
"""

from __future__ import annotations

import wave
from pathlib import Path
from typing import Any

from playwright.async_api import Page, expect

from tests.browser import HostSite, LaunchChromium
from tests.serve_fixtures import ALICE, ServeApp, assert_never_shows
from tests.speech_audio import flite, needs_flite, pad
from tests.voice_fixtures import VoiceServer, start_voice_server

CALL_TIMEOUT_MS = 30_000  # a spoken turn: prompt, speech, recognition, the reply


def write_wav(path: Path, pcm: bytes) -> Path:
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(16000)
        wav.writeframes(pcm)
    return path


async def open_shop(page: Page, server: VoiceServer, host_site: HostSite) -> None:
    """A customer's web site (another origin) with the widget, opened."""
    html = (
        "<!doctype html><html><head><title>Shop</title></head><body><h1>Example shop</h1>"
        f'<script src="{server.served.url}/widget.js" data-echo-cancellation="off" '
        'data-open="true"></script></body></html>'
    )
    site = await host_site({"/shop": html})
    await page.goto(f"{site}/shop")


def line(page: Page, channel: str, text: str) -> Any:
    return page.locator(f'#ivr-widget .ivr-line[data-channel="{channel}"]', has_text=text)


async def received_audio_energy(page: Page) -> float:
    """totalAudioEnergy of the call's inbound audio: > 0 only if the browser played our voice."""
    return float(
        await page.evaluate(
            """async () => {
                const pc = window.ivrWidget.pc;
                if (!pc) return 0;
                let energy = 0;
                (await pc.getStats()).forEach((r) => {
                    if (r.type === "inbound-rtp" && r.kind === "audio") energy = r.totalAudioEnergy;
                });
                return energy;
            }"""
        )
    )


async def type_answer(page: Page, text: str) -> None:
    field = page.locator("#ivr-widget .ivr-input")
    await field.fill(text)
    await field.press("Enter")


async def press_keys(page: Page, keys: str) -> None:
    keypad = page.locator("#ivr-keypad")
    if await keypad.is_hidden():
        await page.locator("#ivr-widget .ivr-keypad-toggle").click()
    for key in keys:
        await keypad.locator(f'button[data-key="{key}"]').click()


def answered_then_asked_again(timeline: list[dict[str, Any]]) -> list[str]:
    """Steps whose question came again after the customer had answered it: what a visitor
    would call being asked twice (a question re-presented on the next channel before it was
    answered is where the conversation stood, not a repeat)."""
    answered: set[str] = set()
    repeated: list[str] = []
    for turn in timeline:
        step = turn["meta"].get("step")
        if turn["role"] == "customer" and step:
            answered.add(step)
        elif turn["role"] == "bot" and step in answered:  # (these tests answer right first)
            repeated.append(step)
    return repeated


@needs_flite
async def test_chat_then_a_spoken_call_then_chat_is_one_conversation(
    serve_app: ServeApp, tmp_path: Path, chromium: LaunchChromium, host_site: HostSite
) -> None:
    server = await start_voice_server(serve_app, tmp_path)
    # Lead-in silence: the call connects, the menu starts, then the visitor speaks over it.
    speech = write_wav(
        tmp_path / "balance.wav",
        pad(flite("I want to check my account balance"), before=1.0, after=1.5),
    )
    context = await chromium(fake_audio=speech)
    page = await context.new_page()
    await open_shop(page, server, host_site)

    await expect(line(page, "chat", "account number")).to_be_visible()
    await type_answer(page, ALICE["account"])
    await expect(line(page, "chat", "PIN")).to_be_visible()
    await press_keys(page, ALICE["pin"] + "#")  # outside a call, keys are sent on #
    await expect(line(page, "chat", "Thank you, Alice")).to_be_visible()

    await page.locator("#ivr-widget .ivr-call").click()  # the menu question, now by voice
    await expect(line(page, "call", "Your balance is 1250.40")).to_be_visible(
        timeout=CALL_TIMEOUT_MS
    )
    heard = line(page, "call", "balance").and_(page.locator(".ivr-customer"))
    await expect(heard.first).to_be_visible()
    assert await received_audio_energy(page) > 0
    await page.locator("#ivr-widget .ivr-hangup").click()

    # Back in the chat at the step the call reached: "anything else?"
    await expect(page.locator("#ivr-widget")).to_have_attribute("data-state", "chat")
    await expect(line(page, "chat", "anything else")).to_be_visible()
    await type_answer(page, "no")
    await expect(line(page, "chat", "Goodbye")).to_be_visible()

    conv_id = await page.locator("#ivr-widget").get_attribute("data-conversation")
    assert conv_id
    conv = await server.served.conversation(conv_id)
    assert conv["status"] == "ended"
    assert conv["identity"]["verified"] is True
    assert conv["last_intent"] == "check_balance"
    channels_in_order = [t["channel"] for t in conv["timeline"] if t["role"] != "system"]
    switches = [
        c for i, c in enumerate(channels_in_order) if i == 0 or c != channels_in_order[i - 1]
    ]
    assert switches == ["chat", "webrtc", "chat"]
    assert answered_then_asked_again(conv["timeline"]) == []
    assert_never_shows(ALICE["pin"], conv)
    assert_never_shows(ALICE["pin"], await page.content())


async def test_the_keypad_answers_a_browser_call_and_the_pin_stays_hidden(
    serve_app: ServeApp, tmp_path: Path, chromium: LaunchChromium, host_site: HostSite
) -> None:
    server = await start_voice_server(serve_app, tmp_path)
    quiet = write_wav(tmp_path / "quiet.wav", bytes(16000 * 2 * 3))  # no beeps from a fake mic
    context = await chromium(fake_audio=quiet)
    page = await context.new_page()
    await open_shop(page, server, host_site)

    await expect(line(page, "chat", "account number")).to_be_visible()
    await page.locator("#ivr-widget .ivr-call").click()  # straight to a call, same question
    await expect(line(page, "call", "account number")).to_be_visible(timeout=CALL_TIMEOUT_MS)
    await expect(page.locator("#ivr-widget")).to_have_attribute("data-state", "listening")
    await press_keys(page, ALICE["account"])
    await expect(line(page, "call", "PIN")).to_be_visible(timeout=CALL_TIMEOUT_MS)
    await expect(page.locator("#ivr-widget")).to_have_attribute("data-state", "listening")
    await press_keys(page, ALICE["pin"])
    await expect(line(page, "call", "press 1 for your balance")).to_be_visible(
        timeout=CALL_TIMEOUT_MS
    )
    # "Thank you, Alice" may not be interrupted: a key pressed over it would be dropped.
    await expect(page.locator("#ivr-widget")).to_have_attribute(
        "data-state", "listening", timeout=CALL_TIMEOUT_MS
    )
    await press_keys(page, "1")
    await expect(line(page, "call", "Your balance is 1250.40")).to_be_visible(
        timeout=CALL_TIMEOUT_MS
    )
    assert await received_audio_energy(page) > 0
    assert_never_shows(ALICE["pin"], await page.content())
    await page.locator("#ivr-widget .ivr-hangup").click()
    await expect(page.locator("#ivr-widget")).to_have_attribute("data-state", "chat")

    conv_id = await page.locator("#ivr-widget").get_attribute("data-conversation")
    conv = await server.served.conversation(str(conv_id))
    assert conv["identity"]["verified"] is True
    assert_never_shows(ALICE["pin"], conv)
    keyed = [t for t in conv["timeline"] if t["role"] == "customer" and t["channel"] == "webrtc"]
    assert [t["meta"].get("kind") for t in keyed] == ["dtmf", "dtmf", "dtmf"]
