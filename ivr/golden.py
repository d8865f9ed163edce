"""Golden conversations: regression tests for flows, written by ops staff in YAML.

    flow: bank
    conversation:
      - bot: welcome            # a regular expression the bot's next lines must match
      - caller: "1 2 3 4 5 6 7 8"
      - caller: "dtmf:1234#"
      - bot: thank you, alice
    expect:
      status: escalated          # how the run stopped
      step: card_follow_up       # where the conversation stands
      identity: {verified: true, method: pin}
      slots: {account_number: "12345678"}
      never_said: ["1234"]       # must appear nowhere on the timeline

Between two caller lines, the `bot:` patterns must match the bot's lines in order (a line may
be skipped, a pattern may not). Failures name the golden file's line.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ivr.channels.simulator import SimulatorChannel
from ivr.flow.loader import SourceDoc, parse_yaml, to_plain
from ivr.flow.problems import Problem
from ivr.simulate import Outcome, Simulation


@dataclass
class Line:
    role: str  # "bot" | "caller"
    text: str
    where: int  # line in the golden file


@dataclass
class Golden:
    path: str
    flow: str
    lines: list[Line]
    expect: dict[str, Any]
    doc: SourceDoc


@dataclass
class GoldenResult:
    golden: Golden
    failures: list[Problem] = field(default_factory=list)
    transcript: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures


def load_golden(path: Path) -> tuple[Golden | None, list[Problem]]:
    doc, problems = parse_yaml(path)
    if doc is None:
        return None, problems
    root = doc.root
    if not isinstance(root, dict) or "flow" not in root or "conversation" not in root:
        return None, [doc.problem("a golden conversation needs 'flow' and 'conversation'")]
    lines: list[Line] = []
    for i, item in enumerate(root["conversation"] or []):
        if (
            not isinstance(item, dict)
            or len(item) != 1
            or next(iter(item)) not in ("bot", "caller")
        ):
            problems.append(
                doc.problem("each entry is {bot: pattern} or {caller: text}", "conversation", i)
            )
            continue
        role, text = next(iter(item.items()))
        line, _ = doc.where("conversation", i)
        if role == "bot":
            try:
                re.compile(str(text))
            except re.error as exc:
                problems.append(doc.problem(f"bad pattern: {exc}", "conversation", i, role))
                continue
        lines.append(Line(role, str(text), line))
    expect = to_plain(root.get("expect") or {})
    return Golden(doc.path, str(root["flow"]), lines, expect, doc), problems


def _segments(lines: list[Line]) -> Iterator[tuple[list[Line], Line | None]]:
    """(bot lines, the caller line that follows them)."""
    bots: list[Line] = []
    for line in lines:
        if line.role == "bot":
            bots.append(line)
        else:
            yield bots, line
            bots = []
    yield bots, None


async def run_golden(golden: Golden, sim: Simulation) -> GoldenResult:
    result = GoldenResult(golden)
    caller_lines = [line for line in golden.lines if line.role == "caller"]
    said: list[list[str]] = [[]]  # the bot's lines, one list per stretch between caller lines
    feed = iter(caller_lines)

    def output(text: str) -> None:
        result.transcript.append(text)
        if text.startswith("bot: "):
            said[-1].append(text[5:])

    async def read_line() -> str | None:
        line = next(feed, None)
        if line is not None:
            result.transcript.append(f"caller: {line.text}")
            said.append([])
        return line.text if line else None

    if golden.flow not in sim.flows.flows:
        result.failures.append(golden.doc.problem(f"unknown flow {golden.flow!r}", "flow"))
        return result
    outcome = await sim.run(golden.flow, SimulatorChannel(read_line, output))
    fail = result.failures.append
    consumed = len(said) - 1  # caller lines the flow asked for
    for index, (patterns, caller) in enumerate(_segments(golden.lines)):
        bot_lines = said[index] if index < len(said) else []
        position = 0
        for pattern in patterns:
            found = next(
                (
                    i
                    for i in range(position, len(bot_lines))
                    if re.search(pattern.text, bot_lines[i], re.IGNORECASE)
                ),
                None,
            )
            if found is None:
                heard = " | ".join(bot_lines[position:]) or "nothing"
                fail(
                    Problem(
                        golden.path,
                        pattern.where,
                        1,
                        f"bot did not say /{pattern.text}/; it said: {heard}",
                    )
                )
                break
            position = found + 1
        if caller is not None and index >= consumed:
            fail(
                Problem(
                    golden.path,
                    caller.where,
                    1,
                    f"the flow stopped ({outcome.stop.reason}) before the caller said "
                    f"{caller.text!r}",
                )
            )
            break
    result.failures.extend(_check_expectations(golden, outcome))
    return result


def _check_expectations(golden: Golden, outcome: Outcome) -> list[Problem]:
    conv = outcome.conversation
    failures: list[Problem] = []

    def fail(message: str, *keys: str) -> None:
        failures.append(golden.doc.problem(message, "expect", *keys))

    expect = golden.expect
    if "status" in expect and str(conv.status) != str(expect["status"]):
        fail(f"status is {conv.status!s}, expected {expect['status']}", "status")
    if "step" in expect and conv.position.step != expect["step"]:
        fail(
            f"the conversation stands at {conv.position.step!r}, expected {expect['step']!r}",
            "step",
        )
    for key, wanted in (expect.get("identity") or {}).items():
        actual = getattr(conv.identity, key, None)
        if actual != wanted:
            fail(f"identity.{key} is {actual!r}, expected {wanted!r}", "identity", key)
    for key, wanted in (expect.get("slots") or {}).items():
        if conv.slots.get(key) != wanted:
            fail(f"slot {key} is {conv.slots.get(key)!r}, expected {wanted!r}", "slots", key)
    if "handoff" in expect:
        for key, wanted in expect["handoff"].items():
            actual = (conv.handoff or {}).get(key)
            if actual != wanted:
                fail(f"handoff.{key} is {actual!r}, expected {wanted!r}", "handoff", key)
    # What people can read (timestamps and ids are left out: digits match there by chance).
    stored = json.dumps(
        [[t.text, t.meta] for t in conv.timeline]
        + [conv.slots, conv.lookups, conv.profile, conv.contact, conv.handoff]
    )
    for secret in expect.get("never_said") or []:
        if str(secret) in stored:
            fail(f"{secret!r} appears in the stored conversation", "never_said")
    return failures
