"""The visitor widget in Firefox (Debian's firefox-esr, headless) against a real server: the same
script, signalling, ICE, DTLS, Opus and data channel as in Chromium, in the other engine.

Firefox's fake microphone is a tone, not speech, so spoken turns stay Chromium's to test
(tests/test_web_widget_calls.py); here the visitor answers with the keypad and the tone is kept
silent (`media.navigator.audio.fake_frequency` 0) so it is no barge-in. Its host candidates are
mDNS names (`<uuid>.local`), as a visitor's Firefox sends them.
"""

from __future__ import annotations

import json
from pathlib import Path

from aioice.ice import get_host_addresses

from ivr.config import WebRtcSettings
from tests.firefox import FirefoxPage, OpenFirefox
from tests.serve_fixtures import ALICE, ServeApp, assert_never_shows
from tests.voice_fixtures import start_voice_server

CALL_TIMEOUT_S = 30.0  # a turn of a call: the prompt, the keys, the reply


def visitor_route() -> tuple[str, dict[str, object]]:
    """The address the server offers the browser, and the Firefox preferences that reach it.

    As in production, the server offers an interface's address and Firefox offers mDNS names the
    server cannot resolve: the browser's checks reveal its address (a peer-reflexive candidate).
    Firefox sends no checks to a loopback candidate while it hides its addresses, so a machine
    with no other interface gets plain host candidates instead."""
    interfaces = [a for a in get_host_addresses(use_ipv4=True, use_ipv6=False) if a != "127.0.0.1"]
    if interfaces:
        return interfaces[0], {}
    return "127.0.0.1", {"media.peerconnection.ice.obfuscate_host_addresses": False}


def shop(widget_url: str) -> dict[str, str]:
    return {
        "/shop": (
            "<!doctype html><html><head><title>Shop</title></head><body><h1>Example shop</h1>"
            f'<script src="{widget_url}" data-open="true"></script></body></html>'
        )
    }


async def wait_line(page: FirefoxPage, channel: str, text: str) -> None:
    await page.wait_for(
        f"""return [...document.querySelectorAll('#ivr-widget .ivr-line[data-channel="{channel}"]')]
            .some((line) => line.textContent.includes({json.dumps(text)}));""",
        CALL_TIMEOUT_S,
    )


async def wait_state(page: FirefoxPage, state: str) -> None:
    await page.wait_for(
        f"return document.getElementById('ivr-widget')?.dataset.state === {json.dumps(state)};",
        CALL_TIMEOUT_S,
    )


async def click(page: FirefoxPage, selector: str) -> None:
    await page.evaluate(f"document.querySelector({json.dumps(selector)}).click();")


async def press_keys(page: FirefoxPage, keys: str) -> None:
    for key in keys:
        await click(page, f'#ivr-keypad button[data-key="{key}"]')


async def test_the_widget_calls_and_takes_keys_in_firefox(
    serve_app: ServeApp, tmp_path: Path, firefox: OpenFirefox
) -> None:
    address, route_preferences = visitor_route()
    server = await start_voice_server(serve_app, tmp_path, webrtc=WebRtcSettings(addresses=address))
    page = await firefox(
        "/shop",
        shop(f"{server.served.url}/widget.js"),
        preferences={"media.navigator.audio.fake_frequency": 0, **route_preferences},
    )
    assert "Firefox/" in await page.evaluate("return navigator.userAgent;")

    await wait_line(page, "chat", "account number")
    await click(page, "#ivr-widget .ivr-call")
    await wait_line(page, "call", "account number")
    await wait_state(page, "listening")
    await click(page, "#ivr-widget .ivr-keypad-toggle")
    await press_keys(page, ALICE["account"])
    await wait_line(page, "call", "PIN")
    await wait_state(page, "listening")
    await press_keys(page, ALICE["pin"])
    await wait_line(page, "call", "press 1 for your balance")
    await wait_state(page, "listening")
    await press_keys(page, "1")
    await wait_line(page, "call", "Your balance is 1250.40")

    inbound = await page.evaluate(
        """const stats = await window.ivrWidget.pc.getStats();
           let found = null;
           stats.forEach((r) => { if (r.type === "inbound-rtp" && r.kind === "audio") found = r; });
           return found && {packets: found.packetsReceived, energy: found.totalAudioEnergy};"""
    )
    assert inbound is not None and inbound["packets"] > 50
    assert inbound["energy"] > 0  # Firefox decoded the bot's voice: not silence
    html = await page.evaluate("return document.documentElement.outerHTML;")
    assert_never_shows(ALICE["pin"], html)

    await click(page, "#ivr-widget .ivr-hangup")
    await wait_state(page, "chat")
    conv_id = await page.evaluate("return window.ivrWidget.conversation;")
    conv = await server.served.conversation(str(conv_id))
    assert conv["identity"]["verified"] is True
    assert_never_shows(ALICE["pin"], conv)
    keyed = [t for t in conv["timeline"] if t["role"] == "customer" and t["channel"] == "webrtc"]
    assert [t["meta"].get("kind") for t in keyed] == ["dtmf", "dtmf", "dtmf"]
