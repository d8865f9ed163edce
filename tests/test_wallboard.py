"""The supervisors' wallboard: the figures from a router and events built here (how each is
defined: ivr/routing/wallboard.py), then /wallboard against a real server (sign-in, the chat
customer's websocket, an agent's desk), and the page in real headless Chromium."""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import aiohttp
import pytest
from playwright.async_api import expect

from ivr.routing.acd import AgentState, Presence, QueuePolicy, Router, WaitingEntry
from ivr.routing.wallboard import (
    REREAD_SECONDS,
    SERVICE_LEVEL_SECONDS,
    DayTally,
    board_from_events,
    local_midnight,
)
from ivr.store.queues import QueueEvent
from tests.agent_fixtures import (
    PASSWORD,
    add_agent,
    open_desk,
    sign_in,
    verified_chat_asking_for_an_agent,
)
from tests.browser import LaunchChromium, page_errors
from tests.serve_fixtures import Served, wait_until

FRAME_TIMEOUT_S = 5.0
EPOCH_SECONDS = re.compile(r"^\d+(\.\d+)?$")

# ------------------------------------------------------------------ the figures


def event(ts: float, queue: str, conv: str, kind: str, seconds: float | None = None) -> QueueEvent:
    return QueueEvent(ts, queue, conv, kind, None, seconds, {})


def row(figures: dict[str, Any], queue: str) -> dict[str, Any]:
    return next(r for r in figures["queues"] if r["queue"] == queue)


def a_day_in_cards() -> list[QueueEvent]:
    """Six customers in cards (one moves on to general), one in a queue no file defines."""
    events = [event(1000 + i, "cards", f"c{i}", "enqueued") for i in range(1, 7)]
    return [
        *events,
        event(1010, "cards", "c1", "answered", 5.0),
        event(1020, "cards", "c2", "answered", 15.0),
        event(1030, "cards", "c3", "answered", 25.0),  # later than the threshold
        event(1040, "cards", "c4", "abandoned", 10.0),  # gave up early: neither good nor bad
        event(1050, "cards", "c5", "abandoned", 30.0),  # gave up late: counts against
        event(1700, "cards", "c6", "overflowed", 700.0),  # waited max_wait: counts against
        event(1700, "general", "c6", "enqueued"),
        event(1110, "cards", "c1", "handled", 100.0),
        event(1220, "cards", "c2", "handled", 200.0),
        event(1300, "legacy", "x1", "enqueued"),
        event(500, "cards", "yesterday", "answered", 90.0),  # before `since`: not today
    ]


def test_service_level_abandonment_and_handling_times_from_the_events() -> None:
    figures = board_from_events(
        Router(), ["cards", "general"], a_day_in_cards(), now=2000.0, since=900.0
    ).as_json()

    cards = row(figures, "cards")
    assert cards["offered"] == 6
    assert cards["answered"] == 3 and cards["answered_within"] == 2
    assert cards["abandoned"] == 2 and cards["overflowed"] == 1 and cards["handled"] == 2
    # 2 answered within 20 s, of 3 answered + 2 unanswered after 20 s (c4 left within it).
    assert cards["service_level"] == pytest.approx(2 / 5)
    assert cards["abandon_rate"] == pytest.approx(2 / (3 + 2))
    assert cards["aht"] == pytest.approx(150.0)
    assert cards["asa"] == pytest.approx((5 + 15 + 25) / 3)

    general = row(figures, "general")
    assert general["offered"] == 1 and general["answered"] == 0
    assert general["service_level"] is None and general["abandon_rate"] is None
    assert general["aht"] is None and general["asa"] is None

    # Defined queues first, in their order; then any other queue the events name.
    assert [r["queue"] for r in figures["queues"]] == ["cards", "general", "legacy"]
    totals = figures["totals"]
    assert totals["offered"] == 8 and totals["answered"] == 3 and totals["abandoned"] == 2
    assert totals["service_level"] == pytest.approx(2 / 5)
    assert figures["since"] == 900.0
    assert figures["service_level_seconds"] == SERVICE_LEVEL_SECONDS


def test_an_abandon_of_unknown_wait_counts_against_the_service_level() -> None:
    events = [
        event(1000, "cards", "a", "enqueued"),
        event(1001, "cards", "a", "answered", 1.0),
        event(1002, "cards", "b", "abandoned", None),  # a call cut by a restart
    ]
    cards = row(
        board_from_events(Router(), ["cards"], events, now=2000, since=0).as_json(), "cards"
    )
    assert cards["service_level"] == pytest.approx(0.5)
    assert cards["abandon_rate"] == pytest.approx(0.5)


def _available(router: Router, agent_id: str, queues: set[str], now: float) -> None:
    router.upsert_agent(
        AgentState(agent_id, {"banking": 5}, frozenset(queues), {"voice": 1, "text": 3})
    )
    router.set_presence(agent_id, Presence.AVAILABLE, now)


def _entry(conv: str, queue: str, at: float) -> WaitingEntry:
    return WaitingEntry(conv, queue, "text", frozenset(), 1, at)


