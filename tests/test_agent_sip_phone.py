"""An agent whose phone is a SIP phone: a real caller (`ivr call`, pjsua2, following transfers)
waits in the queue, the agent accepts on the desktop's socket, and the call is transferred to
their phone (`ivr.softphone answer`, or sipp refusing with 486) with the conversation's context
headers, while the desk keeps the card and files the wrap-up."""

from __future__ import annotations

import asyncio
import contextlib
import json
from asyncio.subprocess import Process
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from playwright.async_api import expect

from ivr.conversation import Role
from ivr.store.queues import QueueStateStore
from ivr.web.keys import AGENTS, QUEUES, STORE
from tests.agent_fixtures import Desk, add_agent, open_desk
from tests.browser import LaunchChromium, page_errors
from tests.serve_fixtures import ALICE, ServeApp, Served, wait_until
from tests.softphone_fixtures import ASK_FOR_AN_AGENT, queued_call
from tests.test_agent_desktop_page import Desktop
from tests.test_softphone import BUSY as BUSY_PHONE  # sipp: 486 to any INVITE
from tests.test_softphone import _udp_free
from tests.voice_fixtures import (
    VoiceServer,
    answering_softphone,
    free_udp_port,
    running,
    start_voice_server,
)

DANA = "Dana Scully"
# Counts the page's requests for a microphone (there must be none).
MICROPHONE_WATCH = """
window.__microphone = 0;
const ask = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
navigator.mediaDevices.getUserMedia = (c) => { window.__microphone += 1; return ask(c); };
"""


async def until(check: Callable[[], bool], timeout: float) -> None:
    async def probe() -> bool:
        return check()

    await wait_until(probe, timeout=timeout)


async def agent_with_phone(server: Served, uri: str) -> Desk:
    """Dana, whose calls go to `uri`, at her desk (not yet available)."""
    await add_agent(server, "dana", name=DANA)
    assert await server.app[AGENTS].set_phone("dana", uri)
    desk = await open_desk(server, "dana", available=False)
    assert desk.hello["agent"]["phone"] == uri
    return desk


async def accept_the_call(voice: VoiceServer, desk: Desk, *script: str) -> tuple[str, Any]:
    """A caller asks for an agent (their softphone follows transfers); Dana accepts."""
    call = asyncio.ensure_future(
        voice.call("1000", *ASK_FOR_AN_AGENT, *script, extra=["--follow-transfer"], timeout=40.0)
    )
    conv_id = await queued_call(voice.served)
    await desk.presence("available")
    await desk.expect("offer", conversation_id=conv_id, timeout=10.0)
    await desk.send({"type": "accept", "conversation_id": conv_id})
    card = (await desk.expect("assigned"))["card"]
    assert card["conversation_id"] == conv_id
    assert card["medium"] == "voice" and card["audio"] == "phone"  # no softphone in the desk
    return conv_id, call


async def timeline(server: Served, conv_id: str) -> list[tuple[str, str]]:
    conv = await server.conversation(conv_id)
    return [(t["role"], t["text"]) for t in conv["timeline"]]


@contextlib.asynccontextmanager
async def answering_phone(tmp_path: Path) -> AsyncIterator[tuple[str, Process]]:
    """Dana's phone: `ivr.softphone answer` (its URI; it prints the INVITE's headers)."""
    port = free_udp_port()
    async with answering_softphone(tmp_path, port, "--hold", "1", "--timeout", "60") as phone:
        yield f"sip:dana@127.0.0.1:{port}", phone


@contextlib.asynccontextmanager
async def busy_phone(tmp_path: Path) -> AsyncIterator[str]:
    """Dana's phone is busy: sipp answers 486 (its URI)."""
    port, media = free_udp_port(), free_udp_port()
    (tmp_path / "busy.xml").write_text(BUSY_PHONE)
    argv = ["sipp", "-sf", "busy.xml", "-i", "127.0.0.1", "-mi", "127.0.0.1", "-p", str(port),
            "-mp", str(media), "-m", "1", "-nostdin", "-timeout", "60s"]  # fmt: skip
    async with running(argv, tmp_path, lambda: not _udp_free(port)):
        yield f"sip:dana@127.0.0.1:{port}"


