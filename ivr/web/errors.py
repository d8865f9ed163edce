"""JSON error answers: every 4xx/5xx the API gives says why, in a body a program can read."""

from __future__ import annotations

import logging

from aiohttp import web

from ivr.store import StoreError

log = logging.getLogger("ivr.web")


def json_error(status: int, reason: str, **extra: object) -> web.Response:
    return web.json_response({"error": reason, **extra}, status=status)


@web.middleware
async def json_errors(request: web.Request, handler) -> web.StreamResponse:  # type: ignore[no-untyped-def]
    """aiohttp's own HTTP errors (404, 405, 413) as JSON under /api."""
    try:
        return await handler(request)
    except StoreError as exc:
        log.error("%s %s: %s", request.method, request.path, exc)
        return json_error(503, "the conversation store is not available; try again")
    except web.HTTPException as exc:
        if not request.path.startswith("/api/") or exc.content_type == "application/json":
            raise
        if exc.status < 400:
            raise
        return json_error(exc.status, exc.reason)
