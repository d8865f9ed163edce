"""SMS conversations: what happens to a received text, and threads the bot opens itself.

A received text is stored first (`receive`; a gateway's retry of the same message id is
recognised and dropped), the gateway is answered, and then the text is handled, in order per
number:
- an opt-out word (STOP...) records the opt-out, closes the number's thread and confirms; nothing
  else is sent to that number until an opt-in word (START); texts in between are ignored;
- a number with a live thread: the text goes to its flow (or to the agent) as the reply;
- a number whose thread's conversation is stored (the server restarted, or the thread went idle):
  that conversation resumes at its step, the text answering the question it stands at;
- else a new conversation starts with `[sms] flow`, the text as its opening.

A conversation escalated from another channel (`ivr.channels.sms.handoff`) has its number's
thread bound to it: the first text after the escalation is its opening at the resume step.
Texts received while the server was down are in the store (`unhandled`) and handled at start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from typing import Any, Protocol

from ivr.channels.sms.channel import SmsChannel
from ivr.channels.sms.outbox import Outbox
from ivr.config import SmsSettings
from ivr.conversation import Conversation, Role, Status
from ivr.conversation_service import ConversationService, LiveRun, UnknownFlow
from ivr.flow.problems import FlowError
from ivr.store.database import StoreError
from ivr.store.sms import IncomingText, SmsStore

log = logging.getLogger("ivr.sms")


class QueueLines(Protocol):
    """What the SMS threads need of the queue service (`ivr.routing.service.QueueService`)."""

    def holds(self, conversation_id: str) -> bool: ...

    def reattach(self, conversation_id: str, line: SmsChannel) -> bool:
        """Give a conversation waiting without a line (since a restart) this one."""
        ...


OPTED_OUT = "You will get no more messages from us. Reply START to get them again."
OPTED_IN = "You will get our messages again. Reply STOP to stop them."


class SmsConversations:
    def __init__(
        self,
        settings: SmsSettings,
        store: SmsStore,
        outbox: Outbox,
        conversations: ConversationService,
        holds: QueueLines | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.outbox = outbox
        self.conversations = conversations
        self.holds = holds
        self._threads: dict[str, SmsChannel] = {}  # number -> its live thread
        self._locks: dict[str, asyncio.Lock] = {}  # per number, while it has texts to handle
        self._pending: dict[str, int] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self.handled_count = 0  # texts handled since start (bench)
        self._closing = False

    # ------------------------------------------------------------------ texts in

    async def receive(self, key: str, from_number: str, to_number: str, text: str) -> bool:
        """Store a received text and have it handled; False for a repeat of one received."""
        text = text[: self.settings.max_text_chars]
        if not text.strip():  # a picture message without words: nothing to answer
            log.info("text %s from %s is empty: ignored", key, from_number)
            return False
        if not await self.store.receive(key, from_number, to_number, text):
            log.info("text %s from %s received before: dropped", key, from_number)
            return False
        self._spawn(self._handle(IncomingText(key, from_number, to_number, text, 0.0)))
        return True

    async def start(self) -> None:
        """Handle what was received but not handled before the last stop."""
        for incoming in await self.store.unhandled():
            self._spawn(self._handle(incoming))

    async def _handle(self, incoming: IncomingText) -> None:
        number = incoming.from_number
        lock = self._locks.setdefault(number, asyncio.Lock())
        self._pending[number] = self._pending.get(number, 0) + 1
        try:
            async with lock:  # FIFO: a number's texts are handled in the order they came
                conversation_id = await self._take(number, incoming.text)
                await self.store.handled(incoming.key, conversation_id)
                self.handled_count += 1
        except StoreError as exc:  # stays `new` in the inbox: handled at the next start
            log.error("text %s from %s not handled: %s", incoming.key, number, exc)
        except (UnknownFlow, FlowError) as exc:  # [sms] flow is not there: nobody can answer
            log.error("text from %s: no flow to start: %s", number, exc)
            with contextlib.suppress(StoreError):
                await self.store.handled(incoming.key, None)
        finally:
            self._pending[number] -= 1
            if not self._pending[number]:
                del self._pending[number], self._locks[number]

    async def _take(self, number: str, text: str) -> str | None:
        """Hand the text to whoever it is for; the conversation it went to, if any."""
        word = text.strip().upper()
        if word in self.settings.words("out"):
            await self.store.opt_out(number)
            thread = self._threads.pop(number, None)
            if thread is not None:
                thread.close()
            await self.store.unbind(number)
            await self.outbox.send(number, OPTED_OUT, even_if_opted_out=True)
            log.info("%s opted out of texts", number)
            return thread.conv.id if thread and thread.conv else None
        if word in self.settings.words("in"):
            await self.store.opt_in(number)
            await self.outbox.send(number, OPTED_IN)
            return None
        if await self.store.opted_out(number):
            log.info("text from %s, who opted out: ignored", number)
            return None
        thread = self._threads.get(number)
        if thread is not None and thread.finished:  # ended by the flow or by an agent
            del self._threads[number]
            thread = None
        if thread is not None and thread.conv is not None:
            if not thread.deliver(text):
                log.warning("text from %s dropped: %d replies already wait", number, 64)
            return thread.conv.id
        stored_id = await self.store.thread(number)
        if stored_id is not None:
            resumed = await self._resume(number, stored_id, text)
            if resumed is not None:
                return resumed
        channel = self._channel(number, opening=text)
        live = await self.conversations.start(channel, self.settings.flow, {"phone": number})
        return await self._opened(number, channel, live)

    async def _resume(self, number: str, conversation_id: str, text: str) -> str | None:
        conv = await self.conversations.get(conversation_id)
        if conv is None or conv.status is Status.ENDED:
            await self.store.unbind(number, conversation_id)
            return None
        if conv.status in (Status.QUEUED, Status.WITH_AGENT):
            # Waiting for (or with) a person since before a restart: the text goes to the
            # queue's line, never to the flow (which would queue them again, last in line).
            channel = self._channel(number)
            channel.conv = conv
            if self.holds is None or not self.holds.reattach(conversation_id, channel):
                return None
            self._threads[number] = channel
            channel.deliver(text)
            return conversation_id
        last_bot = next((t for t in reversed(conv.timeline) if t.role is Role.BOT), None)
        if last_bot is not None and last_bot.channel == "sms" and conv.status is Status.ACTIVE:
            # The reply to the question the customer has on their phone: not sent again.
            channel = self._channel(number, replying=True)
            channel.deliver(text)
        else:  # the first text since an escalation, or since another channel had it
            channel = self._channel(number, opening=text)
        try:
            live = await self.conversations.resume(conversation_id, channel)
        except (KeyError, ValueError):
            await self.store.unbind(number, conversation_id)
            return None
        return await self._opened(number, channel, live)

    async def bind(self, number: str, conversation_id: str) -> None:
        """The number's next text is for `conversation_id` (an escalation's link was sent): a
        live thread of another conversation on that number is closed."""
        thread = self._threads.get(number)
        if thread is not None and (thread.conv is None or thread.conv.id != conversation_id):
            del self._threads[number]
            thread.close()
        await self.store.bind(number, conversation_id)

    # ------------------------------------------------------------------ a queue's line

    async def waiting_line(self, number: str, conv: Conversation, intro: str) -> SmsChannel:
        """The number's thread as the line of `conv`, waiting in a queue (a caller who chose to
        go on by text): `intro` is sent, and their replies go to the agent's desk."""
        channel = self._channel(number)
        channel.conv = conv
        previous = self._threads.get(number)
        if previous is not None:
            previous.close()
        self._threads[number] = channel
        await self.store.bind(number, conv.id)
        await self.outbox.send(number, intro, conv.id)
        conv.add_turn(channel.name, Role.BOT, intro, kind="notice")
        return channel

    # ------------------------------------------------------------------ threads

    def _channel(self, number: str, **how: Any) -> SmsChannel:
        async def send(text: str) -> None:
            await self.outbox.send(number, text, channel.conv.id if channel.conv else None)

        channel = SmsChannel(number, send, self.settings.idle_hours * 3600, **how)
        return channel

    async def _opened(self, number: str, channel: SmsChannel, live: LiveRun) -> str:
        channel.conv = live.conv
        previous = self._threads.get(number)
        if previous is not None and previous is not channel:
            previous.close()
        self._threads[number] = channel
        await self.store.bind(number, live.conv.id)
        live.task.add_done_callback(lambda _task: self._spawn(self._run_over(number, channel)))
        return live.conv.id

    async def _run_over(self, number: str, channel: SmsChannel) -> None:
        """The flow's run on this thread stopped. An ended conversation closes the thread; one
        waiting for (or with) an agent keeps its live channel; else the next text resumes it."""
        conv = channel.conv
        if conv is None or self._threads.get(number) is not channel:
            return
        if self.holds is not None and self.holds.holds(conv.id):
            return
        del self._threads[number]
        if conv.status is Status.ENDED:
            with contextlib.suppress(StoreError):
                await self.store.unbind(number, conv.id)

    def thread_of(self, number: str) -> SmsChannel | None:
        return self._threads.get(number)

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        if self._closing:  # shutting down: runs cancelled now need no thread bookkeeping
            coro.close()
            return
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("SMS handling failed", exc_info=task.exception())

    async def close(self) -> None:
        self._closing = True
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