def test_waiting_longest_wait_and_agents_by_state_from_the_router() -> None:
    router = Router([QueuePolicy("cards"), QueuePolicy("general")])
    # busy-chat holds a chat of general and serves cards too.
    _available(router, "busy-chat", {"cards", "general"}, 0)
    router.enqueue(_entry("x", "general", 0))
    [offer] = router.assign(1)
    router.accept(offer.conversation_id, "busy-chat", 2)
    # ringing has an offer of e1 ringing (fully idle agents are offered first).
    _available(router, "ringing", {"cards"}, 50)
    router.enqueue(_entry("e1", "cards", 100))
    [offer] = router.assign(101)
    assert offer.agent_id == "ringing"
    _available(router, "idle", {"cards"}, 102)
    for agent_id, presence in (
        ("wrapping", Presence.WRAP_UP),
        ("resting", Presence.BREAK),
        ("gone", Presence.OFFLINE),
    ):
        _available(router, agent_id, {"cards"}, 103)
        router.set_presence(agent_id, presence, 104)
    router.enqueue(_entry("e2", "cards", 130))

    figures = board_from_events(router, ["cards", "general"], [], now=160.4, since=0).as_json()
    cards = row(figures, "cards")
    assert cards["waiting"] == 2  # e1 ringing on a desk still waits
    assert cards["longest_wait"] == 60  # e1, since 100, in whole seconds
    assert cards["agents"] == {"available": 1, "busy": 2, "wrap_up": 1, "break": 1, "offline": 1}
    general = row(figures, "general")
    assert general["waiting"] == 0 and general["longest_wait"] == 0
    assert general["agents"] == {"available": 0, "busy": 1, "wrap_up": 0, "break": 0, "offline": 0}
    totals = figures["totals"]
    assert totals["waiting"] == 2 and totals["longest_wait"] == 60
    # Each agent once, though busy-chat serves both queues.
    assert totals["agents"] == {"available": 1, "busy": 2, "wrap_up": 1, "break": 1, "offline": 1}


def test_a_queue_somebody_waits_in_has_a_row_though_no_file_defines_it() -> None:
    router = Router()
    router.enqueue(_entry("w", "old-queue", 10))
    figures = board_from_events(router, ["cards"], [], now=15, since=0).as_json()
    assert [r["queue"] for r in figures["queues"]] == ["cards", "old-queue"]
    assert row(figures, "old-queue")["waiting"] == 1


def test_events_read_again_are_counted_once() -> None:
    tally = DayTally(since=900.0)
    events = a_day_in_cards()
    tally.add(events)
    newest = max(e.ts for e in events)
    assert tally.read_from() == newest - REREAD_SECONDS
    again = [e for e in events if e.ts >= tally.read_from()]
    late = event(newest - 1, "cards", "c7", "enqueued")  # committed after a newer one
    tally.add([*again, late])
    assert tally.days["cards"].offered == 7
    assert tally.days["general"].offered == 1


@pytest.fixture
def india() -> Iterator[None]:
    """The process in a time zone half an hour off UTC's hours, then back."""
    before = os.environ.get("TZ")
    os.environ["TZ"] = "Asia/Kolkata"
    time.tzset()
    try:
        yield
    finally:
        if before is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = before
        time.tzset()


def test_today_starts_at_the_servers_local_midnight(india: None) -> None:
    now = datetime(2026, 3, 4, 1, 15).timestamp()  # 01:15 in Kolkata, 19:45 UTC the day before
    midnight = local_midnight(now)
    assert datetime.fromtimestamp(midnight).timetuple()[:6] == (2026, 3, 4, 0, 0, 0)
    assert now - midnight == 75 * 60


# ------------------------------------------------------------------ the server


async def test_strangers_are_sent_to_sign_in_and_other_sites_are_refused(server: Served) -> None:
    status, body = await server.get("/wallboard/api/board")
    assert status == 401 and "sign in" in body["error"] and body["login"] == "/agent/login"
    async with server.session.get(server.url + "/wallboard", allow_redirects=False) as resp:
        assert resp.status == 303 and resp.headers["Location"] == "/agent/login"
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await server.session.ws_connect(server.url + "/wallboard/ws")
    assert refused.value.status == 401

    await add_agent(server, "sam")
    session = await sign_in(server, "sam")
    try:
        with pytest.raises(aiohttp.WSServerHandshakeError) as cross_site:
            await session.ws_connect(
                server.url + "/wallboard/ws", headers={"Origin": "http://evil.example"}
            )
        assert cross_site.value.status == 403
        async with session.get(server.url + "/wallboard") as resp:
            assert resp.status == 200
            assert "script-src 'self'" in resp.headers["Content-Security-Policy"]
            assert "/wallboard/static/wallboard.js" in await resp.text()
        async with session.get(server.url + "/wallboard/static/wallboard.js") as resp:
            assert resp.status == 200 and resp.content_type == "text/javascript"
    finally:
        await session.close()


