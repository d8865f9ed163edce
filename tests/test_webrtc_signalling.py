"""Browser-call signalling on the widget's socket, with aiortc as the browser: what a visitor's
page is told when its offer is bad, when no call can be taken, and that nobody else is harmed.

The calls themselves, with a real browser, are in test_web_widget_calls.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack

from ivr.web.keys import SUPERVISOR
from tests.serve_fixtures import ALICE, ServeApp, wait_until
from tests.voice_fixtures import start_voice_server

FRAME_TIMEOUT = 15.0


class Page:
    """A visitor's websocket, reading frames until one is wanted (bounded)."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.frames: list[dict[str, Any]] = []

    async def send(self, frame: dict[str, Any]) -> None:
        await self.ws.send_json(frame)

    async def until(
        self, wanted: Callable[[dict[str, Any]], bool], timeout: float = FRAME_TIMEOUT
    ) -> dict[str, Any]:
        seen: list[dict[str, Any]] = []
        try:
            async with asyncio.timeout(timeout):
                while True:
                    frame = await self.ws.receive_json()
                    self.frames.append(frame)
                    seen.append(frame)
                    if wanted(frame):
                        return frame
        except TimeoutError:
            raise AssertionError(f"no wanted frame within {timeout} s; saw {seen}") from None

    async def expect(self, kind: str, **fields: Any) -> dict[str, Any]:
        return await self.until(
            lambda f: f.get("type") == kind and all(f.get(k) == v for k, v in fields.items())
        )


@asynccontextmanager
async def page(url: str) -> AsyncIterator[Page]:
    async with aiohttp.ClientSession() as session:
        ws = await session.ws_connect(url.replace("http", "ws", 1) + "/chat/ws")
        try:
            yield Page(ws)
        finally:
            await ws.close()


async def call_from(visitor: Page, pc: RTCPeerConnection) -> Any:
    """Place a call from `visitor`'s socket (sending silence); its "keys" data channel."""
    keys = pc.createDataChannel("keys")
    pc.addTrack(AudioStreamTrack())
    await pc.setLocalDescription(await pc.createOffer())
    await visitor.send({"type": "call", "sdp": pc.localDescription.sdp})
    answer = await visitor.expect("call_answer")
    await pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
    return keys


async def test_bad_offers_get_an_error_on_the_socket_and_harm_no_one(
    serve_app: ServeApp, tmp_path: Path
) -> None:
    server = await start_voice_server(serve_app, tmp_path)
    async with page(server.served.url) as caller, page(server.served.url) as visitor:
        # A call in progress on another socket, which the bad input must not disturb.
        await caller.expect("hello")
        pc = RTCPeerConnection()
        try:
            keys = await call_from(caller, pc)
            await caller.expect("call_state", state="listening")

            hello = await visitor.expect("hello")
            assert hello["call"] is True
            assert hello["ice_servers"] == []  # no public STUN server unless configured
            await visitor.send({"type": "call", "sdp": "v=0\r\nthis is not SDP\r\n"})
            refused = await visitor.expect("call_error")
            assert "refused" in refused["reason"]
            await visitor.send({"type": "call"})
            assert "sdp" in (await visitor.expect("call_error"))["reason"]
            await visitor.send({"type": "call", "sdp": "v=0\r\n" + "a=x\r\n" * 20000})
            assert "too large" in (await visitor.expect("error"))["reason"]
            await visitor.send({"type": "hangup"})
            assert "no call" in (await visitor.expect("error"))["reason"]
            await visitor.send({"type": "call", "sdp": {"not": "text"}})
            assert "sdp" in (await visitor.expect("call_error"))["reason"]
            await visitor.send({"type": "call", "sdp": "v=0\ud800"})  # not even UTF-8
            assert (await visitor.expect("call_error"))["reason"]
            for _ in range(25):  # a flood of candidates is cut off, the call unharmed
                await caller.send(
                    {
                        "type": "candidate",
                        "candidate": "candidate:1 1 udp 1 1.2.3.4 9 typ host",
                        "sdpMid": "0",
                    }
                )
            assert "more than 20" in (await caller.expect("error"))["reason"]
            await visitor.send({"type": "candidate", "candidate": "candidate:1 1 udp 1 x 9 typ"})
            assert "no call" in (await visitor.expect("error"))["reason"]
            await caller.send({"type": "candidate", "candidate": "not a candidate"})
            assert "ICE candidate" in (await caller.expect("error"))["reason"]
            await caller.send({"type": "candidate", "candidate": "candidate:x", "sdpMid": "0"})

            # The call goes on: its keys still answer; the visitor still chats.
            keys.send(ALICE["account"])
            await caller.until(lambda f: f.get("type") == "caption" and "PIN" in f["text"])
            await visitor.send({"type": "start"})
            await visitor.until(lambda f: f.get("type") == "bot" and f.get("expects_answer"))
        finally:
            await pc.close()


