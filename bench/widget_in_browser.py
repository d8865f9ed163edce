"""The visitor widget in Debian's headless Chromium and Firefox ESR: page load -> call connected ->
first bot audio heard, as a visitor's browser sees it.

Runs `ivr serve` as bench/browser_calls.py does (one media worker, browser calls on loopback)
and a page on another loopback origin that carries the widget (`data-open="true"`). A script on
the page presses Call as soon as the server's hello says calls are possible, and stamps, in the
page's clock (ms after navigation start): the widget's script loaded, the page's load event,
calls available, getUserMedia granted, the offer sent, `connected`, and the first bot audio
heard (the inbound audio's `totalAudioEnergy` above zero; polled every 5 ms). Each sample is a
fresh browser profile, so nothing is cached.

Also printed: the browser's jitter-buffer delay over the first seconds of the call (what it adds
to every turn, on top of bench/browser_calls.py's turn figure at the peer) and the time the
browser itself takes to start (not in the page's figures). Firefox runs with plain host
candidates on loopback, as Chromium does (tests/firefox.py drives it).

    .venv/bin/python bench/widget_in_browser.py             # 10 page loads in each browser
    .venv/bin/python bench/widget_in_browser.py --samples 3 --browser firefox
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import platform
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/: browser_calls
from browser_calls import LOAD_FLOW, STARTED, kill_group, pct, start_server, stop_server
from concurrent_calls import ROOT, machine

sys.path.insert(0, str(ROOT))
from tests.browser import launch_chromium
from tests.firefox import PREFERENCES, driver_site, launch_firefox, write_profile

STAMPS = ("script", "load", "available", "microphone", "offer", "connected", "audio")
# Runs before the widget's script: wraps getUserMedia and the websocket's send to stamp them,
# presses Call once the hello allows it, and watches the call's state and inbound audio.
PAGE_SCRIPT = """
window.__t = {};
const stamp = (name) => { if (!(name in window.__t)) window.__t[name] = performance.now(); };
const gum = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
navigator.mediaDevices.getUserMedia = async (c) => {
  const stream = await gum(c);
  stamp("microphone");
  return stream;
};
const send = WebSocket.prototype.send;
WebSocket.prototype.send = function (data) {
  if (typeof data === "string" && data.includes('"type":"call"')) stamp("offer");
  return send.call(this, data);
};
const timer = setInterval(async () => {
  const root = document.getElementById("ivr-widget");
  if (!root || !window.ivrWidget) return;
  stamp("script");
  const nav = performance.getEntriesByType("navigation")[0];
  if (nav && nav.loadEventEnd > 0 && !("load" in window.__t)) window.__t.load = nav.loadEventEnd;
  if (root.dataset.call === "available" && !("available" in window.__t)) {
    stamp("available");
    window.ivrWidget.call();
  }
  const pc = window.ivrWidget.pc;
  if (!pc) return;
  if (pc.connectionState === "connected") stamp("connected");
  const stats = await pc.getStats();
  stats.forEach((r) => {
    if (r.type === "inbound-rtp" && r.kind === "audio") {
      if (r.totalAudioEnergy > 0) stamp("audio");
      if (r.jitterBufferEmittedCount > 0)
        window.__t.jitter = 1000 * r.jitterBufferDelay / r.jitterBufferEmittedCount;
    }
  });
  if ("audio" in window.__t && performance.now() - window.__t.audio > 2000) clearInterval(timer);
}, 5);
"""


def page_html(server_url: str) -> str:
    return (
        "<!doctype html><html><head><title>Shop</title>"
        f"<script>{PAGE_SCRIPT}</script></head><body><h1>Example shop</h1>"
        f'<script src="{server_url}/widget.js" data-open="true" data-flow="{LOAD_FLOW}" '
        'data-echo-cancellation="off"></script></body></html>'
    )


@contextlib.asynccontextmanager
async def shop_site(html: str) -> Any:
    """The customer's web site: another origin on loopback, as a real embedding has."""

    async def page(request: web.Request) -> web.Response:
        return web.Response(text=html, content_type="text/html")

    app = web.Application()
    app.router.add_get("/shop", page)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    await web.SockSite(runner, sock).start()
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/shop"
    finally:
        await runner.cleanup()


