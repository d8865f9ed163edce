"""The REST API under /api: conversations with their full timeline, and the flows in service.

Every request needs `Authorization: Bearer <[api] token>`; without it, 401. Answers never hold
a secret: identity says *how* the customer was verified, never with what.
"""

from __future__ import annotations

import hmac

from aiohttp import web

from ivr.conversation import Conversation
from ivr.web.errors import json_error
from ivr.web.keys import API_TOKEN, CONVERSATIONS, FLOWS, STORE

MAX_LIMIT = 500


@web.middleware
async def require_token(request: web.Request, handler) -> web.StreamResponse:  # type: ignore[no-untyped-def]
    if request.path.startswith("/api/"):
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        expected = request.app[API_TOKEN]
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            token.strip().encode(), expected.encode()
        ):
            return json_error(
                401,
                "missing or wrong bearer token",
                hint="send Authorization: Bearer <[api] token>",
            )
    return await handler(request)


def summary(conv: Conversation) -> dict[str, object]:
    view = conv.public_view()
    return {
        key: view[key]
        for key in (
            "id",
            "flow",
            "status",
            "channels",
            "created_at",
            "updated_at",
            "identity",
            "position",
        )
    } | {"turns": len(conv.timeline)}


async def list_conversations(request: web.Request) -> web.Response:
    raw = request.query.get("limit", "50")
    try:
        limit = int(raw)
    except ValueError:
        return json_error(400, f"limit must be an integer, got {raw!r}")
    if not 1 <= limit <= MAX_LIMIT:
        return json_error(400, f"limit must be between 1 and {MAX_LIMIT}, got {limit}")
    conversations = await request.app[STORE].list_recent(limit)
    return web.json_response({"conversations": [summary(c) for c in conversations]})


async def get_conversation(request: web.Request) -> web.Response:
    conv_id = request.match_info["id"]
    conv = await request.app[CONVERSATIONS].get(conv_id)
    if conv is None:
        return json_error(404, f"no conversation {conv_id!r}")
    return web.json_response(conv.public_view())


async def list_flows(request: web.Request) -> web.Response:
    repo = request.app[FLOWS]
    flows = repo.current.flows if repo.current else {}
    return web.json_response(
        {
            **repo.status(),
            "details": [
                {
                    "flow": f.name,
                    "description": f.header.description,
                    "language": f.header.language,
                    "numbers": f.header.numbers,
                    "steps": len(f.steps),
                    "file": f.source.path,
                }
                for f in flows.values()
            ],
        }
    )


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/conversations", list_conversations)
    app.router.add_get("/api/conversations/{id}", get_conversation)
    app.router.add_get("/api/flows", list_flows)
