"""Two-way SMS through a real Kannel (bearerbox + smsbox) and its fakesmsc handset: a flow as
texts, delivery reports, and outages of the gateway and of this server with nothing lost or
taken twice."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from ivr.config import HttpSettings
from tests.kannel import Kannel, running_kannel, through
from tests.serve_fixtures import ALICE, Served, wait_until

CUSTOMER = "+15551234567"
TOKEN = "kannel-token"
ACCOUNT_QUESTION = "Welcome to Northwind Bank. Please enter your eight digit account number."


@pytest.fixture
async def kannel_port(tmp_path: Path) -> AsyncIterator[tuple[Kannel, int]]:
    async with running_kannel(tmp_path, TOKEN) as started:
        yield started


async def serve_with_kannel(serve_app: Any, kannel: Kannel, port: int, store: str) -> Served:
    return await serve_app(
        store,
        http=HttpSettings(host="127.0.0.1", port=port),
        sms=through(kannel, TOKEN, retry_seconds=0.2, max_retry_seconds=1.0),
    )


async def outbox(served: Served) -> list[dict[str, Any]]:
    status, body = await served.api("/api/sms/outbox")
    assert status == 200, body
    return list(reversed(body["texts"]))


async def test_a_flow_runs_over_sms_through_kannel_with_delivery_reports(
    serve_app: Any, kannel_port: tuple[Kannel, int], tmp_path: Path
) -> None:
    kannel, port = kannel_port
    served = await serve_with_kannel(serve_app, kannel, port, f"sqlite:///{tmp_path}/k.db")
    phone = await kannel.handset(CUSTOMER)
    await phone.send("Hello there")
    assert await phone.next_text() == ACCOUNT_QUESTION
    await phone.send(ALICE["account"])
    assert (await phone.next_text()).startswith("Please enter your four digit PIN")
    await phone.send(ALICE["pin"])
    menu = await phone.next_text()  # over 160 characters: two concatenated parts, one text
    assert menu.startswith("Thank you, Alice. What can I do for you?")
    assert menu.endswith(
        "Reply 1 for Check balance, 2 for Lost or stolen card, 0 for Talk to an agent."
    )
    await phone.send("1")
    assert (await phone.next_text()).startswith("Your balance is")

    async def all_delivered() -> list[dict[str, Any]] | None:
        texts = await outbox(served)
        return texts if all(t["state"] == "delivered" for t in texts) else None

    texts = await wait_until(all_delivered, timeout=15)  # Kannel's delivery reports came back
    assert len(texts) == 4
    conv = await served.conversation(texts[0]["conversation_id"])
    assert conv["identity"]["verified"] and conv["channels"] == ["sms"]
    assert ALICE["pin"] not in str(conv["timeline"])


async def test_a_gateway_outage_loses_and_repeats_nothing(
    serve_app: Any, kannel_port: tuple[Kannel, int], tmp_path: Path
) -> None:
    kannel, port = kannel_port
    served = await serve_with_kannel(serve_app, kannel, port, f"sqlite:///{tmp_path}/k.db")
    phone = await kannel.handset(CUSTOMER)
    await phone.send("hello")
    assert await phone.next_text() == ACCOUNT_QUESTION

    await kannel.stop()  # the gateway goes down; the customer's next text comes another way
    async with served.session.post(
        served.url + "/api/sms",
        json={"from": CUSTOMER, "text": ALICE["account"]},
        headers=served.headers(),
    ) as resp:
        assert resp.status == 202

    async def retrying() -> dict[str, Any] | None:
        pending = [t for t in await outbox(served) if t["state"] == "queued"]
        return pending[0] if pending and pending[0]["attempts"] >= 2 else None

    pending = await wait_until(retrying, timeout=15)
    assert "Connect" in pending["last_error"] or "refused" in pending["last_error"].lower()

    await kannel.start()
    phone = await kannel.handset(CUSTOMER)
    assert (await phone.next_text()).startswith("Please enter your four digit PIN")
    await phone.send(ALICE["pin"])
    assert (await phone.next_text()).startswith("Thank you, Alice.")

    async def none_left() -> bool:
        return all(t["state"] != "queued" for t in await outbox(served))

    await wait_until(none_left, timeout=10)
    # Nothing twice: each text the bot sent reached the phone once.
    assert len(phone.received) == 2 and len(set(phone.received)) == 2


async def test_a_text_sent_while_this_server_is_down_arrives_once_after_its_restart(
    serve_app: Any, kannel_port: tuple[Kannel, int], tmp_path: Path
) -> None:
    kannel, port = kannel_port
    store = f"sqlite:///{tmp_path}/k.db"
    served = await serve_with_kannel(serve_app, kannel, port, store)
    phone = await kannel.handset(CUSTOMER)
    await phone.send("hello")
    assert await phone.next_text() == ACCOUNT_QUESTION
    await served.stop()
    await phone.send(ALICE["account"])

    async def kannel_failed_to_fetch() -> re.Match[str] | None:
        return re.search(r"Couldn't fetch <[^>]*/sms/kannel/mo\?", kannel.log("smsbox.log"))

    await wait_until(kannel_failed_to_fetch, timeout=15)  # Kannel keeps it and tries again
    started = time.monotonic()
    served = await serve_with_kannel(serve_app, kannel, port, store)
    assert (await phone.next_text()).startswith("Please enter your four digit PIN")
    assert time.monotonic() - started < 15
    await phone.send(ALICE["pin"])
    assert (await phone.next_text()).startswith("Thank you, Alice.")
    assert len(phone.received) == 3, phone.received  # the account was taken once
