"""The agent desktop's live side: `/agent/ws` (offers, chats, presence) and `/agent/api/...`.

Only a signed-in agent gets here (`ivr.web.agent_auth`); each socket is a `Desk` of the queue
service (`ivr.routing.service`). Protocol (JSON text frames). Agent -> server:
  {"type": "presence", "state": "available" | "break" | "offline"}
  {"type": "accept" | "decline", "conversation_id": "..."}     an offer
  {"type": "send", "conversation_id": "...", "text": "..."}    to the customer (chat, SMS)
  {"type": "end", "conversation_id": "..."}                    close the conversation
  {"type": "wrap_up", "conversation_id": "...", "code": "...", "notes": "..."}
  {"type": "transfer", "conversation_id", "to": "general" | "@username", "note": "..."}
  {"type": "audio_offer", "conversation_id", "sdp"}             a call's: the softphone's offer
  {"type": "audio_candidate", "conversation_id", "candidate", "sdpMid", "sdpMLineIndex"}
Server -> agent:
  {"type": "hello", "agent": {...}, "presence": "...", "assigned": [card, ...], "codes": {...},
   "ice_servers": [...]}
  {"type": "presence", "state": "...", "reason"?: "missed an offer"}
  {"type": "offer", "conversation_id", "queue", "expires_in": seconds, "card": {...}}
  {"type": "offer_gone", "conversation_id", "reason": "declined" | "timeout" | "abandoned"}
  {"type": "assigned", "card": {...}}                          accepted: the whole context
  {"type": "message", "conversation_id", "channel", "role": "customer" | "agent", "text", "ts"}
  {"type": "customer_left" | "ended" | "wrapped_up", "conversation_id"}
  {"type": "transferred", "conversation_id", "to": "queue general" | "agent gus"}   handed on
  {"type": "audio_answer", "conversation_id", "sdp"}             bridged to the caller
  {"type": "audio", "conversation_id", "state": "ended", "reason"}   the softphone's leg ended
  {"type": "phone", "conversation_id", "uri", "state": "ringing" | "transferred" | "failed",
   "reason"?}                           a call on its way to the agent's SIP phone; "failed": it
                                        waits in the queue again, and the agent is on break
  {"type": "error", "reason", "refused": type, "conversation_id"?}   a refused frame; nothing
                                                               changed
A card (`ivr.routing.card`) never holds a secret: identity says how it was verified, not with what.
A call's card has "medium": "voice" and "audio": "softphone": the desk answers with its
softphone, a WebRTC leg of its own that the caller's media worker bridges to the call (frames
handled in order, so candidates sent after an offer reach the leg that offer made). An agent
with a SIP phone (`ivr agents phone`) gets "audio": "phone" and "phone": {"uri", "state"}
instead: the call is transferred to that phone, and the desk opens no microphone.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from ivr.routing.acd import AgentState, Presence, RoutingError
from ivr.routing.service import PERSONAL_QUEUE, NotAllowed, QueueService
from ivr.store import AgentRecord
from ivr.store.agents import DEFAULT_CAPACITY
from ivr.web.agent_auth import require_agent
from ivr.web.errors import json_error
from ivr.web.keys import BROWSER_CALLS, CONVERSATIONS, FLOWS, QUEUES
from ivr.web.signalling import MAX_SDP_BYTES, BadSignal, ice_candidate, offer_sdp
from ivr.web.static_files import script

log = logging.getLogger("ivr.agent")

MAX_FRAME_BYTES = MAX_SDP_BYTES + 1024  # the largest frame is a softphone's offer
_DESKS = web.AppKey("desk_sockets", set)
MAX_TEXT_CHARS = 4000
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_CHOSEN_PRESENCE = {
    "available": Presence.AVAILABLE,
    "break": Presence.BREAK,
    "offline": Presence.OFFLINE,
}


class BadFrame(ValueError):
    pass


class DeskSocket:
    """One open desktop tab of an agent."""

    def __init__(self, agent_id: str, ws: web.WebSocketResponse) -> None:
        self.agent_id = agent_id
        self._ws = ws

    async def send(self, frame: dict[str, Any]) -> None:
        await self._ws.send_json(frame)


def agent_state(agent: AgentRecord) -> AgentState:
    return AgentState(
        agent_id=agent.id,
        skills=dict(agent.skills),
        # and their own queue, where a colleague's transfer by name waits for them
        queues=frozenset(agent.queues) | {f"{PERSONAL_QUEUE}{agent.username}"},
        capacity=DEFAULT_CAPACITY | dict(agent.capacity),
    )


def wrap_up_codes(app: web.Application, queues: tuple[str, ...]) -> dict[str, list[str]]:
    current = app[FLOWS].current
    defined = getattr(current, "queues", {}) if current else {}
    return {q: list(getattr(defined.get(q), "wrap_up_codes", None) or []) for q in queues}


@require_agent
async def desk_socket(request: web.Request, agent: AgentRecord) -> web.StreamResponse:
    queues: QueueService = request.app[QUEUES]
    ws = web.WebSocketResponse(heartbeat=30, max_msg_size=MAX_FRAME_BYTES)
    await ws.prepare(request)
    desk = DeskSocket(agent.id, ws)
    queues.desk_opened(
        desk, agent_state(agent), agent.display_name, agent.username, phone=agent.phone
    )
    request.app[_DESKS].add(ws)
    try:
        assigned = [
            await queues.card(a.conv, a.queue, None) for a in queues.assignments_of(agent.id)
        ]
        await desk.send(
            {
                "type": "hello",
                "agent": agent.public_view(),
                "presence": str(queues.presence(agent.id)),
                "assigned": assigned,
                "codes": wrap_up_codes(request.app, agent.queues),
                "ice_servers": getattr(request.app.get(BROWSER_CALLS), "ice_servers", []),
            }
        )
        async for message in ws:
            if message.type != WSMsgType.TEXT:
                continue
            frame: dict[str, Any] = {}
            try:
                frame = _parse(message.data)
                reply = await _handle(queues, agent, frame)
                if reply is not None:
                    # Closed meanwhile (a reload during the softphone's offer): its leg never
                    # connects, ends on its own, and the caller hears the music again.
                    with contextlib.suppress(ConnectionError, RuntimeError):
                        await desk.send(reply)
            except (BadFrame, BadSignal, NotAllowed, RoutingError) as exc:
                error = {"type": "error", "reason": str(exc), "refused": frame.get("type")}
                if isinstance(frame.get("conversation_id"), str):
                    error["conversation_id"] = frame["conversation_id"]
                with contextlib.suppress(ConnectionError, RuntimeError):
                    await desk.send(error)
    finally:
        request.app[_DESKS].discard(ws)
        queues.desk_closed(desk)
    return ws


async def _close_desks(app: web.Application) -> None:
    """At shutdown: open desks would hold it up for aiohttp's whole shutdown timeout."""
    for ws in list(app[_DESKS]):
        await ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutting down")


