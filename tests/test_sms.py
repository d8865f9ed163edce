"""Conversations over SMS with the embedded outbox gateway: flows as texts, threads, opt-out,
de-duplication and bad input. (Kannel with its fakesmsc: tests/test_sms_kannel.py.)"""

from __future__ import annotations

from typing import Any

import pytest

from ivr.channels.sms.channel import SmsChannel, render_question, reply_input
from ivr.channels.sms.outbox import fit
from ivr.flow.channel import Choice, InputSpec, Prompt
from tests.serve_fixtures import ALICE, Served, wait_until

CUSTOMER = "+15551234567"


class Phone:
    """A customer's handset against the outbox gateway: texts in by the API, texts out read
    from the outbox (the desktop's view of what the customer got)."""

    def __init__(self, served: Served, number: str = CUSTOMER) -> None:
        self.served = served
        self.number = number
        self.seen = 0

    async def send(self, text: str, message_id: str | None = None) -> tuple[int, Any]:
        body: dict[str, Any] = {"from": self.number, "text": text}
        if message_id:
            body["id"] = message_id
        async with self.served.session.post(
            self.served.url + "/api/sms", json=body, headers=self.served.headers()
        ) as resp:
            return resp.status, await resp.json()

    async def outbox(self) -> list[dict[str, Any]]:
        status, body = await self.served.api("/api/sms/outbox")
        assert status == 200, body
        return [t for t in reversed(body["texts"]) if t["to"] == self.number]

    async def next_text(self, timeout: float = 10.0) -> dict[str, Any]:
        """The next text sent to this phone (each is returned once)."""

        async def arrived() -> dict[str, Any] | None:
            texts = await self.outbox()
            return texts[self.seen] if len(texts) > self.seen else None

        text = await wait_until(arrived, timeout=timeout)
        self.seen += 1
        return text

    async def nothing_more(self) -> bool:
        return len(await self.outbox()) == self.seen


def test_a_menu_is_numbered_and_a_number_picks_its_option() -> None:
    choices = (Choice("Check balance"), Choice("Lost card"))
    assert render_question("What can I do?", choices) == (
        "What can I do? Reply 1 for Check balance, 2 for Lost card."
    )
    spec = InputSpec(expect="choice", choices=choices)
    assert reply_input(" 2 ", spec).text == "Lost card"
    keyed = (Choice("Balance", key="1"), Choice("Agent", key="0"))
    assert render_question("Menu", keyed).endswith("Reply 1 for Balance, 0 for Agent.")
    assert reply_input("0", InputSpec(choices=keyed)).digits == "0"
    assert reply_input("my card is lost", spec).text == "my card is lost"


def test_a_long_text_is_cut_after_a_whole_sentence() -> None:
    text = "First sentence here. " * 10
    cut = fit(text, 100)
    assert len(cut) <= 100 and cut.endswith("here.")
    assert fit("word " * 50, 80).endswith("…")


async def test_what_the_bot_says_goes_out_with_its_next_question_as_one_text() -> None:
    sent: list[str] = []

    async def send(text: str) -> None:
        sent.append(text)

    channel = SmsChannel(CUSTOMER, send, idle_timeout=5)
    await channel.say(Prompt("Welcome."))
    channel.deliver("12345678")
    answer = await channel.ask(Prompt("Your account number?"), InputSpec(expect="digits"))
    assert sent == ["Welcome. Your account number?"]
    assert answer is not None and answer.digits == "12345678"


async def test_an_opening_text_answers_a_free_question_but_not_one_for_digits() -> None:
    sent: list[str] = []

    async def send(text: str) -> None:
        sent.append(text)

    free = SmsChannel(CUSTOMER, send, idle_timeout=5, opening="I lost my card")
    answer = await free.ask(Prompt("How can I help?"), InputSpec(expect="choice"))
    assert answer is not None and answer.text == "I lost my card" and sent == []
    digits = SmsChannel(CUSTOMER, send, idle_timeout=5, opening="hello")
    digits.deliver("12345678")
    await digits.ask(Prompt("Account number?"), InputSpec(expect="digits"))
    assert sent == ["Account number?"]


async def test_a_text_starts_the_sms_flow_and_replies_continue_it(server: Served) -> None:
    phone = Phone(server)
    status, body = await phone.send("hello")
    assert status == 202 and body == {"received": True}
    first = await phone.next_text()
    assert (
        first["text"] == "Welcome to Northwind Bank. Please enter your eight digit account number."
    )
    assert first["state"] == "held" and first["from"] == server.settings.sms.number
    await phone.send(ALICE["account"])
    assert (await phone.next_text())["text"].startswith("Please enter your four digit PIN")
    await phone.send(ALICE["pin"])
    menu = await phone.next_text()
    assert menu["text"].startswith("Thank you, Alice. What can I do for you?")
    assert (
        "Reply 1 for Check balance, 2 for Lost or stolen card, 0 for Talk to an agent."
        in (menu["text"])
    )
    await phone.send("1")
    assert "Your balance is" in (await phone.next_text())["text"]
    conv = await server.conversation(menu["conversation_id"])
    assert conv["channels"] == ["sms"] and conv["contact"]["phone"] == CUSTOMER
    assert conv["identity"]["verified"] and conv["identity"]["method"] == "pin"
    shown = [t["text"] for t in conv["timeline"]]
    assert ALICE["pin"] not in str(shown) and ALICE["account"] in shown


