"""The web chat endpoint: `/chat` (a small page) and `/chat/ws` (the websocket it talks to).

Protocol (JSON text frames). Customer -> server:
  {"type": "start", "flow": "bank"}       flow optional: [flows] chat_flow
  {"type": "continue", "token": "..."}    instead of start: a continue link's conversation
                                          (`/c/<token>`) goes on here; uses the link up
  {"type": "resume", "token": "..."}      instead of start, first on a new socket: the handle of
                                          the last `conversation` frame; the conversation goes
                                          on here where it stood (a queue's place kept)
  {"type": "message", "text": "..."}      what the customer typed
  {"type": "dtmf", "digits": "1234#"}     keypad presses (the widget's keypad, outside a call)
  {"type": "call", "sdp": "<offer>"}      a browser call: the conversation moves to it (or
                                          starts on it), see ivr.web.visitor
  {"type": "candidate", "candidate": "candidate:...", "sdpMid": "0", "sdpMLineIndex": 0}
                                          the browser's ICE candidates, after the offer
  {"type": "hangup"}                      ends the call; the conversation goes on in the chat
Server -> customer:
  {"type": "hello", "call": bool, "ice_servers": [...]}   first: can this server take calls
  {"type": "conversation", "id": "...", "resume": "..."}
                                          once started (or continued, resumed): `resume` is a
                                          signed handle for this conversation only, valid
                                          [chat] idle_timeout seconds; keep it per tab
  {"type": "history", "turns": [{"ts", "channel", "role", "text"}]}
                                          after a continue or a resume: the last turns said, on
                                          any channel
  {"type": "call_answer", "sdp": "..."}   the media worker's answer to the offer
  {"type": "call_state", "state": "speaking" | "listening" | "waiting" | "ended", "reason"?}
  {"type": "caption", "who": "bot" | "customer", "text": "...", "final": bool, "secure"?: bool}
                                          (secure: on a question's caption, whether its answer
                                          is secret; a secret answer's caption is dots)
  {"type": "call_error", "reason": "..."} the call was refused or failed; the chat goes on
  {"type": "bot", "text": "...", "expects_answer": bool, "secure": bool, "choices": [...]}
  {"type": "transfer", ...}, {"type": "end", "reason": "..."}
  {"type": "error", "reason": "...", "kind"?: "resume_refused"}
                                          a refused message; the conversation is unharmed.
                                          `resume_refused`: the handle is forged, expired or its
                                          conversation over: forget it and start afresh

A socket closed by the customer with code 1000 is the customer leaving; any other end (a reload
or a closed tab: 1001, a lost network) leaves a chat that waits for (or talks to) an agent open
for ivr.web.chat_continuity.GRACE_SECONDS, for a resume to keep its place.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from importlib import resources
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from ivr.flow.channel import CustomerInput
from ivr.web.chat_continuity import add_resumes
from ivr.web.keys import METRICS, SETTINGS
from ivr.web.refusals import BadMessage
from ivr.web.signalling import MAX_SDP_BYTES
from ivr.web.visitor import Visitor

log = logging.getLogger("ivr.chat")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_DIGITS = re.compile(r"^[0-9*#]{1,32}$")
# Frames up to this size are read and, when above [chat] max_message_bytes, refused with an error
# frame (the chat goes on); only larger ones close the socket (1009), as aiohttp must.
_MAX_FRAME_BYTES = 1024 * 1024
# Open chats, closed when the server shuts down (or shutdown would wait for the customers).
_SOCKETS = web.AppKey("chat_sockets", set)
CALL_FRAME_BYTES = MAX_SDP_BYTES + 1024


async def chat_page(request: web.Request) -> web.Response:
    page = resources.files("ivr.web").joinpath("static/chat.html").read_text(encoding="utf-8")
    return web.Response(text=page, content_type="text/html")


def parse_frame(data: str, max_bytes: int) -> dict[str, Any]:
    if len(data.encode("utf-8", "surrogatepass")) > max_bytes:
        raise BadMessage(f"message too large: at most {max_bytes} bytes", "too_large")
    try:
        frame = json.loads(data)
    except ValueError:
        raise BadMessage('not JSON: send {"type": "message", "text": ...}', "not_json") from None
    if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
        raise BadMessage('a frame is a JSON object with a "type"', "malformed")
    return frame


def read_frame(data: str, max_bytes: int) -> dict[str, Any]:
    """A customer frame of at most `max_bytes`; a call's offer may be larger (SDP is 2-6 kB)."""
    size = len(data.encode("utf-8", "surrogatepass"))
    if max_bytes < size <= CALL_FRAME_BYTES:
        with contextlib.suppress(BadMessage):
            frame = parse_frame(data, CALL_FRAME_BYTES)
            if frame["type"] == "call":
                return frame
    if size > max_bytes:
        raise BadMessage(
            f"message too large: at most {max_bytes} bytes (a call's offer: {CALL_FRAME_BYTES})",
            "too_large",
        )
    return parse_frame(data, max_bytes)


