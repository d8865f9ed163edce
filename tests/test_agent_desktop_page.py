"""The agent desktop page (/agent) in real headless Chromium, against an in-process server.

The browser twin of tests/test_agent_queue.py: an agent signs in through the sign-in page, sets
their status with the select, and answers a chat customer (a Python websocket, as there) with
the page's buttons and boxes; the test checks what the agent sees, what reached the customer and
what the server stored. The DOM hooks used here are listed at the top of ivr/web/static/agent.js.
"""

from __future__ import annotations

from playwright.async_api import Locator, Page, expect

from tests.agent_fixtures import (
    PASSWORD,
    add_agent,
    add_parcels_agent,
    open_desk,
    verified_chat_asking_for_an_agent,
)
from tests.browser import LaunchChromium, page_errors
from tests.serve_fixtures import ALICE, Served

WRONG_SIGN_IN = "Wrong username or password"  # ivr.web.agent_auth.WRONG


async def sign_in(page: Page, served: Served, username: str, password: str = PASSWORD) -> None:
    """Fill in and submit the sign-in page, as a person does."""
    await page.goto(served.url + "/agent/login")
    await page.get_by_label("Username").fill(username)
    await page.get_by_label("Password").fill(password)
    await page.get_by_role("button", name="Sign in").click()


