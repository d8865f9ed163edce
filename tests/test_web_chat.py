"""The web chat: the bank flow over a real websocket, what the customer sees, and what is kept.

Every test drives /chat/ws of an in-process server (tests/serve_fixtures.py) the way the chat
page does, and reads the stored conversation back from the REST API.
"""

from __future__ import annotations

import asyncio

import aiohttp

from tests.serve_fixtures import ALICE, Served, assert_never_shows, wait_until


async def test_chat_runs_the_bank_flow_end_to_end_over_a_websocket(server: Served) -> None:
    chat = await server.chat()
    conv_id = await chat.start("bank")
    await chat.expect_prompt("bank_welcome")
    await chat.expect_prompt("ask_account", expects_answer=True, secure=False)
    await chat.say(ALICE["account"])
    await chat.expect_prompt("ask_pin", expects_answer=True)
    await chat.keys(ALICE["pin"])
    await chat.expect_bot("^Thank you, Alice")
    menu = await chat.expect_prompt("main_menu", expects_answer=True)
    assert {"label": "Check balance", "key": "1"} in menu["choices"]
    await chat.keys("1")
    await chat.expect_bot(r"^Your balance is 1250\.40 euros\.$")
    await chat.expect_prompt("anything_else", expects_answer=True)
    await chat.say("no")
    await chat.expect_prompt("goodbye")
    end = await chat.expect("end")
    assert end["reason"] == "completed"

    conv = await server.conversation(conv_id)
    assert conv["id"] == conv_id
    assert conv["flow"] == "bank"
    assert conv["status"] == "ended"
    assert conv["channels"] == ["chat"]
    assert conv["identity"]["verified"] is True
    assert conv["identity"]["method"] == "pin"
    assert conv["identity"]["customer_id"] == ALICE["account"]
    assert str(conv["slots"]["account_number"]) == ALICE["account"]
    assert conv["slots"]["more"] is False

    timeline = conv["timeline"]
    assert {t["channel"] for t in timeline} == {"chat"}
    assert [t["ts"] for t in timeline] == sorted(t["ts"] for t in timeline)
    said = [(t["role"], t["text"]) for t in timeline if t["role"] in ("customer", "bot")]
    assert said == [
        ("bot", chat.prompt("bank_welcome")),
        ("bot", chat.prompt("ask_account")),
        ("customer", ALICE["account"]),
        ("bot", chat.prompt("ask_pin")),
        ("customer", "[secure input]"),
        ("bot", "Thank you, Alice."),
        ("bot", chat.prompt("main_menu")),
        ("customer", "1"),
        ("bot", "Your balance is 1250.40 euros."),
        ("bot", chat.prompt("anything_else")),
        ("customer", "no"),
        ("bot", chat.prompt("goodbye")),
    ]
    # What the page showed is what was kept, in the same order.
    assert [f["text"] for f in chat.frames if f["type"] == "bot"] == [
        text for role, text in said if role == "bot"
    ]
    roles = [t["role"] for t in timeline]
    verified_at = next(i for i, t in enumerate(timeline) if "verified" in t["text"])
    assert roles[verified_at] == "system"  # "customer verified by pin", after the PIN
    assert timeline[verified_at - 1]["text"] == "[secure input]"
    assert set(roles) == {"bot", "customer", "system"}

    # The PIN is nowhere: not in the conversation, not in the list.
    assert_never_shows(ALICE["pin"], conv)
    status, listing = await server.api("/api/conversations")
    assert status == 200
    assert_never_shows(ALICE["pin"], listing)
    # ...nor was it ever echoed to the page.
    assert_never_shows(ALICE["pin"], chat.frames)


async def test_empty_huge_and_binary_messages_are_refused_and_the_conversation_continues(
    server: Served,
) -> None:
    chat = await server.chat()
    conv_id = await chat.start()
    await chat.expect_prompt("ask_account")

    await chat.say("")
    await chat.expect_error("empty")
    await chat.say("   \n ")
    await chat.expect_error("empty")
    await chat.say("1" * 5000)  # just above 4 KB
    await chat.expect_error("too large")
    await chat.say("1" * 64_000)  # a pasted document
    await chat.expect_error("too large")
    await chat.send(b"\x00\x01\x02binary\xff")
    await chat.expect_error("binary")
    await chat.say("1234\x00\x01")
    await chat.expect_error("control characters")

    # None of that was taken as an answer: the next answer is, and the flow moves on.
    await chat.say(ALICE["account"])
    await chat.expect_prompt("ask_pin", secure=True)
    refused_replies = [
        f for f in chat.frames if f["type"] == "bot" and "doesn't sound like" in f["text"]
    ]
    assert refused_replies == []
    await chat.keys(ALICE["pin"])
    await chat.expect_bot("Thank you, Alice")

    conv = await server.conversation(conv_id)
    customer_turns = [t["text"] for t in conv["timeline"] if t["role"] == "customer"]
    assert customer_turns == [ALICE["account"], "[secure input]"]
    assert conv["identity"]["verified"] is True


