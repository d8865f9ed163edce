"""SMS through a Twilio-style provider (`[sms] gateway = "webhook"`), against a stand-in for the
provider on a loopback port: texts in by its webhook (signed with X-Twilio-Signature), replies
out by form POST with basic auth, its failures (overload retried, refusal recorded at once) and
its delivery reports."""

from __future__ import annotations

import base64
import json
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from ivr.channels.sms.webhook import twilio_signature
from ivr.config import SmsSettings
from tests.serve_fixtures import ServeApp, Served, wait_until

CUSTOMER = "+15551234567"
OUR_NUMBER = "5550000"
ACCOUNT_SID = "AC1"
AUTH_TOKEN = "authtoken"
ACCOUNT_QUESTION = "Welcome to Northwind Bank. Please enter your eight digit account number."


@dataclass
class Provider:
    """The provider's Messages API: records every POST; answers from `answers` (status, body)
    while there are any, then 201."""

    url: str = ""
    requests: list[dict[str, Any]] = field(default_factory=list)
    answers: list[tuple[int, str]] = field(default_factory=list)

    async def messages(self, request: web.Request) -> web.Response:
        form = {key: str(value) for key, value in (await request.post()).items()}
        self.requests.append({"auth": request.headers.get("Authorization", ""), "form": form})
        if self.answers:
            status, body = self.answers.pop(0)
            return web.json_response({"message": body}, status=status)
        sid = f"SM{len(self.requests):032d}"
        return web.json_response({"sid": sid, "status": "queued"}, status=201)

    def sent(self) -> list[dict[str, str]]:
        return [r["form"] for r in self.requests]


@pytest.fixture
async def provider() -> AsyncIterator[Provider]:
    stand_in = Provider()
    app = web.Application()
    app.router.add_post("/2010-04-01/Accounts/AC1/Messages.json", stand_in.messages)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))  # a free port, ours from here
    await web.SockSite(runner, sock).start()
    port = sock.getsockname()[1]
    stand_in.url = f"http://127.0.0.1:{port}/2010-04-01/Accounts/AC1/Messages.json"
    try:
        yield stand_in
    finally:
        await runner.cleanup()


@pytest.fixture
async def served(serve_app: ServeApp, provider: Provider) -> Served:
    return await serve_app(
        sms=SmsSettings(
            gateway="webhook",
            number=OUR_NUMBER,
            webhook_url=provider.url,
            webhook_username=ACCOUNT_SID,
            webhook_password=AUTH_TOKEN,
            retry_seconds=0.2,
            max_retry_seconds=1,
        )
    )


async def post_signed(
    served: Served,
    path: str,
    form: dict[str, str],
    *,
    signature: str | None = None,
) -> tuple[int, str, str]:
    """POST `form` as the provider does, signed over the URL the server sees (its public URL)
    unless `signature` is given; (status, content type, body)."""
    if signature is None:
        signature = twilio_signature(AUTH_TOKEN, served.settings.public_url + path, form)
    async with served.session.post(
        served.url + path, data=form, headers={"X-Twilio-Signature": signature}
    ) as resp:
        return resp.status, resp.content_type, await resp.text()


def incoming(text: str, sid: str, **changes: str) -> dict[str, str]:
    form = {
        "MessageSid": sid,
        "AccountSid": ACCOUNT_SID,
        "From": CUSTOMER,
        "To": OUR_NUMBER,
        "Body": text,
        "NumMedia": "0",
    }
    form.update(changes)
    return {key: value for key, value in form.items() if value != "-"}


async def outbox(served: Served) -> list[dict[str, Any]]:
    status, body = await served.api("/api/sms/outbox")
    assert status == 200, body
    return list(reversed(body["texts"]))


async def settled(served: Served, count: int) -> list[dict[str, Any]]:
    """The first `count` texts once none of them waits for another attempt."""

    async def probe() -> list[dict[str, Any]] | None:
        texts = await outbox(served)
        done = len(texts) >= count and all(t["state"] != "queued" for t in texts[:count])
        return texts if done else None

    return await wait_until(probe, timeout=10)


async def test_a_signed_text_starts_the_flow_and_the_reply_is_posted_with_basic_auth(
    served: Served, provider: Provider
) -> None:
    status, kind, body = await post_signed(served, "/sms/webhook", incoming("hello", "SM1"))
    assert status == 200 and kind == "text/xml" and "<Response></Response>" in body
    [text] = await settled(served, 1)
    assert text["state"] == "sent" and text["attempts"] == 1 and text["text"] == ACCOUNT_QUESTION
    [request] = provider.requests
    expected_auth = base64.b64encode(f"{ACCOUNT_SID}:{AUTH_TOKEN}".encode()).decode()
    assert request["auth"] == f"Basic {expected_auth}"
    form = request["form"]
    assert form["To"] == CUSTOMER and form["From"] == OUR_NUMBER
    assert form["Body"] == ACCOUNT_QUESTION
    assert (
        form["StatusCallback"] == f"{served.settings.public_url}/sms/webhook/status?id={text['id']}"
    )

    await post_signed(served, "/sms/webhook", incoming("12345678", "SM2"))
    texts = await settled(served, 2)
    assert texts[1]["text"].startswith("Please enter your four digit PIN")
    assert provider.sent()[1]["Body"] == texts[1]["text"]
    conv = await served.conversation(texts[0]["conversation_id"])
    assert conv["channels"] == ["sms"] and conv["contact"]["phone"] == CUSTOMER


