"""Other ways to wait (a queue's `overflow: {offer: [callback, sms]}`), with real peers: a pjsua2
caller waits past `max_wait`, hears the offer over the music and presses a key. A callback
keeps their place without a call, and an agent's accept in the desktop (headless Chromium)
calls them back on a SIP phone (`ivr.softphone answer`) with the context headers; going on by
text makes their SMS thread the line the agent writes on."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import expect

from tests.agent_fixtures import add_agent, open_desk
from tests.browser import LaunchChromium, page_errors
from tests.serve_fixtures import ServeApp, Served, wait_until
from tests.softphone_fixtures import AGENT_TONE_HZ, tone_wav
from tests.test_agent_desktop_page import Desktop
from tests.test_sms import Phone
from tests.voice_fixtures import answering_softphone, free_udp_port, start_voice_server

pytestmark = pytest.mark.timeout(150)

CALLER = "+15551234567"
NUMBER = "7100"
FLOW = f"""\
flow: straight_to_line
description: Straight to a person
language: en
numbers: ["{NUMBER}"]
start: agent
steps:
  agent:
    transfer: {{queue: busy}}
"""
QUEUE = """
  busy:
    description: A line so busy that callers are offered other ways after a second
    max_wait: 1
    overflow: {offer: [callback, sms]}
"""


def add_busy_line(dialogs: Path) -> None:
    (dialogs / "straight.yaml").write_text(FLOW)
    queues = dialogs / "queues.yaml"
    queues.write_text(queues.read_text() + QUEUE)


async def timeline(server: Served, conv_id: str) -> list[tuple[str, str]]:
    conv = await server.conversation(conv_id)
    return [(t["role"], t["text"]) for t in conv["timeline"]]


async def offered(server: Served) -> str:
    """The waiting conversation's id once the offer was made to the caller."""

    async def made() -> str | None:
        status, body = await server.api("/api/conversations?limit=1")
        for conv in body["conversations"] if status == 200 else []:
            said = await timeline(server, conv["id"])
            if any(text.startswith("You can keep waiting, or press 1") for _, text in said):
                return str(conv["id"])
        return None

    return await wait_until(made, timeout=30.0)


async def waiting_by(server: Served, conv_id: str, way: str) -> dict[str, Any]:
    async def switched() -> dict[str, Any] | None:
        conv = await server.conversation(conv_id)
        return conv if (conv["handoff"] or {}).get("waiting_by") == way else None

    return await wait_until(switched, timeout=15.0)


async def test_a_caller_asks_to_be_called_back_and_the_agent_calls_them(
    serve_app: ServeApp,
    flow_files: tuple[Path, Path],
    tmp_path: Path,
    chromium: LaunchChromium,
) -> None:
    add_busy_line(flow_files[0])
    phone_port = free_udp_port()
    voice = await start_voice_server(
        serve_app, tmp_path, callback_uri=f"sip:{{number}}@127.0.0.1:{phone_port}"
    )
    server = voice.served
    await add_agent(server, "dana", name="Dana Scully", queues=("busy",), skills={})
    chosen = tmp_path / "offer-heard"
    call = asyncio.ensure_future(
        voice.call(
            NUMBER,
            f"wait-file {chosen}",  # until the offer is on the timeline
            "dtmf 1",
            f"wait-file {tmp_path / 'never'}",  # until we hang up on them
            extra=["--from", f"sip:{CALLER}@127.0.0.1"],
            timeout=60.0,
        )
    )
    conv_id = await offered(server)
    chosen.touch()
    result = await asyncio.wait_for(call, 30.0)
    assert result.outcome["hung_up_by"] == "remote", result.outcome
    conv = await waiting_by(server, conv_id, "callback")
    assert conv["status"] == "queued"
    said = await timeline(server, conv_id)
    assert ("bot", "We will call you back at 1 5 5 5 1 2 3 4 5 6 7 as soon as an agent is "
            "free. Goodbye.") in said  # fmt: skip

    # The customer's phone, where the callback will ring.
    async with answering_softphone(tmp_path, phone_port, "--hold", "4", "--timeout", "60") as phone:
        context = await chromium(fake_audio=tone_wav(tmp_path / "agent.wav", AGENT_TONE_HZ, 30.0))
        page = await context.new_page()
        errors = page_errors(page)
        desktop = Desktop(page)
        await desktop.open(server, "dana")
        await desktop.set_presence("available")
        await desktop.expect_offer(conv_id)
        await desktop.accept.click()
        held = desktop.conversation(conv_id)
        await expect(held.locator(".softphone")).to_have_attribute(
            "data-state", "connected", timeout=20_000
        )
        out, _ = await asyncio.wait_for(phone.communicate(), 30)
    answered = json.loads(out.decode().strip().splitlines()[-1])
    assert answered["headers"]["X-Conversation-Id"] == conv_id
    assert errors == []


async def test_a_caller_goes_on_by_text_keeping_their_place(
    serve_app: ServeApp, flow_files: tuple[Path, Path], tmp_path: Path
) -> None:
    add_busy_line(flow_files[0])
    voice = await start_voice_server(serve_app, tmp_path)  # no [sip] callback_uri: no callback
    server = voice.served
    await add_agent(server, "dana", name="Dana Scully", queues=("busy",), skills={})
    chosen = tmp_path / "offer-heard"
    call = asyncio.ensure_future(
        voice.call(
            NUMBER,
            f"wait-file {chosen}",
            "dtmf 1",
            f"wait-file {tmp_path / 'never'}",
            extra=["--from", f"sip:{CALLER}@127.0.0.1"],
            timeout=60.0,
        )
    )
    conv_id = await offered(server)
    said = await timeline(server, conv_id)
    offer = next(text for _, text in said if text.startswith("You can keep waiting"))
    assert offer == (
        "You can keep waiting, or press 1 to go on by text message, keeping your place in line."
    )
    chosen.touch()
    result = await asyncio.wait_for(call, 30.0)
    assert result.outcome["hung_up_by"] == "remote", result.outcome
    conv = await waiting_by(server, conv_id, "sms")
    assert conv["status"] == "queued"
    phone = Phone(server, CALLER)
    intro = await phone.next_text()
    assert intro["text"].startswith("You are still in line for an agent")

    desk = await open_desk(server, "dana")
    try:
        offer_frame = await desk.expect("offer", conversation_id=conv_id)
        assert offer_frame["card"]["customer"] is not None
        await desk.send({"type": "accept", "conversation_id": conv_id})
        await desk.expect("assigned")
        told = [(await phone.next_text())["text"] for _ in range(2)]
        assert told[0].startswith("You are next in line.")  # their place, kept
        assert told[1] == "Dana Scully is here to help you."
        await desk.send({"type": "send", "conversation_id": conv_id, "text": "Hello!"})
        assert (await phone.next_text())["text"] == "Dana Scully: Hello!"
        await phone.send("Hi, it is about my parcel")
        said_frame = await desk.expect("message", conversation_id=conv_id, role="customer")
        assert said_frame["channel"] == "sms"
    finally:
        await desk.close()
    channels = [t["channel"] for t in (await server.conversation(conv_id))["timeline"]]
    assert "sip" in channels and "sms" in channels
