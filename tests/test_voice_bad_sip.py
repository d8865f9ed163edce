"""Malformed SIP on the server's SIP port: answered or dropped, never fatal.

While a real call runs, datagrams of garbage, broken headers and bad SDP arrive at the port the
media worker listens on. The call must complete, the worker must be the same process, and a
well-formed INVITE with a broken SDP body must get an error response, not a call.
"""

from __future__ import annotations

import asyncio
import socket
import uuid

import pytest

from ivr.conversation import Role
from ivr.web.keys import STORE, SUPERVISOR
from tests.serve_fixtures import wait_until
from tests.voice_fixtures import VoiceServer

pytestmark = pytest.mark.timeout(120)


def invite(port: int, local: int, body: str, *, content_type: str = "application/sdp") -> bytes:
    call_id = uuid.uuid4().hex
    return (
        f"INVITE sip:1000@127.0.0.1:{port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{local};branch=z9hG4bK{call_id[:12]}\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:fuzz@127.0.0.1:{local}>;tag={call_id[:8]}\r\n"
        f"To: <sip:1000@127.0.0.1:{port}>\r\n"
        f"Call-ID: {call_id}@127.0.0.1\r\n"
        "CSeq: 1 INVITE\r\n"
        f"Contact: <sip:fuzz@127.0.0.1:{local}>\r\n"
        f"Content-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n{body}"
    ).encode()


BROKEN = [
    b"\x00\xff" * 200,  # not text at all
    'INVITE sip:1000@127.0.0.1 SIP/2.0\r\nFrom: "M\xfcller" <sip:m@x>\r\n\r\n'.encode("latin-1"),
    b"INVITE\r\n\r\n",  # a request line and nothing else
    b"INVITE sip:1000@127.0.0.1 SIP/2.0\r\nVia: nonsense\r\nCSeq: x\r\n\r\n",  # broken headers
    b"OPTIONS sip:x SIP/2.0\r\n" + b"X-Long: " + b"a" * 60000 + b"\r\n\r\n",  # oversized
    b"SIP/2.0 200 OK\r\nCall-ID: unknown\r\n\r\n",  # a response to nothing
]


async def test_garbage_and_bad_sdp_do_not_disturb_a_call_in_progress(
    voice_server: VoiceServer,
) -> None:
    media = voice_server.served.app[SUPERVISOR].children["media-1"]
    pid = media.pid
    call = asyncio.ensure_future(
        voice_server.call("1000", "wait-prompt", "dtmf 12345678", "wait-prompt", "hangup")
    )

    async def call_in_progress() -> bool:
        recent = await voice_server.served.app[STORE].list_recent(1)
        return bool(recent) and recent[0].position.step == "identify"

    await wait_until(call_in_progress, timeout=20)  # the bot is asking for the account
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        local = sock.getsockname()[1]
        target = ("127.0.0.1", voice_server.sip_port)
        for datagram in BROKEN:
            sock.sendto(datagram, target)
        sock.sendto(invite(voice_server.sip_port, local, "v=0\r\nthis is not SDP\r\n"), target)
        replies: list[bytes] = []
        async with asyncio.timeout(10):
            while True:  # the broken-SDP INVITE gets an error response (after 100 Trying)
                data = await loop.sock_recv(sock, 65536)
                replies.append(data)
                status = data.split(b" ", 2)[1] if data.startswith(b"SIP/2.0") else b""
                if status and int(status) >= 300:
                    break
        final = replies[-1].split(b"\r\n", 1)[0]
        assert final.split(b" ")[1] in (b"400", b"488"), final
    result = await call
    assert result.ok, result.outcome
    assert media.pid == pid and media.state in ("ready", "running")  # the same process
    conv = await voice_server.last_conversation()
    assert next(t.text for t in conv.timeline if t.role is Role.CUSTOMER) == "12345678"