async def test_a_wrong_signature_is_refused(served: Served, provider: Provider) -> None:
    form = incoming("hello", "SM1")
    forged = twilio_signature(
        "not-the-auth-token", served.settings.public_url + "/sms/webhook", form
    )
    for signature in (forged, "", "AAAA"):
        status, kind, body = await post_signed(served, "/sms/webhook", form, signature=signature)
        assert (status, kind) == (403, "application/json"), body
    # Signed over another URL (a query the provider did not send): refused as well.
    elsewhere = twilio_signature(AUTH_TOKEN, served.settings.public_url + "/sms/webhook?x=1", form)
    status, _, _ = await post_signed(served, "/sms/webhook", form, signature=elsewhere)
    assert status == 403
    assert await outbox(served) == [] and provider.requests == []


async def test_with_an_inbound_token_the_token_is_enough_and_a_bare_request_is_refused(
    serve_app: ServeApp, provider: Provider
) -> None:
    served = await serve_app(
        sms=SmsSettings(
            gateway="webhook",
            webhook_url=provider.url,
            webhook_password=AUTH_TOKEN,
            inbound_token="s3cret",
        )
    )
    form = incoming("hello", "SM1")
    async with served.session.post(served.url + "/sms/webhook", data=form) as resp:
        assert resp.status == 403  # from this machine, but without the token
    # Behind a proxy that rewrites the URL the signature cannot match: the token still does.
    status, _, _ = await post_signed(served, "/sms/webhook?token=s3cret", form, signature="x")
    assert status == 200
    [text] = await settled(served, 1)
    assert text["state"] == "sent" and provider.requests[0]["auth"] == ""
    assert provider.requests[0]["form"]["StatusCallback"].endswith(f"?id={text['id']}&token=s3cret")


async def test_a_repeated_message_sid_is_taken_once(served: Served, provider: Provider) -> None:
    form = incoming("hello", "SMrepeat")
    for _ in range(3):  # the provider's retries share the MessageSid
        status, _, _ = await post_signed(served, "/sms/webhook", form)
        assert status == 200
    await settled(served, 1)
    await post_signed(served, "/sms/webhook", incoming("12345678", "SMnext"))
    texts = await settled(served, 2)
    assert len(texts) == 2 and texts[1]["text"].startswith("Please enter your four digit PIN")
    assert len(provider.requests) == 2


async def test_an_overloaded_provider_is_tried_again_and_the_text_sent_once(
    served: Served, provider: Provider
) -> None:
    provider.answers = [(503, "Service Unavailable"), (503, "Service Unavailable")]
    await post_signed(served, "/sms/webhook", incoming("hello", "SM1"))
    [text] = await settled(served, 1)
    assert text["state"] == "sent" and text["attempts"] == 3
    assert [r["form"]["Body"] for r in provider.requests] == [ACCOUNT_QUESTION] * 3


async def test_a_refused_text_fails_at_once_with_the_providers_reason(
    served: Served, provider: Provider
) -> None:
    provider.answers = [(400, "The 'To' number is not a valid phone number.")]
    await post_signed(served, "/sms/webhook", incoming("hello", "SM1"))
    [text] = await settled(served, 1)
    assert text["state"] == "failed" and text["attempts"] == 1
    assert "HTTP 400" in text["last_error"] and "not a valid phone number" in text["last_error"]
    assert len(provider.requests) == 1


async def test_a_status_callback_updates_the_outbox(served: Served, provider: Provider) -> None:
    await post_signed(served, "/sms/webhook", incoming("hello", "SM1"))
    [text] = await settled(served, 1)
    callback = provider.requests[0]["form"]["StatusCallback"]
    path = callback.removeprefix(served.settings.public_url)
    report = {"MessageSid": "SM00000000000000000000000000000001", "AccountSid": ACCOUNT_SID}
    status, _, _ = await post_signed(served, path, {**report, "MessageStatus": "delivered"})
    assert status == 200
    [text] = await outbox(served)
    assert text["state"] == "delivered"
    # A late "sent" does not take back "delivered"; a forged report changes nothing.
    await post_signed(served, path, {**report, "MessageStatus": "sent"})
    status, _, _ = await post_signed(
        served, path, {**report, "MessageStatus": "failed"}, signature="forged"
    )
    assert status == 403
    [text] = await outbox(served)
    assert text["state"] == "delivered"


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"From": "-"}, "From"),
        ({"From": "not a number!"}, "From"),
        ({"Body": "-"}, "Body"),
    ],
)
async def test_bad_input_is_refused_with_the_field_named(
    served: Served, provider: Provider, changes: dict[str, str], field: str
) -> None:
    status, kind, body = await post_signed(served, "/sms/webhook", incoming("hi", "SM1", **changes))
    assert (status, kind) == (400, "application/json")
    assert json.loads(body)["field"] == field
    assert await outbox(served) == []
