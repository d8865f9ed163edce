"""Queues written in YAML beside the flows: every mistake is reported at `file:line:col`, every
queue a flow or an overflow names must exist, and business hours open and close on time.

Each validation test writes a queues file (with a small flow, prompts and intents) into
tmp_path and checks the place and the key words of the message, as tests/test_validator.py
does for flows; positions are found in the YAML text itself (`pos(text, "needle")`).
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import jsonschema
import pytest
from ruamel.yaml import YAML

from ivr.flow.problems import Problem, Severity, errors_in
from ivr.flow.validator import validate
from ivr.routing.hours import is_open, next_opening
from ivr.routing.model import Hours, QueueDefinition, queues_json_schema
from tests.test_validator import INTENTS, PROMPTS, at, only, pos, write

ROOT = Path(__file__).resolve().parents[1]

# A flow that transfers to the queue `cards` (and says the prompt `welcome` first).
FLOW = """\
flow: demo
start: hello
steps:
  hello:
    say: welcome
    next: agent
  agent:
    transfer:
      queue: cards
"""

QUEUES = """\
queues:
  cards:
    description: Card services
    max_wait: 600
    overflow: {queue: general}
  general: {}
"""


def check(
    tmp_path: Path, queues: str | None = QUEUES, *, flow: str = FLOW, prompts: str = PROMPTS
) -> tuple[Path, list[Problem]]:
    """Write the queues (as queues.yaml) with the flow, prompts and intents; validate."""
    write(tmp_path, "prompts.yaml", prompts)
    write(tmp_path, "intents.yaml", INTENTS)
    write(tmp_path, "flow.yaml", flow)
    path = tmp_path / "queues.yaml"
    if queues is not None:
        write(tmp_path, "queues.yaml", queues)
    _, problems = validate([tmp_path], ("CRM_URL",))
    return path, problems


def with_cards(lines: str) -> str:
    """QUEUES with `lines` (indented for a queue's keys) added to the queue `cards`."""
    return QUEUES.replace(
        "    description: Card services\n", f"    description: Card services\n{lines}"
    )


# ---------------------------------------------------------------- a good file


def test_a_minimal_queue_is_one_line_of_defaults(tmp_path: Path) -> None:
    queues = "queues:\n  cards: {}\n  general:\n"
    write(tmp_path, "queues.yaml", queues)
    flow_set, problems = validate([tmp_path])
    assert problems == []
    assert flow_set.queues["cards"] == QueueDefinition()
    assert flow_set.queues["general"] == QueueDefinition()  # `general:` alone: all defaults
    cards = flow_set.queues["cards"]
    assert (cards.priority, cards.aging, cards.offer_timeout, cards.wrap_up) == (1, 60, 15, 0)
    assert (cards.max_wait, cards.overflow, cards.hours, cards.hold_music) == (None,) * 4
    doc = flow_set.queue_sources["general"]
    assert (doc.path, doc.where("queues", "general", at_key=True)) == (
        str(tmp_path / "queues.yaml"),
        (3, 3),
    )


FULL = """\
queues:
  cards:
    description: Card services
    skills: [cards]
    priority: 2
    aging: 30
    offer_timeout: 20
    max_wait: 600
    overflow:
      queue: general
    hours:
      timezone: Europe/London
      open:
        mon-fri: "08:00-20:00"
        sat: "09:00-12:00, 13:00-17:00"
      holidays: [2026-12-25, 2027-01-01]
      closed: {flow: demo}
    hold_music: welcome
    announce:
      every: 45
      position: true
      estimated_wait: false
    wrap_up: 30
    wrap_up_codes: [resolved, follow_up, escalated]
  general:
    overflow: {offer: [callback, sms]}
    max_wait: 900
  lost:
    max_wait: 60
    overflow: {message: "Sorry, nobody is free. Please call again."}
"""


def test_every_key_of_the_format_loads(tmp_path: Path) -> None:
    path, problems = check(tmp_path, FULL)
    assert problems == []
    flow_set, _ = validate([tmp_path])
    cards = flow_set.queues["cards"]
    assert cards.skills == ["cards"] and cards.priority == 2 and cards.aging == 30
    assert cards.overflow is not None and cards.overflow.queue == "general"
    assert cards.hours is not None and cards.hours.holidays == [
        date(2026, 12, 25),
        date(2027, 1, 1),
    ]
    assert cards.hours.closed is not None and cards.hours.closed.flow == "demo"
    assert cards.announce is not None and cards.announce.estimated_wait is False
    assert cards.wrap_up_codes == ["resolved", "follow_up", "escalated"]
    assert flow_set.queues["general"].overflow.offer == ["callback", "sms"]  # type: ignore[union-attr]
    assert str(path) in flow_set.files


# ---------------------------------------------------------------- shape: names, types, syntax


def test_unknown_key_is_reported_at_the_key_with_did_you_mean(tmp_path: Path) -> None:
    queues = with_cards("    skils: [cards]\n")
    path, problems = check(tmp_path, queues)
    problem = only(problems, "unknown field 'skils' (did you mean 'skills'?)")
    at(problem, path, pos(queues, "skils"))


def test_unknown_key_inside_hours_is_reported_with_did_you_mean(tmp_path: Path) -> None:
    queues = with_cards("    hours:\n      timezone: UTC\n      opne: {mon: '08:00-17:00'}\n")
    path, problems = check(tmp_path, queues)
    problem = only(problems, "unknown field 'opne' (did you mean 'open'?)")
    at(problem, path, pos(queues, "opne"))


def test_a_wrong_type_is_reported_at_the_value(tmp_path: Path) -> None:
    queues = QUEUES.replace("max_wait: 600", "max_wait: ten minutes")
    path, problems = check(tmp_path, queues)
    problem = only(problems, "queues.cards.max_wait", "integer")
    at(problem, path, pos(queues, "ten minutes"))


def test_an_unknown_top_level_key_in_a_queues_file(tmp_path: Path) -> None:
    queues = "language: en\n" + QUEUES
    path, problems = check(tmp_path, queues)
    at(only(problems, "unknown field 'language'"), path, (1, 1))


@pytest.mark.parametrize(
    ("ranges", "words"),
    [
        ("20:00-08:00", ("start must be before the end", "cannot cross midnight")),
        ("08:00-08:00", ("start must be before the end",)),
        ("8-17", ("'8' is not a time of day HH:MM",)),
        ("08:00-24:30", ("'24:30' is not a time of day", "00:00 to 24:00")),
        ("24:00-24:00", ("'24:00' is not a time of day", "00:00 to 23:59")),
        ("08:60-12:00", ("'08:60' is not a time of day",)),
        ("08:00", ("not a time range",)),
        ("08:00-12:00, 11:00-13:00", ("time ranges overlap",)),
    ],
)
def test_bad_time_ranges_are_reported_at_their_line(
    tmp_path: Path, ranges: str, words: tuple[str, ...]
) -> None:
    queues = with_cards(f"    hours:\n      timezone: UTC\n      open:\n        mon: '{ranges}'\n")
    path, problems = check(tmp_path, queues)
    problem = only(problems, "queues.cards.hours.open.mon", *words)
    at(problem, path, pos(queues, f"'{ranges}'"))


@pytest.mark.parametrize(
    ("days", "words"),
    [
        ("mon-fry", ("unknown day 'fry' (did you mean 'fri'?)",)),
        ("monday", ("unknown day 'monday' (did you mean 'mon'?)",)),
        ("fri-mon", ("runs backwards", "'fri-sun' and 'mon'")),
        ("mon-wed-fri", ("not a day or a range of days",)),
    ],
)
def test_bad_days_are_reported_at_their_line(
    tmp_path: Path, days: str, words: tuple[str, ...]
) -> None:
    queues = with_cards(
        f"    hours:\n      timezone: UTC\n      open:\n        {days}: 08:00-17:00\n"
    )
    path, problems = check(tmp_path, queues)
    problem = only(problems, *words)
    assert problem.line == pos(queues, f"{days}:")[0] and problem.file == str(path)


def test_a_day_named_by_two_keys_is_reported_at_the_second(tmp_path: Path) -> None:
    hours = "    hours:\n      timezone: UTC\n      open:\n        mon-fri: 08:00-17:00\n"
    queues = with_cards(hours + "        tue: 18:00-20:00\n")
    path, problems = check(tmp_path, queues)
    problem = only(problems, "day 'tue' is in 'mon-fri' already")
    assert (problem.file, problem.line) == (str(path), pos(queues, "tue:")[0])


def test_an_unknown_time_zone_is_reported_with_did_you_mean(tmp_path: Path) -> None:
    queues = with_cards(
        "    hours:\n      timezone: Europe/Londn\n      open: {mon: 08:00-17:00}\n"
    )
    path, problems = check(tmp_path, queues)
    problem = only(problems, "unknown time zone 'Europe/Londn' (did you mean 'Europe/London'?)")
    at(problem, path, pos(queues, "Europe/Londn"))


@pytest.mark.parametrize(
    ("holiday", "words"),
    [
        ("2026-13-01", ("holidays.1", "month")),  # not a date: must not crash the YAML reader
        ("christmas", ("holidays.1", "date")),
        ("20261225", ("write a holiday as a date YYYY-MM-DD",)),
    ],
)
def test_holidays_must_be_dates(tmp_path: Path, holiday: str, words: tuple[str, ...]) -> None:
    hours = "    hours:\n      timezone: UTC\n      open: {mon: 08:00-17:00}\n"
    queues = with_cards(hours + f"      holidays: [2026-12-25, {holiday}]\n")
    path, problems = check(tmp_path, queues)
    problem = only(problems, *words)
    at(problem, path, pos(queues, holiday))


@pytest.mark.parametrize(
    "overflow",
    ["{queue: general, message: 'Sorry.'}", "{}", "{message: 'Sorry.', offer: [sms]}"],
)
def test_overflow_needs_exactly_one_way_out(tmp_path: Path, overflow: str) -> None:
    queues = QUEUES.replace("{queue: general}", overflow)
    path, problems = check(tmp_path, queues)
    problem = only(problems, "overflow needs exactly one of 'queue', 'message', 'offer'")
    line, col = pos(queues, f"overflow: {overflow}")
    at(problem, path, (line, col + len("overflow: ")))


def test_an_unknown_offer_is_reported_at_its_item(tmp_path: Path) -> None:
    queues = QUEUES.replace("{queue: general}", "{offer: [callback, fax]}")
    path, problems = check(tmp_path, queues)
    problem = only(problems, "queues.cards.overflow.offer.1", "'callback' or 'sms'")
    at(problem, path, pos(queues, "fax"))


def test_hold_music_must_be_a_prompt_id_not_text(tmp_path: Path) -> None:
    queues = with_cards("    hold_music: Please hold the line\n")
    path, problems = check(tmp_path, queues)
    problem = only(problems, "'Please hold the line' is not a prompt id")
    at(problem, path, pos(queues, "Please hold"))


def test_a_bad_queue_does_not_hide_the_others_nor_make_its_name_unknown(tmp_path: Path) -> None:
    queues = QUEUES.replace("max_wait: 600", "max_wait: -1") + "  other: {priority: high}\n"
    _, problems = check(tmp_path, queues)
    assert {p.line for p in problems} == {pos(queues, "-1")[0], pos(queues, "high")[0]}
    assert not [p for p in problems if "unknown queue" in p.message], problems


# ---------------------------------------------------------------- across files


def test_a_transfer_to_an_unknown_queue_is_reported_at_the_transfer_step(tmp_path: Path) -> None:
    flow = FLOW.replace("queue: cards", "queue: crads")
    _, problems = check(tmp_path, flow=flow)
    problem = only(problems, "unknown queue 'crads' (did you mean 'cards'?)")
    at(problem, tmp_path / "flow.yaml", pos(flow, "crads"))
    assert problems == [problem]


def test_without_any_queues_file_a_transfer_queue_is_unknown_and_says_what_to_add(
    tmp_path: Path,
) -> None:
    _, problems = check(tmp_path, None)
    problem = only(problems, "unknown queue 'cards'", "add one with 'queues:'")
    at(problem, tmp_path / "flow.yaml", pos(FLOW, "cards"))
    assert problem.severity is Severity.ERROR


def test_a_transfer_to_a_sip_uri_needs_no_queue(tmp_path: Path) -> None:
    flow = FLOW.replace("queue: cards", "sip: 'sip:agents@pbx.example'")
    _, problems = check(tmp_path, None, flow=flow)
    assert problems == []


def test_the_same_queue_in_two_files_is_reported_in_the_second_naming_the_first(
    tmp_path: Path,
) -> None:
    second = write(tmp_path, "zz_more_queues.yaml", "queues:\n  other: {}\n  cards: {}\n")
    first, problems = check(tmp_path)
    problem = only(problems, "duplicate id: queue 'cards' is also defined at")
    assert problem.message.endswith(f"{first}:2")
    at(problem, second, (3, 3))


def test_an_overflow_to_an_unknown_queue_is_reported_with_did_you_mean(tmp_path: Path) -> None:
    queues = QUEUES.replace("{queue: general}", "{queue: genral}")
    path, problems = check(tmp_path, queues)
    problem = only(problems, "unknown queue 'genral' (did you mean 'general'?)")
    at(problem, path, pos(queues, "genral"))


CYCLE = """\
queues:
  cards:
    max_wait: 60
    overflow: {queue: loans}
  loans:
    max_wait: 60
    overflow: {queue: cards}
  general:
    max_wait: 60
    overflow: {queue: loans}
"""


def test_an_overflow_cycle_is_reported_once_naming_its_queues(tmp_path: Path) -> None:
    path, problems = check(tmp_path, CYCLE)
    problem = only(problems, "overflow cycle: cards -> loans -> cards")
    at(problem, path, pos(CYCLE, "loans}\n  loans"))
    assert [p.message for p in problems if "cycle" in p.message] == [problem.message]


def test_a_queue_overflowing_into_itself_is_a_cycle(tmp_path: Path) -> None:
    queues = QUEUES.replace("{queue: general}", "{queue: cards}")
    path, problems = check(tmp_path, queues)
    at(only(problems, "overflow cycle: cards -> cards"), path, pos(queues, "cards}"))


def test_the_closed_flow_must_exist(tmp_path: Path) -> None:
    hours = "    hours:\n      timezone: UTC\n      open: {mon: 08:00-17:00}\n"
    queues = with_cards(hours + "      closed: {flow: dmeo}\n")
    path, problems = check(tmp_path, queues)
    problem = only(problems, "unknown flow 'dmeo' (did you mean 'demo'?)")
    at(problem, path, pos(queues, "dmeo"))


def test_closed_needs_a_flow_or_a_message(tmp_path: Path) -> None:
    hours = "    hours:\n      timezone: UTC\n      open: {mon: 08:00-17:00}\n"
    queues = with_cards(hours + "      closed: {flow: demo, message: 'We are closed.'}\n")
    path, problems = check(tmp_path, queues)
    problem = only(problems, "closed needs exactly one of 'flow', 'message'")
    at(problem, path, pos(queues, "{flow: demo,"))


def test_hold_music_must_be_a_prompt_of_the_catalogue(tmp_path: Path) -> None:
    queues = with_cards("    hold_music: welcom\n")
    path, problems = check(tmp_path, queues)
    problem = only(problems, "unknown prompt 'welcom'", "'en' prompt catalogue", "'welcome'?")
    at(problem, path, pos(queues, "welcom\n"))
    _, problems = check(tmp_path, with_cards("    hold_music: welcome\n"))
    assert problems == []


def test_hold_music_must_exist_in_the_language_of_every_flow_that_transfers_there(
    tmp_path: Path,
) -> None:
    write(tmp_path, "prompts_de.yaml", 'language: de\nprompts:\n  hallo: "Hallo."\n')
    flow_de = FLOW.replace("flow: demo", "flow: demo_de\nlanguage: de").replace("welcome", "hallo")
    write(tmp_path, "flow_de.yaml", flow_de)
    queues = with_cards("    hold_music: welcome\n")
    path, problems = check(tmp_path, queues)
    problem = only(problems, "unknown prompt 'welcome'", "'de' prompt catalogue")
    at(problem, path, pos(queues, "welcome"))
    # ... and of the flows whose callers arrive through another queue's overflow.
    queues = QUEUES.replace("  general: {}", "  general: {hold_music: welcome}")
    path, problems = check(tmp_path, queues)
    at(only(problems, "unknown prompt 'welcome'", "'de'"), path, pos(queues, "welcome"))


def test_an_overflow_message_prompt_must_exist(tmp_path: Path) -> None:
    queues = QUEUES.replace("{queue: general}", "{message: sorry_busy}")
    path, problems = check(tmp_path, queues)
    at(only(problems, "unknown prompt 'sorry_busy'"), path, pos(queues, "sorry_busy"))


def test_a_literal_message_with_a_bad_template_is_reported(tmp_path: Path) -> None:
    queues = QUEUES.replace("{queue: general}", "{message: 'Sorry {{ custmer.name }}.'}")
    path, problems = check(tmp_path, queues)
    problem = only(problems, "unknown name 'custmer' in template (did you mean 'customer'?)")
    at(problem, path, pos(queues, "'Sorry"))


def test_max_wait_needs_an_overflow(tmp_path: Path) -> None:
    queues = QUEUES.replace("    overflow: {queue: general}\n", "")
    path, problems = check(tmp_path, queues)
    at(only(problems, "max_wait needs an overflow"), path, pos(queues, "600"))


def test_an_overflow_that_can_never_happen_is_a_warning(tmp_path: Path) -> None:
    queues = QUEUES.replace("    max_wait: 600\n", "")
    path, problems = check(tmp_path, queues)
    problem = only(problems, "overflow is never used")
    assert problem.severity is Severity.WARNING and errors_in(problems) == []
    at(problem, path, pos(queues, "{queue: general}"))


# ---------------------------------------------------------------- the shipped examples


def test_validate_the_shipped_dialogs_with_their_queues_is_clean() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "ivr.cli", "validate", "dialogs", "prompts"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout == ""  # not even a warning
    flow_set, _ = validate([ROOT / "dialogs", ROOT / "prompts"], ("CRM_URL",))
    assert {"cards", "parcels"} <= set(flow_set.queues)


def test_the_queues_schema_accepts_the_example_and_refuses_unknown_keys() -> None:
    schema = queues_json_schema()
    jsonschema.validators.validator_for(schema).check_schema(schema)
    # Dates as text, the way editors (YAML 1.2 core schema) read them.
    example = json.loads(
        json.dumps(YAML(typ="safe").load(ROOT / "dialogs" / "queues.yaml"), default=str)
    )
    jsonschema.validate(example, schema)
    example["queues"]["cards"]["skils"] = ["cards"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(example, schema)


def test_ivr_schema_prints_the_queues_schema() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "ivr.cli", "schema", "--kind", "queues"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == queues_json_schema()


# ---------------------------------------------------------------- business hours

LONDON = ZoneInfo("Europe/London")
NEW_YORK = ZoneInfo("America/New_York")


def hours(
    open_: dict[str, str], *, tz: str = "Europe/London", holidays: tuple[str, ...] = ()
) -> Hours:
    return Hours.model_validate({"timezone": tz, "open": open_, "holidays": list(holidays)})


OFFICE = hours({"mon-fri": "08:00-20:00", "sat": "09:00-12:00, 13:00-17:00"})


def london(*args: int) -> datetime:
    return datetime(*args, tzinfo=LONDON)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("when", "expected"),
    [
        (london(2026, 6, 1, 8, 0), True),  # Monday, opening minute
        (london(2026, 6, 1, 7, 59, 59), False),
        (london(2026, 6, 3, 19, 59, 59), True),  # Wednesday
        (london(2026, 6, 5, 20, 0), False),  # Friday: the end is not open any more
        (london(2026, 6, 7, 12, 0), False),  # Sunday: not listed, closed
        (london(2026, 6, 6, 11, 30), True),  # Saturday morning
        (london(2026, 6, 6, 12, 30), False),  # Saturday lunch, between two ranges
        (london(2026, 6, 6, 13, 0), True),
        (london(2026, 6, 6, 17, 0), False),
    ],
)
def test_is_open_follows_weekday_and_time_ranges(when: datetime, expected: bool) -> None:
    assert is_open(OFFICE, when) is expected


def test_no_hours_is_always_open() -> None:
    assert is_open(None, london(2026, 12, 25, 3, 0))


def test_a_holiday_is_closed_all_day_in_the_queues_own_zone() -> None:
    office = hours({"mon-fri": "00:00-24:00"}, holidays=("2026-12-25",))
    assert not is_open(office, london(2026, 12, 25, 12, 0))
    assert is_open(office, london(2026, 12, 24, 23, 59))
    # 23:30 on the 24th in New York is already the 25th in London.
    assert not is_open(office, datetime(2026, 12, 24, 23, 30, tzinfo=NEW_YORK))


def test_a_moment_is_judged_in_the_queues_time_zone() -> None:
    weekdays = {"mon-fri": "08:00-20:00"}
    moment = datetime(2026, 6, 1, 22, 0, tzinfo=UTC)  # 23:00 in London, 18:00 in New York
    assert is_open(hours(weekdays, tz="America/New_York"), moment)
    assert not is_open(hours(weekdays, tz="Europe/London"), moment)


def test_24_00_ends_the_day_and_joins_the_next() -> None:
    night = hours({"mon": "20:00-24:00", "tue": "00:00-06:00"})
    assert is_open(night, london(2026, 6, 1, 23, 59, 59))
    assert is_open(night, london(2026, 6, 2, 0, 0))
    assert not is_open(night, london(2026, 6, 2, 6, 0))


def test_opening_hours_keep_their_wall_clock_time_on_a_dst_day() -> None:
    sunday = hours({"sun": "09:00-17:00"})  # 2026-03-29: London goes from GMT to BST
    assert is_open(sunday, datetime(2026, 3, 29, 8, 30, tzinfo=UTC))  # 09:30 BST
    assert not is_open(sunday, datetime(2026, 3, 29, 7, 59, tzinfo=UTC))  # 08:59 BST
    assert is_open(sunday, datetime(2026, 3, 22, 9, 30, tzinfo=UTC))  # a week before: GMT
    assert next_opening(sunday, datetime(2026, 3, 29, 0, 0, tzinfo=UTC)) == datetime(
        2026, 3, 29, 8, 0, tzinfo=UTC
    )


def test_an_opening_inside_the_spring_forward_gap_is_the_first_real_moment() -> None:
    early = hours({"sun": "01:30-05:00"})  # 01:30 does not exist on 2026-03-29 in London
    opening = next_opening(early, datetime(2026, 3, 28, 12, 0, tzinfo=UTC))
    assert opening is not None
    assert opening.astimezone(UTC) == datetime(2026, 3, 29, 1, 30, tzinfo=UTC)  # 02:30 BST
    assert is_open(early, opening)


def test_next_opening_finds_the_next_range_skipping_closed_days_and_holidays() -> None:
    office = hours(
        {"mon-fri": "08:00-20:00", "sat": "09:00-12:00, 13:00-17:00"}, holidays=("2026-06-08",)
    )
    friday_night = london(2026, 6, 5, 21, 0)
    saturday_lunch = london(2026, 6, 6, 12, 15)
    saturday_evening = london(2026, 6, 6, 18, 0)
    assert next_opening(office, friday_night) == london(2026, 6, 6, 9, 0)
    assert next_opening(office, saturday_lunch) == london(2026, 6, 6, 13, 0)
    # Sunday is closed and Monday the 8th a holiday: Tuesday morning.
    assert next_opening(office, saturday_evening) == london(2026, 6, 9, 8, 0)
    assert next_opening(office, london(2026, 6, 9, 7, 0)) == london(2026, 6, 9, 8, 0)


def test_next_opening_is_now_when_open_and_in_the_queues_zone() -> None:
    moment = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
    opening = next_opening(OFFICE, moment)
    assert opening == moment and opening is not None and opening.tzinfo == LONDON
    opening = next_opening(OFFICE, datetime(2026, 6, 1, 5, 0, tzinfo=UTC))
    assert opening is not None and (opening.tzinfo, opening.hour) == (LONDON, 8)


def test_next_opening_is_none_when_the_queue_never_opens() -> None:
    never = Hours.model_construct(timezone="UTC", open={}, holidays=[], closed=None)
    assert next_opening(never, datetime(2026, 6, 1, tzinfo=UTC)) is None


def test_a_moment_without_a_time_zone_is_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        is_open(OFFICE, datetime(2026, 6, 1, 12, 0))
    with pytest.raises(ValueError, match="aware"):
        next_opening(OFFICE, datetime(2026, 6, 1, 12, 0))
