"""SMS gateways: how a queued text leaves (`SmsGateway.send`), and which one `[sms] gateway` picks.

A gateway either takes a text (returns) or refuses it with `SendFailed`: `transient` failures
(the gateway is down, overloaded, times out) are retried by the outbox with back-off; the others
(a refused number, wrong credentials) are recorded as failed at once, with the gateway's reason.

Delivery reports come back later over HTTP (`ivr.web.sms`), addressed by our outbox id, which
every gateway passes along in its callback URL.
"""

from __future__ import annotations

from typing import Protocol
from urllib.parse import urlencode

import aiohttp

from ivr.config import Settings
from ivr.store.sms import OutgoingText

# A gateway that does not answer within this long is down for this attempt (retried later).
SEND_TIMEOUT = aiohttp.ClientTimeout(total=10)


class SendFailed(Exception):
    def __init__(self, reason: str, transient: bool) -> None:
        super().__init__(reason)
        self.transient = transient


class SmsGateway(Protocol):
    name: str
    # True for the outbox gateway: texts are kept for people to read, never sent anywhere.
    holds: bool

    async def send(self, text: OutgoingText) -> None:
        """Hand `text` to the gateway; SendFailed when it does not take it."""
        ...


class OutboxGateway:
    """No gateway configured: texts are stored (state `held`) and shown in the agent desktop,
    so a demo or a test sees exactly what a customer would have received."""

    name = "outbox"
    holds = True

    async def send(self, text: OutgoingText) -> None:  # never called: the outbox holds them
        raise SendFailed("the outbox gateway sends nothing", transient=False)


def status_failure(status: int, body: str) -> SendFailed:
    """An HTTP answer other than success: overload and server faults are worth another try."""
    transient = status == 429 or status >= 500
    return SendFailed(f"HTTP {status}: {body.strip()[:200]}", transient)


async def post_or_get(
    http: aiohttp.ClientSession, method: str, url: str, **kwargs: object
) -> tuple[int, str]:
    """One request to a gateway; connection trouble and timeouts are transient failures."""
    try:
        async with http.request(method, url, timeout=SEND_TIMEOUT, **kwargs) as response:  # type: ignore[arg-type]
            return response.status, await response.text(errors="replace")
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise SendFailed(f"{type(exc).__name__}: {exc}", transient=True) from None


def callback_url(settings: Settings, path: str, **params: str) -> str:
    """A URL of ours the gateway calls back (delivery reports), with the inbound token."""
    if settings.sms.inbound_token:
        params["token"] = settings.sms.inbound_token
    return f"{settings.public_url}{path}?{urlencode(params, safe='%')}"


def gateway_for(settings: Settings, http: aiohttp.ClientSession) -> SmsGateway:
    kind = settings.sms.gateway
    if kind == "kannel":
        from ivr.channels.sms.kannel import KannelGateway

        return KannelGateway(settings, http)
    if kind == "webhook":
        from ivr.channels.sms.webhook import WebhookGateway

        return WebhookGateway(settings, http)
    return OutboxGateway()
