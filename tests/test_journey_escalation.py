"""The product's promise, end to end with real parts: the customer never repeats themselves.

A pjsua2 caller verifies with account and PIN, reports a lost card and takes the offer to go on
by text; a real Kannel delivers the text (with its continue link) to its fake SMS centre; headless
Chromium opens the link and the chat goes on at the next step, without the account or the PIN;
the customer asks for a person, and the agent's desktop (another Chromium) shows the call, the
text and the chat on one timeline, in order.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import expect

from ivr.config import HttpSettings
from tests.agent_fixtures import add_agent
from tests.browser import LaunchChromium, page_errors
from tests.kannel import Kannel, running_kannel, through
from tests.serve_fixtures import ALICE, ServeApp, prompt_text, wait_until
from tests.test_agent_desktop_page import Desktop
from tests.voice_fixtures import start_voice_server

pytestmark = pytest.mark.timeout(120)

CALLER = "+15551234567"
TOKEN = "journey-token"
# The questions whose answers the conversation keeps: asking one of them again would make the
# customer repeat themselves. (The menu comes back by design after the card's follow-up: it
# asks for a new request, not for something already said.)
KEPT_ANSWERS = ("identify", "verify", "offer_sms")


@pytest.fixture
async def kannel(tmp_path: Path) -> AsyncIterator[tuple[Kannel, int]]:
    async with running_kannel(tmp_path, TOKEN) as started:
        yield started


async def test_a_caller_goes_on_by_text_and_chat_and_reaches_an_agent_repeating_nothing(
    serve_app: ServeApp,
    tmp_path: Path,
    chromium: LaunchChromium,
    kannel: tuple[Kannel, int],
) -> None:
    gateway, port = kannel
    voice = await start_voice_server(
        serve_app,
        tmp_path,
        sections={
            "http": HttpSettings(host="127.0.0.1", port=port),
            "sms": through(gateway, TOKEN),
        },
    )
    server = voice.served
    await add_agent(server, "dana", name="Dana Scully")
    handset = await gateway.handset(CALLER)

    # 1. The call: account and PIN by keys, "2" for a lost card, "1" (yes) to go on by text.
    call = await voice.call(
        "1000",
        "wait-prompt",
        f"dtmf {ALICE['account']}",
        "wait-prompt",
        f"dtmf {ALICE['pin']}",
        "wait-prompt",
        "dtmf 2",
        "wait-prompt",
        "dtmf 1",
        "wait-prompt",
        extra=["--from", f"sip:{CALLER}@127.0.0.1"],
        timeout=60.0,
    )
    assert call.ok, (call.outcome, call.stderr[-2000:])
    assert call.outcome["hung_up_by"] == "remote"

    # 2. The text, through Kannel to the caller's phone.
    text = await handset.next_text()
    assert text.startswith("To go on where we left off")
    link = text.rsplit(" ", 1)[1]
    assert link.startswith(f"{server.url}/c/") and ALICE["account"] not in link

    # 3. The link in a browser: the chat goes on at the next step.
    customer = await (await chromium()).new_page()
    customer_errors = page_errors(customer)
    await customer.goto(link)
    now = customer.locator(".msg.bot:not(.earlier)")
    await expect(now.first).to_contain_text("Welcome back, Alice.")
    await expect(now.last).to_have_text(prompt_text(server.prompts, "main_menu"))
    conv_id = await customer.locator("body").get_attribute("data-conversation")
    assert conv_id
    await customer.locator("#choices button", has_text="Talk to an agent").click()

    # 4. The agent takes it, and sees the whole conversation on one timeline.
    desktop, agent_errors = await Desktop.signed_in(server, chromium, "dana")
    await desktop.set_presence("available")
    await desktop.expect_offer(conv_id)
    await expect(desktop.offer.locator(".card-verified")).to_contain_text("Verified by pin on sip")
    await desktop.accept.click()
    held = desktop.conversation(conv_id)
    turns = held.locator(".transcript .turn")
    await expect(turns.last).to_be_attached()
    channels = await turns.evaluate_all("(nodes) => nodes.map((n) => n.dataset.channel)")
    # The call, then its text (sent as the call ended: "I've sent you a text" follows it),
    # then the chat: each channel's turns where they happened.
    assert list(dict.fromkeys(channels)) == ["sip", "sms", "chat"], channels
    first_chat = channels.index("chat")
    assert "chat" not in channels[:first_chat] and set(channels[first_chat:]) == {"chat"}
    assert ALICE["pin"] not in await desktop.page_text_without(conv_id)
    await held.locator("textarea.reply").fill("Hello Alice, this is Dana.")
    await held.locator("button.send").click()
    await expect(customer.locator(".msg.agent").last).to_contain_text("this is Dana")
    await customer.locator("#text").fill("Thank you, the new card is all I need.")
    await customer.locator("#send").click()
    await expect(desktop.turns(held, "customer").last).to_have_text(
        "Thank you, the new card is all I need."
    )

    # 5. Nothing was asked twice.
    conv = await server.conversation(conv_id)
    asked = Counter(
        t["meta"].get("step")
        for t in conv["timeline"]
        if t["role"] == "bot" and t["meta"].get("step") in KEPT_ANSWERS
    )
    asked_twice = {step: n for step, n in asked.items() if n > 1}
    assert asked_twice == {}, asked
    assert set(asked) == set(KEPT_ANSWERS)  # ...and each was asked, once, on the call
    assert conv["identity"]["verified"] and conv["channels"] == ["sip", "sms", "chat"]
    assert customer_errors == [] and agent_errors == []


KEEP_CALL_FLOW = """
flow: keep
language: en
numbers: ["4000"]
start: offer
steps:
  offer:
    escalate:
      channel: chat
      say: "I have sent you a text with a link. Please stay on the line until you open it."
      keep_call: true
      resume: follow_up
  follow_up:
    end: "Here is the rest of our conversation, in writing."
