"""The YAML queue format (`queues:` files beside the flows) as typed models.

A queue is where a flow's `transfer: {queue: ...}` step puts a conversation until an agent
takes it: which skills its agents need, how its waiting conversations are ordered, how long
they wait, where they go then (`overflow`), when it is open (`hours`) and what waiting
customers hear. Every field has a default, so `general: {}` is a whole queue.

Only the shape lives here (and the day / time-range syntax of `hours.open`, shared with
`hours.py`); checks across files (unknown queues, overflow cycles, prompts, flows) are
`ivr/flow/validator.py`'s, evaluation of opening hours is `hours.py`'s.
"""

from __future__ import annotations

import difflib
import itertools
import re
import zoneinfo
from datetime import date
from functools import cache
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field, model_validator

from ivr.flow.model import Strict, Text
from ivr.flow.templates import PROMPT_ID

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # index = datetime.weekday()
DAY_MINUTES = 24 * 60

Name = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_\-]*$")]


def _prompt_id(value: str) -> str:
    if not PROMPT_ID.match(value):
        raise ValueError(
            f"{value!r} is not a prompt id: name a prompt of the prompts/ catalogue "
            "(lowercase letters, digits, '_', '.', '-'), not text"
        )
    return value


PromptId = Annotated[
    str, AfterValidator(_prompt_id), Field(description="A prompt id of the prompts/ catalogue")
]


# ---------------------------------------------------------------- day and time syntax


def parse_days(spec: str) -> tuple[int, ...]:
    """`mon`, `mon-fri` -> weekday numbers (0 = Monday). ValueError says what is wrong."""
    parts = [p.strip().lower() for p in spec.split("-")]
    if len(parts) > 2 or not all(parts):
        raise ValueError(f"{spec!r} is not a day or a range of days such as 'mon-fri'")
    for part in parts:
        if part not in WEEKDAYS:
            close = difflib.get_close_matches(part, WEEKDAYS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"unknown day {part!r}{hint}; days are {', '.join(WEEKDAYS)}")
    first, last = WEEKDAYS.index(parts[0]), WEEKDAYS.index(parts[-1])
    if first > last:
        # A week does not wrap here: `sat-mon` is more often a slip than a plan.
        tail = parts[1] if last == 0 else f"mon-{parts[1]}"
        raise ValueError(
            f"{spec!r} runs backwards (a week here is mon to sun): write it as two keys, "
            f"'{parts[0]}-sun' and '{tail}'"
        )
    return tuple(range(first, last + 1))


_TIME = re.compile(r"^(\d{1,2}):(\d{2})$")


def _minutes(text: str, *, end: bool) -> int:
    found = _TIME.match(text.strip())
    hours, minutes = (int(found[1]), int(found[2])) if found else (-1, -1)
    value = hours * 60 + minutes
    if not found or minutes > 59 or value > DAY_MINUTES or (value == DAY_MINUTES and not end):
        allowed = "00:00 to 24:00" if end else "00:00 to 23:59"
        raise ValueError(f"{text.strip()!r} is not a time of day HH:MM ({allowed})")
    return value


def parse_ranges(spec: str) -> tuple[tuple[int, int], ...]:
    """`"08:00-12:00, 13:00-17:00"` -> ((480, 720), (780, 1020)): minutes since midnight,
    end excluded. Ranges may not cross midnight (end a day at 24:00 and start the next at
    00:00), nor overlap."""
    ranges: list[tuple[int, int]] = []
    for part in spec.split(","):
        times = part.split("-")
        if len(times) != 2:
            raise ValueError(f"{part.strip()!r} is not a time range such as '08:00-17:30'")
        start, end = _minutes(times[0], end=False), _minutes(times[1], end=True)
        if start >= end:
            raise ValueError(
                f"{part.strip()!r}: the start must be before the end; a range cannot cross "
                "midnight (end at 24:00 and open the next day at 00:00)"
            )
        ranges.append((start, end))
    ranges.sort()
    for (_, end), (start, _) in itertools.pairwise(ranges):
        if start < end:
            raise ValueError(f"{spec!r}: time ranges overlap")
    return tuple(ranges)