async def _board(session: aiohttp.ClientSession, served: Served) -> dict[str, Any]:
    async with session.get(served.url + "/wallboard/api/board") as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def test_the_board_follows_a_chat_from_the_queue_to_the_wrap_up(server: Served) -> None:
    await add_agent(server, "sam", queues=["cards"])
    viewer = await sign_in(server, "sam")  # not on the desktop: not an agent of the router
    try:
        first = await _board(viewer, server)
        assert [r["queue"] for r in first["queues"]] == ["cards", "parcels", "general"]
        assert row(first, "cards")["waiting"] == 0

        _chat, conv_id = await verified_chat_asking_for_an_agent(server)

        async def waiting_in_cards() -> dict[str, Any] | None:
            cards = row(await _board(viewer, server), "cards")
            return cards if cards["waiting"] == 1 else None

        cards = await wait_until(waiting_in_cards, timeout=FRAME_TIMEOUT_S)
        assert cards["offered"] == 1 and cards["longest_wait"] >= 0

        await add_agent(server, "dana")
        desk = await open_desk(server, "dana")
        await desk.expect("offer", conversation_id=conv_id)
        await desk.send({"type": "accept", "conversation_id": conv_id})
        await desk.expect("assigned")

        async def dana_busy() -> dict[str, Any] | None:
            cards = row(await _board(viewer, server), "cards")
            return cards if cards["agents"]["busy"] == 1 and cards["waiting"] == 0 else None

        cards = await wait_until(dana_busy, timeout=FRAME_TIMEOUT_S)
        assert cards["answered"] == 1 and cards["asa"] >= 0

        await desk.send({"type": "end", "conversation_id": conv_id})
        await desk.expect("ended", conversation_id=conv_id)
        await desk.send({"type": "wrap_up", "conversation_id": conv_id, "code": "resolved"})
        await desk.expect("wrapped_up", conversation_id=conv_id)

        async def handled() -> dict[str, Any] | None:
            cards = row(await _board(viewer, server), "cards")
            return cards if cards["handled"] == 1 and cards["agents"]["available"] == 1 else None

        cards = await wait_until(handled, timeout=FRAME_TIMEOUT_S)
        assert cards["answered"] == 1 and cards["answered_within"] == 1
        assert cards["service_level"] == 1.0 and cards["abandon_rate"] == 0.0
        assert cards["aht"] > 0
        await desk.close()
    finally:
        await viewer.close()


async def _next_board(
    ws: aiohttp.ClientWebSocketResponse,
    wanted: Callable[[dict[str, Any]], bool],
    timeout: float = FRAME_TIMEOUT_S,
) -> dict[str, Any]:
    """The next board frame for which `wanted` holds; fails after `timeout` seconds."""
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while True:
        try:
            message = await asyncio.wait_for(ws.receive(), deadline - time.monotonic())
        except TimeoutError:
            pytest.fail(f"no such board within {timeout} s; seen: {seen}")
        assert message.type == aiohttp.WSMsgType.TEXT, message
        frame = json.loads(message.data)
        seen.append(frame)
        if frame["type"] == "board" and wanted(frame):
            return frame


async def test_the_socket_sends_the_board_again_when_a_customer_joins_the_queue(
    server: Served,
) -> None:
    await add_agent(server, "sam")
    viewer = await sign_in(server, "sam")
    try:
        ws = await viewer.ws_connect(server.url + "/wallboard/ws")
        first = await _next_board(ws, lambda frame: True)
        assert row(first, "cards")["waiting"] == 0
        await verified_chat_asking_for_an_agent(server)
        joined = await _next_board(ws, lambda frame: row(frame, "cards")["waiting"] == 1)
        assert joined["at"] >= first["at"] and joined["totals"]["waiting"] == 1
        await ws.send_str("hello")
        error = json.loads((await asyncio.wait_for(ws.receive(), FRAME_TIMEOUT_S)).data)
        while error["type"] == "board":  # a tick of the longest wait may come first
            error = json.loads((await asyncio.wait_for(ws.receive(), FRAME_TIMEOUT_S)).data)
        assert error == {"type": "error", "reason": "the wallboard socket takes no frames"}
        await ws.close()
    finally:
        await viewer.close()


# ------------------------------------------------------------------ the page


async def test_the_page_shows_a_customer_joining_the_queue_live(
    server: Served, chromium: LaunchChromium
) -> None:
    await add_agent(server, "sam")
    context = await chromium()
    signed = await context.request.post(
        server.url + "/agent/login", data={"username": "sam", "password": PASSWORD}
    )
    assert signed.status == 200, await signed.text()
    page = await context.new_page()
    errors = page_errors(page)
    await page.goto(server.url + "/wallboard")
    board = page.locator("table#board")
    await expect(board).to_have_attribute("data-connected", "true")
    cards = page.locator('table#board tr.queue[data-queue="cards"]')
    await expect(cards.locator(".waiting")).to_have_text("0")
    await expect(cards.locator(".service-level")).to_have_text("–")  # nobody counted yet

    await verified_chat_asking_for_an_agent(server)
    await expect(cards.locator(".waiting")).to_have_text("1")
    await expect(page.locator("table#board tr.totals .waiting")).to_have_text("1")
    await expect(board).to_have_attribute("data-updated", EPOCH_SECONDS)
    assert errors == []