async def test_non_json_and_unknown_frames_get_an_error(server: Served) -> None:
    chat = await server.chat()
    await chat.send("hello there")
    await chat.expect_error("not JSON")
    await chat.send("[1, 2, 3]")
    await chat.expect_error('"type"')
    await chat.send({"text": "no type"})
    await chat.expect_error('"type"')

    await chat.start()
    await chat.expect_prompt("ask_account")
    await chat.send({"type": "launch_rockets"})
    await chat.expect_error("unknown frame type 'launch_rockets'")
    await chat.send({"type": "message", "text": 12345678})
    await chat.expect_error('"text" must be a string')
    await chat.send({"type": "dtmf", "digits": "12ab"})
    await chat.expect_error('"digits"')
    await chat.send("{not json")
    await chat.expect_error("not JSON")

    # The conversation did not notice.
    await chat.keys(ALICE["account"])
    await chat.expect_prompt("ask_pin")
    assert not [f for f in chat.frames if f["type"] == "end"]


async def test_messages_before_start_are_refused(server: Served) -> None:
    chat = await server.chat()
    await chat.say("hello")
    await chat.expect_error("start")
    await chat.keys("99999999")
    await chat.expect_error("start")

    conv_id = await chat.start()
    await chat.expect_prompt("ask_account")
    await chat.send({"type": "start"})
    await chat.expect_error("already started")

    # Nothing typed before the start was queued as an answer.
    await chat.say(ALICE["account"])
    await chat.expect_prompt("ask_pin")
    assert not [f for f in chat.frames if "doesn't sound like" in f.get("text", "")]
    conv = await server.conversation(conv_id)
    customer_turns = [t["text"] for t in conv["timeline"] if t["role"] == "customer"]
    assert customer_turns == [ALICE["account"]]

    status, listing = await server.api("/api/conversations")
    assert status == 200
    assert [c["id"] for c in listing["conversations"]] == [conv_id]  # the second start made none


async def test_unknown_flow_is_refused_and_the_chat_can_start_another(server: Served) -> None:
    chat = await server.chat()
    await chat.send({"type": "start", "flow": "no_such_flow"})
    await chat.expect_error("no_such_flow")
    await chat.start("parcel")
    await chat.expect_prompt("ask_tracking")


async def test_secure_question_is_flagged_for_the_page(server: Served) -> None:
    chat = await server.chat()
    await chat.start()
    account_question = await chat.expect_prompt("ask_account")
    assert account_question["secure"] is False
    await chat.say(ALICE["account"])
    pin_question = await chat.expect_prompt("ask_pin")
    assert pin_question["secure"] is True
    await chat.keys(ALICE["pin"])
    menu = await chat.expect_prompt("main_menu")
    assert menu["secure"] is False


async def test_closing_the_chat_keeps_the_conversation_at_its_step(server: Served) -> None:
    chat = await server.chat()
    conv_id = await chat.start()
    await chat.expect_prompt("ask_account")
    await chat.say(ALICE["account"])
    await chat.expect_prompt("ask_pin")
    await chat.close()

    async def left() -> dict | None:
        conv = await server.conversation(conv_id)
        last = conv["timeline"][-1]
        return conv if last["role"] == "system" and "left" in last["text"] else None

    conv = await wait_until(left, timeout=5)
    assert conv["position"] == {"flow": "bank", "step": "verify", "stack": []}
    assert conv["status"] != "ended"
    assert str(conv["slots"]["account_number"]) == ALICE["account"]
    assert conv["identity"]["verified"] is False
    assert [t["role"] for t in conv["timeline"]] == ["bot", "bot", "customer", "bot", "system"]
    assert "chat" in conv["timeline"][-1]["text"]

    health = await server.health()
    assert health["conversations"]["live"] == 0


async def test_chat_page_is_served(server: Served) -> None:
    status, page = await server.get("/chat")
    assert status == 200
    assert "/chat/ws" in page


async def test_the_chat_is_closed_when_the_conversation_ends(server: Served) -> None:
    chat = await server.chat()
    await chat.start("bank")
    await chat.say(ALICE["account"])
    await chat.keys(ALICE["pin"])
    await chat.keys("1")
    await chat.expect_prompt("anything_else")
    await chat.say("no")
    await chat.expect("end")
    message = await asyncio.wait_for(chat.ws.receive(), 5)
    assert message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)


async def test_a_chat_waiting_for_an_agent_stays_open_and_says_where_it_stands(
    server: Served,
) -> None:
    chat = await server.chat()
    conv_id = await chat.start("bank")
    await chat.say(ALICE["account"])
    await chat.keys(ALICE["pin"])
    await chat.keys("0")
    await chat.expect("transfer")
    await chat.expect("notice", "next in line")
    await wait_until(lambda: _status(server, conv_id, "queued"), timeout=5)
    await chat.say("hello? is anyone there?")  # kept for the agent (tests/test_agent_queue.py)
    await chat.send({"type": "start"})
    await chat.expect_error("already started")  # the socket still answers


async def test_a_chat_cannot_start_a_flow_that_is_not_offered_to_chat(server: Served) -> None:
    chat = await server.chat()
    await chat.send({"type": "start", "flow": "internal_only"})
    await chat.expect_error("no flow named 'internal_only'")


async def _status(server: Served, conv_id: str, status: str) -> bool | None:
    conv = await server.conversation(conv_id)
    return True if conv["status"] == status else None