def _parse(data: str) -> dict[str, Any]:
    try:
        frame = json.loads(data)
    except ValueError:
        raise BadFrame("not JSON") from None
    if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
        raise BadFrame('a frame is a JSON object with a "type"')
    return frame


def _clean(text: str) -> str:
    return _CONTROL.sub("", text).strip()


def _field(frame: dict[str, Any], name: str, limit: int = 200) -> str:
    value = frame.get(name)
    if not isinstance(value, str) or not value.strip():
        raise BadFrame(f'"{name}" must be a non-empty string')
    if len(value) > limit:
        raise BadFrame(f'"{name}" is longer than {limit} characters')
    return _CONTROL.sub("", value).strip()


async def _handle(
    queues: QueueService, agent: AgentRecord, frame: dict[str, Any]
) -> dict[str, Any] | None:
    """Do what the frame asks; a frame to answer this very desk with, if any."""
    kind = frame["type"]
    if kind == "presence":
        state = _CHOSEN_PRESENCE.get(str(frame.get("state")))
        if state is None:
            raise BadFrame('"state" must be available, break or offline')
        await queues.set_presence(agent.id, state)
    elif kind == "accept":
        await queues.accept(agent.id, _field(frame, "conversation_id"))
    elif kind == "decline":
        await queues.decline(agent.id, _field(frame, "conversation_id"))
    elif kind == "send":
        text = _field(frame, "text", MAX_TEXT_CHARS)
        await queues.agent_says(agent.id, _field(frame, "conversation_id"), text)
    elif kind == "end":
        await queues.finish(
            agent.id, _field(frame, "conversation_id"), "the agent has ended the conversation"
        )
    elif kind == "wrap_up":
        notes = frame.get("notes", "")
        if not isinstance(notes, str) or len(notes) > MAX_TEXT_CHARS:
            raise BadFrame(f'"notes" must be text of at most {MAX_TEXT_CHARS} characters')
        await queues.wrap_up(
            agent.id,
            _field(frame, "conversation_id"),
            _field(frame, "code", 64),
            _clean(notes),
        )
    elif kind == "transfer":
        note = frame.get("note", "")
        if not isinstance(note, str) or len(note) > MAX_TEXT_CHARS:
            raise BadFrame(f'"note" must be text of at most {MAX_TEXT_CHARS} characters')
        await queues.transfer(
            agent.id, _field(frame, "conversation_id"), _field(frame, "to", 80), _clean(note)
        )
    elif kind == "audio_offer":
        conv_id = _field(frame, "conversation_id")
        answer = await queues.connect_audio(agent.id, conv_id, offer_sdp(frame))
        return {"type": "audio_answer", "conversation_id": conv_id, "sdp": answer}
    elif kind == "audio_candidate":
        queues.audio_candidate(agent.id, _field(frame, "conversation_id"), *ice_candidate(frame))
    else:
        raise BadFrame(f"unknown frame type {kind!r}")
    return None


@require_agent
async def conversation_card(request: web.Request, agent: AgentRecord) -> web.Response:
    """A conversation's card, for an agent who serves its queue (or holds it)."""
    conv_id = request.match_info["id"]
    conv = await request.app[CONVERSATIONS].get(conv_id)
    queue = (conv.handoff or {}).get("queue") if conv else None
    queues: QueueService = request.app[QUEUES]
    if conv is None or not (queue in agent.queues or queues.handles(agent.id, conv_id)):
        # The same answer whether it exists or not: no probing other queues' conversations.
        return json_error(404, f"no conversation {conv_id!r} in your queues")
    return web.json_response(await queues.card(conv, str(queue), None))


DESKTOP_SCRIPTS = ("agent.js", "agent-softphone.js", "outbox.js")


async def desktop_script(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if name not in DESKTOP_SCRIPTS:
        return json_error(404, f"no script {name!r}")
    return script(name)


@require_agent
async def transfer_targets(request: web.Request, agent: AgentRecord) -> web.Response:
    """Where this agent may transfer a conversation: queues, and colleagues signed in now."""
    return web.json_response(request.app[QUEUES].transfer_targets(agent.id))


def add_routes(app: web.Application) -> None:
    app[_DESKS] = set()
    app.on_shutdown.append(_close_desks)
    app.router.add_get("/agent/static/{name}", desktop_script)
    app.router.add_get("/agent/ws", desk_socket)
    app.router.add_get("/agent/api/conversations/{id}", conversation_card)
    app.router.add_get("/agent/api/transfer-targets", transfer_targets)
