"""The supervisors' wallboard: each queue's live state and today's figures, as pure arithmetic.

No I/O and no clock: the control plane passes the live `Router`, the queue events logged since
`since` (`ivr.store.queues.QueueEvent`) and `now` (epoch seconds). `ivr.web.wallboard` serves it.

Live, per queue (from the router):
  waiting         conversations not yet accepted, those ringing on a desk included
  longest_wait    seconds the earliest of them has waited in this queue (an overflow starts the
                  count again in the next queue), whole seconds; 0 when nobody waits
  agents          the agents serving the queue whom this server knows (they opened the desktop
                  since it started), each counted once, by what they can do now:
                    available  presence available, no conversation held, no offer ringing
                    busy       presence available, holding a conversation or an offer ringing
                    wrap_up    after a conversation, until the code is filed or time is up
                    break      on a break (also an agent who missed an offer)
                    offline    signed out, or every desktop tab closed
Today, per queue (from the events since `since`, local midnight for the server):
  offered         conversations that joined the queue ("enqueued"; an overflow joins the next)
  answered        accepted by an agent; answered_within: after at most SERVICE_LEVEL_SECONDS
  abandoned       the customer left while waiting
  overflowed      moved on (another queue or a message) after the queue's max_wait
  handled         wrap-ups filed
  service_level   answered_within / (answered + unanswered_late), where unanswered_late counts
                  abandons and overflows after more than SERVICE_LEVEL_SECONDS (or of an unknown
                  wait: a call cut by a restart). Customers who gave up within the threshold
                  neither help nor hurt (they left before anyone could be expected to answer);
                  the usual "abandons within T excluded" formula. None until someone is counted.
  abandon_rate    abandoned / (answered + abandoned); None when both are 0
  aht             average handling time: the mean of handled seconds (from the agent's accept to
                  the wrap-up filed, so talk and wrap-up); None before any
  asa             average speed of answer: the mean wait of the answered; None before any
The totals row sums the queues (a conversation that overflowed counts in each queue it waited in),
takes the longest of the longest waits, and counts each agent once, in their one state.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Protocol

from ivr.routing.acd import AgentState, Presence, Router

SERVICE_LEVEL_SECONDS = 20.0  # answered within this many seconds counts toward service level
SERVICE_LEVEL_TARGET = 0.8  # the usual 80/20 goal; the page colours against it
# Events are read again from this many seconds before the newest one seen: a write whose
# timestamp was taken earlier may commit after a later one (several nodes, a slow transaction).
REREAD_SECONDS = 10.0


class QueueEventLike(Protocol):
    """What is read of a logged queue event (`ivr.store.queues.QueueEvent` is one)."""

    @property
    def ts(self) -> float: ...
    @property
    def queue(self) -> str: ...
    @property
    def conversation_id(self) -> str: ...
    @property
    def event(self) -> str: ...
    @property
    def seconds(self) -> float | None: ...


def local_midnight(now: float) -> float:
    """The epoch seconds of the latest midnight at or before `now`, in the server's time zone."""
    local = datetime.fromtimestamp(now).astimezone()
    return local.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()


@dataclass
class QueueDay:
    """One queue's counts since the start of the day."""

    offered: int = 0
    answered: int = 0
    answered_within: int = 0
    abandoned: int = 0
    overflowed: int = 0
    unanswered_late: int = 0  # abandoned or overflowed after SERVICE_LEVEL_SECONDS
    handled: int = 0
    handled_seconds: float = 0.0
    answer_seconds: float = 0.0

    def add(self, event: str, seconds: float | None) -> None:
        late = seconds is None or seconds > SERVICE_LEVEL_SECONDS
        if event == "enqueued":
            self.offered += 1
        elif event == "answered":
            self.answered += 1
            self.answered_within += not late
            self.answer_seconds += seconds or 0.0
        elif event in ("abandoned", "overflowed"):
            if event == "abandoned":
                self.abandoned += 1
            else:
                self.overflowed += 1
            self.unanswered_late += late
        elif event == "handled":
            self.handled += 1
            self.handled_seconds += seconds or 0.0

    def merge(self, other: QueueDay) -> None:
        for name, value in asdict(other).items():
            setattr(self, name, getattr(self, name) + value)


