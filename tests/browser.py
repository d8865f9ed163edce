"""Pytest plugin: Debian's headless Chromium under Playwright, for tests of the web pages.

`chromium` is a factory fixture: `context = await chromium()` launches /usr/bin/chromium (never a
browser that Playwright downloads) with a fresh profile under tmp_path and gives its
BrowserContext; every browser is closed when the test ends. Its fake microphone either works
(`microphone="granted"`, a beep, or `fake_audio=` a 16-bit PCM WAV played once) or is refused
(`microphone="denied"`: getUserMedia rejects with NotAllowedError, as when a visitor says no).

How the microphone is denied: headless Chromium has no permission prompt and turns every prompt
down, so a page without `--use-fake-ui-for-media-stream` (which accepts them all) is refused the
microphone at once; `--deny-permission-prompts` says so explicitly. The fake device stays, so the
refusal is NotAllowedError (no device at all would be NotFoundError).

`host_site` serves pages from a loopback web site of their own: another origin to embed the
widget in. Every Playwright wait is bounded by `TIMEOUT_MS`. Registered in tests/conftest.py.
"""

from __future__ import annotations

import contextlib
import itertools
import shutil
import socket
import wave
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Literal

import pytest
from aiohttp import web
from playwright.async_api import BrowserContext, ConsoleMessage, Page, async_playwright

CHROMIUM = Path("/usr/bin/chromium")
TIMEOUT_MS = 10_000

Microphone = Literal["granted", "denied"]
LaunchChromium = Callable[..., Awaitable[BrowserContext]]
HostSite = Callable[[dict[str, str]], Awaitable[str]]

# Headless without Playwright's own headless shell: launched with headless=False and this flag,
# Debian's Chromium runs the full browser headless (WebRTC and media as a visitor has them).
_HEADLESS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
_MEDIA = [
    "--use-fake-device-for-media-stream",
    # Host candidates on 127.0.0.1: without it Chromium gathers none on loopback.
    "--allow-loopback-in-peer-connection",
    "--autoplay-policy=no-user-gesture-required",
]


def chromium_flags(microphone: Microphone = "granted", fake_audio: Path | None = None) -> list[str]:
    """The command-line flags for a test browser whose microphone is granted or denied."""
    flags = [*_HEADLESS, *_MEDIA]
    if microphone == "granted":
        flags.append("--use-fake-ui-for-media-stream")  # accepts every permission prompt
    else:
        flags.append("--deny-permission-prompts")
    if fake_audio is not None:
        _check_wav(fake_audio)
        # %noloop: played once, then silence (a looped file is one endless utterance).
        flags.append(f"--use-file-for-fake-audio-capture={fake_audio}%noloop")
    return flags


def _check_wav(path: Path) -> None:
    """Chromium plays a 24-bit WAV as silence without a word: accept only 16-bit PCM."""
    with wave.open(str(path), "rb") as wav:
        if wav.getsampwidth() != 2:
            raise ValueError(f"{path}: the fake microphone needs 16-bit PCM WAV")


@contextlib.asynccontextmanager
async def launch_chromium(
    profile: Path, *, microphone: Microphone = "granted", fake_audio: Path | None = None
) -> AsyncIterator[BrowserContext]:
    """Debian's Chromium with a fresh profile in `profile` (its --user-data-dir)."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run scripts/ensure-system-packages.sh test")
    async with async_playwright() as playwright:
        context = await playwright.chromium.launch_persistent_context(
            profile,
            executable_path=CHROMIUM,
            headless=False,
            args=chromium_flags(microphone, fake_audio),
            timeout=TIMEOUT_MS,
        )
        try:
            context.set_default_timeout(TIMEOUT_MS)
            context.set_default_navigation_timeout(TIMEOUT_MS)
            yield context
        finally:
            await context.close()
            shutil.rmtree(profile, ignore_errors=True)


def page_errors(page: Page) -> list[str]:
    """A list that fills with the page's uncaught errors and console errors as they happen (but
    the missing /favicon.ico every page asks for)."""
    errors: list[str] = []

    def console(message: ConsoleMessage) -> None:
        if message.type == "error" and not message.location.get("url", "").endswith("/favicon.ico"):
            errors.append(f"console: {message.text} ({message.location.get('url')})")

    page.on("pageerror", lambda error: errors.append(f"uncaught: {error}"))
    page.on("console", console)
    return errors


@pytest.fixture
async def chromium(tmp_path: Path) -> AsyncIterator[LaunchChromium]:
    """A factory: `await chromium(microphone="denied", fake_audio=wav)` launches a browser and
    gives its context; all are closed when the test ends."""
    numbers = itertools.count()
    async with contextlib.AsyncExitStack() as stack:

        async def launch(
            *, microphone: Microphone = "granted", fake_audio: Path | None = None
        ) -> BrowserContext:
            profile = tmp_path / f"chromium-profile-{next(numbers)}"
            return await stack.enter_async_context(
                launch_chromium(profile, microphone=microphone, fake_audio=fake_audio)
            )

        yield launch


@pytest.fixture
async def host_site() -> AsyncIterator[HostSite]:
    """A factory: `url = await host_site({"/shop": html})` serves pages (path to HTML) from a web
    site of their own on loopback: another origin than the server's, to embed the widget in.

    Pages that Playwright fulfils itself (`page.route`) will not do: Chromium cannot place their
    address, takes them for public, and its Local Network Access checks then block whatever they
    load from 127.0.0.1, the widget's script and socket included (net::ERR_BLOCKED_BY_LOCAL_
    NETWORK_ACCESS_CHECKS), unless the context is granted "local-network-access"."""
    async with contextlib.AsyncExitStack() as stack:

        async def serve(pages: dict[str, str]) -> str:
            async def page(request: web.Request) -> web.Response:
                return web.Response(text=pages[request.path], content_type="text/html")

            app = web.Application()
            for path in pages:
                app.router.add_get(path, page)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            stack.push_async_callback(runner.cleanup)
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))  # the port is ours from here: no race with other tests
            await web.SockSite(runner, sock).start()
            return f"http://127.0.0.1:{sock.getsockname()[1]}"

        yield serve
