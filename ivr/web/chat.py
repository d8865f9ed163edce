"""The web chat endpoint: `/chat` (a small page) and `/chat/ws` (the websocket it talks to).

Protocol (JSON text frames). Customer -> server:
  {"type": "start", "flow": "bank"}       flow optional: [flows] chat_flow
  {"type": "message", "text": "..."}      what the customer typed
  {"type": "dtmf", "digits": "1234#"}     keypad presses (the widget's keypad)
Server -> customer:
  {"type": "conversation", "id": "..."}   once started
  {"type": "bot", "text": "...", "expects_answer": bool, "secure": bool, "choices": [...]}
  {"type": "transfer", ...}, {"type": "end", "reason": "..."}
  {"type": "error", "reason": "..."}      a refused message; the conversation is unharmed
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import re
from importlib import resources
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from ivr.channels.chat import ChatChannel
from ivr.conversation import Status
from ivr.conversation_service import LiveRun, UnknownFlow
from ivr.flow.channel import CustomerInput
from ivr.flow.problems import FlowError
from ivr.web.keys import CONVERSATIONS, METRICS, SETTINGS

log = logging.getLogger("ivr.chat")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_DIGITS = re.compile(r"^[0-9*#]{1,32}$")
# Frames up to this size are read and, when above [chat] max_message_bytes, refused with an error
# frame (the chat goes on); only larger ones close the socket (1009), as aiohttp must.
_MAX_FRAME_BYTES = 1024 * 1024
# Open chats, closed when the server shuts down (or shutdown would wait for the customers).
_SOCKETS = web.AppKey("chat_sockets", set)


class BadMessage(ValueError):
    """A refused customer frame; the text is sent back as the error reason."""

    def __init__(self, reason: str, label: str) -> None:
        super().__init__(reason)
        self.label = label  # metric label


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

    channel = ChatChannel(send, settings.chat.idle_timeout)
    live: LiveRun | None = None
    try:
        async for msg in ws:
            if msg.type == WSMsgType.BINARY:
                metrics.chat_errors.labels("binary").inc()
                await send({"type": "error", "reason": "binary frames are not accepted"})
                continue
            if msg.type != WSMsgType.TEXT:
                break
            try:
                frame = parse_frame(msg.data, settings.chat.max_message_bytes)
                if frame["type"] == "start":
                    if live is not None:
                        raise BadMessage("this chat has already started", "malformed")
                    live = await _start(request, channel, frame)
                    live.task.add_done_callback(functools.partial(_run_over, ws, live))
                    metrics.conversations_started.labels(live.conv.flow, channel.name).inc()
                    await send({"type": "conversation", "id": live.conv.id})
                    continue
                answer = customer_input(frame)
                if live is None:
                    raise BadMessage('send {"type": "start"} first', "not_started")
                if live.task.done() or live.conv.status is not Status.ACTIVE:
                    raise BadMessage(_why_no_bot(live), "run_over")
                if not channel.deliver(answer):
                    raise BadMessage("too many messages at once; wait for the answer", "flood")
            except BadMessage as exc:
                metrics.chat_errors.labels(exc.label).inc()
                await send({"type": "error", "reason": str(exc)})
    finally:
        request.app[_SOCKETS].discard(ws)
        channel.close()
        if live is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(asyncio.shield(live.task), 5)
    return ws


def _why_no_bot(live: LiveRun) -> str:
    if live.conv.status is Status.QUEUED:
        return "you are waiting for an agent, who will answer here"
    return "this conversation has ended"


def _run_over(ws: web.WebSocketResponse, live: LiveRun, task: asyncio.Task[Any]) -> None:
    """The bot's part is over: close the chat, unless the customer waits here for an agent."""
    if live.conv.status is Status.QUEUED and not task.cancelled():
        return
    reason = b"continued on another channel" if task.cancelled() else b"conversation over"
    if not ws.closed:
        asyncio.get_running_loop().create_task(ws.close(code=WSCloseCode.OK, message=reason))


async def _start(request: web.Request, channel: ChatChannel, frame: dict[str, Any]) -> LiveRun:
    flows = request.app[SETTINGS].flows
    flow = frame.get("flow") or flows.chat_flow
    if not isinstance(flow, str):
        raise BadMessage('"flow" must be a string', "malformed")
    if not flows.chat_allowed(flow):
        raise BadMessage(f"no flow named {flow!r} for chat", "unknown_flow")
    try:
        return await request.app[CONVERSATIONS].start(channel, flow)
    except UnknownFlow as exc:
        raise BadMessage(str(exc), "unknown_flow") from None
    except FlowError:
        raise BadMessage("no valid flow is loaded; see /healthz", "no_flows") from None


async def _close_sockets(app: web.Application) -> None:
    """On shutdown: close every chat; each conversation is stored at its step as it ends."""
    for ws in list(app[_SOCKETS]):
        await ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutting down")


def add_routes(app: web.Application) -> None:
    app[_SOCKETS] = set()
    app.on_shutdown.append(_close_sockets)
    app.router.add_get("/chat", chat_page)
    app.router.add_get("/chat/ws", chat_socket)
