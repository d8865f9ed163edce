"""A provider with a Twilio-style HTTP API: texts out by POST, texts in by the provider's webhook.

Out: `POST [sms] webhook_url` (form fields To, From, Body, StatusCallback), HTTP basic auth with
`webhook_username` / `webhook_password`; 2xx means taken. In: the provider POSTs From, To, Body
and MessageSid to `/sms/webhook` (its retries share the MessageSid), and delivery reports
(MessageStatus) to `/sms/webhook/status`. Requests in are accepted when they carry
`[sms] inbound_token` as `token`, or Twilio's `X-Twilio-Signature` made with the auth token.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

import aiohttp

from ivr.channels.sms.gateway import callback_url, post_or_get, status_failure
from ivr.config import Settings
from ivr.store.sms import OutgoingText

STATUS_STATES = {
    "queued": "sent",
    "accepted": "sent",
    "sending": "sent",
    "sent": "sent",
    "delivered": "delivered",
    "undelivered": "failed",
    "failed": "failed",
}


class WebhookGateway:
    name = "webhook"
    holds = False

    def __init__(self, settings: Settings, http: aiohttp.ClientSession) -> None:
        self.settings = settings
        self.http = http

    async def send(self, text: OutgoingText) -> None:
        sms = self.settings.sms
        form = {
            "To": text.to_number,
            "From": text.from_number,
            "Body": text.text,
            "StatusCallback": callback_url(self.settings, "/sms/webhook/status", id=text.id),
        }
        headers: dict[str, str] = {}
        if sms.webhook_username:  # basic auth by hand: aiohttp's `auth=` is deprecated (3.14)
            pair = f"{sms.webhook_username}:{sms.webhook_password}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
        status, body = await post_or_get(
            self.http, "POST", sms.webhook_url, data=form, headers=headers
        )
        if 200 <= status < 300:
            return
        raise status_failure(status, body)


def twilio_signature(auth_token: str, url: str, params: dict[str, str]) -> str:
    """Twilio's request signature: HMAC-SHA1 over the URL and the sorted form fields."""
    payload = url + "".join(key + params[key] for key in sorted(params))
    digest = hmac.new(auth_token.encode(), payload.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def signature_valid(auth_token: str, url: str, params: dict[str, str], signature: str) -> bool:
    return bool(auth_token) and hmac.compare_digest(
        twilio_signature(auth_token, url, params), signature
    )
