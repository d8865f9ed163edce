"""Agents' sign-in for the agent desktop: /agent/login, /agent/logout, and the guard of /agent.

A signed-in browser holds the cookie `ivr_agent`: a random session token (only its SHA-256 is
stored, see `ivr.store.agents`), HttpOnly, SameSite=Strict, Secure on https. Routes of the
desktop take the agent with `@require_agent` (or ask `current_agent(request)`): without a live
session, /agent/api/... and /agent/ws answer 401 JSON and pages redirect to the sign-in page.

Cross-site requests: the cookie is SameSite=Strict, and the `same_origin` middleware refuses
(403) any state-changing request or websocket under /agent whose `Origin` names another site.
Guessing: after `THROTTLE_FAILURES` failed sign-ins for one username within `THROTTLE_WINDOW`
seconds, that username gets 429 with Retry-After until the oldest failure ages out. The count
lives in this process's memory: a restart forgets it, and each node of a cluster counts alone.

The desktop itself (offers, chats, presence) is built on top of this module, never inside it.
"""

from __future__ import annotations

import functools
import html
import logging
import math
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any

from aiohttp import web
from yarl import URL

from ivr.store.agents import MAX_PASSWORD, AgentRecord, normalize_username
from ivr.web.errors import json_error
from ivr.web.keys import AGENTS

log = logging.getLogger("ivr.web.agents")

COOKIE = "ivr_agent"
SESSION_TTL = 12 * 3600  # seconds; one working day plus overtime
LOGIN_PATH = "/agent/login"
DESKTOP_PATH = "/agent"
THROTTLE_FAILURES = 5
THROTTLE_WINDOW = 300.0  # seconds
THROTTLE_TRACKED = 10_000  # usernames remembered at most (a flood of made-up names is bounded)
WRONG = "Wrong username or password"
SIGN_IN_FIRST = "sign in first"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Sign-in and placeholder pages: no script, no framing (clickjacking), forms post only to us.
_PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
}

