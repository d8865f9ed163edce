"""One visitor's socket (`/chat/ws`): their conversation, on the chat or on a browser call.

The widget's chat and its Call button share one socket and one conversation. Pressing Call
moves the running conversation to the call at the step it stands on (the chat's run is
cancelled; its state was stored); when the visitor hangs up, or the call drops, it comes back
to the chat at the step the call left it on. A call placed before any chat starts a new
conversation. Nothing is asked twice: each run continues at the stored step.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import WSCloseCode, web

from ivr.channels.chat import ChatChannel
from ivr.channels.links import LinkRefused
from ivr.channels.voice.gateway import NoMediaWorker
from ivr.conversation import Role, Status
from ivr.conversation_service import LiveRun, UnknownFlow
from ivr.flow.channel import CustomerInput
from ivr.flow.engine import Stop
from ivr.flow.problems import FlowError
from ivr.store import StoreError
from ivr.web.continue_page import ENDED_REASON, UNAVAILABLE_REASON, history_of, refusal_for
from ivr.web.keys import BROWSER_CALLS, CONVERSATIONS, LINKS, METRICS, SETTINGS
from ivr.web.signalling import MAX_CANDIDATES, BadSignal, ice_candidate, offer_sdp

log = logging.getLogger("ivr.chat")

Send = Callable[[dict[str, Any]], Awaitable[None]]
RETURN_TIMEOUT = 10.0  # seconds for an ended call's conversation to be back in the chat


class BadMessage(ValueError):
    """A refused customer frame; the text is sent back as the error reason."""

    def __init__(self, reason: str, label: str) -> None:
        super().__init__(reason)
        self.label = label  # metric label


class Visitor:
    def __init__(self, app: web.Application, ws: web.WebSocketResponse, send: Send) -> None:
        self.app = app
        self.ws = ws
        self.send = send
        self.chat = ChatChannel(send, app[SETTINGS].chat.idle_timeout)
        self.live: LiveRun | None = None
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

    async def start_chat(self, frame: dict[str, Any]) -> None:
        if self.live is not None:
            raise BadMessage("this chat has already started", "malformed")
        flow = self._flow(frame)
        self._adopt(await self._start(self.chat, flow))
        await self.send({"type": "conversation", "id": self.live.conv.id})  # type: ignore[union-attr]

    async def continue_chat(self, frame: dict[str, Any]) -> None:
        """A continue link opened (`/c/<token>`): its conversation goes on in this chat, at its
        stored step, with what the customer said and proved. The link is used up here."""
        if self.live is not None:
            raise BadMessage("this chat has already started", "malformed")
        token = frame.get("token")
        if not isinstance(token, str):
            raise BadMessage('"token" must be a string', "malformed")
        links, conversations = self.app.get(LINKS), self.app[CONVERSATIONS]
        if links is None:
            raise BadMessage(UNAVAILABLE_REASON, "link")
        try:
            conv_id = await links.check(token)
            refused = refusal_for(await conversations.get(conv_id))
            if refused is not None:
                raise BadMessage(refused, "link")
            await links.redeem(token)
            conv = await conversations.get(conv_id)
        except LinkRefused as exc:
            raise BadMessage(str(exc), "link") from None
        except StoreError as exc:
            log.error("a continue link could not be redeemed: %s", exc)
            raise BadMessage(UNAVAILABLE_REASON, "link") from None
        if conv is None:
            raise BadMessage(ENDED_REASON, "link")
        await self.send({"type": "conversation", "id": conv_id})
        await self.send({"type": "history", "turns": history_of(conv)})
        try:
            live = await conversations.resume(conv_id, self.chat)
        except (KeyError, ValueError):  # it ended (or went) since it was checked
            raise BadMessage(ENDED_REASON, "link") from None
        # Before the run's first step (it has not run yet): stored with its first save.
        live.conv.add_turn(self.chat.name, Role.SYSTEM, "the customer opened a continue link")
        self._adopt(live)

    def deliver(self, answer: CustomerInput) -> None:
        if self.call is not None:
            raise BadMessage(
                "you are in a call: answer by voice or with the keypad, or hang up to type",
                "in_call",
            )
        live = self.live
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
                self._adopt(await self._start(channel, flow))
                await self.send({"type": "conversation", "id": self.live.conv.id})  # type: ignore[union-attr]
            else:
                self._moving = live
                self._adopt(await self.app[CONVERSATIONS].resume(live.conv.id, channel))
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
            self._spawn(self._finish(None, cancelled=False, on_call=True))

    def _held_by_queue(self, live: LiveRun) -> bool:
        queues = self.app[CONVERSATIONS].services.queues
        return (
            live.conv.status in (Status.QUEUED, Status.WITH_AGENT)
            and queues is not None
            and queues.holds(live.conv.id)
        )

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

    def _adopt(self, live: LiveRun) -> None:
        self.live = live
        live.task.add_done_callback(functools.partial(self._run_over, live))

    def _run_over(self, live: LiveRun, task: asyncio.Task[Stop]) -> None:
        if live is self._moving:  # we moved it to the call ourselves: nothing is over
            self._moving = None
            return
        on_call = live.channel is not self.chat
        if on_call and not task.cancelled() and self._held_by_queue(live):
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
            return  # the customer waits here for an agent (ivr.routing), who answers here
        stop = None if task.cancelled() or task.exception() else task.result()
        self._spawn(self._finish(stop, cancelled=task.cancelled(), on_call=on_call))

    async def _back_to_chat(self, live: LiveRun) -> None:
        try:
            self._adopt(await self.app[CONVERSATIONS].resume(live.conv.id, self.chat))
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

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        """The socket closed: hang up the call, let the run store itself and stop."""
        self.closed = True
        self.chat.close()
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
