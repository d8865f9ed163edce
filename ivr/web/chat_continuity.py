"""Chat continuity: a conversation going on on a new socket of the chat (`/chat/ws`).

Two ways in, both instead of a `start`: a continue link (`/c/<token>`, used up here) and a resume
handle. Every `conversation` frame carries a resume handle (`ivr.channels.links.ResumeHandles`):
a page that reloads, or whose socket dropped, sends it as `{"type": "resume"}` on its new socket
and the conversation goes on there. A bot's conversation continues at its step (the pending
question is asked again); one a queue holds (waiting for an agent, or with one) is never run
again: its chat channel, which the queue reads and writes, moves to the new socket. So that a
reload keeps the place in line, a socket that closes without the customer saying so (a close
code other than 1000: a reload or a closed tab sends 1001, a lost network none) leaves that
channel open for GRACE_SECONDS before the queue hears the customer left; what is said meanwhile
is on the timeline, which the resumed page is shown.

Each socket's session (ivr.web.visitor.Visitor) owns a `Continuity`, which keeps that socket's
side of it: the queue-held conversation on its chat, the app-wide registry entry through which
another socket's resume finds that chat, and the grace period. It reaches the session only
through `Session`, so this module does not import the visitor's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from aiohttp import WSCloseCode, web

from ivr.channels.chat import ChatChannel
from ivr.channels.links import HandleRefused, LinkRefused, ResumeHandles
from ivr.conversation import Conversation, Role, Status
from ivr.conversation_service import LiveRun
from ivr.store import StoreError
from ivr.web.continue_page import (
    BUSY_REASON,
    CONTINUABLE,
    ENDED_REASON,
    UNAVAILABLE_REASON,
    history_of,
    refusal_for,
)
from ivr.web.keys import CONVERSATIONS, LINKS, SETTINGS
from ivr.web.refusals import BadMessage

log = logging.getLogger("ivr.chat")

Send = Callable[[dict[str, Any]], Awaitable[None]]
# Seconds a chat that a queue holds outlives a socket that closed without the customer leaving
# (a reload, a lost network): a resume within them keeps the place in line (or the agent).
GRACE_SECONDS = 30.0
RESUME_REFUSED = "resume_refused"  # the `kind` of the error frame refusing a resume


def refused_resume(reason: str) -> BadMessage:
    return BadMessage(reason, "resume", RESUME_REFUSED)


class ChatLink:
    """What a visitor's chat channel sends through: the socket it is on now. A chat that a queue
    holds (`held`) outlives its socket: between two sockets (`target` None) what the queue
    sends is dropped (notices and the agent's messages are on the timeline anyway), and a send
    that fails is not the customer leaving: the socket's close decides (see Continuity.close)."""

    def __init__(self, send: Send) -> None:
        self.target: Send | None = send
        self.held = False
        self._kept_back: list[dict[str, Any]] | None = None

    def hold_back(self) -> None:
        """Keep what the queue sends until `let_through` (a resume says where things stand
        first)."""
        self._kept_back = []

    async def let_through(self) -> None:
        kept, self._kept_back = self._kept_back or [], None
        for message in kept:
            await self.send(message)

    async def send(self, message: dict[str, Any]) -> None:
        if self._kept_back is not None:
            self._kept_back.append(message)
            return
        target = self.target
        if target is None:
            return
        try:
            await target(message)
        except (ConnectionError, RuntimeError):
            if not self.held:
                raise


# Conversation id -> the Continuity of the socket whose chat a queue holds: that socket may be
# gone (a grace period runs) or still open (a reload noticed late). A resume takes the chat.
_HELD_CHATS = web.AppKey("held_chats", dict)


def add_resumes(app: web.Application) -> None:
    app[_HELD_CHATS] = {}

    async def no_more_grace(app: web.Application) -> None:
        for continuity in list(app[_HELD_CHATS].values()):
            continuity.cancel_grace()

    app.on_cleanup.append(no_more_grace)


def held_by_queue(app: web.Application, live: LiveRun) -> bool:
    """Whether a queue holds the run's conversation (waiting for an agent, or with one)."""
    queues = app[CONVERSATIONS].services.queues
    return (
        live.conv.status in (Status.QUEUED, Status.WITH_AGENT)
        and queues is not None
        and queues.holds(live.conv.id)
    )


class Session(Protocol):
    """What continuity needs of a socket's session (ivr.web.visitor.Visitor). Taking a held
    chat swaps `link`, `chat` and `live` between two sessions."""

    app: web.Application
    ws: web.WebSocketResponse
    send: Send
    link: ChatLink
    chat: ChatChannel
    live: LiveRun | None
    closed: bool

    def adopt(self, live: LiveRun) -> None: ...

    def spawn(self, coro: Awaitable[Any]) -> None: ...


class Continuity:
    """One socket's side of chat continuity; see the module's docstring."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.held: str | None = None  # the conversation a queue holds on this chat
        self._grace: asyncio.TimerHandle | None = None  # the socket's gone: the chat soon too

    @property
    def app(self) -> web.Application:
        return self.session.app

    # ---------------------------------------------------------------- ways in

    async def continue_chat(self, frame: dict[str, Any]) -> None:
        """A continue link opened (`/c/<token>`): its conversation goes on in this (not yet
        started) chat, at its stored step, with what the customer said and proved. The link is
        used up here."""
        token = _token(frame)
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
        # It ended (or went) since it was checked:
        ended = BadMessage(ENDED_REASON, "link")
        await self._go_on_here(conv, ended, "the customer opened a continue link")

    async def resume_chat(self, frame: dict[str, Any]) -> None:
        """A page back with the handle of its conversation (a reload, a new socket after a
        dropped one): the conversation goes on in this (not yet started) chat, where it stood.
        Every refusal is an error frame of kind `resume_refused` that names nothing: the page
        starts afresh."""
        token = _token(frame)
        handles = self._handles()
        if handles is None:
            raise refused_resume(UNAVAILABLE_REASON)
        conversations = self.app[CONVERSATIONS]
        try:
            conv_id = handles.open(token)
            conv = await conversations.get(conv_id)
        except HandleRefused as exc:
            raise refused_resume(str(exc)) from None
        except StoreError as exc:
            log.error("a chat could not be resumed: %s", exc)
            raise refused_resume(UNAVAILABLE_REASON) from None
        if conv is None or conv.status is Status.ENDED:
            raise refused_resume(ENDED_REASON)
        if conv.status in (Status.QUEUED, Status.WITH_AGENT):
            await self._back_with_people(conv)
            return
        if conv.status not in CONTINUABLE:  # transferred out of this server
            raise refused_resume(BUSY_REASON)
        # It ended since it was read:
        ended = refused_resume(ENDED_REASON)
        await self._go_on_here(conv, ended, "the customer came back to the chat")

    async def _go_on_here(self, conv: Conversation, ended: BadMessage, note: str) -> None:
        """A bot's conversation continues on this socket's chat at its stored step (the pending
        question is asked again), after the page is shown its last turns."""
        session = self.session
        await self.announce(conv.id)
        await session.send({"type": "history", "turns": history_of(conv)})
        try:
            live = await self.app[CONVERSATIONS].resume(conv.id, session.chat)
        except (KeyError, ValueError):
            raise ended from None
        # Before the run's first step (it has not run yet): stored with its first save.
        live.conv.add_turn(session.chat.name, Role.SYSTEM, note)
        session.adopt(live)

    async def announce(self, conv_id: str) -> None:
        """The `conversation` frame, with a fresh resume handle (valid [chat] idle_timeout)."""
        frame: dict[str, Any] = {"type": "conversation", "id": conv_id}
        handles = self._handles()
        if handles is not None:
            frame["resume"] = handles.make(conv_id)
        await self.session.send(frame)

    def _handles(self) -> ResumeHandles | None:
        links = self.app.get(LINKS)
        if links is None:  # not started (yet)
            return None
        return links.resume_handles(self.app[SETTINGS].chat.idle_timeout)

    # ---------------------------------------------------------------- a chat a queue holds

    async def _back_with_people(self, conv: Conversation) -> None:
        """Resumed while a queue holds the conversation: never the flow again (that would queue
        it anew, last in line). The chat the queue reads and writes comes to this socket, from
        the one that had it; or, waiting without a line (after a restart), this chat becomes
        its line. Either way the place in line (or the agent) is kept."""
        conv_id = conv.id
        session = self.session
        queues = self.app[CONVERSATIONS].services.queues
        holder = self.app[_HELD_CHATS].get(conv_id)
        if holder is not None and holder is not self and holder.held_here() == conv_id:
            await self._take_chat_from(holder, conv_id)
            conv = session.live.conv if session.live is not None else conv  # the queue's own
        elif queues is None or not queues.reattach(conv_id, session.chat):
            raise refused_resume(BUSY_REASON)  # held elsewhere (another node, a call)
        else:
            session.link.hold_back()  # before the queue's first notice on its new line
            self.keep(conv_id)
        try:
            await self._where_it_stands(conv)
        finally:
            await session.link.let_through()

    async def _where_it_stands(self, conv: Conversation) -> None:
        """The page is shown the conversation, its last turns, and what it waits for (the
        frames it had when it got there)."""
        send = self.session.send
        handoff = conv.handoff or {}
        await self.announce(conv.id)
        await send({"type": "history", "turns": history_of(conv)})
        if conv.status is Status.WITH_AGENT:
            name = (handoff.get("agent") or {}).get("name") or "An agent"
            await send({"type": "agent_joined", "name": name})
        else:
            await send({"type": "transfer", "queue": handoff.get("queue"), "sip": None})
            await send({"type": "notice", "text": "You are back, and still in your place in line."})

    async def _take_chat_from(self, holder: Continuity, conv_id: str) -> None:
        """The held chat (its inbox, which the queue reads, and its link) moves to this socket;
        the holder gets a fresh chat of its own, and its socket, if still open, is closed."""
        mine, theirs = self.session, holder.session
        live = theirs.live
        if live is not None and not live.task.done():  # the transfer step is finishing
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(asyncio.shield(live.task), 5)
        holder.cancel_grace()
        mine.link, mine.chat, mine.live = theirs.link, theirs.chat, theirs.live
        theirs.link = ChatLink(theirs.send)
        theirs.chat = ChatChannel(theirs.link.send, self.app[SETTINGS].chat.idle_timeout)
        theirs.live, holder.held = None, None
        mine.link.hold_back()  # until the page knows where it stands
        mine.link.target = mine.send
        self.keep(conv_id)
        if not theirs.closed and not theirs.ws.closed:
            message = b"continued in another window"
            mine.spawn(theirs.ws.close(code=WSCloseCode.OK, message=message))

    def keep(self, conv_id: str) -> None:
        """A queue holds the conversation on this chat: a resume may take it from here."""
        self.held = conv_id
        self.session.link.held = True
        self.app[_HELD_CHATS][conv_id] = self

    def _forget(self) -> None:
        held = self.app[_HELD_CHATS]
        if self.held is not None and held.get(self.held) is self:
            del held[self.held]

    def held_here(self) -> str | None:
        """The conversation a queue holds on this chat (waiting, or with an agent), if any."""
        live = self.session.live
        if live is not None and live.channel is self.session.chat and held_by_queue(self.app, live):
            return live.conv.id
        queues = self.app[CONVERSATIONS].services.queues
        if self.held is not None and queues is not None and queues.holds(self.held):
            return self.held
        return None

    # ---------------------------------------------------------------- the grace period

    def close(self, *, leaving: bool) -> None:
        """The socket closed: a chat that a queue holds stays open GRACE_SECONDS more unless the
        customer `leaving` said so (closed the socket with 1000): a reload comes back within
        them (`resume`) and keeps its place; after them the queue hears the customer left
        (abandoned, or "the customer left" on the agent's desk), as at once for a customer who
        leaves. Any other chat closes now."""
        held = self.held_here()
        if held is not None and not leaving:
            self.session.link.target = None
            self.keep(held)
            self._grace = asyncio.get_running_loop().call_later(GRACE_SECONDS, self._grace_over)
        else:
            self._forget()
            self.session.chat.close()

    def _grace_over(self) -> None:
        """Nobody came back: the customer left (the queue's readers get ChannelClosed)."""
        self._grace = None
        self._forget()
        self.session.chat.close()

    def cancel_grace(self) -> None:
        if self._grace is not None:
            self._grace.cancel()
            self._grace = None


def _token(frame: dict[str, Any]) -> str:
    token = frame.get("token")
    if not isinstance(token, str):
        raise BadMessage('"token" must be a string', "malformed")
    return token
