"""Kannel: texts out through smsbox's sendsms interface, texts in through an sms-service get-url.

Kannel's side (kannel.conf), with this server at http://ivr.example:8700:

    group = sms-service
    keyword = default
    catch-all = true
    max-messages = 0                 # our answer is not a reply: replies go out by sendsms
    get-url = "http://ivr.example:8700/sms/kannel/mo?from=%p&to=%P&text=%b&coding=%c&charset=%C&id=%I&token=..."

and `http-request-retry` / `http-queue-delay` in its smsbox group, so a text that arrives while
we are down is fetched again (`id`, Kannel's message id, keeps the retries from counting twice).
Our answer to the get-url is 200 as soon as the text is stored: anything else makes Kannel try
again, and a 204 is logged by Kannel as a failure (seen on this machine: duplicates).

`text=%b` is the message as the handset sent it (`%a` would squeeze its spaces), in `coding`
0 (GSM, given to us as UTF-8), 1 (8-bit) or 2 (UCS-2, given as UTF-16BE bytes).
"""

from __future__ import annotations

from urllib.parse import unquote_to_bytes

import aiohttp

from ivr.channels.sms.gateway import callback_url, post_or_get, status_failure
from ivr.config import Settings
from ivr.store.sms import OutgoingText

# Delivery report types (Kannel's dlr-mask bits): what each makes of a text's state.
DLR_DELIVERED, DLR_FAILED, DLR_BUFFERED, DLR_SMSC_ACK, DLR_SMSC_REJECT = 1, 2, 4, 8, 16
DLR_MASK = DLR_DELIVERED | DLR_FAILED | DLR_SMSC_ACK | DLR_SMSC_REJECT
DLR_STATES = {
    DLR_DELIVERED: "delivered",
    DLR_FAILED: "failed",
    DLR_BUFFERED: "sent",
    DLR_SMSC_ACK: "sent",
    DLR_SMSC_REJECT: "failed",
}


class KannelGateway:
    name = "kannel"
    holds = False

    def __init__(self, settings: Settings, http: aiohttp.ClientSession) -> None:
        self.settings = settings
        self.http = http

    def request_params(self, text: OutgoingText) -> dict[str, str]:
        sms = self.settings.sms
        params = {
            "username": sms.kannel_username,
            "password": sms.kannel_password,
            "from": text.from_number,
            "to": text.to_number,
            "text": text.text,
            "charset": "UTF-8",
            "dlr-mask": str(DLR_MASK),
            "dlr-url": callback_url(self.settings, "/sms/kannel/dlr", id=text.id, type="%d"),
        }
        if not text.text.isascii():  # beyond GSM's alphabet: UCS-2 (70 characters a part)
            params["coding"] = "2"
        return params

    async def send(self, text: OutgoingText) -> None:
        status, body = await post_or_get(
            self.http, "GET", self.settings.sms.kannel_url, params=self.request_params(text)
        )
        # 202 "0: Accepted for delivery" or "3: Queued for later delivery": Kannel has it.
        if status in (200, 202):
            return
        raise status_failure(status, body)


class BadInbound(ValueError):
    """A received-text request we cannot take; the message names the field."""


def decode_text(raw: bytes, coding: str, charset: str) -> str:
    """The text of `%b`: UTF-16BE for UCS-2, else UTF-8 when it is (Kannel gives GSM texts as
    UTF-8), else Latin-1 (8-bit data): never an exception, whatever a handset sent."""
    if coding == "2" or charset.upper() in ("UTF-16BE", "UCS-2"):
        return raw.decode("utf-16-be", errors="replace")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def raw_param(query_string: str, name: str) -> bytes | None:
    """A query parameter's bytes as sent (aiohttp would decode them as UTF-8)."""
    for pair in query_string.split("&"):
        key, _, value = pair.partition("=")
        if unquote_to_bytes(key.replace("+", " ")) == name.encode():
            return unquote_to_bytes(value.replace("+", " "))
    return None
