"""Resuming a web chat: the `conversation` frame's handle brings a reloaded page (or a new socket
after a dropped one) back to its conversation where it stood, a queue's place and an agent kept;
forged, expired and ended handles are refused with a clear error and nothing of the conversation.

Real websockets against the in-process server (tests/serve_fixtures.py). A reload is a socket
closed with 1001 (going away), as browsers close it; a customer who leaves closes with 1000.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from playwright.async_api import expect

import ivr.web.chat_continuity
from ivr.channels.links import ResumeHandles
from ivr.store.links import LinkStore
from ivr.web.continue_page import ENDED_REASON
from ivr.web.keys import CONVERSATIONS, LINKS, QUEUES, STORE
from tests.agent_fixtures import add_agent, open_desk, verified_chat_asking_for_an_agent
from tests.browser import LaunchChromium, page_errors
from tests.serve_fixtures import (
    ALICE,
    Chat,
    ServeApp,
    Served,
    assert_never_shows,
    prompt_text,
    wait_until,
)
from tests.test_continue_links import CARD_FOLLOW_UP, continue_chat, escalated_by_phone, token_of

pytestmark = pytest.mark.timeout(60)


def handle_of(chat: Chat) -> str:
    """The resume handle of the last `conversation` frame the chat got."""
    return [f for f in chat.frames if f["type"] == "conversation"][-1]["resume"]


async def reload(chat: Chat) -> None:
    """The page goes away as a browser's does on a reload (1001), not as a customer leaving."""
    await chat.ws.close(code=aiohttp.WSCloseCode.GOING_AWAY)


async def resumed(server: Served, handle: str) -> Chat:
    chat = await server.chat()
    await chat.expect("hello")
    await chat.send({"type": "resume", "token": handle})
    return chat


async def assert_refused(server: Served, handle: str, reason: str) -> None:
    chat = await resumed(server, handle)
    error = await chat.expect("error", reason)
    assert error["kind"] == "resume_refused"
    with pytest.raises((TimeoutError, ConnectionError)):
        await chat.next_frame(timeout=0.3)  # no conversation, no history, no bot
    assert [f["type"] for f in chat.frames] == ["hello", "error"]
    await chat.start("bank")  # the page starts afresh on the same socket
    await chat.expect_prompt("ask_account")
    await chat.close()


def bot_texts(frames: list[dict[str, Any]]) -> list[str]:
    return [f["text"] for f in frames if f["type"] == "bot"]


async def verified_at_the_menu(server: Served) -> tuple[Chat, str]:
    chat = await server.chat()
    conv_id = await chat.start("bank")
    await chat.say(ALICE["account"])
    await chat.keys(ALICE["pin"])
    await chat.expect_prompt("main_menu")
    return chat, conv_id


# ---------------------------------------------------------------- a bot's conversation


async def test_a_reloaded_chat_goes_on_at_its_step_without_asking_again(server: Served) -> None:
    first, conv_id = await verified_at_the_menu(server)
    handle = handle_of(first)
    assert conv_id in handle and ALICE["account"] not in handle
    await reload(first)

    chat = await resumed(server, handle)
    conversation = await chat.expect("conversation")
    assert conversation["id"] == conv_id and conversation["resume"]
    turns = (await chat.expect("history"))["turns"]
    assert [t["text"] for t in turns][-3:] == ["[secure input]", "Thank you, Alice.",
                                                chat.prompt("main_menu")]  # fmt: skip
    await chat.expect_prompt("main_menu", expects_answer=True)  # the pending question, again
    assert bot_texts(chat.frames) == [chat.prompt("main_menu")]  # account and PIN not asked
    await chat.keys("1")
    await chat.expect_bot(r"^Your balance is 1250\.40 euros\.$")

    # Not single use: the fresh handle (and the first, still unexpired) resume it again.
    await reload(chat)
    again = await resumed(server, handle_of(chat))
    assert (await again.expect("conversation"))["id"] == conv_id
    await again.expect_prompt("anything_else", expects_answer=True)
    conv = await server.conversation(conv_id)
    assert conv["identity"]["verified"] and conv["channels"] == ["chat"]
    assert "the customer came back to the chat" in [t["text"] for t in conv["timeline"]]
    assert_never_shows(ALICE["pin"], chat.frames + again.frames)


