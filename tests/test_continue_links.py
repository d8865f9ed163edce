"""Continue links (`/c/<token>`): a conversation escalated on one channel goes on in a web chat,
at its step, with who the customer is and what they said; a tampered, expired or re-used link is
refused with a clear page, and no conversation data leaks.

The server runs in-process (`server`); the first channel is a scripted phone call run by the
server's own ConversationService (a channel named `sip`), or a real web chat. The escalation's
text (with its link) is held by the outbox gateway, where the tests read it.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import expect

from ivr.channels.links import ContinueLinks, LinkRefused
from ivr.channels.simulator import SimulatorChannel
from ivr.conversation import Conversation, Status
from ivr.store import open_store
from ivr.store.links import LinkStore
from ivr.web.keys import CONVERSATIONS, LINKS, STORE
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

pytestmark = pytest.mark.timeout(60)

CARD_FOLLOW_UP = (
    "Welcome back, Alice. Your replacement card for the card ending in 4321 arrives within "
    "five working days."
)


class Phone(SimulatorChannel):
    """Stands for a phone call: a caller who keys and says the scripted lines, then hangs up."""

    name = "sip"

    def __init__(self, *lines: str) -> None:
        self.lines = list(lines)
        self.heard: list[str] = []
        super().__init__(self._next_line, self.heard.append)

    async def _next_line(self) -> str | None:
        return self.lines.pop(0) if self.lines else None


async def escalated_by_phone(server: Served) -> str:
    """Alice calls, verifies by PIN, reports her card lost and takes the offer of a text."""
    conversations = server.app[CONVERSATIONS]
    phone = Phone(f"dtmf:{ALICE['account']}#", f"dtmf:{ALICE['pin']}#", "dtmf:2", "yes")
    live = await conversations.start(phone, "bank", contact={"phone": "+15550100"})
    stop = await asyncio.wait_for(live.task, 10)
    assert stop.status is Status.ESCALATED, phone.heard
    conv = await server.conversation(live.conv.id)
    assert conv["position"]["step"] == "card_follow_up"
    return live.conv.id


async def link_texted_to(server: Served, number: str) -> str:
    """The continue link in the text the escalation sent (the outbox gateway holds it)."""
    status, body = await server.api("/api/sms/outbox")
    assert status == 200, body
    [text] = [t for t in body["texts"] if t["to"] == number]
    return text["text"].rsplit(" ", 1)[1]


def token_of(url: str) -> str:
    return url.rsplit("/c/", 1)[1]


async def page(server: Served, token: str) -> tuple[int, str]:
    async with server.session.get(f"{server.url}/c/{token}") as resp:
        assert resp.headers["Cache-Control"] == "no-store"
        assert resp.headers["Referrer-Policy"] == "no-referrer"
        return resp.status, await resp.text()


def assert_shows_nothing_of(body: str, conv_id: str, token: str) -> None:
    for private in (ALICE["name"], ALICE["account"], ALICE["pin"], conv_id, token):
        assert private not in body, f"{private!r} leaks into the page"


async def continue_chat(server: Served, token: str) -> Chat:
    chat = await server.chat()
    await chat.expect("hello")
    await chat.send({"type": "continue", "token": token})
    return chat


def bot_texts(frames: list[dict[str, Any]]) -> list[str]:
    return [f["text"] for f in frames if f["type"] == "bot"]


# ---------------------------------------------------------------- the link works


async def test_a_link_continues_the_phone_conversation_in_chat_without_asking_again(
    server: Served,
) -> None:
    conv_id = await escalated_by_phone(server)
    url = await link_texted_to(server, "+15550100")
    assert url.startswith(f"{server.settings.public_url}/c/")
    token = token_of(url)
    assert ALICE["account"] not in url and ALICE["name"] not in url

    for _ in range(2):  # a link preview's fetch does not use the link up
        status, body = await page(server, token)
        assert status == 200 and "/chat/ws" in body
        assert_shows_nothing_of(body, conv_id, token)

    chat = await continue_chat(server, token)
    assert (await chat.expect("conversation"))["id"] == conv_id
    history = (await chat.expect("history"))["turns"]
    assert 0 < len(history) <= 6 and {t["channel"] for t in history} == {"sip", "sms"}
    assert history[-2]["text"].endswith("continue in your browser: [link]")  # no token
    assert history[-1]["text"] == chat.prompt("sms_sent")  # said once the text was on its way
    await chat.expect_bot(f"^{CARD_FOLLOW_UP}$")
    await chat.expect_prompt("main_menu", expects_answer=True)
    assert chat.prompt("ask_account") not in bot_texts(chat.frames)
    assert chat.prompt("ask_pin") not in bot_texts(chat.frames)

    await chat.say("check balance")
    await chat.expect_bot("^Your balance is 1250.40 euros.$")
    conv = await server.conversation(conv_id)
    assert conv["channels"] == ["sip", "sms", "chat"]
    assert [t["channel"] for t in conv["timeline"]].count("sms") == 1  # the text with the link
    assert "the customer opened a continue link" in [t["text"] for t in conv["timeline"]]
    assert conv["identity"]["verified"] and conv["identity"]["verified_on"] == "sip"
    assert conv["slots"]["account_number"] == ALICE["account"]
    assert_never_shows(ALICE["pin"], conv)
    assert_never_shows(ALICE["pin"], chat.frames)


async def test_a_web_chat_conversation_continues_at_its_stored_step(server: Served) -> None:
    first = await server.chat()
    conv_id = await first.start("bank")
    await first.expect_prompt("ask_account")
    await first.say(ALICE["account"])
    await first.expect_prompt("ask_pin")
    await first.keys(ALICE["pin"] + "#")
    await first.expect_prompt("main_menu")
    await first.close()
    store = server.app[STORE]

    async def stored() -> Conversation | None:  # the closed chat's run stores itself as it stops
        if server.app[CONVERSATIONS].live(conv_id) is not None:
            return None
        return await store.get(conv_id)

    conv = await wait_until(stored)
    # What an escalation leaves behind: where to resume, and that it waits for the customer.
    conv.position.step = "menu"
    conv.status = Status.ESCALATED
    conv.handoff = {"kind": "escalation", "channel": "sms", "resume": "menu"}
    await store.save(conv)

    chat = await continue_chat(server, token_of(server.app[LINKS].make(conv_id)))
    history = (await chat.expect("history"))["turns"]
    assert "[secure input]" in [t["text"] for t in history]  # the PIN, masked
    await chat.expect_prompt("main_menu", expects_answer=True)
    assert bot_texts(chat.frames) == [chat.prompt("main_menu")]
    assert_never_shows(ALICE["pin"], chat.frames)


async def test_two_redemptions_at_once_one_wins(server: Served) -> None:
    links = server.app[LINKS]
    token = token_of(links.make("c0ffee"))
    results = await asyncio.gather(*(links.redeem(token) for _ in range(4)), return_exceptions=True)
    assert results.count("c0ffee") == 1
    refused = [r for r in results if isinstance(r, LinkRefused)]
    assert len(refused) == 3 and {(r.kind, r.status) for r in refused} == {("used", 410)}


async def test_links_sent_before_a_restart_still_open(serve_app: ServeApp, tmp_path: Path) -> None:
    store_url = f"sqlite:///{tmp_path}/kept.db"
    before = await serve_app(store_url)
    conv_id = await escalated_by_phone(before)
    token = token_of(before.app[LINKS].make(conv_id))
    await before.stop()

    after = await serve_app(store_url)
    assert (await page(after, token))[0] == 200
    chat = await continue_chat(after, token)
    await chat.expect_bot(f"^{CARD_FOLLOW_UP}$")


# ---------------------------------------------------------------- refused, saying why


async def test_a_tampered_link_is_refused_403_and_shows_nothing(server: Served) -> None:
    conv_id = await escalated_by_phone(server)
    token = token_of(server.app[LINKS].make(conv_id))
    other = "0" * 32  # the signature of another conversation's id does not hold
    # A signature's first character carries six bits of it (its last only four: not that one).
    sig = token.rindex(".") + 1
    tampered = [
        token[:sig] + ("A" if token[sig] != "A" else "B") + token[sig + 1 :],
        other + token[len(conv_id) :],
        "not-a-token",
        "x" * 600,
    ]
    for bad in tampered:
        status, body = await page(server, bad)
        assert status == 403, bad
        assert "This link is not valid" in body
        assert_shows_nothing_of(body, conv_id, token)

        chat = await continue_chat(server, bad)
        error = await chat.expect_error("This link is not valid")
        assert_shows_nothing_of(str(error), conv_id, token)
        with pytest.raises((TimeoutError, ConnectionError)):
            await chat.next_frame(timeout=0.3)  # no conversation, no history, no bot
        await chat.close()
    # The genuine link still works: a forgery does not use it up.
    assert (await page(server, token))[0] == 200


async def test_an_expired_link_is_refused_410(server: Served) -> None:
    conv_id = await escalated_by_phone(server)
    store = LinkStore(server.app[STORE].database)
    secret = await store.secret("continue_links")  # the server's own, kept in its store
    ttl = server.settings.http.link_minutes * 60
    an_hour_ago = ContinueLinks(secret, server.url, ttl, store, clock=lambda: time.time() - ttl - 5)
    token = token_of(an_hour_ago.make(conv_id))

    status, body = await page(server, token)
    assert status == 410 and "This link has expired" in body
    assert_shows_nothing_of(body, conv_id, token)
    chat = await continue_chat(server, token)
    await chat.expect_error("This link has expired")
    with pytest.raises(LinkRefused) as refused:
        await server.app[LINKS].redeem(token)
    assert (refused.value.kind, refused.value.status) == ("expired", 410)
    assert (await server.conversation(conv_id))["channels"] == ["sip", "sms"]  # nothing continued


async def test_a_used_link_is_refused_410(server: Served) -> None:
    conv_id = await escalated_by_phone(server)
    token = token_of(server.app[LINKS].make(conv_id))
    first = await continue_chat(server, token)
    await first.expect_bot(f"^{CARD_FOLLOW_UP}$")

    status, body = await page(server, token)
    assert status == 410 and "This link was already used" in body
    assert_shows_nothing_of(body, conv_id, token)
    again = await continue_chat(server, token)
    error = await again.expect_error("This link was already used")
    assert [f["type"] for f in again.frames] == ["hello", "error"]
    assert_shows_nothing_of(str(error), conv_id, token)
    assert server.app[CONVERSATIONS].live(conv_id) is not None  # the first chat goes on


async def test_a_link_to_an_ended_conversation_is_refused_410(server: Served) -> None:
    conv_id = await escalated_by_phone(server)
    token = token_of(server.app[LINKS].make(conv_id))
    store = server.app[STORE]
    conv = await store.get(conv_id)
    assert conv is not None
    conv.status = Status.ENDED
    await store.save(conv)

    status, body = await page(server, token)
    assert status == 410 and "This conversation has ended" in body
    assert_shows_nothing_of(body, conv_id, token)
    chat = await continue_chat(server, token)
    await chat.expect_error("This conversation has ended")
    await server.app[LINKS].check(token)  # refused for the conversation: the link is unused


# ---------------------------------------------------------------- the store, on both databases


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
async def test_the_secret_is_made_once_and_a_nonce_is_used_once(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = (
        f"sqlite:///{tmp_path / 'ivr.db'}"
        if backend == "sqlite"
        else request.getfixturevalue("fresh_postgres_url")
    )
    async with open_store(url) as one, open_store(url) as two:  # two nodes, one database
        first, second = LinkStore(one.database), LinkStore(two.database)
        secrets = await asyncio.gather(first.secret("s"), second.secret("s"), first.secret("s"))
        assert len(set(secrets)) == 1 and len(secrets[0]) >= 32
        assert not await first.used("n1")
        wins = await asyncio.gather(
            *(store.use("n1", "c1", time.time() + 60) for store in (first, second) * 3)
        )
        assert sorted(wins) == [False] * 5 + [True]
        assert await second.used("n1")


# ---------------------------------------------------------------- in a browser


async def test_the_link_opens_the_chat_with_where_the_customer_left_off(
    server: Served, chromium: LaunchChromium
) -> None:
    conv_id = await escalated_by_phone(server)
    browser_page = await (await chromium()).new_page()
    errors = page_errors(browser_page)
    await browser_page.goto(server.app[LINKS].make(conv_id))

    await expect(browser_page.locator("body")).to_have_attribute("data-conversation", conv_id)
    earlier = browser_page.locator(".msg.earlier")
    await expect(earlier.nth(-2)).to_contain_text("continue in your browser: [link]")
    await expect(earlier.last).to_contain_text(prompt_text(server.prompts, "sms_sent"))
    await expect(earlier.first).to_contain_text("by phone")
    bot_now = browser_page.locator(".msg.bot:not(.earlier)")
    await expect(bot_now).to_have_text([CARD_FOLLOW_UP, prompt_text(server.prompts, "main_menu")])
    await expect(browser_page.locator("#choices button")).to_have_count(3)
    assert ALICE["pin"] not in await browser_page.locator("#log").inner_text()
    assert errors == []