"""


async def test_a_kept_call_waits_with_music_until_the_link_is_opened(
    serve_app: ServeApp, flow_files: tuple[Path, Path], tmp_path: Path
) -> None:
    (flow_files[0] / "keep.yaml").write_text(KEEP_CALL_FLOW)
    voice = await start_voice_server(serve_app, tmp_path)
    server = voice.served
    call = asyncio.ensure_future(
        voice.call(
            "4000",
            "wait-prompt",
            f"wait-file {tmp_path / 'never'}",  # on the line until the server hangs up
            extra=["--from", f"sip:{CALLER}@127.0.0.1"],
            timeout=60.0,
        )
    )

    async def texted_link() -> str | None:
        status, body = await server.api("/api/sms/outbox")
        texts = [t for t in body["texts"] if t["to"] == CALLER] if status == 200 else []
        return texts[0]["text"].rsplit(" ", 1)[1] if texts else None

    link = await wait_until(texted_link, timeout=30)
    conv_id = (await server.api("/api/sms/outbox"))[1]["texts"][0]["conversation_id"]

    async def escalated() -> bool:  # the text goes first, then the step says so and stops
        return (await server.conversation(conv_id))["status"] == "escalated"

    await wait_until(escalated, timeout=15)
    assert not call.done()  # still on the line, with music, while the link is unopened
    chat = await server.chat()
    await chat.expect("hello")
    await chat.send({"type": "continue", "token": link.rsplit("/c/", 1)[1]})
    await chat.expect_bot("^Here is the rest of our conversation, in writing.$")
    result = await asyncio.wait_for(call, 30)
    assert result.outcome["hung_up_by"] == "remote"
    conv = await server.conversation(conv_id)
    said = [t["text"] for t in conv["timeline"] if t["channel"] == "sip" and t["role"] == "bot"]
    assert said[-1] == "You can go on in writing now. Goodbye."
