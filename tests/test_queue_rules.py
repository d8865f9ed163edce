"""A queue's own rules in service: opening hours and what a closed queue does, the maximum wait
and its overflow, the queue's priority, wrap-up time and codes.

The admission rules are checked on `QueueBook` directly (times chosen, not waited for); the
rest against a real server, a chat customer and an agent's desk socket, with the example
queues file edited for each case."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from ivr.flow.engine import QueueClosed
from ivr.routing.model import QueueDefinition
from ivr.routing.rules import QueueBook
from ivr.store.queues import QueueStateStore
from ivr.web.keys import STORE
from tests.agent_fixtures import add_agent, open_desk, verified_chat_asking_for_an_agent
from tests.serve_fixtures import ServeApp, wait_until

LONDON = ZoneInfo("Europe/London")
WEEKDAYS = {"mon-fri": "08:00-20:00"}


def book(**queues: dict[str, Any]) -> QueueBook:
    definitions = {name: QueueDefinition.model_validate(raw) for name, raw in queues.items()}
    return QueueBook(lambda: definitions)


def at(text: str) -> float:
    """A London wall-clock time as epoch seconds."""
    return datetime.fromisoformat(text).replace(tzinfo=LONDON).timestamp()


def hours(**extra: Any) -> dict[str, Any]:
    return {"timezone": "Europe/London", "open": WEEKDAYS, **extra}


def test_an_open_queue_takes_the_conversation_itself() -> None:
    rules = book(cards={"hours": hours()})
    assert rules.admit("cards", at("2026-11-23T09:00")) == "cards"  # a Monday morning
    assert rules.admit("unknown", at("2026-11-23T09:00")) == "unknown"  # the validator's job


def test_a_closed_queue_says_its_message_or_runs_its_flow() -> None:
    saturday = at("2026-11-21T10:00")
    said = book(cards={"hours": hours(closed={"message": "We are closed."})})
    assert said.admit("cards", saturday) == QueueClosed("cards", message="We are closed.")
    flow = book(cards={"hours": hours(closed={"flow": "after_hours"})})
    assert flow.admit("cards", saturday) == QueueClosed("cards", flow="after_hours")


def test_a_closed_queue_without_words_of_its_own_goes_to_its_overflow() -> None:
    saturday = at("2026-11-21T10:00")
    rules = book(
        cards={"hours": hours(), "max_wait": 60, "overflow": {"queue": "general"}},
        general={"hours": {"timezone": "Europe/London", "open": {"sat": "09:00-13:00"}}},
    )
    assert rules.admit("cards", saturday) == "general"
    evening = at("2026-11-21T18:00")  # both closed: general says when it opens again
    closed = rules.admit("cards", evening)
    assert isinstance(closed, QueueClosed) and closed.queue == "general"
    assert closed.message is not None and "open again on Saturday at 09:00" in closed.message


def test_the_default_closed_message_says_when_the_queue_opens() -> None:
    rules = book(cards={"hours": hours(holidays=["2026-12-25"])})
    early = rules.admit("cards", at("2026-11-23T07:00"))
    assert isinstance(early, QueueClosed)
    assert early.message == (
        "Sorry, our advisers are not available now. We are open again today at 08:00."
    )
    christmas_eve = rules.admit("cards", at("2026-12-24T21:00"))
    assert isinstance(christmas_eve, QueueClosed) and christmas_eve.message is not None
    assert christmas_eve.message.endswith("open again on Monday at 08:00.")  # not on the 25th


def test_a_queue_supplies_priority_codes_and_wrap_up_when_asked() -> None:
    rules = book(cards={"priority": 4, "wrap_up": 30, "wrap_up_codes": ["resolved"]})
    assert rules.priority("cards") == 4 and rules.priority("unknown") == 1
    assert rules.wrap_up_seconds("cards") == 30.0
    assert rules.wrap_up_codes("cards") == ("resolved",)
    assert rules.max_wait("cards") is None and rules.overflow("cards") is None


# ------------------------------------------------------------------ against a real server


def edit_queues(flow_files: tuple[Path, Path], old: str, new: str) -> None:
    path = flow_files[0] / "queues.yaml"
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))


def closed_all_day_today() -> str:
    """Holidays yesterday, today and tomorrow in London: closed whenever the test runs."""
    today = datetime.now(LONDON).date()
    days = [today + timedelta(days=d) for d in (-1, 0, 1)]
    return ", ".join(str(d) for d in days)


async def test_a_transfer_to_a_closed_queue_says_so_and_ends(
    serve_app: ServeApp, flow_files: tuple[Path, Path]
) -> None:
    edit_queues(
        flow_files,
        "    wrap_up_codes: [resolved, follow_up, escalated]\n",
        "    wrap_up_codes: [resolved, follow_up, escalated]\n"
        "    hours:\n"
        "      timezone: Europe/London\n"
        '      open: {mon-sun: "00:00-24:00"}\n'
        f"      holidays: [{closed_all_day_today()}]\n"
        '      closed: {message: "The card team is closed today."}\n',
    )
    server = await serve_app()
    await add_agent(server, "dana", name="Dana Scully")
    desk = await open_desk(server, "dana")
    chat = await server.chat()
    conv_id = await chat.start("bank")
    await chat.say("12345678")
    await chat.keys("2580")
    await chat.keys("0")
    await chat.expect_bot("^The card team is closed today\\.$")
    await chat.expect("end")
    conv = await server.conversation(conv_id)
    assert conv["status"] == "ended"
    assert ("system", "queue cards is closed") in [(t["role"], t["text"]) for t in conv["timeline"]]
    assert not [f for f in desk.frames if f["type"] == "offer"]
    await desk.close()


async def test_a_customer_who_waits_too_long_moves_to_the_overflow_queue(
    serve_app: ServeApp, flow_files: tuple[Path, Path]
) -> None:
    edit_queues(flow_files, "    max_wait: 600 ", "    max_wait: 1 ")
    path = flow_files[0] / "queues.yaml"
    text = path.read_text()
    path.write_text(text[: text.index("    hours:\n")])  # general: always open, for this test
    server = await serve_app()
    await add_agent(server, "gus", name="Gus Grissom", queues=("general",))
    desk = await open_desk(server, "gus")  # serves general only: card customers reach him late
    chat, conv_id = await verified_chat_asking_for_an_agent(server)
    offer = await desk.expect("offer", conversation_id=conv_id, timeout=10.0)
    assert offer["queue"] == "general"
    await desk.send({"type": "accept", "conversation_id": conv_id})
    await chat.expect("agent_joined", name="Gus Grissom")
    conv = await server.conversation(conv_id)
    said = [(t["role"], t["text"]) for t in conv["timeline"]]
    assert ("system", "moved to queue general") in said
    assert conv["handoff"]["queue"] == "general"
    await desk.close()


async def test_a_customer_who_waits_too_long_with_a_message_overflow_is_told_and_let_go(
    serve_app: ServeApp, flow_files: tuple[Path, Path]
) -> None:
    edit_queues(flow_files, "    max_wait: 600 ", "    max_wait: 1 ")
    edit_queues(
        flow_files,
        "    overflow: {queue: general}",
        '    overflow: {message: "Nobody is free. We will call you back."}',
    )
    server = await serve_app()
    chat, conv_id = await verified_chat_asking_for_an_agent(server)
    await chat.expect("notice", "Nobody is free", timeout=10.0)
    await chat.expect("end")

    async def ended() -> dict[str, Any] | None:
        conv = await server.conversation(conv_id)
        return conv if conv["status"] == "ended" else None

    conv = await wait_until(ended, timeout=10.0)
    assert conv["timeline"][-1]["text"] == "left queue cards unanswered"


async def test_a_queues_priority_applies_when_the_transfer_names_none(
    serve_app: ServeApp, flow_files: tuple[Path, Path]
) -> None:
    bank = flow_files[0] / "bank.yaml"
    text = bank.read_text()
    bank.write_text(text.replace('      priority: "10 if customer.vip else 1"\n', ""))
    edit_queues(flow_files, "    priority: 1 ", "    priority: 7 ")
    server = await serve_app()
    _chat, conv_id = await verified_chat_asking_for_an_agent(server)

    async def stored() -> int | None:
        entries = await QueueStateStore(server.app[STORE].database).entries()
        return next((e.entry.priority for e in entries if e.entry.conversation_id == conv_id), None)

    assert await wait_until(stored, timeout=5.0) == 7


async def test_wrap_up_ends_on_its_own_after_the_queues_seconds_and_codes_are_checked(
    serve_app: ServeApp, flow_files: tuple[Path, Path]
) -> None:
    edit_queues(flow_files, "    wrap_up: 30\n", "    wrap_up: 1\n")
    server = await serve_app()
    await add_agent(server, "dana", name="Dana Scully")
    desk = await open_desk(server, "dana")
    chat, conv_id = await verified_chat_asking_for_an_agent(server)
    await desk.expect("offer", conversation_id=conv_id)
    await desk.send({"type": "accept", "conversation_id": conv_id})
    await desk.expect("assigned")
    await desk.send({"type": "end", "conversation_id": conv_id})
    await desk.expect("presence", state="wrap_up")
    await desk.expect("presence", state="available", timeout=5.0)  # a second later, unfiled

    await desk.send({"type": "wrap_up", "conversation_id": conv_id, "code": "made_up"})
    refused = await desk.expect("error", conversation_id=conv_id)
    assert "resolved, follow_up, escalated" in refused["reason"]
    await desk.send({"type": "wrap_up", "conversation_id": conv_id, "code": "follow_up"})
    await desk.expect("wrapped_up", conversation_id=conv_id)
    conv = await server.conversation(conv_id)
    assert conv["handoff"]["wrap_up"]["code"] == "follow_up"
    await desk.close()
    await chat.close()