async def test_forged_and_expired_handles_are_refused_and_show_nothing(server: Served) -> None:
    first, conv_id = await verified_at_the_menu(server)
    handle = handle_of(first)
    await first.close()
    sig = handle.rindex(".") + 1
    forged = [
        handle[:sig] + ("A" if handle[sig] != "A" else "B") + handle[sig + 1 :],
        "0" * 32 + handle[len(conv_id) :],  # another conversation, this one's signature
        token_of(server.app[LINKS].make(conv_id)),  # a continue link is no handle
        "not-a-handle",
        "x" * 600,
    ]
    for bad in forged:
        await assert_refused(server, bad, "^This chat could not be resumed.$")

    secret = await LinkStore(server.app[STORE].database).secret("continue_links")
    ttl = server.settings.chat.idle_timeout
    long_ago = ResumeHandles(secret, ttl, clock=lambda: time.time() - ttl - 5)
    await assert_refused(server, long_ago.make(conv_id), "left too long ago")
    # The genuine handle still works.
    chat = await resumed(server, handle)
    assert (await chat.expect("conversation"))["id"] == conv_id


async def test_an_ended_conversation_cannot_be_resumed(server: Served) -> None:
    chat, _conv_id = await verified_at_the_menu(server)
    await chat.keys("1")
    await chat.expect_prompt("anything_else")
    await chat.say("no")
    await chat.expect("end")
    await assert_refused(server, handle_of(chat), f"^{ENDED_REASON}$")


async def test_a_continue_link_chat_reloads_through_its_handle(server: Served) -> None:
    conv_id = await escalated_by_phone(server)
    token = token_of(server.app[LINKS].make(conv_id))
    first = await continue_chat(server, token)
    await first.expect_prompt("main_menu", expects_answer=True)
    await reload(first)

    chat = await resumed(server, handle_of(first))  # not the link: it is used
    assert (await chat.expect("conversation"))["id"] == conv_id
    turns = (await chat.expect("history"))["turns"]
    assert turns[-1]["text"] == chat.prompt("main_menu")
    await chat.expect_prompt("main_menu", expects_answer=True)
    assert CARD_FOLLOW_UP not in bot_texts(chat.frames)  # said once, before the reload
    again = await continue_chat(server, token)
    await again.expect_error("This link was already used")


# ---------------------------------------------------------------- with people


async def position(server: Served, conv_id: str) -> tuple[int | None, float | None]:
    queues = server.app[QUEUES]
    entry = queues.router.entry(conv_id)
    return queues.router.position(conv_id, queues.now()), entry and entry.enqueued_at


async def test_a_reload_while_waiting_keeps_the_place_and_the_agent_answers_there(
    server: Served,
) -> None:
    first, conv_id = await verified_chat_asking_for_an_agent(server)
    await first.expect("notice", "next in line")
    _behind, behind_id = await verified_chat_asking_for_an_agent(server)

    async def behind_in_line() -> bool:
        return (await position(server, behind_id))[0] == 2

    await wait_until(behind_in_line, timeout=5)
    place = await position(server, conv_id)
    assert place[0] == 1
    await reload(first)

    chat = await resumed(server, handle_of(first))
    assert (await chat.expect("conversation"))["id"] == conv_id
    await chat.expect("history")
    await chat.expect("transfer", queue="cards")
    await chat.expect("notice", "still in your place")
    assert await position(server, conv_id) == place  # first in line, since when it was
    await chat.say("still here")
    await add_agent(server, "dana", name="Dana Scully")
    desk = await open_desk(server, "dana")
    offer = await desk.expect("offer", conversation_id=conv_id)
    transcript = [t["text"] for t in offer["card"]["transcript"]]
    assert "still here" in transcript
    assert not any("left" in text for text in transcript)
    await desk.send({"type": "accept", "conversation_id": conv_id})
    await chat.expect("agent_joined", name="Dana Scully")
    await chat.say("My card is lost")
    await desk.expect("message", conversation_id=conv_id, role="customer", text="My card is lost")
    await desk.send({"type": "send", "conversation_id": conv_id, "text": "Blocked it."})
    await chat.expect("agent", "Blocked it", name="Dana Scully")

    # With the agent: a reload keeps them too.
    await reload(chat)
    await desk.send({"type": "send", "conversation_id": conv_id, "text": "Are you there?"})
    await desk.expect("message", conversation_id=conv_id, role="agent", text="Are you there?")
    back = await resumed(server, handle_of(chat))
    turns = (await back.expect("history"))["turns"]
    assert turns[-1]["text"] == "Are you there?"  # said while the page reloaded
    await back.expect("agent_joined", name="Dana Scully")
    await back.say("Yes, thanks")
    await desk.expect("message", conversation_id=conv_id, role="customer", text="Yes, thanks")
    assert not [f for f in desk.frames if f["type"] == "customer_left"]
    await desk.send({"type": "end", "conversation_id": conv_id})
    await back.expect("end")
    await desk.close()