@cache
def zone(name: str) -> zoneinfo.ZoneInfo:
    """The IANA time zone `name`; ValueError (with a did-you-mean) when there is none."""
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        close = difflib.get_close_matches(name, zoneinfo.available_timezones(), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(
            f"unknown time zone {name!r}{hint}; use an IANA name such as 'Europe/London'"
        ) from None


def _check(parser: Any) -> AfterValidator:
    """Validate a string with `parser` but keep the string as written (the schema stays a
    string, and `hours.py` parses again from the same functions)."""

    def check(value: str) -> str:
        parser(value)
        return value

    return AfterValidator(check)


def _not_a_number(value: Any) -> Any:
    # pydantic reads an int as seconds since 1970; in a holiday list it is a typo.
    if isinstance(value, int | float):
        raise ValueError("write a holiday as a date YYYY-MM-DD")
    return value


DaySpec = Annotated[str, _check(parse_days), Field(description="A day (mon) or days (mon-fri)")]
TimeRanges = Annotated[
    str,
    _check(parse_ranges),
    Field(description="'08:00-20:00', several as '08:00-12:00, 13:00-17:00'; 24:00 ends a day"),
]
TimeZoneName = Annotated[str, _check(zone), Field(description="IANA time zone, Europe/London")]
Holiday = Annotated[date, BeforeValidator(_not_a_number)]


def _unique(values: list[Any]) -> list[Any]:
    seen: set[Any] = set()
    for value in values:
        if value in seen:
            raise ValueError(f"{value!r} is listed twice")
        seen.add(value)
    return values


def _exactly_one(model: Strict, names: tuple[str, ...], what: str) -> None:
    given = [n for n in names if getattr(model, n) is not None]
    if len(given) != 1:
        choices = ", ".join(repr(n) for n in names)
        found = f" (found {', '.join(given)})" if given else ""
        raise ValueError(f"{what} needs exactly one of {choices}{found}")


# ---------------------------------------------------------------- the queue


class Overflow(Strict):
    """Where a waiting conversation goes after `max_wait`, or while the queue is closed when
    `hours` names no `closed`: exactly one of `queue`, `message`, `offer`."""

    queue: Name | None = Field(None, description="Another queue (must exist; no cycles)")
    message: Text | None = Field(None, description="Said or sent, then the conversation ends")
    offer: Annotated[list[Literal["callback", "sms"]], AfterValidator(_unique)] | None = Field(
        None, min_length=1, description="Offer the customer a callback and/or to go on by SMS"
    )

    @model_validator(mode="after")
    def _one_way(self) -> Overflow:
        _exactly_one(self, ("queue", "message", "offer"), "overflow")
        return self


class Closed(Strict):
    """What a transfer to a closed queue does instead: exactly one of `flow`, `message`."""

    flow: Name | None = Field(None, description="A flow to run from its start (must exist)")
    message: Text | None = Field(None, description="Said or sent, then the conversation ends")

    @model_validator(mode="after")
    def _one_way(self) -> Closed:
        _exactly_one(self, ("flow", "message"), "closed")
        return self


class Hours(Strict):
    """When the queue takes conversations: days not listed in `open`, and holidays, are
    closed; times are wall-clock times in `timezone` (daylight saving is followed)."""

    timezone: TimeZoneName
    open: dict[DaySpec, TimeRanges] = Field(
        min_length=1, description="Days (mon, mon-fri) to time ranges ('08:00-20:00')"
    )
    holidays: Annotated[list[Holiday], AfterValidator(_unique)] = Field(
        default_factory=list, description="Dates (YYYY-MM-DD) closed all day"
    )
    closed: Closed | None = Field(
        None, description="When closed: a flow or a message; default: the queue's overflow"
    )


class Announce(Strict):
    """Repeated news for waiting customers: spoken to callers, sent to chat / SMS customers."""

    every: int = Field(60, ge=10, le=3600, description="Seconds between announcements")
    position: bool = Field(True, description="Say the customer's place in the queue")
    estimated_wait: bool = Field(True, description="Say the estimated wait")

    @model_validator(mode="after")
    def _says_something(self) -> Announce:
        if not (self.position or self.estimated_wait):
            raise ValueError("announce says nothing: set position or estimated_wait true")
        return self


class QueueDefinition(Strict):
    """One queue. Every field has a default: `general: {}` is a valid queue."""

    description: str | None = None
    skills: Annotated[list[Name], AfterValidator(_unique)] = Field(
        default_factory=list,
        description="Skills every agent offered this queue's conversations needs "
        "(a transfer step may add more)",
    )
    priority: int = Field(
        1, ge=0, le=1000, description="Priority when the transfer step names none (higher first)"
    )
    aging: int = Field(
        60,
        ge=0,
        le=86400,
        description="Seconds of waiting per priority point gained, so low priority is not "
        "starved; 0 = no aging",
    )
    offer_timeout: int = Field(15, ge=1, le=300, description="Seconds an agent has to accept")
    max_wait: int | None = Field(
        None, ge=1, le=86400, description="Seconds of waiting before overflow; none = no limit"
    )
    overflow: Overflow | None = None
    hours: Hours | None = Field(None, description="Opening hours; none = always open")
    hold_music: PromptId | None = Field(
        None,
        description="Prompt id whose recording (prompts/<language>/<id>.wav) loops while a "
        "caller waits; none = the built-in music",
    )
    announce: Announce | None = Field(None, description="None = no announcements")
    wrap_up: int = Field(
        0,
        ge=0,
        le=3600,
        description="Seconds of wrap-up after a conversation, then the agent is offered the "
        "next one; 0 = until they file the wrap-up",
    )
    wrap_up_codes: Annotated[list[Name], AfterValidator(_unique)] = Field(
        default_factory=list, description="Codes an agent picks when closing a conversation"
    )


class QueuesHeader(Strict):
    """A queues file without its queues (each queue is validated on its own)."""


class QueuesDocument(QueuesHeader):
    """The whole queues file; used to publish the JSON Schema for editors."""

    queues: dict[Name, QueueDefinition | None] = Field(min_length=1)  # `general:` = {}


def queues_json_schema() -> dict[str, Any]:
    schema = QueuesDocument.model_json_schema(by_alias=True, mode="validation")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://schemas.invalid/ivr/queues.schema.json",
        **schema,
        "title": "IVR queues",
    }
