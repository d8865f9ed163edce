"""Pytest plugin: Debian's Firefox ESR, headless, for the widget's tests in a second engine.

Playwright drives only its own patched Firefox (a download we do not make) and geckodriver is on
no registry, so the test drives the page from inside: `firefox` opens a page on a loopback site of
the test's own, whose `/driver.js` connects back over a websocket and runs the scripts the test
sends (`FirefoxPage.evaluate`, `FirefoxPage.wait_for`). Clicks are the page's own `click()`.

The profile (`user.js`) gives the page what a visitor who said yes has: a fake microphone
(`media.navigator.streams.fake`, a 1 kHz tone unless `fake_frequency` says otherwise) without a
prompt, loopback allowed for ICE, and audio that may play without a gesture. Every wait is
bounded.
Registered in tests/conftest.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import shutil
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import WSMsgType, web

FIREFOX = Path("/usr/bin/firefox-esr")
TIMEOUT_S = 10.0

# One preference a line; the values are JavaScript literals.
PREFERENCES: dict[str, object] = {
    "media.navigator.streams.fake": True,
    "media.navigator.permission.disabled": True,
    "media.peerconnection.ice.loopback": True,
    "media.autoplay.default": 0,  # allowed
    "media.autoplay.block-webaudio": False,
    # A first run of a new profile: no welcome pages, reports or updates in the way.
    "browser.shell.checkDefaultBrowser": False,
    "browser.aboutwelcome.enabled": False,
    "browser.startup.homepage_override.mstone": "ignore",
    "datareporting.policy.dataSubmissionEnabled": False,
    "toolkit.telemetry.reportingpolicy.firstRun": False,
    "app.update.auto": False,
    "app.update.enabled": False,
    "network.captive-portal-service.enabled": False,
    "network.connectivity-service.enabled": False,
}

# Runs the test's scripts: {"id", "script"} in, {"id", "value"} or {"id", "error"} out.
_DRIVER_JS = """
(() => {
  const AsyncFunction = (async () => {}).constructor;
  const socket = new WebSocket(location.origin.replace(/^http/, "ws") + "/driver");
  socket.onmessage = async (event) => {
    const { id, script } = JSON.parse(event.data);
    try {
      const value = await new AsyncFunction(script)();
      socket.send(JSON.stringify({ id, value: value === undefined ? null : value }));
    } catch (error) {
      socket.send(JSON.stringify({ id, error: `${error}\n${(error && error.stack) || ""}` }));
    }
  };
})();
"""

# Polls a condition in the page until it holds or the time is up: Playwright's expect, in brief.
_WAIT_FOR = """
const deadline = Date.now() + %(timeout_ms)d;
for (;;) {
  const value = await (async () => { %(condition)s })();
  if (value) return value;
  if (Date.now() > deadline) throw new Error("timed out after %(timeout_ms)d ms: " + %(text)s);
  await new Promise((resolve) => setTimeout(resolve, 50));
}
"""


class PageScriptError(AssertionError):
    """A script the test sent failed in the page (its error and stack are the message)."""


class FirefoxPage:
    """The page Firefox opened, driven through its websocket."""

    def __init__(self, socket: web.WebSocketResponse) -> None:
        self._socket = socket
        self._ids = itertools.count()
        self._replies: dict[int, asyncio.Future[Any]] = {}

    async def evaluate(self, script: str, timeout: float = TIMEOUT_S) -> Any:
        """Runs `script` as the body of an async function in the page and gives its value."""
        ident = next(self._ids)
        reply = self._replies[ident] = asyncio.get_running_loop().create_future()
        try:
            await self._socket.send_json({"id": ident, "script": script})
            return await asyncio.wait_for(reply, timeout)
        finally:
            del self._replies[ident]

    async def wait_for(self, condition: str, timeout: float = TIMEOUT_S) -> Any:
        """Waits until `condition` (a function body) returns something truthy, and gives it."""
        script = _WAIT_FOR % {
            "timeout_ms": int(timeout * 1000),
            "condition": condition,
            "text": json.dumps(condition),
        }
        return await self.evaluate(script, timeout + TIMEOUT_S)

    def _disconnected(self) -> None:
        """The page went (crashed, navigated away): its pending scripts fail now, not later."""
        for reply in self._replies.values():
            if not reply.done():
                reply.set_exception(PageScriptError("the page disconnected"))

    def _answer(self, message: dict[str, Any]) -> None:
        reply = self._replies.get(message.get("id", -1))
        if reply is None or reply.done():
            return
        if "error" in message:
            reply.set_exception(PageScriptError(message["error"]))
        else:
            reply.set_result(message.get("value"))


OpenFirefox = Callable[..., Awaitable[FirefoxPage]]


@contextlib.asynccontextmanager
async def driver_site(
    pages: dict[str, str],
) -> AsyncIterator[tuple[str, asyncio.Queue[FirefoxPage]]]:
    """Serves `pages` (path → HTML, each given the driver script) and `/driver`; every page that
    connects is put on the queue."""
    connected: asyncio.Queue[FirefoxPage] = asyncio.Queue()
    scripts_tag = '<script src="/driver.js"></script>'

    async def page(request: web.Request) -> web.Response:
        html = pages[request.path].replace("<head>", "<head>" + scripts_tag, 1)
        return web.Response(text=html, content_type="text/html")

    async def driver_js(_request: web.Request) -> web.Response:
        return web.Response(text=_DRIVER_JS, content_type="application/javascript")

    async def driver(request: web.Request) -> web.WebSocketResponse:
        sock = web.WebSocketResponse(max_msg_size=4 * 1024 * 1024)
        await sock.prepare(request)
        firefox_page = FirefoxPage(sock)
        connected.put_nowait(firefox_page)
        async for message in sock:
            if message.type == WSMsgType.TEXT:
                firefox_page._answer(json.loads(message.data))
        firefox_page._disconnected()
        return sock

    app = web.Application()
    for path in pages:
        app.router.add_get(path, page)
    app.router.add_get("/driver.js", driver_js)
    app.router.add_get("/driver", driver)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1)
    await runner.setup()
    try:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        await web.SockSite(runner, sock).start()
        yield f"http://127.0.0.1:{sock.getsockname()[1]}", connected
    finally:
        await runner.cleanup()


def write_profile(profile: Path, preferences: dict[str, object]) -> None:
    profile.mkdir(parents=True)
    lines = [f"user_pref({json.dumps(k)}, {json.dumps(v)});" for k, v in preferences.items()]
    (profile / "user.js").write_text("\n".join(lines) + "\n")


@contextlib.asynccontextmanager
async def launch_firefox(profile: Path, url: str, log: Path) -> AsyncIterator[None]:
    """Firefox ESR, headless, on `url` with the profile in `profile`; killed when done."""
    if not FIREFOX.exists():
        pytest.fail(f"{FIREFOX} is missing: run scripts/ensure-system-packages.sh test")
    with log.open("wb") as output:
        process = await asyncio.create_subprocess_exec(
            str(FIREFOX), "--headless", "--no-remote", "--profile", str(profile), url,
            stdin=asyncio.subprocess.DEVNULL, stdout=output, stderr=output,
        )  # fmt: skip
    try:
        yield
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 5)
            except TimeoutError:
                process.kill()
                await process.wait()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
async def firefox(tmp_path: Path) -> AsyncIterator[OpenFirefox]:
    """A factory: `page = await firefox("/shop", {"/shop": html}, preferences={...})` serves the
    pages from a loopback site, opens the first path in a new headless Firefox and gives the page
    once its driver is connected. Browsers and sites end with the test."""
    numbers = itertools.count()
    async with contextlib.AsyncExitStack() as stack:

        async def open_page(
            path: str, pages: dict[str, str], *, preferences: dict[str, object] | None = None
        ) -> FirefoxPage:
            number = next(numbers)
            site, connected = await stack.enter_async_context(driver_site(pages))
            profile = tmp_path / f"firefox-profile-{number}"
            write_profile(profile, {**PREFERENCES, **(preferences or {})})
            log = tmp_path / f"firefox-{number}.log"
            await stack.enter_async_context(launch_firefox(profile, site + path, log))
            try:  # a cold start of Firefox takes ~2 s here
                return await asyncio.wait_for(connected.get(), 3 * TIMEOUT_S)
            except TimeoutError:
                pytest.fail(f"Firefox did not open {path} (its output: {log})")

        yield open_page
