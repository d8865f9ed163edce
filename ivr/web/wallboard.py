"""The supervisor wallboard: `/wallboard` (a big-screen page), `/wallboard/api/board` (JSON) and
`/wallboard/ws` (the same figures, live). What each figure means: `ivr.routing.wallboard`.

Any signed-in agent may look (the desktop's session cookie, `ivr.web.agent_auth`): without one,
the page redirects to the sign-in page and /wallboard/api/... and /wallboard/ws answer 401 JSON.
A websocket whose `Origin` is another site gets 403, as under /agent.

Protocol of /wallboard/ws (JSON text frames), server -> page only:
  {"type": "board", "at": epoch seconds, "since": ..., "service_level_seconds": ...,
   "service_level_target": ..., "queues": [row, ...], "totals": row}
at once, then whenever a figure changed, checked every WALLBOARD_PERIOD seconds (the longest
wait counts whole seconds, so a board with someone waiting is sent every second). A frame from
the page gets {"type": "error", "reason": ...}: there is nothing to ask.

Every viewer shares one computation per period (`Wallboard`): today's events are read from the
store incrementally, not all again for each screen and second.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from ivr.routing.wallboard import DayTally, board, local_midnight
from ivr.store import AgentRecord, StoreError
from ivr.store.queues import QueueStateStore
from ivr.web.agent_auth import (
    LOGIN_PATH,
    SIGN_IN_FIRST,
    current_agent,
    matches_host,
    require_agent,
)
from ivr.web.errors import json_error
from ivr.web.keys import QUEUES, STORE
from ivr.web.static_files import script, view_page

log = logging.getLogger("ivr.wallboard")

WALLBOARD_PERIOD = 1.0  # seconds between checks for a changed board
PAGE_PATH = "/wallboard"
SCRIPT_PATH = "/wallboard/static/wallboard.js"
BOARD_PATH = "/wallboard/api/board"
SOCKET_PATH = "/wallboard/ws"
MAX_FRAME_BYTES = 1024  # the page sends nothing; anything larger is refused by aiohttp
AgentHandler = Callable[[web.Request, AgentRecord], Awaitable[web.StreamResponse]]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Wallboard:
    """The application's one board: computed at most once per half period whoever asks."""

    def __init__(self) -> None:
        self.viewers: set[web.WebSocketResponse] = set()
        self._lock = asyncio.Lock()
        self._events: QueueStateStore | None = None
        self._tally: DayTally | None = None
        self._figures: dict[str, Any] = {}
        self._at = 0.0  # the service's time of _figures
        self._computed = -math.inf  # monotonic

    async def figures(self, app: web.Application) -> tuple[float, dict[str, Any]]:
        """(the queue service's time, the board's figures) as of now or half a period ago."""
        async with self._lock:
            if time.monotonic() - self._computed < WALLBOARD_PERIOD / 2:
                return self._at, self._figures
            queues = app[QUEUES]
            if self._events is None:
                self._events = QueueStateStore(app[STORE].database)
            now = queues.now()  # the router's times are on the service's clock
            midnight = local_midnight(now)
            if self._tally is None or self._tally.since != midnight:
                self._tally = DayTally(midnight)  # a new day
            self._tally.add(await self._events.events_since(self._tally.read_from()))
            found = board(queues.router, queues.rules.policies(), self._tally, now)
            self._at, self._figures = now, found.as_json()
            self._computed = time.monotonic()
            return self._at, self._figures


_WALLBOARD = web.AppKey("wallboard", Wallboard)


def signed_in(handler: AgentHandler) -> Handler:
    """For the board's API and socket: the handler runs with the signed-in agent, else 401 JSON.
    (`require_agent` answers 401 only under /agent; elsewhere it redirects, as for a page.)"""

    @functools.wraps(handler)
    async def guarded(request: web.Request) -> web.StreamResponse:
        agent = await current_agent(request)
        if agent is None:
            return json_error(401, SIGN_IN_FIRST, login=LOGIN_PATH)
        return await handler(request, agent)

    return guarded


def same_origin(handler: Handler) -> Handler:
    """Refuse (403) a websocket opened by another site's page: `agent_auth.same_origin` checks
    only under /agent. Programs that send no `Origin` are let through."""

    @functools.wraps(handler)
    async def checked(request: web.Request) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        if origin is not None and not matches_host(origin, request.host):
            log.warning("refused %s %s from origin %r", request.method, request.path, origin)
            return json_error(403, "cross-origin request refused", origin=origin)
        return await handler(request)

    return checked


@require_agent
async def wallboard_page(request: web.Request, agent: AgentRecord) -> web.StreamResponse:
    # As the desktop's: queue figures are nobody else's business (ivr.web.static_files).
    return view_page("wallboard.html")


async def wallboard_script(request: web.Request) -> web.StreamResponse:
    return script("wallboard.js")


@signed_in
async def board_now(request: web.Request, agent: AgentRecord) -> web.StreamResponse:
    at, figures = await request.app[_WALLBOARD].figures(request.app)
    return web.json_response({"at": at, **figures}, headers={"Cache-Control": "no-store"})


@same_origin
@signed_in
async def board_socket(request: web.Request, agent: AgentRecord) -> web.StreamResponse:
    ws = web.WebSocketResponse(heartbeat=30, max_msg_size=MAX_FRAME_BYTES)
    await ws.prepare(request)
    wallboard = request.app[_WALLBOARD]
    wallboard.viewers.add(ws)
    pusher = asyncio.create_task(_push(request.app, ws))
    try:
        async for message in ws:
            if message.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                with contextlib.suppress(ConnectionError, RuntimeError):
                    await ws.send_json(
                        {"type": "error", "reason": "the wallboard socket takes no frames"}
                    )
    finally:
        wallboard.viewers.discard(ws)
        pusher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await pusher
    return ws


async def _push(app: web.Application, ws: web.WebSocketResponse) -> None:
    """The board at once, then again each period in which it changed."""
    wallboard = app[_WALLBOARD]
    sent: dict[str, Any] | None = None
    while not ws.closed:
        try:
            at, figures = await wallboard.figures(app)
        except StoreError as exc:  # the page keeps the last board; the next period tries again
            log.error("wallboard not updated: %s", exc)
        else:
            if figures != sent:
                try:
                    await ws.send_json({"type": "board", "at": at, **figures})
                except (ConnectionError, RuntimeError):
                    return  # closing: the handler's loop ends too
                sent = figures
        await asyncio.sleep(WALLBOARD_PERIOD)


async def _close_viewers(app: web.Application) -> None:
    """At shutdown: open wallboards would hold it up for aiohttp's whole shutdown timeout."""
    for ws in list(app[_WALLBOARD].viewers):
        await ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutting down")


def add_routes(app: web.Application) -> None:
    app[_WALLBOARD] = Wallboard()
    app.on_shutdown.append(_close_viewers)
    app.router.add_get(PAGE_PATH, wallboard_page)
    app.router.add_get(SCRIPT_PATH, wallboard_script)
    app.router.add_get(BOARD_PATH, board_now)
    app.router.add_get(SOCKET_PATH, board_socket)