async def test_a_repeated_message_id_is_taken_once(server: Served) -> None:
    phone = Phone(server)
    assert (await phone.send("hello", "msg-1"))[0] == 202
    await phone.next_text()
    status, body = await phone.send("hello", "msg-1")  # the gateway's retry
    assert status == 200 and body == {"received": False}
    await phone.send(ALICE["account"], "msg-2")
    assert (await phone.next_text())["text"].startswith("Please enter your four digit PIN")
    assert await phone.nothing_more()


async def test_stop_is_honoured_until_start(server: Served) -> None:
    phone = Phone(server)
    await phone.send("hello")
    await phone.next_text()
    await phone.send("stop")
    confirmation = await phone.next_text()
    assert confirmation["text"].startswith("You will get no more messages from us")
    await phone.send(ALICE["account"])  # ignored: nothing is sent to an opted-out number
    await phone.send("START")
    assert (await phone.next_text())["text"].startswith("You will get our messages again")
    assert await phone.nothing_more()
    await phone.send("hi again")  # the old thread was closed by STOP: a new conversation
    again = await phone.next_text()
    assert again["text"].startswith("Welcome to Northwind Bank.")
    assert again["conversation_id"] != confirmation["conversation_id"]


async def test_a_thread_survives_a_restart_and_the_question_is_not_asked_again(
    serve_app: Any, tmp_path: Any
) -> None:
    store = f"sqlite:///{tmp_path}/restart.db"
    first = await serve_app(store)
    phone = Phone(first)
    await phone.send("hello")
    await phone.next_text()
    await first.stop()
    second = await serve_app(store)
    phone.served = second
    await phone.send(ALICE["account"])
    pin_question = await phone.next_text()
    assert pin_question["text"].startswith("Please enter your four digit PIN")
    texts = [t["text"] for t in await phone.outbox()]
    assert sum("account number" in t for t in texts) == 1  # not asked twice


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"text": "hi"}, "from"),
        ({"from": "not a number!", "text": "hi"}, "from"),
        ({"from": CUSTOMER, "text": 5}, "text"),
        ({"from": CUSTOMER, "text": "   "}, "text"),
        ({"from": 15551234567, "text": "hi"}, "from"),
    ],
)
async def test_a_malformed_text_is_refused_with_the_field_named(
    server: Served, body: dict[str, Any], field: str
) -> None:
    async with server.session.post(
        server.url + "/api/sms", json=body, headers=server.headers()
    ) as resp:
        assert resp.status == 400
        assert (await resp.json())["field"] == field


async def test_kannel_requests_need_the_token_or_this_machine(serve_app: Any) -> None:
    from ivr.config import SmsSettings

    served = await serve_app(sms=SmsSettings(inbound_token="s3cret"))
    status, body = await served.get("/sms/kannel/mo?from=%2B15551234567&to=5550000&text=hi")
    assert status == 403 and "token" in body["hint"]
    status, body = await served.get(
        "/sms/kannel/mo?from=%2B15551234567&to=5550000&text=%FF%FEcaf%E9&token=s3cret&id=k1"
    )
    assert status == 200  # not UTF-8: taken as Latin-1, never an error the gateway retries
    status, body = await served.get("/sms/kannel/mo?to=5550000&text=hi&token=s3cret")
    assert status == 400 and body["field"] == "from"
    phone = Phone(served)
    assert (await phone.next_text())["text"].startswith("Welcome to Northwind Bank.")


async def test_after_an_escalation_a_reply_by_text_goes_on_at_the_resume_step(
    server: Served,
) -> None:
    from tests.test_continue_links import escalated_by_phone, link_texted_to

    conv_id = await escalated_by_phone(server)  # a call: verified, card blocked, "yes" to a text
    phone = Phone(server, "+15550100")
    link = await phone.next_text()
    assert link["conversation_id"] == conv_id and link["text"].startswith("To go on where we")
    assert (await link_texted_to(server, phone.number)).startswith(server.url + "/c/")
    await phone.send("1")  # "check balance", answering the menu at the resume step
    reply = (await phone.next_text())["text"]
    assert reply.startswith("Welcome back, Alice. Your replacement card")
    assert "Your balance is" in reply and reply.endswith(
        "Is there anything else I can help you with?"
    )
    conv = await server.conversation(conv_id)
    assert conv["channels"] == ["sip", "sms"] and conv["status"] == "active"
    asked = [
        t["text"] for t in conv["timeline"] if t["role"] == "bot" and "account number" in t["text"]
    ]
    assert len(asked) == 1  # the call asked; the text did not