class Desktop:
    """The agent desktop's parts, by the hooks the page promises to tests."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.desk = page.locator("#desk")
        self.presence = page.locator("#presence")
        self.offer = page.locator("#offer")
        self.accept = page.locator("#offer-accept")
        self.decline = page.locator("#offer-decline")

    @classmethod
    async def signed_in(
        cls, served: Served, chromium: LaunchChromium, username: str
    ) -> tuple[Desktop, list[str]]:
        """A new browser signed in as `username`, and the list its page errors go to."""
        page = await (await chromium()).new_page()
        errors = page_errors(page)
        desktop = cls(page)
        await desktop.open(served, username)
        return desktop, errors

    async def open(self, served: Served, username: str) -> None:
        await sign_in(self.page, served, username)
        await expect(self.page).to_have_url(served.url + "/agent")
        await expect(self.desk).to_have_attribute("data-connected", "true")

    async def set_presence(self, state: str) -> None:
        await self.presence.select_option(state)
        await expect(self.desk).to_have_attribute("data-presence", state)

    async def expect_offer(self, conv_id: str) -> None:
        await expect(self.offer).to_be_visible()
        await expect(self.offer).to_have_attribute("data-conversation", conv_id)

    def conversation(self, conv_id: str) -> Locator:
        return self.page.locator(f'.conversation[data-conversation="{conv_id}"]')

    def turns(self, where: Locator, role: str) -> Locator:
        return where.locator(f'.transcript .turn[data-role="{role}"] .turn-text')

    async def page_text_without(self, conv_id: str) -> str:
        """The page's HTML without the conversation's id: a random hex id may hold any four
        digits in a row, so it is left out of searches for a secret."""
        return (await self.page.content()).replace(conv_id, "")


async def test_an_agent_signs_in_takes_a_chat_talks_ends_and_wraps_it_up(
    server: Served, chromium: LaunchChromium
) -> None:
    await add_agent(server, "dana", name="Dana Scully")
    desktop, errors = await Desktop.signed_in(server, chromium, "dana")
    page = desktop.page
    await expect(page.locator("#agent-name")).to_have_text("Dana Scully")
    await desktop.set_presence("available")

    chat, conv_id = await verified_chat_asking_for_an_agent(server)
    await desktop.expect_offer(conv_id)
    offered = desktop.offer
    await expect(offered.locator(".card-customer")).to_contain_text(ALICE["account"])
    verified = offered.locator(".card-verified")
    await expect(verified).to_contain_text("Verified by pin on chat")  # how, never with what
    await expect(desktop.turns(offered, "customer")).to_contain_text([ALICE["account"]])
    assert ALICE["pin"] not in await desktop.page_text_without(conv_id)

    await desktop.accept.click()
    await chat.expect("agent_joined", name="Dana Scully")
    await expect(desktop.offer).to_be_hidden()
    held = desktop.conversation(conv_id)
    await expect(held).to_be_visible()
    await expect(held.locator(".card-customer")).to_contain_text(ALICE["account"])
    await expect(held.locator(".card-verified")).to_contain_text("Verified by pin on chat")
    await expect(desktop.turns(held, "customer").first).to_have_text(ALICE["account"])
    assert ALICE["pin"] not in await desktop.page_text_without(conv_id)

    await chat.say("My card was swallowed by an ATM")
    await expect(desktop.turns(held, "customer").last).to_have_text(
        "My card was swallowed by an ATM"
    )
    await held.locator("textarea.reply").fill("I will block it now.")
    await held.locator("button.send").click()
    await chat.expect("agent", "^I will block it now\\.$", name="Dana Scully")
    await expect(desktop.turns(held, "agent").last).to_have_text("I will block it now.")
    await expect(held.locator("textarea.reply")).to_have_value("")

    await held.locator("button.end").click()
    await chat.expect("end")
    wrap_up = held.locator("form.wrap-up")
    await expect(wrap_up).to_be_visible()
    code = wrap_up.locator("select.code")  # the queue has codes (dialogs/queues.yaml)
    await expect(code.locator("option")).to_have_text(
        ["Choose a code…", "resolved", "follow_up", "escalated"]
    )
    await code.select_option("resolved")
    await wrap_up.locator("textarea.notes").fill("card blocked")
    await wrap_up.locator("button.submit-wrap-up").click()
    await expect(held).to_have_count(0)  # gone from the work area
    await expect(page.locator("#no-conversations")).to_be_visible()
    await expect(desktop.desk).to_have_attribute("data-presence", "available")

    conv = await server.conversation(conv_id)
    assert conv["status"] == "ended"
    assert conv["handoff"]["agent"]["name"] == "Dana Scully"
    assert conv["handoff"]["wrap_up"]["code"] == "resolved"
    assert conv["handoff"]["wrap_up"]["notes"] == "card blocked"
    said = [(turn["role"], turn["text"]) for turn in conv["timeline"]]
    assert ("customer", "My card was swallowed by an ATM") in said
    assert ("agent", "I will block it now.") in said
    assert errors == []


async def test_the_desktop_sends_strangers_to_sign_in_and_says_when_the_password_is_wrong(
    server: Served, chromium: LaunchChromium
) -> None:
    await add_agent(server, "dana", name="Dana Scully")
    page = await (await chromium()).new_page()
    await page.goto(server.url + "/agent")
    await expect(page).to_have_url(server.url + "/agent/login")
    await expect(page.get_by_role("button", name="Sign in")).to_be_visible()

    await sign_in(page, server, "dana", "not the password")
    await expect(page.get_by_role("alert")).to_have_text(WRONG_SIGN_IN)
    await expect(page).to_have_url(server.url + "/agent/login")
    await expect(page.get_by_label("Username")).to_have_value("dana")  # kept for a retry
    await expect(page.get_by_label("Password")).to_have_value("")

    await page.goto(server.url + "/agent")  # still nobody signed in
    await expect(page).to_have_url(server.url + "/agent/login")


async def test_a_declined_offer_leaves_the_page_and_the_customer_waits_for_someone_else(
    server: Served, chromium: LaunchChromium
) -> None:
    await add_agent(server, "dana", name="Dana Scully")
    desktop, errors = await Desktop.signed_in(server, chromium, "dana")
    page = desktop.page
    # A colleague signed in, on a break. Alone, Dana would be offered the same chat again at
    # once: declines are forgotten when every signed-in agent of the queue has declined
    # (ivr.routing.acd).
    await add_agent(server, "fox", name="Fox Mulder")
    fox = await open_desk(server, "fox", available=False)
    await fox.presence("break")
    await desktop.set_presence("available")

    _chat, conv_id = await verified_chat_asking_for_an_agent(server)
    await desktop.expect_offer(conv_id)
    await desktop.decline.click()
    await expect(desktop.offer).to_be_hidden()
    await expect(page.locator("#offer-note")).to_have_text("Offer declined.")
    await expect(desktop.conversation(conv_id)).to_have_count(0)
    await expect(desktop.desk).to_have_attribute("data-presence", "available")

    conv = await server.conversation(conv_id)
    assert conv["status"] == "queued"
    await fox.presence("available")  # still waiting: the next agent gets it
    await fox.expect("offer", conversation_id=conv_id)
    await fox.close()
    assert errors == []


async def test_an_agent_transfers_a_chat_to_another_queue_with_a_note(
    server: Served, chromium: LaunchChromium
) -> None:
    await add_agent(server, "dana", name="Dana Scully")
    await add_parcels_agent(server)
    gus = await open_desk(server, "gus")
    desktop, errors = await Desktop.signed_in(server, chromium, "dana")
    await desktop.set_presence("available")
    _chat, conv_id = await verified_chat_asking_for_an_agent(server)
    await desktop.expect_offer(conv_id)
    await desktop.accept.click()
    held = desktop.conversation(conv_id)
    await held.locator("button.transfer").click()
    form = held.locator("form.transfer-form")
    await expect(form.locator("select.transfer-to option[value='@gus']")).to_have_count(1)
    await form.locator("select.transfer-to").select_option("parcels")
    await form.locator("textarea.transfer-note").fill("lost parcel, not a card")
    await form.locator("button.submit-transfer").click()
    await expect(held).to_have_count(0)
    offer = await gus.expect("offer", conversation_id=conv_id)
    said = [turn["text"] for turn in offer["card"]["transcript"]]
    assert any(text.endswith(": lost parcel, not a card") for text in said), said
    await expect(desktop.desk).to_have_attribute("data-presence", "available")
    assert not errors, errors
    await gus.close()