def customer_input(frame: dict[str, Any]) -> CustomerInput:
    kind = frame["type"]
    if kind == "message":
        text = frame.get("text")
        if not isinstance(text, str):
            raise BadMessage('"text" must be a string', "malformed")
        if _CONTROL.search(text):
            raise BadMessage("text contains control characters (binary data?)", "binary")
        text = text.strip()
        if not text:
            raise BadMessage("empty message", "empty")
        return CustomerInput(kind="text", text=text)
    if kind == "dtmf":
        digits = frame.get("digits")
        if not isinstance(digits, str) or not _DIGITS.match(digits):
            raise BadMessage('"digits" must be 1 to 32 of 0-9, * and #', "malformed")
        return CustomerInput(kind="dtmf", digits=digits)
    raise BadMessage(f"unknown frame type {kind!r}", "unknown_type")


async def chat_socket(request: web.Request) -> web.WebSocketResponse:
    settings = request.app[SETTINGS]
    metrics = request.app[METRICS]
    ws = web.WebSocketResponse(
        heartbeat=30, max_msg_size=max(_MAX_FRAME_BYTES, settings.chat.max_message_bytes * 4)
    )
    await ws.prepare(request)
    request.app[_SOCKETS].add(ws)
    send_lock = asyncio.Lock()

    async def send(message: dict[str, Any]) -> None:
        async with send_lock:
            await ws.send_json(message)

    visitor = Visitor(request.app, ws, send)
    leaving = False  # the customer closed the socket themselves (1000), not a reload or a drop
    try:
        await send(visitor.hello())
        while True:
            msg = await ws.receive()
            if msg.type == WSMsgType.CLOSE:
                leaving = msg.data == WSCloseCode.OK
                break
            if msg.type == WSMsgType.BINARY:
                metrics.chat_errors.labels("binary").inc()
                await send({"type": "error", "reason": "binary frames are not accepted"})
                continue
            if msg.type != WSMsgType.TEXT:
                break
            try:
                frame = read_frame(msg.data, settings.chat.max_message_bytes)
                kind = frame["type"]
                if kind == "start":
                    await visitor.start_chat(frame)
                elif kind == "continue":
                    await visitor.continue_chat(frame)
                elif kind == "resume":
                    await visitor.resume_chat(frame)
                elif kind == "call":
                    await visitor.place_call(frame)
                elif kind == "candidate":
                    visitor.add_candidate(frame)
                elif kind == "hangup":
                    visitor.hang_up()
                else:
                    visitor.deliver(customer_input(frame))
            except BadMessage as exc:
                metrics.chat_errors.labels(exc.label).inc()
                error = {"type": "error", "reason": str(exc)}
                if exc.kind is not None:
                    error["kind"] = exc.kind
                await send(error)
    finally:
        request.app[_SOCKETS].discard(ws)
        await visitor.close(leaving=leaving)
    return ws


async def _close_sockets(app: web.Application) -> None:
    """On shutdown: close every chat; each conversation is stored at its step as it ends."""
    for ws in list(app[_SOCKETS]):
        await ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutting down")


def add_routes(app: web.Application) -> None:
    app[_SOCKETS] = set()
    add_resumes(app)
    app.on_shutdown.append(_close_sockets)
    app.router.add_get("/chat", chat_page)
    app.router.add_get("/chat/ws", chat_socket)
