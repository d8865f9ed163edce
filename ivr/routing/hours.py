"""Business hours of a queue: is it open at a moment, and when does it open next.

`Hours.open` holds wall-clock times of the queue's own time zone, so a moment (aware, in any
zone) is first converted there; zoneinfo follows daylight saving, so "08:00" stays 08:00 local
on both sides of a change. The syntax of days and ranges is parsed by `model.py`'s functions,
the ones that validated it. Nothing here knows about waiting conversations or agents.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from functools import lru_cache

from ivr.routing.model import Hours, parse_days, parse_ranges, zone

Week = tuple[tuple[tuple[int, int], ...], ...]  # weekday -> (start, end) minutes, sorted


@lru_cache(maxsize=256)
def _week(open_: tuple[tuple[str, str], ...]) -> Week:
    days: list[list[tuple[int, int]]] = [[] for _ in range(7)]
    for day_spec, ranges in open_:
        for day in parse_days(day_spec):
            days[day].extend(parse_ranges(ranges))
    return tuple(tuple(sorted(d)) for d in days)


def _local(hours: Hours, when: datetime) -> datetime:
    if when.tzinfo is None or when.utcoffset() is None:
        raise ValueError("a moment without a time zone is ambiguous: pass an aware datetime")
    return when.astimezone(zone(hours.timezone))


def is_open(hours: Hours | None, when: datetime) -> bool:
    """Whether the queue takes conversations at `when`; no hours means always open."""
    if hours is None:
        return True
    local = _local(hours, when)
    if local.date() in hours.holidays:
        return False
    minute = local.hour * 60 + local.minute
    week = _week(tuple(hours.open.items()))
    return any(start <= minute < end for start, end in week[local.weekday()])


def next_opening(hours: Hours, when: datetime) -> datetime | None:
    """The first moment at or after `when` the queue is open, in the queue's time zone (for
    "we open at 08:00"); `when` itself if open now; None if it never opens."""
    local = _local(hours, when)
    if is_open(hours, local):
        return local
    week = _week(tuple(hours.open.items()))
    tz = zone(hours.timezone)
    now = local.hour * 60 + local.minute
    # Each holiday hides at most one opening day, so a week more per holiday is enough.
    for offset in range(7 * (len(hours.holidays) + 1) + 1):
        day = local.date() + timedelta(days=offset)
        if day in hours.holidays:
            continue
        for start, _ in week[day.weekday()]:
            if offset == 0 and start <= now:
                continue  # today's range that has already ended (we are not open now)
            opening = datetime.combine(day, time(start // 60, start % 60), tzinfo=tz)
            # Through UTC and back: a start inside a spring-forward gap becomes a real time.
            return opening.astimezone(UTC).astimezone(tz)
    return None