async def test_nobody_back_within_the_grace_is_an_abandon(
    server: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ivr.web.chat_continuity, "GRACE_SECONDS", 0.5)
    chat, conv_id = await verified_chat_asking_for_an_agent(server)
    await chat.expect("notice", "next in line")
    await reload(chat)
    assert (await server.conversation(conv_id))["status"] == "queued"  # not at once

    async def abandoned() -> dict[str, Any] | None:
        conv = await server.conversation(conv_id)
        return conv if conv["status"] == "ended" else None

    conv = await wait_until(abandoned, timeout=5)
    assert any("left while waiting" in t["text"] for t in conv["timeline"])
    await assert_refused(server, handle_of(chat), f"^{ENDED_REASON}$")


async def test_after_a_restart_the_waiting_chat_gets_its_line_back(
    serve_app: ServeApp, tmp_path: Path
) -> None:
    store_url = f"sqlite:///{tmp_path}/restart.db"
    before = await serve_app(store_url)
    first, conv_id = await verified_chat_asking_for_an_agent(before)
    await first.expect("notice", "next in line")
    await before.stop()

    after = await serve_app(store_url)
    chat = await resumed(after, handle_of(first))  # the secret is the store's: still valid
    assert (await chat.expect("conversation"))["id"] == conv_id
    await chat.expect("notice", "next in line")  # the queue's own, on its new line
    await add_agent(after, "night", name="Night Owl")
    desk = await open_desk(after, "night")
    await desk.expect("offer", conversation_id=conv_id)
    await desk.send({"type": "accept", "conversation_id": conv_id})
    await chat.expect("agent_joined", name="Night Owl")
    await chat.say("hello again")
    await desk.expect("message", conversation_id=conv_id, role="customer", text="hello again")
    await desk.close()


# ---------------------------------------------------------------- in a browser


async def test_the_chat_page_reloads_into_its_conversation(
    server: Served, chromium: LaunchChromium
) -> None:
    conv_id = await escalated_by_phone(server)
    page = await (await chromium()).new_page()
    errors = page_errors(page)
    await page.goto(server.app[LINKS].make(conv_id))
    body = page.locator("body")
    await expect(body).to_have_attribute("data-conversation", conv_id)
    await expect(page.locator("#choices button")).to_have_count(3)
    assert page.url == f"{server.url}/chat"  # the used link is not what a reload opens

    await page.reload()
    await expect(body).to_have_attribute("data-conversation", conv_id)
    await expect(page.locator(".msg.earlier").last).to_contain_text(
        prompt_text(server.prompts, "main_menu")
    )
    await page.locator("#choices button", has_text="Check balance").click()
    balance = page.locator(".msg.bot:not(.earlier)", has_text="Your balance is 1250.40 euros.")
    await expect(balance).to_have_count(1)
    assert server.app[CONVERSATIONS].live(conv_id) is not None
    assert ALICE["pin"] not in await page.locator("#log").inner_text()
    assert errors == []
