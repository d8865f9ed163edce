"""The SMS outbox in the agent's browser: `/agent/outbox` (a page), `/agent/api/outbox` (JSON).

Every text the server sent or holds, newest first, with its state (queued, sent, delivered,
failed with the gateway's reason, held, suppressed). With the outbox gateway (no SMS gateway
configured) the texts are held here and nowhere else: the page is how a demo or a tester reads
what the customer would have got, and `POST /agent/api/outbox/reply` lets them answer as that
customer. Then a continue link is shown whole, to be followed; for texts a real gateway carried,
the link's token is left out (it opens the customer's conversation: it is theirs alone).

Signed-in agents only (`ivr.web.agent_auth`); state-changing requests from another site's page
are refused by the same-origin middleware that guards all of /agent.
"""

from __future__ import annotations

import uuid

from aiohttp import web

from ivr.store import AgentRecord
from ivr.web.agent_auth import require_agent
from ivr.web.errors import json_error
from ivr.web.keys import SMS
from ivr.web.sms import BadText, check_number
from ivr.web.static_files import view_page

MAX_REPLY_CHARS = 1000


@require_agent
async def outbox_page(request: web.Request, agent: AgentRecord) -> web.StreamResponse:
    return view_page("outbox.html")


@require_agent
async def outbox_texts(request: web.Request, agent: AgentRecord) -> web.StreamResponse:
    sms = request.app[SMS]
    texts = await sms.store.texts(request.query.get("conversation"))
    return web.json_response(
        {"gateway": sms.gateway.name, "number": sms.settings.sms.number,
         "texts": [t.shown() for t in texts]},
        headers={"Cache-Control": "no-store"},
    )  # fmt: skip


@require_agent
async def reply_as_customer(request: web.Request, agent: AgentRecord) -> web.StreamResponse:
    sms = request.app[SMS]
    if not sms.gateway.holds:
        return json_error(409, f"texts go through the {sms.gateway.name} gateway: reply by phone")
    try:
        body = await request.json()
    except ValueError:
        return json_error(400, 'not JSON: send {"to": "+1555...", "text": "..."}')
    if not isinstance(body, dict):
        return json_error(400, "expected a JSON object")
    text = body.get("text")
    try:
        number = check_number(body.get("to"), "to")
        if not isinstance(text, str) or not text.strip():
            raise BadText("text", "empty")
        if len(text) > MAX_REPLY_CHARS:
            raise BadText("text", f"at most {MAX_REPLY_CHARS} characters")
    except BadText as exc:
        return json_error(400, str(exc), field=exc.field)
    key = f"desk:{uuid.uuid4().hex}"
    await sms.threads.receive(key, number, sms.settings.sms.number, text.strip())
    return web.json_response({"received": True}, status=202)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/agent/outbox", outbox_page)
    app.router.add_get("/agent/api/outbox", outbox_texts)
    app.router.add_post("/agent/api/outbox/reply", reply_as_customer)