async def test_keys_on_the_data_channel_answer_and_hanging_up_goes_back_to_the_chat(
    serve_app: ServeApp, tmp_path: Path
) -> None:
    server = await start_voice_server(serve_app, tmp_path)
    async with page(server.served.url) as visitor:
        await visitor.expect("hello")
        pc = RTCPeerConnection()
        try:
            keys = await call_from(visitor, pc)
            conv_id = (await visitor.expect("conversation"))["id"]
            await visitor.until(lambda f: "account number" in str(f.get("text")))
            await visitor.expect("call_state", state="listening")
            keys.send(ALICE["account"])
            heard = await visitor.expect("caption", who="customer", final=True)
            assert heard["text"] == ALICE["account"]
            await visitor.until(lambda f: f.get("type") == "caption" and "PIN" in f["text"])
            await visitor.send({"type": "hangup"})
            await visitor.expect("call_state", state="ended")
            # The chat takes over at the PIN step: the account number is not asked again.
            pin = await visitor.until(lambda f: f.get("type") == "bot" and f.get("expects_answer"))
            assert "PIN" in pin["text"] and pin["secure"] is True
        finally:
            await pc.close()
        await visitor.send({"type": "dtmf", "digits": ALICE["pin"]})
        await visitor.until(lambda f: f.get("type") == "bot" and "Alice" in f["text"])
    conv = await server.served.conversation(conv_id)
    assert conv["channels"] == ["webrtc", "chat"]
    asked = [t["meta"].get("step") for t in conv["timeline"] if t["role"] == "bot"]
    assert asked.count("identify") == 1  # the account number: asked once, on the call


async def test_a_server_without_media_workers_says_calls_are_unavailable(
    serve_app: ServeApp,
) -> None:
    served = await serve_app()  # SIP (and so the media workers) off
    async with page(served.url) as visitor:
        hello = await visitor.expect("hello")
        assert hello["call"] is False
        await visitor.send({"type": "call", "sdp": "v=0\r\n"})
        assert "not available" in (await visitor.expect("call_error"))["reason"]
        await visitor.send({"type": "start"})
        await visitor.until(lambda f: f.get("type") == "bot" and f.get("expects_answer"))


def udp_sockets(pid: int) -> int:
    """The UDP sockets process `pid` holds (its fds that are sockets listed in /proc/net)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    udp = set()
    for table in ("udp", "udp6"):
        with contextlib.suppress(OSError):
            for row in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
                udp.add(row.split()[9])
    return len(inodes & udp)


async def test_ended_browser_calls_give_back_their_sockets(
    serve_app: ServeApp, tmp_path: Path
) -> None:
    """A long-running media worker must not run out of file descriptors: every call's ICE
    sockets are closed when it ends, whoever hangs up."""
    server = await start_voice_server(serve_app, tmp_path)
    pid = server.served.app[SUPERVISOR].children["media-1"].pid
    before = udp_sockets(pid)
    for _ in range(3):
        async with page(server.served.url) as visitor:
            await visitor.expect("hello")
            pc = RTCPeerConnection()
            try:
                await call_from(visitor, pc)
                await visitor.expect("call_state", state="listening")
                assert udp_sockets(pid) > before  # the call's own
                await visitor.send({"type": "hangup"})
                await visitor.expect("call_state", state="ended")
            finally:
                await pc.close()

    async def given_back() -> bool:
        return udp_sockets(pid) <= before

    await wait_until(given_back, timeout=10)