class DayTally:
    """Today's counts per queue, fed events as they are read. Each read starts at `read_from()`,
    a little before the newest event seen, and an event read again is not counted twice; one
    that commits more than REREAD_SECONDS after a newer one is missed. Events before `since`
    are left out."""

    def __init__(self, since: float) -> None:
        self.since = since
        self.days: dict[str, QueueDay] = {}
        self._newest = since
        self._recent: set[tuple[float, str, str, str]] = set()  # counted, within the reread

    def read_from(self) -> float:
        """Where the next read of the event log should start."""
        return max(self.since, self._newest - REREAD_SECONDS)

    def add(self, events: Iterable[QueueEventLike]) -> None:
        for event in events:
            if event.ts < self.since:
                continue
            key = (event.ts, event.queue, event.conversation_id, event.event)
            if key in self._recent:
                continue  # read again: counted already
            self._recent.add(key)
            self._newest = max(self._newest, event.ts)
            self.days.setdefault(event.queue, QueueDay()).add(event.event, event.seconds)
        horizon = self._newest - REREAD_SECONDS
        self._recent = {key for key in self._recent if key[0] >= horizon}


@dataclass
class AgentCounts:
    available: int = 0
    busy: int = 0
    wrap_up: int = 0
    break_: int = 0
    offline: int = 0

    def count(self, agent: AgentState) -> None:
        if agent.presence == Presence.AVAILABLE:
            holding = any(agent.load.values()) or agent.offer is not None
            if holding:
                self.busy += 1
            else:
                self.available += 1
        elif agent.presence == Presence.WRAP_UP:
            self.wrap_up += 1
        elif agent.presence == Presence.BREAK:
            self.break_ += 1
        else:
            self.offline += 1

    def as_json(self) -> dict[str, int]:
        return {
            "available": self.available,
            "busy": self.busy,
            "wrap_up": self.wrap_up,
            "break": self.break_,
            "offline": self.offline,
        }


@dataclass
class Row:
    """One line of the board: a queue, or the totals (queue None)."""

    queue: str | None
    waiting: int = 0
    longest_wait: int = 0
    agents: AgentCounts = field(default_factory=AgentCounts)
    day: QueueDay = field(default_factory=QueueDay)

    def as_json(self) -> dict[str, Any]:
        day = self.day
        counted = day.answered + day.unanswered_late
        ended = day.answered + day.abandoned
        return {
            "queue": self.queue,
            "waiting": self.waiting,
            "longest_wait": self.longest_wait,
            "agents": self.agents.as_json(),
            "offered": day.offered,
            "answered": day.answered,
            "answered_within": day.answered_within,
            "abandoned": day.abandoned,
            "overflowed": day.overflowed,
            "handled": day.handled,
            "service_level": _share(day.answered_within, counted),
            "abandon_rate": _share(day.abandoned, ended),
            "aht": _mean(day.handled_seconds, day.handled),
            "asa": _mean(day.answer_seconds, day.answered),
        }


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _mean(total: float, count: int) -> float | None:
    return round(total / count, 3) if count else None


@dataclass
class Board:
    since: float
    rows: list[Row]
    totals: Row

    def as_json(self) -> dict[str, Any]:
        """The figures only (no time of computing): two equal boards mean nothing changed."""
        return {
            "since": self.since,
            "service_level_seconds": SERVICE_LEVEL_SECONDS,
            "service_level_target": SERVICE_LEVEL_TARGET,
            "queues": [row.as_json() for row in self.rows],
            "totals": self.totals.as_json(),
        }


def board(router: Router, defined: Iterable[str], tally: DayTally, now: float) -> Board:
    """The board at `now`: a row for every queue in `defined` (in that order), then any other
    queue somebody waits in or that today's events name (by name)."""
    waiting = router.waiting(now=now)
    names = list(dict.fromkeys(defined))
    others = {entry.queue for entry in waiting} | set(tally.days)
    names += sorted(others - set(names))
    rows = {name: Row(name, day=_copy(tally.days.get(name))) for name in names}
    for entry in waiting:
        row = rows[entry.queue]
        row.waiting += 1
        row.longest_wait = max(row.longest_wait, int(max(0.0, now - entry.enqueued_at)))
    totals = Row(None)
    for agent in router.agents():
        served = [rows[name] for name in agent.queues if name in rows]
        for row in served:
            row.agents.count(agent)
        if served:
            totals.agents.count(agent)
    for row in rows.values():
        totals.waiting += row.waiting
        totals.longest_wait = max(totals.longest_wait, row.longest_wait)
        totals.day.merge(row.day)
    return Board(tally.since, list(rows.values()), totals)


def board_from_events(
    router: Router,
    defined: Iterable[str],
    events: Iterable[QueueEventLike],
    *,
    now: float,
    since: float | None = None,
) -> Board:
    """The board from a list of events (those before `since`, local midnight by default, are
    left out): what a one-off report or a test needs."""
    tally = DayTally(local_midnight(now) if since is None else since)
    tally.add(events)
    return board(router, defined, tally, now)


def _copy(day: QueueDay | None) -> QueueDay:
    """A row's own counts: the board stays as it was when later events reach the tally."""
    return QueueDay(**asdict(day)) if day is not None else QueueDay()
