"""/healthz (is it serving, and what: flows, store, child processes) and /metrics."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ivr import __version__
from ivr.store import StoreError
from ivr.web.keys import CONVERSATIONS, FLOWS, METRICS, STORE, SUPERVISOR


async def healthz(request: web.Request) -> web.Response:
    problems: list[str] = []
    try:
        stored = await request.app[STORE].count()
    except StoreError as exc:
        stored = None
        problems.append(f"store: {exc}")
    flows = request.app[FLOWS].status()
    if not flows["flows"]:
        problems.append("no valid flow loaded")
    body = {
        "status": "ok" if not problems else "degraded",
        "version": __version__,
        "problems": problems,
        "flows": flows,
        "conversations": {"live": request.app[CONVERSATIONS].live_count, "stored": stored},
        "workers": request.app[SUPERVISOR].snapshot(),
    }
    return web.json_response(body, status=200 if not problems else 503)


async def metrics(request: web.Request) -> web.Response:
    payload = generate_latest(request.app[METRICS].registry)
    return web.Response(body=payload, headers={"Content-Type": CONTENT_TYPE_LATEST})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