async def test_an_agent_with_a_sip_phone_takes_the_call_there_with_its_context(
    serve_app: ServeApp, tmp_path: Path
) -> None:
    voice = await start_voice_server(serve_app, tmp_path)
    server = voice.served
    async with answering_phone(tmp_path) as (uri, phone):
        desk = await agent_with_phone(server, uri)
        conv_id, call = await accept_the_call(voice, desk, "expect-transfer")
        await desk.expect("phone", conversation_id=conv_id, state="ringing", uri=uri)
        await desk.expect("phone", conversation_id=conv_id, state="transferred", timeout=30.0)
        result = await asyncio.wait_for(call, 60.0)
        out, _ = await asyncio.wait_for(phone.communicate(), 30.0)
    assert result.ok, (result.outcome, result.stderr[-2000:])
    assert result.outcome["transfer_target"] == uri
    headers = json.loads(out.decode().strip().splitlines()[-1])["headers"]
    assert headers["X-Conversation-Id"] == conv_id
    assert (headers["X-Customer-Id"], headers["X-Verified-By"]) == (ALICE["account"], "pin")

    # Our leg of the call ended with the transfer: that is not the customer leaving, and the
    # queue no longer holds the call. The agent ends and wraps up on the desk as usual.
    assert not server.app[QUEUES].holds(conv_id)
    await desk.send({"type": "end", "conversation_id": conv_id})
    await desk.expect("ended", conversation_id=conv_id)
    await desk.send(
        {"type": "wrap_up", "conversation_id": conv_id, "code": "resolved", "notes": "card sent"}
    )
    await desk.expect("wrapped_up", conversation_id=conv_id)
    assert not [f for f in desk.frames if f["type"] == "customer_left"], desk.frames
    conv = await server.conversation(conv_id)
    assert conv["status"] == "ended"
    assert conv["handoff"]["phone"] == uri
    assert conv["handoff"]["wrap_up"]["code"] == "resolved"
    said = await timeline(server, conv_id)
    assert (Role.SYSTEM, f"transferred to {DANA}'s phone {uri}") in said
    assert (Role.SYSTEM, "the customer left") not in said
    assert said[-1] == (Role.SYSTEM, f"{DANA} ended the conversation")
    events = await QueueStateStore(server.app[STORE].database).events_since(0)
    assert [e.event for e in events if e.conversation_id == conv_id] == [
        "enqueued",
        "answered",  # once the phone had it
        "handled",
    ]
    await desk.close()


async def test_a_phone_that_refuses_puts_the_caller_back_in_line_and_the_agent_on_break(
    serve_app: ServeApp, tmp_path: Path
) -> None:
    voice = await start_voice_server(serve_app, tmp_path)
    server = voice.served
    async with busy_phone(tmp_path) as uri:
        desk = await agent_with_phone(server, uri)
        # The caller's softphone gives up once its transfer fails (and hangs up): by then the
        # queue has them waiting again, so their leaving is an abandonment of the queue.
        conv_id, call = await accept_the_call(voice, desk, "expect-transfer")
        failed = await desk.expect("phone", conversation_id=conv_id, state="failed", timeout=30)
        result = await asyncio.wait_for(call, 60.0)
    assert failed["reason"] == "486 Busy Here"
    presence = next(f for f in desk.frames if f["type"] == "presence" and f["state"] == "break")
    assert "486 Busy Here" in presence["reason"]
    assert "486" in json.dumps(result.outcome["actions"][-1]), result.outcome

    async def ended() -> list[tuple[str, str]] | None:
        said = await timeline(server, conv_id)
        return said if said[-1] == (Role.SYSTEM, "the customer left while waiting") else None

    said = await wait_until(ended, timeout=10.0)
    back = f"{DANA}'s phone did not take the call (486 Busy Here): back in queue cards"
    assert (Role.SYSTEM, back) in said  # then their place again, maybe, and they left
    assert said.index((Role.SYSTEM, back)) > said.index((Role.SYSTEM, f"{DANA} joined"))
    conv = await server.conversation(conv_id)
    assert "agent" not in conv["handoff"] and "phone" not in conv["handoff"]
    assert server.app[QUEUES].presence(desk.hello["agent"]["id"]).value == "break"
    # It kept its first place: one "enqueued", never "answered", and its wait counted from then.
    events = await QueueStateStore(server.app[STORE].database).events_since(0)
    mine = [e for e in events if e.conversation_id == conv_id]
    assert [e.event for e in mine] == ["enqueued", "abandoned"], mine
    assert mine[1].seconds is not None
    assert abs(mine[1].seconds - (mine[1].ts - mine[0].ts)) < 1.0
    await desk.close()


async def test_the_desktop_of_an_agent_with_a_sip_phone_opens_no_microphone(
    serve_app: ServeApp, tmp_path: Path, chromium: LaunchChromium
) -> None:
    voice = await start_voice_server(serve_app, tmp_path)
    server = voice.served
    page = await (await chromium(microphone="denied")).new_page()
    errors = page_errors(page)
    await page.add_init_script(MICROPHONE_WATCH)
    desktop = Desktop(page)
    async with answering_phone(tmp_path) as (uri, _):
        await add_agent(server, "dana", name=DANA)
        assert await server.app[AGENTS].set_phone("dana", uri)
        await desktop.open(server, "dana")
        call = asyncio.ensure_future(
            voice.call(
                "1000", *ASK_FOR_AN_AGENT, "expect-transfer", extra=["--follow-transfer"],
                timeout=40.0,
            )
        )  # fmt: skip
        conv_id = await queued_call(server)
        await desktop.set_presence("available")
        await desktop.expect_offer(conv_id)
        await desktop.accept.click()
        held = desktop.conversation(conv_id)
        phone = held.locator(".softphone")
        await expect(phone).to_have_attribute("data-state", "transferred", timeout=30_000)
        await expect(phone).to_contain_text(f"On your phone ({uri})")
        await expect(held.locator("button.transfer")).to_be_hidden()
        assert (await asyncio.wait_for(call, 60.0)).ok
    assert await page.evaluate("window.__microphone") == 0
    await held.locator("button.end").click()
    await held.locator("select.code").select_option("resolved")
    await held.locator("button.submit-wrap-up").click()
    await expect(held).to_have_count(0)
    assert not errors, errors
