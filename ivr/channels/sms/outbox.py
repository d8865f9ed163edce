"""The outbox: every text we send is stored first, then sent by one task, with back-off.

`Outbox.send()` only writes the text (state `queued`) and wakes the sender, so a flow never waits
for a gateway. The sender takes the due texts oldest first, each number's in order (its second
text never overtakes its first, even across retries; different numbers go in parallel), and
records each attempt: `sent` when the gateway took it, or `queued` again with the next try
`retry_seconds`, doubling, up to `max_retry_seconds`, after a transient failure; `failed` after
`max_attempts` or a refusal.
A restart picks up where it stopped, since the state is in the store.

Numbers that opted out (STOP) get nothing (`suppressed`), but the confirmation of their STOP.
With the outbox gateway (no gateway configured) texts are `held`: stored and shown, never sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Callable

from ivr.channels.sms.gateway import SEND_TIMEOUT, SendFailed, SmsGateway
from ivr.config import SmsSettings
from ivr.store.database import StoreError
from ivr.store.sms import OutgoingText, SmsStore

log = logging.getLogger("ivr.sms")

IDLE_WAIT = 60.0  # with nothing due, look again this often (a wake-up comes sooner)
STORE_RETRY = 5.0  # the store is down: try again after this long
# Texts in flight at once, to different numbers (a number's own texts go one after the other):
# a gateway's answer takes tens of ms (Kannel with a delivery report: ~27 ms on a test machine).
PARALLEL_SENDS = 8
CLOSE_WAIT = (
    SEND_TIMEOUT.total or 10.0
) + 2  # at shutdown, the attempt under way may take this long
_SENTENCE_END = re.compile(r"[.!?](?=\s)")


def fit(text: str, limit: int) -> str:
    """At most `limit` characters: cut after the last whole sentence that fits, else at a word."""
    text = text.strip()
    if len(text) <= limit:
        return text
    head = text[: limit - 1]
    ends = [m.end() for m in _SENTENCE_END.finditer(head)]
    if ends and ends[-1] > limit // 2:
        return head[: ends[-1]]
    return head.rsplit(" ", 1)[0].rstrip(",;: ") + "…"


class Outbox:
    def __init__(
        self,
        store: SmsStore,
        gateway: SmsGateway,
        settings: SmsSettings,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.gateway = gateway
        self.settings = settings
        self.clock = clock
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.sent_count = 0  # taken by the gateway since start (bench, metrics)

    async def send(
        self,
        to_number: str,
        text: str,
        conversation_id: str | None = None,
        *,
        even_if_opted_out: bool = False,
    ) -> OutgoingText:
        """Store a text to send (and wake the sender); returns it with its id and state."""
        if not even_if_opted_out and await self.store.opted_out(to_number):
            state = "suppressed"
        else:
            state = "held" if self.gateway.holds else "queued"
        stored = await self.store.queue(
            to_number,
            self.settings.number,
            fit(text, self.settings.max_text_chars),
            conversation_id,
            state=state,
            now=self.clock(),
        )
        if state == "queued":
            self._wake.set()
        else:
            log.info("text %s to %s %s (%s)", stored.id, to_number, state, self.gateway.name)
        return stored

    def start(self) -> None:
        if not self.gateway.holds:
            self._task = asyncio.create_task(self._run(), name="sms-outbox")

    async def close(self) -> None:
        """Stop after the attempt under way: cut between the gateway's acceptance and our
        record of it, a text would be sent again after the restart."""
        if self._task is None:
            return
        self._closing = True
        self._wake.set()
        try:
            await asyncio.wait_for(asyncio.shield(self._task), CLOSE_WAIT)
        except TimeoutError:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while not self._closing:
            self._wake.clear()
            try:
                wait = await self.send_due()
            except StoreError as exc:
                log.error("SMS outbox: %s; trying again in %.0f s", exc, STORE_RETRY)
                wait = STORE_RETRY
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(wait, 0.0))

    async def send_due(self) -> float:
        """Send what is due now: the oldest text of each number, several numbers at a time.
        Returns the seconds until the next text is due (0: a number has more to send)."""
        now = self.clock()
        heads: dict[str, OutgoingText] = {}  # each number's oldest queued text, if due
        waiting: set[str] = set()  # numbers whose oldest text is not due: the rest waits too
        next_due = now + IDLE_WAIT
        for text in await self.store.queued():
            number = text.to_number
            if number in heads or number in waiting:
                continue
            if text.next_attempt_at > now:
                waiting.add(number)
                next_due = min(next_due, text.next_attempt_at)
            else:
                heads[number] = text
        if not heads:
            return next_due - self.clock()
        slots = asyncio.Semaphore(PARALLEL_SENDS)

        async def attempt(text: OutgoingText) -> float | None:
            async with slots:
                return None if self._closing else await self._attempt(text, now)

        # Each attempt runs to its end (one that fails on the store does not orphan the others,
        # which would send their texts again after STORE_RETRY).
        results = await asyncio.gather(
            *(attempt(t) for t in heads.values()), return_exceptions=True
        )
        for result in results:
            if isinstance(result, BaseException):
                log.error("SMS outbox: %s", result)
        if any(result is None for result in results):
            return 0.0  # a number's next text may be queued behind the one just sent
        retries = [r for r in results if isinstance(r, float)]
        return min([next_due, *retries]) - self.clock()

    async def _attempt(self, text: OutgoingText, now: float) -> float | None:
        """One try; the time of the next one when it is to be tried again."""
        attempts = text.attempts + 1
        try:
            try:
                await self.gateway.send(text)
            except SendFailed:
                raise
            except Exception as exc:  # a fault of ours or the gateway's client: try again later
                log.exception("text %s: sending failed unexpectedly", text.id)
                raise SendFailed(f"{type(exc).__name__}: {exc}", transient=True) from exc
        except SendFailed as exc:
            if exc.transient and attempts < self.settings.max_attempts:
                delay = min(
                    self.settings.retry_seconds * 2 ** (attempts - 1),
                    self.settings.max_retry_seconds,
                )
                log.warning(
                    "text %s to %s not sent (attempt %d): %s; again in %.1f s",
                    text.id, text.to_number, attempts, exc, delay,
                )  # fmt: skip
                await self.store.record_attempt(text.id, "queued", attempts, now + delay, str(exc))
                return now + delay
            log.error("text %s to %s failed after %d attempts: %s", text.id, text.to_number,
                      attempts, exc)  # fmt: skip
            await self.store.record_attempt(text.id, "failed", attempts, now, str(exc))
            return None
        self.sent_count += 1
        await self.store.record_attempt(text.id, "sent", attempts, now)
        return None
