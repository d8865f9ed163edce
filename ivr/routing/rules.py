"""What the queue service needs to know of each queue, read from the queues YAML at every use.

`QueueBook` answers from the flows' current queue definitions (`ivr.routing.model`), so a hot
reload changes offer timeouts, hours, announcements and overflow for the next decision. The
queue service only sees the `QueueRules` protocol: its tests give it rules of their own.

Admission (`admit`) follows a closed queue's rules before anything is queued: its `closed`
flow or message, else its overflow (another queue, checked the same way, or a message).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from ivr.flow.engine import QueueClosed
from ivr.routing.acd import QueuePolicy
from ivr.routing.hours import is_open, next_opening
from ivr.routing.model import QueueDefinition

NO_AGING_SECONDS = 1e9  # ~32 years
DEFAULT_PRIORITY = 1


@dataclass(frozen=True)
class QueueNotices:
    """What a waiting customer is told, and how often (a queue's `announce`)."""

    every: float = 0.0  # seconds; 0: only once, at the start
    position: bool = True
    estimated_wait: bool = True
    hold_music: str | None = None  # a recorded prompt's id; None: the built-in music


@dataclass(frozen=True)
class Overflowing:
    """Where a conversation goes after `max_wait`: another queue, or a message and the end, or
    an `offer` to the customer of other ways ("callback", "sms") while they keep their place."""

    queue: str | None = None
    message: str | None = None
    offer: tuple[str, ...] = ()


class QueueRules(Protocol):
    def policies(self) -> Mapping[str, QueuePolicy]: ...
    def notices(self, queue: str) -> QueueNotices: ...
    def skills(self, queue: str) -> frozenset[str]: ...
    def priority(self, queue: str) -> int: ...
    def max_wait(self, queue: str) -> float | None: ...
    def overflow(self, queue: str) -> Overflowing | None: ...
    def wrap_up_seconds(self, queue: str) -> float: ...
    def wrap_up_codes(self, queue: str) -> tuple[str, ...]: ...
    def admit(self, queue: str, now: float) -> str | QueueClosed: ...


class QueueBook:
    """`QueueRules` from the queue definitions `definitions()` gives (the flows' current ones)."""

    def __init__(self, definitions: Callable[[], Mapping[str, QueueDefinition]]) -> None:
        self._definitions = definitions

    def _get(self, queue: str) -> QueueDefinition | None:
        return self._definitions().get(queue)

    def policies(self) -> Mapping[str, QueuePolicy]:
        return {name: policy(name, q) for name, q in self._definitions().items()}

    def notices(self, queue: str) -> QueueNotices:
        return notices(self._get(queue))

    def skills(self, queue: str) -> frozenset[str]:
        q = self._get(queue)
        return frozenset(q.skills) if q is not None else frozenset()

    def priority(self, queue: str) -> int:
        q = self._get(queue)
        return q.priority if q is not None else DEFAULT_PRIORITY

    def max_wait(self, queue: str) -> float | None:
        q = self._get(queue)
        return float(q.max_wait) if q is not None and q.max_wait else None

    def overflow(self, queue: str) -> Overflowing | None:
        q = self._get(queue)
        if q is None or q.overflow is None:
            return None
        return Overflowing(
            queue=q.overflow.queue, message=q.overflow.message, offer=tuple(q.overflow.offer or ())
        )

    def wrap_up_seconds(self, queue: str) -> float:
        q = self._get(queue)
        return float(q.wrap_up) if q is not None else 0.0

    def wrap_up_codes(self, queue: str) -> tuple[str, ...]:
        q = self._get(queue)
        return tuple(q.wrap_up_codes or ()) if q is not None else ()

    def admit(self, queue: str, now: float) -> str | QueueClosed:
        """The queue that takes a conversation sent to `queue` at `now` (itself when open, or
        where its closed-hours overflow leads), or what to do instead."""
        when = datetime.fromtimestamp(now, UTC)
        seen: set[str] = set()
        name = queue
        while True:
            q = self._get(name)
            if q is None or q.hours is None or is_open(q.hours, when):
                return name
            seen.add(name)
            if q.hours.closed is not None:
                return QueueClosed(name, message=q.hours.closed.message, flow=q.hours.closed.flow)
            overflow = q.overflow
            if overflow is not None and overflow.queue and overflow.queue not in seen:
                name = overflow.queue
                continue
            if overflow is not None and overflow.message:
                return QueueClosed(name, message=overflow.message)
            return QueueClosed(name, message=closed_message(q, when))


def closed_message(queue: QueueDefinition, when: datetime) -> str:
    """Said when a closed queue names nothing to say: when it opens again, if ever."""
    opening = next_opening(queue.hours, when) if queue.hours is not None else None
    if opening is None:
        return "Sorry, our advisers are not available now. Please try again later."
    today = when.astimezone(opening.tzinfo).date()
    if opening.date() == today:
        day = "today"
    elif opening.date() == today + timedelta(days=1):
        day = "tomorrow"
    else:
        day = f"on {opening:%A}"
    return f"Sorry, our advisers are not available now. We are open again {day} at {opening:%H:%M}."


def policy(name: str, queue: QueueDefinition) -> QueuePolicy:
    return QueuePolicy(
        name=name,
        # aging 0 = none: a span no wait reaches, so priority alone orders (finite: the
        # router's sort keys are enqueued_at - priority * aging_seconds).
        aging_seconds=float(queue.aging) if queue.aging else NO_AGING_SECONDS,
        offer_timeout=float(queue.offer_timeout),
    )


def notices(queue: QueueDefinition | None) -> QueueNotices:
    announce = queue.announce if queue is not None else None
    music = queue.hold_music if queue is not None else None
    if announce is None:  # told once where they stand, then left to wait
        return QueueNotices(every=0.0, hold_music=music)
    return QueueNotices(
        every=float(announce.every),
        position=announce.position,
        estimated_wait=announce.estimated_wait,
        hold_music=music,
    )
