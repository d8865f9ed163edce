"""`GET /c/{token}`: a continue link opened in a browser (sent by SMS when a flow escalates).

A valid link gets the web chat page, which continues the conversation over `/chat/ws` with
`{"type": "continue", "token": ...}` (see `ivr.web.chat`); only that uses the link up, never
this GET, since SMS apps and messengers fetch links to show a preview. A refused link gets a
page that says why, in words, with nothing of the conversation on it: forged 403, expired or
used 410, a conversation that is over 410. No page repeats the token (it names the
conversation), and none may be cached, indexed or passed on as a referrer.
"""

from __future__ import annotations

import html
import logging
from importlib import resources
from typing import Any

from aiohttp import web

from ivr.channels.links import LinkRefused
from ivr.conversation import Conversation, Role, Status
from ivr.store import StoreError
from ivr.web.keys import CONVERSATIONS, LINKS

log = logging.getLogger("ivr.web")

# Statuses a link may continue: waiting for the customer on another channel, or in a flow on one
# (the link takes it over). Queued, with an agent or transferred: people have it now.
CONTINUABLE = (Status.ESCALATED, Status.ACTIVE)
ENDED_REASON = "This conversation has ended. Please contact us again if you still need help."
BUSY_REASON = (
    "This conversation is with our team now, so it cannot continue here. "
    "Please contact us again if you still need help."
)
UNAVAILABLE_REASON = "We cannot open your conversation right now. Please try again in a minute."
PRIVATE = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex, nofollow",
}
HISTORY_TURNS = 6  # what the customer sees of where they were
_TITLES = {403: "Link not valid", 410: "Link no longer valid", 503: "Please try again"}

_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>{title}</title>
<style>
  body {{ margin: 0; font: 16px/1.5 system-ui, sans-serif; background: #f7f8fa; color: #1b1f24; }}
  main {{ max-width: 480px; margin: 15vh auto 0; padding: 24px; background: #fff;
          border: 1px solid #dde1e6; border-radius: 12px; }}
  h1 {{ font-size: 20px; margin: 0 0 8px; }}
</style>
</head>
<body>
<main role="alert"><h1>{title}</h1><p id="reason">{reason}</p></main>
</body>
</html>
"""


def refusal_page(status: int, reason: str) -> web.Response:
    """A page that says why the link does not open, and nothing else."""
    title = _TITLES.get(status, "Link not valid")
    body = _PAGE.format(title=html.escape(title), reason=html.escape(reason))
    return web.Response(status=status, text=body, content_type="text/html", headers=PRIVATE)


def history_of(conv: Conversation, limit: int = HISTORY_TURNS) -> list[dict[str, Any]]:
    """The last things said in the conversation, on any channel, to show where it stood.
    Secure answers are masked in the timeline itself; system notes are not shown."""
    said = [t for t in conv.timeline if t.role in (Role.BOT, Role.CUSTOMER, Role.AGENT)]
    return [
        {"ts": t.ts, "channel": t.channel, "role": str(t.role), "text": t.text}
        for t in said[-limit:]
    ]


def refusal_for(conv: Conversation | None) -> str | None:
    """Why a conversation cannot be continued by a link, or None when it can."""
    if conv is None or conv.status is Status.ENDED:
        return ENDED_REASON
    if conv.status not in CONTINUABLE:
        return BUSY_REASON
    return None


async def continue_page(request: web.Request) -> web.Response:
    links = request.app.get(LINKS)
    if links is None:  # not started (yet): the same as a store outage for the customer
        return refusal_page(503, UNAVAILABLE_REASON)
    try:
        conversation_id = await links.check(request.match_info["token"])
        refused = refusal_for(await request.app[CONVERSATIONS].get(conversation_id))
    except LinkRefused as exc:
        return refusal_page(exc.status, str(exc))
    except StoreError as exc:
        log.error("a continue link could not be checked: %s", exc)
        return refusal_page(503, UNAVAILABLE_REASON)
    if refused is not None:
        return refusal_page(410, refused)
    page = resources.files("ivr.web").joinpath("static/chat.html").read_text(encoding="utf-8")
    return web.Response(text=page, content_type="text/html", headers=PRIVATE)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/c/{token}", continue_page)
