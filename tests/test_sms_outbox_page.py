"""The SMS outbox in the agent's browser: what the customer got, and answering as them when no
gateway is configured (the embedded default)."""

from __future__ import annotations

from playwright.async_api import expect

from ivr.store.sms import OutgoingText
from tests.agent_fixtures import add_agent
from tests.browser import LaunchChromium
from tests.serve_fixtures import ALICE, Served
from tests.test_agent_desktop_page import Desktop

CUSTOMER = "+15551234567"


def text(state: str) -> OutgoingText:
    return OutgoingText(
        "t1", CUSTOMER, "5550000", "Continue here: http://ivr.example/c/abc.DEF-123_x", None,
        state, 1, 0.0, None, 0.0, 0.0,
    )  # fmt: skip


def test_a_delivered_link_is_shown_without_its_token_a_held_one_whole() -> None:
    assert text("delivered").shown()["text"] == "Continue here: http://ivr.example/c/…"
    assert text("held").shown()["text"].endswith("/c/abc.DEF-123_x")


async def test_the_outbox_needs_a_signed_in_agent(server: Served) -> None:
    status, body = await server.get("/agent/api/outbox")
    assert status == 401 and "login" in body
    async with server.session.post(
        server.url + "/agent/api/outbox/reply", json={"to": CUSTOMER, "text": "hi"}
    ) as resp:
        assert resp.status == 401


async def test_an_agent_reads_held_texts_and_answers_as_the_customer(
    server: Served, chromium: LaunchChromium
) -> None:
    await add_agent(server, "dana", name="Dana Scully")
    desktop, errors = await Desktop.signed_in(server, chromium, "dana")
    async with server.session.post(
        server.url + "/api/sms", json={"from": CUSTOMER, "text": "hello"}, headers=server.headers()
    ) as resp:
        assert resp.status == 202
    page = desktop.page
    await page.goto(server.url + "/agent/outbox")
    rows = page.locator("#texts tr.text")
    await expect(rows.first).to_have_attribute("data-state", "held")
    await expect(rows.first.locator(".text-body")).to_contain_text("Welcome to Northwind Bank.")
    await rows.first.locator("input.reply-text").fill(ALICE["account"])
    await rows.first.locator("button.send-reply").click()
    await expect(rows.first.locator(".text-body")).to_contain_text("four digit PIN")
    await expect(rows).to_have_count(2)
    await expect(rows.first.locator("form.reply")).to_have_count(1)  # on the newest only
    await expect(rows.nth(1).locator("form.reply")).to_have_count(0)
    async with server.session.post(
        server.url + "/agent/api/outbox/reply",
        json={"to": "not a number!", "text": "hi"},
        headers={
            "Cookie": "; ".join(f"{c['name']}={c['value']}" for c in await page.context.cookies())
        },
    ) as resp:
        assert resp.status == 400 and (await resp.json())["field"] == "to"
    assert errors == []