async def chromium_page_load(html: str, profile: Path) -> tuple[dict[str, float], float]:
    """The page's stamps (ms after navigation start) and Chromium's own start (s)."""
    async with shop_site(html) as url:
        began = time.monotonic()
        async with launch_chromium(profile) as context:
            started = time.monotonic() - began
            page = await context.new_page()
            await page.goto(url)
            await page.wait_for_function("window.__t && window.__t.audio", timeout=15_000)
            await page.wait_for_timeout(2000)  # the jitter-buffer figure over the first seconds
            stamps = json.loads(await page.evaluate("JSON.stringify(window.__t)"))
    return stamps, started


async def firefox_page_load(html: str, profile: Path) -> tuple[dict[str, float], float]:
    """The same in Firefox; its start is the time until the page's driver connects."""
    write_profile(
        profile, {**PREFERENCES, "media.peerconnection.ice.obfuscate_host_addresses": False}
    )
    async with driver_site({"/shop": html}) as (site, connected):
        began = time.monotonic()
        async with launch_firefox(profile, f"{site}/shop", profile.with_suffix(".log")):
            page = await asyncio.wait_for(connected.get(), 30)
            started = time.monotonic() - began
            await page.wait_for("return window.__t && window.__t.audio", timeout=15)
            await asyncio.sleep(2)  # the jitter-buffer figure over the first seconds
            stamps = json.loads(await page.evaluate("return JSON.stringify(window.__t);"))
    return stamps, started


PAGE_LOADS = {"chromium": chromium_page_load, "firefox": firefox_page_load}


def print_figures(browser: str, samples: list[dict[str, float]], starts: list[float]) -> None:
    heading = f"{browser}: ms after navigation start, {len(samples)} page loads"
    print(f"\n{heading:<55}p50    p95    max")
    for name in STAMPS:
        values = [s[name] for s in samples if name in s]
        print(f"   {name:<52}{pct(values, 50):6.0f} {pct(values, 95):6.0f} {max(values):6.0f}")
    spans = {
        "page loaded (load event) -> connected": ("load", "connected"),
        "calls available -> connected (Call pressed at once)": ("available", "connected"),
        "offer sent -> connected": ("offer", "connected"),
        "connected -> first bot audio heard": ("connected", "audio"),
    }
    print("spans")
    for label, (a, b) in spans.items():
        values = [s[b] - s[a] for s in samples if a in s and b in s]
        print(f"   {label:<52}{pct(values, 50):6.0f} {pct(values, 95):6.0f} {max(values):6.0f}")
    jitter = [s["jitter"] for s in samples if "jitter" in s]
    print(
        f"the browser's jitter buffer, first seconds: {pct(jitter, 50):.0f} ms p50 (it adds this "
        "to every turn heard; bench/browser_calls.py times turns at the packet's arrival)"
    )
    print(f"{browser}'s own start (not in the figures above): {pct(starts, 50):.2f} s p50")


async def main(args: argparse.Namespace) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="ivr-bench-widget-"))
    print(f"widget_in_browser: {machine()}, Python {platform.python_version()}")
    server = None
    try:
        server = await start_server(tmp, 4)
        html = page_html(f"http://127.0.0.1:{server.http}")
        browsers = list(PAGE_LOADS) if args.browser == "both" else [args.browser]
        for browser in browsers:
            samples, starts = [], []
            for index in range(args.samples):
                profile = tmp / f"{browser}-profile-{index}"
                stamps, started = await PAGE_LOADS[browser](html, profile)
                samples.append(stamps)
                starts.append(started)
                shutil.rmtree(profile, ignore_errors=True)
            print_figures(browser, samples, starts)
    finally:
        if server is not None:
            with contextlib.suppress(Exception):
                await stop_server(server)
        for proc in STARTED:
            kill_group(proc)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=10, help="page loads timed, per browser")
    parser.add_argument("--browser", choices=[*PAGE_LOADS, "both"], default="both")
    asyncio.run(main(parser.parse_args()))
