"""SMS over HTTP: texts in from the gateways, their delivery reports, and the outbox to read.

  GET  /sms/kannel/mo       Kannel's get-url (see ivr.channels.sms.kannel for the parameters)
  GET  /sms/kannel/dlr      Kannel's delivery reports (id=<our text id>&type=%d)
  POST /sms/webhook         a Twilio-style provider's incoming texts (From, To, Body, MessageSid)
  POST /sms/webhook/status  its delivery reports (id=<our text id>, MessageStatus)
  POST /api/sms             {"from": "+15551234567", "text": "..."}: a text received by hand
                            (bearer token; a handset for demos and the outbox gateway)
  GET  /api/sms/outbox      the texts we sent or hold, newest first (?conversation=<id>)

Gateways are answered 200 as soon as a text is stored, also for a repeat (their retries must
stop); a request we cannot take gets a 4xx with a JSON reason naming the field. Requests from
gateways carry `[sms] inbound_token` as `token`, or come from this machine when none is set.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import re
import uuid
from typing import Any

from aiohttp import web

from ivr.channels.sms.kannel import DLR_STATES, decode_text, raw_param
from ivr.channels.sms.runtime import Sms
from ivr.channels.sms.webhook import STATUS_STATES, signature_valid
from ivr.web.errors import json_error
from ivr.web.keys import SMS

log = logging.getLogger("ivr.sms")
_NUMBER = re.compile(r"^\+?[0-9A-Za-z]{1,20}$")  # digits, or an alphanumeric sender id
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_TWIML_EMPTY = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'


class BadText(ValueError):
    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field


def check_number(value: object, field: str) -> str:
    """A phone number (or an alphanumeric sender id) as a gateway or a form gives it."""
    if value is None or value == "":
        raise BadText(field, "missing")
    if not isinstance(value, str):
        raise BadText(field, "must be a string (a number starting with +, or digits)")
    value = value.strip()
    if not _NUMBER.match(value):
        raise BadText(field, f"not a phone number or sender id: {value[:40]!r}")
    return value


def _text(value: str | None, field: str) -> str:
    if value is None:
        raise BadText(field, "missing")
    # Control characters are dropped, not refused: a handset's text is kept whatever it holds.
    return _CONTROL.sub("", value).strip()


def _fallback_key(*parts: str) -> str:
    """A message id when the gateway gives none: a repeat of the same text is the same key."""
    return "h:" + hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]


def _from_gateway(request: web.Request, sms: Sms) -> bool:
    token = sms.settings.sms.inbound_token
    if token:
        given = request.query.get("token", "")
        return hmac.compare_digest(given.encode(), token.encode())
    if any(h in request.headers for h in ("Forwarded", "X-Forwarded-For", "X-Real-IP")):
        return False  # through a proxy on this machine: loopback says nothing of the sender
    remote = request.remote or ""
    try:
        return ipaddress.ip_address(remote).is_loopback
    except ValueError:
        return False


def _refused(request: web.Request) -> web.Response:
    log.warning("SMS request to %s refused from %s: bad token", request.path, request.remote)
    return json_error(403, "not from our SMS gateway", hint="send [sms] inbound_token as token")


async def kannel_mo(request: web.Request) -> web.Response:
    sms = request.app[SMS]
    if not _from_gateway(request, sms):
        return _refused(request)
    query = request.query
    try:
        sender = check_number(query.get("from"), "from")
        receiver = check_number(query.get("to") or sms.settings.sms.number, "to")
        raw = raw_param(request.query_string, "text")
        if raw is None:
            raise BadText("text", "missing")
        text = _text(decode_text(raw, query.get("coding", "0"), query.get("charset", "")), "text")
    except BadText as exc:
        return json_error(400, str(exc), field=exc.field)
    key = query.get("id") or _fallback_key(sender, receiver, text, query.get("ts", ""))
    await sms.threads.receive(f"kannel:{key}", sender, receiver, text)
    return web.Response(text="ok")


async def kannel_dlr(request: web.Request) -> web.Response:
    sms = request.app[SMS]
    if not _from_gateway(request, sms):
        return _refused(request)
    try:
        kind = int(request.query.get("type", ""))
    except ValueError:
        return json_error(400, "type: expected Kannel's %d delivery report type", field="type")
    state = DLR_STATES.get(kind)
    if state is not None:
        error = None if state != "failed" else f"delivery report {kind}"
        await sms.store.delivery_report(request.query.get("id", ""), state, error)
    return web.Response(text="ok")


async def _webhook_form(request: web.Request, sms: Sms) -> dict[str, str] | web.Response:
    form = {key: str(value) for key, value in (await request.post()).items()}
    signature = request.headers.get("X-Twilio-Signature")
    if signature is not None:
        url = f"{sms.settings.public_url}{request.path_qs}"
        if signature_valid(sms.settings.sms.webhook_password, url, form, signature):
            return form
        if not sms.settings.sms.inbound_token:  # a wrong signature is refused, from here too
            return _refused(request)
    elif sms.settings.sms.webhook_password and not sms.settings.sms.inbound_token:
        return _refused(request)  # the provider signs its requests: an unsigned one is not its
    if not _from_gateway(request, sms):
        return _refused(request)
    return form


async def webhook_in(request: web.Request) -> web.Response:
    sms = request.app[SMS]
    form = await _webhook_form(request, sms)
    if isinstance(form, web.Response):
        return form
    try:
        sender = check_number(form.get("From"), "From")
        receiver = check_number(form.get("To") or sms.settings.sms.number, "To")
        text = _text(form.get("Body"), "Body")
    except BadText as exc:
        return json_error(400, str(exc), field=exc.field)
    key = form.get("MessageSid") or uuid.uuid4().hex  # no id: retries cannot be told apart
    await sms.threads.receive(f"webhook:{key}", sender, receiver, text)
    return web.Response(text=_TWIML_EMPTY, content_type="text/xml")


async def webhook_status(request: web.Request) -> web.Response:
    sms = request.app[SMS]
    form = await _webhook_form(request, sms)
    if isinstance(form, web.Response):
        return form
    state = STATUS_STATES.get(form.get("MessageStatus", "").lower())
    if state is not None:
        error = form.get("ErrorCode") if state == "failed" else None
        await sms.store.delivery_report(request.query.get("id", ""), state, error)
    return web.Response(text="ok")


async def api_receive(request: web.Request) -> web.Response:
    sms = request.app[SMS]
    try:
        body: Any = await request.json()
    except ValueError:
        return json_error(400, 'not JSON: send {"from": "+1555...", "text": "..."}')
    if not isinstance(body, dict):
        return json_error(400, "expected a JSON object")
    try:
        sender = check_number(body.get("from"), "from")
        if not isinstance(body.get("text"), str):
            raise BadText("text", "must be a string")
        text = _text(body["text"], "text")
        if not text:
            raise BadText("text", "empty")
    except BadText as exc:
        return json_error(400, str(exc), field=exc.field)
    key = str(body.get("id") or "") or uuid.uuid4().hex
    fresh = await sms.threads.receive(f"api:{key}", sender, sms.settings.sms.number, text)
    return web.json_response({"received": fresh}, status=202 if fresh else 200)


async def api_outbox(request: web.Request) -> web.Response:
    sms = request.app[SMS]
    texts = await sms.store.texts(request.query.get("conversation"))
    return web.json_response({"texts": [t.shown() for t in texts]})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/sms/kannel/mo", kannel_mo)
    app.router.add_get("/sms/kannel/dlr", kannel_dlr)
    app.router.add_post("/sms/webhook", webhook_in)
    app.router.add_post("/sms/webhook/status", webhook_status)
    app.router.add_post("/api/sms", api_receive)
    app.router.add_get("/api/sms/outbox", api_outbox)
