"""JSON error answers: every 4xx/5xx the API gives says why, in a body a program can read."""

from __future__ import annotations

from aiohttp import web


def json_error(status: int, reason: str, **extra: object) -> web.Response:
    return web.json_response({"error": reason, **extra}, status=status)


@web.middleware
async def json_errors(request: web.Request, handler) -> web.StreamResponse:  # type: ignore[no-untyped-def]
    """aiohttp's own HTTP errors (404, 405, 413) as JSON under /api."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if not request.path.startswith("/api/") or exc.content_type == "application/json":
            raise
        if exc.status < 400:
            raise
        return json_error(exc.status, exc.reason)
