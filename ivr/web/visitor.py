"""One visitor's socket (`/chat/ws`): their conversation, on the chat or on a browser call.

The widget's chat and its Call button share one socket and one conversation. Pressing Call
moves the running conversation to the call at the step it stands on (the chat's run is
cancelled; its state was stored); when the visitor hangs up, or the call drops, it comes back
to the chat at the step the call left it on. A call placed before any chat starts a new
conversation. Nothing is asked twice: each run continues at the stored step.

A conversation can also go on here from elsewhere (a continue link, or a resume handle after a
reload), and a chat a queue holds outlives its socket for a grace period: that is chat
continuity (ivr.web.chat_continuity), which each Visitor owns one of (`continuity`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable
from typing import Any

from aiohttp import WSCloseCode, web

from ivr.channels.chat import ChatChannel
from ivr.channels.voice.gateway import NoMediaWorker
from ivr.conversation import Status
from ivr.conversation_service import LiveRun, UnknownFlow
from ivr.flow.channel import CustomerInput
from ivr.flow.engine import Stop
from ivr.flow.problems import FlowError
from ivr.web.chat_continuity import ChatLink, Continuity, Send, held_by_queue
from ivr.web.keys import BROWSER_CALLS, CONVERSATIONS, METRICS, SETTINGS
from ivr.web.refusals import BadMessage
from ivr.web.signalling import MAX_CANDIDATES, BadSignal, ice_candidate, offer_sdp

log = logging.getLogger("ivr.chat")

RETURN_TIMEOUT = 10.0  # seconds for an ended call's conversation to be back in the chat


class Visitor:
    def __init__(self, app: web.Application, ws: web.WebSocketResponse, send: Send) -> None:
        self.app = app
        self.ws = ws
        self.send = send
        # The chat and its link move to another socket when it resumes a queue-held chat.
        self.link = ChatLink(send)
        self.chat = ChatChannel(self.link.send, app[SETTINGS].chat.idle_timeout)
        self.live: LiveRun | None = None
        self.continuity = Continuity(self)  # links, resumes, the registry, the grace period
        self.call: Any = None  # the CallHandle of the browser call in progress
        self._moving: LiveRun | None = None  # a run we cancelled to continue it elsewhere
        self._returning: asyncio.Task[Any] | None = None  # an ended call's run going back to chat
        self._queued_call: Any = None  # a call the queue service holds (for an agent)
        self._candidates = 0  # ICE candidates the browser trickled for the current call
        self._tasks: set[asyncio.Task[Any]] = set()
        self.closed = False

    @property
    def browser_calls(self) -> Any:
        return self.app.get(BROWSER_CALLS)

    def hello(self) -> dict[str, Any]:
        calls = self.browser_calls
        available = calls is not None and calls.available
        return {
            "type": "hello",
            "call": available,
            "ice_servers": calls.ice_servers if available else [],
        }

    # ---------------------------------------------------------------- chat

    @property
    def started(self) -> bool:
        return self.live is not None or self.continuity.held is not None

    def _not_started(self) -> None:
        if self.started:
            raise BadMessage("this chat has already started", "malformed")

    async def start_chat(self, frame: dict[str, Any]) -> None:
        self._not_started()
        flow = self._flow(frame)
        self.adopt(await self._start(self.chat, flow))
        await self.continuity.announce(self.live.conv.id)  # type: ignore[union-attr]

    async def continue_chat(self, frame: dict[str, Any]) -> None:
        """A continue link opened (`/c/<token>`): see Continuity.continue_chat."""
        self._not_started()
        await self.continuity.continue_chat(frame)

    async def resume_chat(self, frame: dict[str, Any]) -> None:
        """A page back with the handle of its conversation: see Continuity.resume_chat."""
        self._not_started()
        await self.continuity.resume_chat(frame)

    def deliver(self, answer: CustomerInput) -> None:
        if self.call is not None:
            raise BadMessage(
                "you are in a call: answer by voice or with the keypad, or hang up to type",
                "in_call",
            )
        live = self.live
        if (
            live is None and self.continuity.held is not None
        ):  # back in line after a restart: no run
            if not self.continuity.held_here():
                raise BadMessage("this conversation has ended", "run_over")
            if not self.chat.deliver(answer):
                raise BadMessage("too many messages at once; wait for the answer", "flood")
            return
        if live is None:
            raise BadMessage('send {"type": "start"} first', "not_started")
        returning = self._returning is not None and not self._returning.done()
        with_people = live.conv.status in (Status.QUEUED, Status.WITH_AGENT)
        if with_people and live.channel is not self.chat:
            raise BadMessage(_why_no_bot(live), "run_over")  # waiting on a call, not here
        if not (returning or with_people) and (
            live.task.done() or live.conv.status is not Status.ACTIVE
        ):
            raise BadMessage(_why_no_bot(live), "run_over")
        # Waiting for (or talking to) an agent, the queue service reads the chat's messages.
        # Back from a call, the chat's run may not have asked yet: the message waits for it.
        if not self.chat.deliver(answer):
            raise BadMessage("too many messages at once; wait for the answer", "flood")

    # ---------------------------------------------------------------- calls

    async def place_call(self, frame: dict[str, Any]) -> None:
        """Answer the browser's offer and run the conversation on the call. Every refusal is
        a `call_error`: the widget ends the call it was setting up, and the chat goes on."""
        try:
            await self._place_call(frame)
        except BadMessage as exc:
            self.app[METRICS].chat_errors.labels(exc.label).inc()
            with contextlib.suppress(ConnectionError, RuntimeError):  # the socket may be closing
                await self.send({"type": "call_error", "reason": str(exc)})

    async def _place_call(self, frame: dict[str, Any]) -> None:
        if self.call is not None:
            raise BadMessage("a call is already in progress", "in_call")
        try:
            sdp = offer_sdp(frame)
        except BadSignal as exc:
            raise BadMessage(str(exc), exc.label) from None
        calls = self.browser_calls
        if calls is None or not calls.available:
            raise BadMessage("browser calls are not available on this server; chat works", "call")
        if self._returning is not None:  # the last call is still handing back to the chat
            try:
                await asyncio.wait_for(asyncio.shield(self._returning), RETURN_TIMEOUT)
            except TimeoutError:
                raise BadMessage("the last call is still ending; try again", "call") from None
        flow = self._flow(frame) if self.live is None else None  # before bothering a worker
        self._check_continuable()
        try:
            handle, answer = await calls.place(sdp)
        except NoMediaWorker as exc:
            raise BadMessage(f"{exc}; chat works", "call") from None
        except ValueError as exc:
            raise BadMessage(f"the call was refused: {exc}", "call") from None
        except TimeoutError:
            raise BadMessage(
                "no media worker answered the call in time; chat works", "call"
            ) from None
        try:
            if self.closed or self.ws.closed:  # the visitor left while the worker answered
                raise ConnectionResetError("the visitor left")
            self._check_continuable()  # the chat may have ended meanwhile
            live = self.live
            self.call = handle
            self._candidates = 0
            handle.observers.append(functools.partial(self._on_call_event, handle))
            channel = calls.channel(handle, self.send)
            await self.send({"type": "call_answer", "sdp": answer})
            if live is None:
                assert flow is not None
                self.adopt(await self._start(channel, flow))
                await self.continuity.announce(self.live.conv.id)  # type: ignore[union-attr]
            else:
                self._moving = live
                self.adopt(await self.app[CONVERSATIONS].resume(live.conv.id, channel))
        except (BadMessage, KeyError, ValueError, ConnectionError) as exc:
            handle.send("hangup", now=True)
            self.call = None
            self._moving = None
            if isinstance(exc, BadMessage):
                raise
            if not isinstance(exc, ConnectionError):
                raise BadMessage(
                    f"the call cannot continue this conversation: {exc}", "call"
                ) from None

    def _check_continuable(self) -> None:
        if self.live is None and self.continuity.held is not None:
            raise BadMessage(
                "you are waiting for (or talking to) an agent here: type to them", "run_over"
            )
        live = self.live
        if live is not None and (live.task.done() or live.conv.status is not Status.ACTIVE):
            raise BadMessage(_why_no_bot(live), "run_over")

    def _on_call_event(self, handle: Any, event: dict[str, Any]) -> None:
        if event.get("event") != "ended":
            return
        if self.call is handle:
            self.call = None  # typing is the visitor's again, even while the run winds down
        if handle is self._queued_call:
            # The call held in a queue (or with an agent) is over, the visitor's hang-up or the
            # agent's End: so is the conversation (the queue service counts what it was).
            self._queued_call = None
            self.spawn(self._finish(None, cancelled=False, on_call=True))

    def add_candidate(self, frame: dict[str, Any]) -> None:
        """One of the browser's ICE candidates, trickled after its offer."""
        if self.call is None:
            raise BadMessage("there is no call for this candidate", "no_call")
        try:
            candidate, mid, index = ice_candidate(frame)
        except BadSignal as exc:
            raise BadMessage(str(exc), exc.label) from None
        self._candidates += 1
        if self._candidates > MAX_CANDIDATES:
            raise BadMessage(f"more than {MAX_CANDIDATES} ICE candidates for one call", "flood")
        self.call.send("candidate", candidate=candidate, sdpMid=mid, sdpMLineIndex=index)

    def hang_up(self) -> None:
        if self.call is None:
            raise BadMessage("there is no call to hang up", "no_call")
        self.call.send("hangup", now=True)  # the call's run ends, then the chat resumes

    # ---------------------------------------------------------------- runs

    def _flow(self, frame: dict[str, Any]) -> str:
        flows = self.app[SETTINGS].flows
        flow = frame.get("flow") or flows.chat_flow
        if not isinstance(flow, str):
            raise BadMessage('"flow" must be a string', "malformed")
        if not flows.chat_allowed(flow):
            raise BadMessage(f"no flow named {flow!r} for chat", "unknown_flow")
        return flow

    async def _start(self, channel: Any, flow: str) -> LiveRun:
        try:
            live = await self.app[CONVERSATIONS].start(channel, flow)
        except UnknownFlow as exc:
            raise BadMessage(str(exc), "unknown_flow") from None
        except FlowError:
            raise BadMessage("no valid flow is loaded; see /healthz", "no_flows") from None
        self.app[METRICS].conversations_started.labels(live.conv.flow, channel.name).inc()
        return live

    def adopt(self, live: LiveRun) -> None:
        self.live = live
        live.task.add_done_callback(functools.partial(self._run_over, live))

    def _run_over(self, live: LiveRun, task: asyncio.Task[Stop]) -> None:
        if live is self._moving:  # we moved it to the call ourselves: nothing is over
            self._moving = None
            return
        on_call = live.channel is not self.chat
        if on_call and not task.cancelled() and held_by_queue(self.app, live):
            # The caller waits on the call for an agent, who is bridged to it; the call's end
            # (whoever ends it) ends the conversation here too.
            self._queued_call = getattr(live.channel, "call", None)
            if getattr(self._queued_call, "ended", None) is not None:  # ended already
                self._on_call_event(self._queued_call, {"event": "ended"})
            return
        if on_call:
            call = getattr(live.channel, "call", None)
            if call is not None:
                call.send("hangup")  # after what is still queued; nothing when it has ended
            if self.call is call:
                self.call = None
        if self.closed or self.live is not live:
            return
        if on_call and not task.cancelled() and live.conv.status is Status.ACTIVE:
            # The visitor hung up or the call dropped mid-flow: back to the chat, same step.
            self._returning = asyncio.ensure_future(self._back_to_chat(live))
            self._tasks.add(self._returning)
            self._returning.add_done_callback(self._tasks.discard)
            return
        if live.conv.status in (Status.QUEUED, Status.WITH_AGENT) and not task.cancelled():
            if held_by_queue(self.app, live):
                self.continuity.keep(live.conv.id)
            return  # the customer waits here for an agent (ivr.routing), who answers here
        stop = None if task.cancelled() or task.exception() else task.result()
        self.spawn(self._finish(stop, cancelled=task.cancelled(), on_call=on_call))

    async def _back_to_chat(self, live: LiveRun) -> None:
        try:
            self.adopt(await self.app[CONVERSATIONS].resume(live.conv.id, self.chat))
        except Exception as exc:  # ended meanwhile, or the store is out: say so, close
            log.warning("conversation %s cannot go back to the chat: %s", live.conv.id, exc)
            with contextlib.suppress(ConnectionError, RuntimeError):
                await self.send({"type": "end", "reason": "the conversation could not go on"})
            await self._finish(None, cancelled=False, on_call=True)
        finally:
            self._returning = None

    async def _finish(self, stop: Stop | None, *, cancelled: bool, on_call: bool) -> None:
        """The bot's part is over: close the socket (a chat already said so in an `end`)."""
        if on_call and stop is not None:
            with contextlib.suppress(ConnectionError, RuntimeError):
                await self.send({"type": "end", "reason": stop.reason})
        reason = b"continued on another channel" if cancelled else b"conversation over"
        if not self.ws.closed:
            await self.ws.close(code=WSCloseCode.OK, message=reason)

    def spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self, *, leaving: bool = True) -> None:
        """The socket closed: hang up the call, let the run store itself and stop. A chat that a
        queue holds may outlive the socket unless the customer is `leaving` (Continuity.close)."""
        self.closed = True
        self.continuity.close(leaving=leaving)
        if self.call is not None:
            self.call.send("hangup", now=True)
        live = self.live
        if live is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(asyncio.shield(live.task), 5)


def _why_no_bot(live: LiveRun) -> str:
    if live.conv.status in (Status.QUEUED, Status.WITH_AGENT):
        if isinstance(live.channel, ChatChannel):
            return "you are waiting for (or talking to) an agent here: type to them"
        return "you are waiting for (or talking to) an agent on the call"
    return "this conversation has ended"