async def test_a_customer_by_text_is_queued_to_an_agent_with_the_same_card(
    server: Served,
) -> None:
    from tests.agent_fixtures import add_agent, open_desk

    await add_agent(server, "dana", name="Dana Scully")
    desk = await open_desk(server, "dana")
    phone = Phone(server)
    try:
        await phone.send("hello")
        await phone.next_text()
        await phone.send(ALICE["account"])
        await phone.next_text()
        await phone.send(ALICE["pin"])
        menu = await phone.next_text()
        conv_id = menu["conversation_id"]
        await phone.send("0")  # the menu's "Talk to an agent"
        offer = await desk.expect("offer", conversation_id=conv_id)
        card = offer["card"]
        assert card["customer"]["verified"] and card["customer"]["verified_on"] == "sms"
        assert ALICE["pin"] not in str(card)
        holding = (await phone.next_text())["text"]  # one text: the hold and the place
        assert holding.startswith("Please hold while I connect you to an agent. You are next")

        await desk.send({"type": "accept", "conversation_id": conv_id})
        await desk.expect("assigned")
        assert (await phone.next_text())["text"] == "Dana Scully is here to help you."
        await desk.send({"type": "send", "conversation_id": conv_id, "text": "How can I help?"})
        assert (await phone.next_text())["text"] == "Dana Scully: How can I help?"
        await phone.send("My card was swallowed by an ATM")
        said = await desk.expect("message", conversation_id=conv_id, role="customer")
        assert said["text"] == "My card was swallowed by an ATM" and said["channel"] == "sms"
        await desk.send({"type": "end", "conversation_id": conv_id})
        await desk.expect("ended", conversation_id=conv_id)
        conv = await server.conversation(conv_id)
        assert conv["status"] == "ended"
        await phone.send("one more thing")  # the thread was closed: a new conversation
        again = await phone.next_text()
        assert again["conversation_id"] != conv_id
    finally:
        await desk.close()


async def test_a_text_after_a_restart_reaches_the_queue_not_the_flow_again(
    serve_app: Any, tmp_path: Any
) -> None:
    from tests.agent_fixtures import add_agent, open_desk

    store = f"sqlite:///{tmp_path}/queued.db"
    first = await serve_app(store)
    phone = Phone(first)
    for text in ("hello", ALICE["account"], ALICE["pin"]):
        await phone.send(text)
        await phone.next_text()
    await phone.send("0")  # an agent, please: nobody is signed in
    conv_id = (await phone.next_text())["conversation_id"]  # the hold and their place
    await first.stop()

    second = await serve_app(store)
    phone.served = second
    await phone.send("Are you still there?")

    async def on_the_timeline() -> bool:
        conv = await second.conversation(conv_id)
        return "Are you still there?" in [t["text"] for t in conv["timeline"]]

    await wait_until(on_the_timeline)
    conv = await second.conversation(conv_id)
    assert conv["status"] == "queued"
    assert [t["text"] for t in conv["timeline"]].count(
        "Please hold while I connect you to an agent."
    ) == 1  # the flow did not run its transfer again
    await add_agent(second, "dana", name="Dana Scully")
    desk = await open_desk(second, "dana")
    try:
        await desk.expect("offer", conversation_id=conv_id)
        await desk.send({"type": "accept", "conversation_id": conv_id})
        await desk.expect("assigned")
        told = [(await phone.next_text())["text"] for _ in range(2)]
        assert told == [  # back on their line: their place, then the agent
            "You are next in line. Your expected wait is about 3 minutes.",
            "Dana Scully is here to help you.",
        ]
    finally:
        await desk.close()


async def test_an_oversized_text_is_taken_cut_and_an_empty_one_ignored(serve_app: Any) -> None:
    from urllib.parse import quote

    from ivr.config import SmsSettings

    served = await serve_app(sms=SmsSettings(max_text_chars=160))
    long_text = quote("I lost my card " * 400)  # 6,000 characters: taken, cut to 160
    status, _ = await served.get(f"/sms/kannel/mo?from=%2B15551234567&text={long_text}&id=big")
    assert status == 200
    status, _ = await served.get("/sms/kannel/mo?from=%2B15557654321&text=%20&id=empty")
    assert status == 200  # a picture message without words: answered, nothing started
    phone = Phone(served)
    first = await phone.next_text()
    conv = await served.conversation(first["conversation_id"])
    opening = [t["text"] for t in conv["timeline"] if t["role"] == "customer"]
    assert opening and len(opening[0]) <= 160
    assert await Phone(served, "+15557654321").nothing_more()