AgentHandler = Callable[[web.Request, AgentRecord], Awaitable[web.StreamResponse]]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class LoginThrottle:
    """Failed sign-ins per username in a sliding window. An attempt counts as failed from
    the moment it starts (and is forgiven if it succeeds), so guesses sent all at once are
    held back as well as guesses sent one after another."""

    def __init__(
        self,
        failures: int = THROTTLE_FAILURES,
        window: float = THROTTLE_WINDOW,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.failures = failures
        self.window = window
        self._clock = clock
        self._seen: OrderedDict[str, deque[float]] = OrderedDict()

    def _recent(self, key: str, now: float) -> deque[float]:
        times = self._seen.get(key)
        if times is None:
            return deque()
        while times and times[0] <= now - self.window:
            times.popleft()
        if not times:
            del self._seen[key]
        return times

    def begin(self, key: str) -> int | None:
        """Seconds to wait if `key` is throttled, else None (and the attempt is counted)."""
        now = self._clock()
        times = self._recent(key, now)
        if len(times) >= self.failures:
            return max(1, math.ceil(times[0] + self.window - now))
        times.append(now)
        self._seen[key] = times
        self._seen.move_to_end(key)
        if len(self._seen) > THROTTLE_TRACKED:
            self._seen.popitem(last=False)
        return None

    def succeeded(self, key: str) -> None:
        self._seen.pop(key, None)


LOGIN_THROTTLE = web.AppKey("agent_login_throttle", LoginThrottle)


# ------------------------------------------------------------------ who is signed in


async def current_agent(request: web.Request) -> AgentRecord | None:
    """The agent whose live session the request's cookie holds, else None."""
    token = request.cookies.get(COOKIE)
    if not token:
        return None
    return await request.app[AGENTS].session_agent(token)


def _is_api(request: web.Request) -> bool:
    return request.path.startswith("/agent/api/") or request.path.startswith("/agent/ws")


def _not_signed_in(request: web.Request) -> web.StreamResponse:
    response: web.StreamResponse
    if _is_api(request):
        response = json_error(401, SIGN_IN_FIRST, login=LOGIN_PATH)
    else:
        response = _see_other(LOGIN_PATH)
    if COOKIE in request.cookies:  # unknown, expired or forged: the browser may drop it
        _clear_cookie(request, response)
    return response


def require_agent(handler: AgentHandler) -> Handler:
    """Route decorator: the handler runs with the signed-in agent, or the request is turned
    away (401 JSON under /agent/api/ and /agent/ws, a redirect to sign in for pages)."""

    @functools.wraps(handler)
    async def guarded(request: web.Request) -> web.StreamResponse:
        agent = await current_agent(request)
        if agent is None:
            return _not_signed_in(request)
        return await handler(request, agent)

    return guarded


@web.middleware
async def same_origin(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuse state-changing requests and websockets under /agent sent by another site's page.
    Browsers send `Origin` with these; programs that send none are let through."""
    under_agent = request.path == DESKTOP_PATH or request.path.startswith(DESKTOP_PATH + "/")
    upgrade = request.headers.get("Upgrade", "").lower() == "websocket"
    origin = request.headers.get("Origin")
    if (
        under_agent
        and origin is not None
        and (request.method not in _SAFE_METHODS or upgrade)
        and not matches_host(origin, request.host)
    ):
        log.warning("refused %s %s from origin %r", request.method, request.path, origin)
        return json_error(403, "cross-origin request refused", origin=origin)
    return await handler(request)


def matches_host(origin: str, host: str) -> bool:
    try:
        sent = URL(origin)
        ours = URL(f"{sent.scheme}://{host}")
    except ValueError:
        return False
    if sent.scheme not in ("http", "https") or not sent.host or not ours.host:
        return False  # includes "null" (sandboxed frames, file: pages)
    return (sent.host.lower(), sent.port) == (ours.host.lower(), ours.port)


# ------------------------------------------------------------------ cookie and redirects


def _see_other(location: str) -> web.Response:
    """303: after a form POST the browser GETs `location` (and Back does not resubmit)."""
    return web.Response(status=303, headers={"Location": location})


def _set_cookie(request: web.Request, response: web.StreamResponse, token: str) -> None:
    response.set_cookie(
        COOKIE,
        token,
        max_age=SESSION_TTL,
        path="/",
        httponly=True,
        samesite="Strict",
        secure=request.secure,
    )


def _clear_cookie(request: web.Request, response: web.StreamResponse) -> None:
    response.del_cookie(COOKIE, path="/", httponly=True, samesite="Strict", secure=request.secure)


# ------------------------------------------------------------------ pages


def _static(name: str) -> str | None:
    page = resources.files("ivr.web").joinpath(f"static/{name}")
    return page.read_text(encoding="utf-8") if page.is_file() else None


def _login_page(message: str = "", username: str = "", status: int = 200) -> web.Response:
    notice = f'<p class="error" role="alert">{html.escape(message)}</p>' if message else ""
    page = (_static("agent-login.html") or "").replace("{{message}}", notice)
    page = page.replace("{{username}}", html.escape(username, quote=True))
    return web.Response(text=page, status=status, content_type="text/html", headers=_PAGE_HEADERS)


# The desktop shows customers' data: nothing cached, nothing but our own script runs, no framing.
_DESKTOP_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; "
    "connect-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
}

_PLACEHOLDER = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Agent desktop</title></head>
<body><main><p>Signed in as {name}</p>
<form method="post" action="/agent/logout"><button type="submit">Sign out</button></form>
</main></body></html>
"""


async def login_page(request: web.Request) -> web.StreamResponse:
    if await current_agent(request) is not None:
        return _see_other(DESKTOP_PATH)
    return _login_page()


@require_agent
async def desktop_page(request: web.Request, agent: AgentRecord) -> web.StreamResponse:
    page = _static("agent.html")
    if page is not None:  # the desktop, once it exists
        return web.Response(text=page, content_type="text/html", headers=_DESKTOP_HEADERS)
    text = _PLACEHOLDER.format(name=html.escape(agent.display_name))
    return web.Response(text=text, content_type="text/html", headers=_PAGE_HEADERS)


@require_agent
async def me(request: web.Request, agent: AgentRecord) -> web.StreamResponse:
    return web.json_response({"agent": agent.public_view()})


# ------------------------------------------------------------------ sign in and out


def _wants_json(request: web.Request) -> bool:
    kind = request.content_type
    return kind == "application/json" or kind.endswith("+json")


async def _credentials(request: web.Request, as_json: bool) -> tuple[str, str] | None:
    """(username, password) from the form or JSON body; None if the JSON is not an object."""
    body: Any
    if as_json:
        try:
            body = await request.json()
        except ValueError:
            return None
        if not isinstance(body, dict):
            return None
    else:
        body = await request.post()
    username, password = body.get("username"), body.get("password")
    return (
        username if isinstance(username, str) else "",
        password if isinstance(password, str) else "",
    )


async def login(request: web.Request) -> web.StreamResponse:
    as_json = _wants_json(request)
    credentials = await _credentials(request, as_json)
    if credentials is None:
        return json_error(400, 'expected a JSON object {"username": ..., "password": ...}')
    username, password = credentials
    key = normalize_username(username)[:128]
    throttle = request.app[LOGIN_THROTTLE]
    wait = throttle.begin(key)
    if wait is not None:
        log.warning("agent sign-in for %r throttled (from %s)", key, request.remote)
        minutes = math.ceil(wait / 60)
        reason = f"Too many failed sign-ins for this username; try again in {minutes} min"
        headers = {"Retry-After": str(wait)}
        if as_json:
            return web.json_response(
                {"error": reason, "retry_after": wait}, status=429, headers=headers
            )
        page = _login_page(reason, username, status=429)
        page.headers.update(headers)
        return page
    agent = None
    if username and password and len(password) <= MAX_PASSWORD:
        agent = await request.app[AGENTS].authenticate(username, password)
    if agent is None:
        log.info("agent sign-in failed for %r (from %s)", key, request.remote)
        if as_json:
            return json_error(401, WRONG)
        return _login_page(WRONG, username, status=401)
    throttle.succeeded(key)
    store = request.app[AGENTS]
    old = request.cookies.get(COOKIE)
    if old:  # a new sign-in on this browser ends the one before
        await store.close_session(old)
    token = await store.open_session(agent.id, SESSION_TTL)
    log.info("agent %s signed in (from %s)", agent.username, request.remote)
    response: web.StreamResponse
    if as_json:
        response = web.json_response({"agent": agent.public_view()})
    else:
        response = _see_other(DESKTOP_PATH)
    _set_cookie(request, response, token)
    return response


async def logout(request: web.Request) -> web.StreamResponse:
    token = request.cookies.get(COOKIE)
    if token:
        await request.app[AGENTS].close_session(token)
    response = _see_other(LOGIN_PATH)
    _clear_cookie(request, response)
    return response


def add_routes(app: web.Application) -> None:
    app[LOGIN_THROTTLE] = LoginThrottle()
    app.router.add_get(LOGIN_PATH, login_page)
    app.router.add_post(LOGIN_PATH, login)
    app.router.add_post("/agent/logout", logout)
    app.router.add_get(DESKTOP_PATH, desktop_page)
    app.router.add_get("/agent/api/me", me)
