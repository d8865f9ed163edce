"""The flow engine through the simulator channel: what a caller hears and what is kept.

Small flows are written to tmp_path and validated (no problems allowed) before they run; the
example bank flow runs against the demo CRM that `simulation()` serves in-process. Customer
systems that fail are served here, on a free loopback port. Every run is bounded by
`asyncio.wait_for`, and a script that runs out of lines hangs up, so nothing can wait forever.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import textwrap
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from ivr.channels.simulator import SimulatorChannel
from ivr.config import Settings, load_settings
from ivr.conversation import SECURE_PLACEHOLDER, Conversation, Role, Status
from ivr.flow.channel import CustomerInput, InputSpec, Prompt
from ivr.flow.engine import FlowRun
from ivr.flow.loader import FlowSet
from ivr.flow.validator import validate
from ivr.simulate import Outcome, simulation

pytestmark = pytest.mark.timeout(30)

ROOT = Path(__file__).resolve().parents[1]
RUN_TIMEOUT = 10.0

PROMPTS = """\
language: en
prompts:
  no_input: "Sorry, I didn't hear anything."
  goodbye: "Thank you for calling. Goodbye."
"""

INTENTS = """\
language: en
intents:
  check_balance:
    examples: [check my balance, what's my balance, I want to check my account balance]
  talk_to_agent:
    examples: [agent, talk to an agent, can I talk to a real person, speak to a person]
"""


class Caller(SimulatorChannel):
    """The simulator channel with a scripted caller; hangs up when the script runs out."""

    def __init__(self, *lines: str) -> None:
        self.lines = list(lines)
        self.output: list[str] = []
        self.asked: list[str] = []
        self.specs: list[InputSpec] = []
        super().__init__(self._next_line, self.output.append)

    async def _next_line(self) -> str | None:
        return self.lines.pop(0) if self.lines else None

    async def ask(self, prompt: Prompt, spec: InputSpec) -> CustomerInput | None:
        self.asked.append(prompt.text)
        self.specs.append(spec)
        return await super().ask(prompt, spec)


class ChatCaller(Caller):
    name = "chat"
    medium = "text"  # read, not heard: catalogue prompts may be worded for it


def load(tmp_path: Path, *flows: str) -> FlowSet:
    (tmp_path / "prompts.yaml").write_text(PROMPTS, encoding="utf-8")
    (tmp_path / "intents.yaml").write_text(INTENTS, encoding="utf-8")
    for i, flow in enumerate(flows):
        (tmp_path / f"flow{i}.yaml").write_text(textwrap.dedent(flow), encoding="utf-8")
    flow_set, problems = validate([tmp_path], ["CRM_URL"])
    assert [str(p) for p in problems] == []
    return flow_set


def bank_flows() -> FlowSet:
    flow_set, problems = validate([ROOT / "dialogs", ROOT / "prompts"], ["CRM_URL"])
    assert [str(p) for p in problems] == []
    return flow_set


async def play(
    flows: FlowSet,
    flow: str,
    caller: Caller,
    *,
    settings: Settings | None = None,
    persist: Any = None,
) -> Outcome:
    async with simulation(settings or load_settings(None, {}), flows, persist) as sim:
        return await asyncio.wait_for(sim.run(flow, caller), RUN_TIMEOUT)


def bot_lines(conv: Conversation, channel: str | None = None) -> list[str]:
    return [
        t.text
        for t in conv.timeline
        if t.role is Role.BOT and (channel is None or t.channel == channel)
    ]


def system_lines(conv: Conversation) -> list[str]:
    return [t.text for t in conv.timeline if t.role is Role.SYSTEM]


def questions(conv: Conversation, channel: str) -> list[str]:
    """Steps whose prompt the customer answered (or did not) on `channel`, in order."""
    asked = []
    for turn, after in zip(conv.timeline, conv.timeline[1:], strict=False):
        answered = after.role is Role.CUSTOMER or after.text == "no input"
        if turn.role is Role.BOT and turn.channel == channel and answered:
            asked.append(turn.meta["step"])
    return asked


# ---------------------------------------------------------------- asking and listening

RETRY = """\
flow: retry
start: code
steps:
  code:
    ask:
      prompt: "Please key in your four digit code."
      slot: code
      type: digits
      length: 4
      retries: {retries}
      no_input: "I did not hear anything."
      no_match: "That was not four digits."
    next: done
    on_failure: fallback
  done:
    say: "Thanks, {{{{ slots.code }}}}."
    next: bye
  fallback:
    say: "Let me find someone to help."
    next: bye
  bye:
    end: true
"""

ASK = "Please key in your four digit code."


async def test_no_input_and_no_match_reprompt_then_go_to_on_failure(tmp_path: Path) -> None:
    flows = load(tmp_path, RETRY.format(retries=2))
    caller = Caller("(silence)", "hello", "12", "1234")
    out = await play(flows, "retry", caller)

    assert bot_lines(out.conversation) == [
        ASK,
        "I did not hear anything.",
        ASK,
        "That was not four digits.",
        ASK,  # the last attempt gets no reply: the flow moves on
        "Let me find someone to help.",
    ]
    assert caller.lines == ["1234"]  # three attempts (1 + 2 retries), no more
    assert "code" not in out.conversation.slots
    assert system_lines(out.conversation) == ["no input", "no valid answer for 'code'"]
    assert (out.stop.status, out.stop.reason) == (Status.ENDED, "completed")
    assert caller.ended == "completed"


async def test_a_good_answer_after_a_retry_is_taken(tmp_path: Path) -> None:
    flows = load(tmp_path, RETRY.format(retries=1))
    out = await play(flows, "retry", Caller("one two", "one two three four"))
    assert bot_lines(out.conversation) == [ASK, "That was not four digits.", ASK, "Thanks, 1234."]
    assert out.conversation.slots == {"code": "1234"}


async def test_zero_retries_asks_once(tmp_path: Path) -> None:
    flows = load(tmp_path, RETRY.format(retries=0))
    caller = Caller("(silence)", "1234")
    out = await play(flows, "retry", caller)
    assert bot_lines(out.conversation) == [ASK, "Let me find someone to help."]
    assert caller.lines == ["1234"]


DEFAULTS = """\
flow: defaults
start: code
defaults: {on_failure: fallback}
steps:
  code:
    ask: {prompt: "Code?", slot: code, type: digits, retries: 2}
    next: bye
  fallback:
    say: "Fallback."
    next: bye
  bye:
    end: goodbye
"""


async def test_default_replies_and_flow_default_on_failure(tmp_path: Path) -> None:
    flows = load(tmp_path, DEFAULTS)
    out = await play(flows, "defaults", Caller("(silence)", "banana", "apple"))
    assert bot_lines(out.conversation) == [
        "Code?",
        "Sorry, I didn't hear anything.",  # the catalogue's no_input prompt
        "Code?",
        "Sorry, I didn't understand that.",  # built-in text: the catalogue has no no_match
        "Code?",
        "Fallback.",
        "Thank you for calling. Goodbye.",
    ]


async def test_without_any_on_failure_the_conversation_ends(tmp_path: Path) -> None:
    flows = load(
        tmp_path,
        DEFAULTS.replace("defaults: {on_failure: fallback}\n", "").replace(
            '  fallback:\n    say: "Fallback."\n    next: bye\n', ""
        ),
    )
    caller = Caller("x", "y", "z")
    out = await play(flows, "defaults", caller)
    assert out.stop.status is Status.ENDED
    assert out.stop.reason == "no valid answer for 'code'"
    assert caller.ended == out.stop.reason
    assert out.conversation.status is Status.ENDED


DIGITS = """\
flow: digits
start: code
steps:
  code:
    ask: {prompt: "Code?", slot: code, type: digits, length: 4, retries: 0}
    next: done
    on_failure: done
  done:
    end: "Got {{ slots.code }}."
"""


@pytest.mark.parametrize(
    "line", ["one two three four", "dtmf:1234#", "12 34", "1 2 3 4", "dtmf:1234"]
)
async def test_digits_from_speech_keys_and_text(tmp_path: Path, line: str) -> None:
    flows = load(tmp_path, DIGITS)
    caller = Caller(line)
    out = await play(flows, "digits", caller)
    assert out.conversation.slots == {"code": "1234"}
    assert bot_lines(out.conversation)[-1] == "Got 1234."
    # the channel is told what to expect: 4 keys, '#' ends the entry
    assert (caller.specs[0].max_digits, caller.specs[0].terminator) == (4, "#")
    said = [t for t in out.conversation.timeline if t.role is Role.CUSTOMER]
    assert [t.meta["kind"] for t in said] == ["dtmf" if line.startswith("dtmf:") else "speech"]


MENU = """\
flow: menu
start: menu
steps:
  menu:
    menu:
      prompt: "How can I help?"
      retries: 1
      options:
        - {intent: check_balance, key: "1", label: "Check balance", next: balance}
        - {intent: talk_to_agent, key: "0", next: agent}
        - {key: "3", label: "Opening hours", next: hours}
    on_failure: confused
  balance:
    end: "Balance."
  agent:
    end: "Agent."
  hours:
    end: "Hours."
  confused:
    end: "Confused."
"""


@pytest.mark.parametrize(
    ("line", "said", "intent"),
    [
        ("dtmf:1", "Balance.", "check_balance"),  # key (an option with an intent records it)
        ("dtmf:3", "Hours.", None),  # key
        ("3", "Hours.", None),  # a key typed or said as text
        ("I want to check my account balance", "Balance.", "check_balance"),  # intent
        ("can I talk to a real person", "Agent.", "talk_to_agent"),  # intent
        ("opening hours", "Hours.", None),  # label
        ("CHECK BALANCE", "Balance.", "check_balance"),  # label
    ],
)
async def test_menu_picks_by_key_by_intent_and_by_label(
    tmp_path: Path, line: str, said: str, intent: str | None
) -> None:
    flows = load(tmp_path, MENU)
    caller = Caller(line)
    out = await play(flows, "menu", caller)
    assert bot_lines(out.conversation) == ["How can I help?", said]
    assert out.conversation.last_intent == intent
    choices = caller.specs[0].choices
    assert [(c.label, c.key) for c in choices] == [
        ("Check balance", "1"),
        ("talk to agent", "0"),
        ("Opening hours", "3"),
    ]


async def test_menu_records_the_recognised_intent_on_the_customer_turn(tmp_path: Path) -> None:
    flows = load(tmp_path, MENU)
    out = await play(flows, "menu", Caller("speak to a person please"))
    turn = next(t for t in out.conversation.timeline if t.role is Role.CUSTOMER)
    assert turn.meta["intent"] == "talk_to_agent"
    assert turn.meta["nlu"] == "builtin"
    assert 0 < turn.meta["confidence"] <= 1


async def test_menu_without_a_match_reprompts_then_goes_to_on_failure(tmp_path: Path) -> None:
    flows = load(tmp_path, MENU)
    caller = Caller("dtmf:7", "the weather in Paris", "dtmf:1")
    out = await play(flows, "menu", caller)
    assert bot_lines(out.conversation) == [
        "How can I help?",
        "Sorry, I didn't understand that.",
        "How can I help?",
        "Confused.",
    ]
    assert caller.lines == ["dtmf:1"]
    assert out.conversation.last_intent is None


# ---------------------------------------------------------------- the bank: privacy and identity

BOB = ("dtmf:87654321#", "dtmf:9876#")  # the VIP customer of the demo CRM
ALICE = ("1 2 3 4 5 6 7 8", "dtmf:2580#")


def scrubbed(text: str, conv: Conversation) -> str:
    """`text` without timestamps and the conversation id, where any digits may appear."""
    return re.sub(r"\d+\.\d+", "<float>", text.replace(conv.id, "<id>"))


async def test_pin_never_reaches_transcript(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    snapshots: list[str] = []

    async def persist(conv: Conversation) -> None:
        snapshots.append(json.dumps([conv.to_dict(), [t.to_dict() for t in conv.timeline]]))

    caller = Caller(*BOB, "check balance", "no")
    out = await play(bank_flows(), "bank", caller, persist=persist)
    conv = out.conversation
    pin = "9876"

    assert bot_lines(conv)[-1] == "Thank you for calling. Goodbye."
    assert "Your balance is 98000.00 euros." in bot_lines(conv)
    identity = conv.identity
    assert (identity.verified, identity.customer_id, identity.method) == (True, "87654321", "pin")
    assert identity.verified_on == "simulator"
    # The PIN turn is a placeholder; the CRM's pin field is dropped from what is kept.
    pin_turn = next(
        t for t in conv.timeline if t.meta.get("step") == "verify" and t.role == "customer"
    )
    assert pin_turn.text == SECURE_PLACEHOLDER
    assert "confidence" not in pin_turn.meta
    assert "pin" not in conv.profile
    assert "pin" not in conv.lookups["customer"]
    assert conv.profile["first_name"] == "Bob"
    # ... and the digits appear nowhere: timeline, stored record, API view, logs, output.
    for turn in conv.timeline:
        assert pin not in turn.text
        assert pin not in scrubbed(json.dumps(turn.meta), conv)
    assert pin not in scrubbed(json.dumps(conv.to_dict()), conv)
    assert pin not in scrubbed(json.dumps(conv.public_view()), conv)
    assert all(pin not in scrubbed(s, conv) for s in snapshots)
    assert len(snapshots) > 10
    assert pin not in scrubbed(caplog.text, conv)
    assert all(pin not in scrubbed(str(r.args), conv) for r in caplog.records)
    assert all(pin not in line for line in caller.output)
    # the channel was told the answer is secure (must not be logged or echoed)
    assert [s.secure for s in caller.specs][:2] == [False, True]


async def test_wrong_pin_attempts_then_on_failure() -> None:
    caller = Caller("dtmf:12345678#", "dtmf:0000#", "dtmf:1111#", "dtmf:2222#", "dtmf:2580#")
    out = await play(bank_flows(), "bank", caller)
    conv = out.conversation

    pin_prompt = "Please key in your four digit PIN."
    assert caller.asked.count(pin_prompt) == 3  # attempts: 3
    assert caller.lines == ["dtmf:2580#"]  # the right PIN, too late: never read
    assert bot_lines(conv)[1:] == [
        "Please say or key in your eight digit account number.",
        pin_prompt,
        "That PIN is not correct.",
        pin_prompt,
        "That PIN is not correct.",
        pin_prompt,
        "I'm sorry, I couldn't verify your identity.",
        "Please hold while I connect you to an agent.",
    ]
    assert conv.identity.failed_attempts == 3
    assert not conv.identity.verified and conv.identity.customer_id is None
    assert conv.profile == {} and "customer" not in conv.lookups
    assert "verification by pin failed after 3 attempts" in system_lines(conv)
    assert out.stop.status is Status.QUEUED


async def test_unknown_account_fails_verification_without_asking_the_pin() -> None:
    caller = Caller("dtmf:11112222#", "dtmf:1234#")
    out = await play(bank_flows(), "bank", caller)
    assert "verification failed: no such customer" in system_lines(out.conversation)
    assert out.conversation.identity.failed_attempts == 1
    assert "Please key in your four digit PIN." not in caller.asked
    assert bot_lines(out.conversation)[-2] == "I'm sorry, I couldn't verify your identity."


# ---------------------------------------------------------------- customer systems that fail


@dataclass
class FlakyCrm:
    url: str = ""
    mode: str = "ok"
    hits: int = 0


@pytest.fixture
async def flaky_crm() -> AsyncIterator[FlakyCrm]:
    """A customer system that answers slowly, with garbage, with HTTP 500, or properly."""
    crm = FlakyCrm()
    release = asyncio.Event()

    async def handler(request: web.Request) -> web.Response:
        crm.hits += 1
        if crm.mode == "slow":
            await release.wait()  # until the test is over: the caller's timeout decides
        if crm.mode == "garbage":
            return web.Response(text="<html>Service Unavailable</html>", content_type="text/html")
        if crm.mode == "500":
            return web.json_response({"error": "database is down"}, status=500)
        if crm.mode == "wrong shape":
            return web.json_response(["not", "a", "customer"])
        return web.json_response({"id": "C1", "first_name": "Carol", "pin": "4321"})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    crm.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        yield crm
    finally:
        release.set()
        await runner.cleanup()


LOOKUP_FLOWS = (
    """\
    flow: fetch
    start: fetch
    steps:
      fetch:
        http: {url: "{{ env.CRM_URL }}/customers/C1", timeout: 0.3, as: thing}
        next: found
        on_error: sorry
      found:
        say: "Found {{ lookups.thing.first_name }}."
        next: bye
      sorry:
        say: "Our systems are slow today."
        next: bye
      bye:
        end: true
    """,
    """\
    flow: check
    start: check
    defaults: {on_error: sorry}
    steps:
      check:
        verify:
          lookup: {url: "{{ env.CRM_URL }}/customers/C1", timeout: 0.3, as: customer}
          factor: {prompt: "Your PIN?", field: pin, length: 4}
        on_success: found
        on_failure: sorry
      found:
        say: "Hello {{ customer.first_name }}."
        next: bye
      sorry:
        say: "Our systems are slow today."
        next: bye
      bye:
        end: true
    """,
)

FAILURE_PREFIX = {"fetch": "lookup 'thing' failed: ", "check": "verification lookup failed: "}


async def run_lookup(tmp_path: Path, crm: FlakyCrm, flow: str, mode: str) -> Outcome:
    crm.mode = mode
    flows = load(tmp_path, *LOOKUP_FLOWS)
    settings = load_settings(None, {"IVR_FLOW_ENV_CRM_URL": crm.url})
    caller = Caller("dtmf:4321#")
    out = await play(flows, flow, caller, settings=settings)
    assert crm.hits == 1
    if mode != "ok":
        assert "Your PIN?" not in caller.asked
        assert bot_lines(out.conversation) == ["Our systems are slow today."]
        assert (out.stop.status, out.stop.reason) == (Status.ENDED, "completed")
    return out


@pytest.mark.parametrize("flow", ["fetch", "check"])
async def test_lookup_that_answers_is_used(tmp_path: Path, flaky_crm: FlakyCrm, flow: str) -> None:
    out = await run_lookup(tmp_path, flaky_crm, flow, "ok")
    said = "Found Carol." if flow == "fetch" else "Hello Carol."
    assert bot_lines(out.conversation)[-1] == said


@pytest.mark.parametrize("flow", ["fetch", "check"])
async def test_lookup_timeout_goes_to_on_error(
    tmp_path: Path, flaky_crm: FlakyCrm, flow: str
) -> None:
    out = await run_lookup(tmp_path, flaky_crm, flow, "slow")
    assert FAILURE_PREFIX[flow] + "timed out after 0.3 s" in system_lines(out.conversation)


@pytest.mark.parametrize("flow", ["fetch", "check"])
async def test_lookup_garbage_goes_to_on_error(
    tmp_path: Path, flaky_crm: FlakyCrm, flow: str
) -> None:
    out = await run_lookup(tmp_path, flaky_crm, flow, "garbage")
    assert FAILURE_PREFIX[flow] + "answer is not JSON" in system_lines(out.conversation)
    if flow == "fetch":
        assert out.conversation.lookups == {"thing": None}


@pytest.mark.parametrize("flow", ["fetch", "check"])
async def test_lookup_http_500_goes_to_on_error(
    tmp_path: Path, flaky_crm: FlakyCrm, flow: str
) -> None:
    out = await run_lookup(tmp_path, flaky_crm, flow, "500")
    assert FAILURE_PREFIX[flow] + "HTTP 500" in system_lines(out.conversation)
    assert out.conversation.identity.failed_attempts == 0  # a broken CRM is not a wrong PIN


async def test_verify_lookup_of_the_wrong_shape_goes_to_on_error(
    tmp_path: Path, flaky_crm: FlakyCrm
) -> None:
    out = await run_lookup(tmp_path, flaky_crm, "check", "wrong shape")
    assert "verification lookup answer lacks 'pin' or 'id'" in system_lines(out.conversation)


async def test_bank_verify_failure_goes_to_the_flows_default_on_error(
    flaky_crm: FlakyCrm,
) -> None:
    flaky_crm.mode = "500"
    settings = load_settings(None, {"IVR_FLOW_ENV_CRM_URL": flaky_crm.url})
    out = await play(bank_flows(), "bank", Caller(ALICE[0]), settings=settings)
    assert "verification lookup failed: HTTP 500" in system_lines(out.conversation)
    assert bot_lines(out.conversation)[-2:] == [
        "Sorry, our systems are not available right now.",
        "Please hold while I connect you to an agent.",
    ]
    assert out.stop.status is Status.QUEUED


# ---------------------------------------------------------------- branch, set, templates

CALC = """\
flow: calc
start: amount
steps:
  amount:
    ask: {prompt: "How much?", slot: amount, type: number}
    next: compute
  compute:
    set:
      double: "slots.amount * 2"
      big: "slots.amount > 100"
      label: "'large' if slots.amount > 100 else 'small'"
      escape: "''.__class__.__mro__"
      escape2: "slots.amount.__class__"
    next: decide
  decide:
    branch:
      - when: "slots.amount.__class__.__mro__[1].__subclasses__()"
        next: leaked
      - when: "slots.big"
        next: big
    next: small
  leaked:
    say: "The sandbox let me through."
    next: bye
  big:
    say: >-
      Twice {{ slots.amount }} is {{ slots.double }},
      a {{ slots.label }} amount.{{ ''.__class__.__mro__ }}
    next: probe
  small:
    say: "Twice {{ slots.amount }} is {{ slots.double }}, a {{ slots.label }} amount."
    next: probe
  probe:
    say: "{{ slots.amount.__class__.__mro__[1].__subclasses__() }}"
    next: bye
  bye:
    end: "Goodbye."
"""


@pytest.mark.parametrize(
    ("line", "said"),
    [
        ("one hundred and fifty", "Twice 150 is 300, a large amount."),
        ("20", "Twice 20 is 40, a small amount."),
    ],
)
async def test_branch_set_and_templates(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, line: str, said: str
) -> None:
    caplog.set_level(logging.ERROR, logger="ivr.flow")
    flows = load(tmp_path, CALC)
    out = await play(flows, "calc", Caller(line))
    conv = out.conversation

    lines = bot_lines(conv)
    assert lines[:2] == ["How much?", said]
    assert lines[-1] == "Goodbye."
    assert "The sandbox let me through." not in lines
    assert (out.stop.status, out.stop.reason) == (Status.ENDED, "completed")
    # Python internals never reach the caller or the stored record.
    for text in [*lines, json.dumps(conv.to_dict())]:
        assert "<class" not in text and "<built-in" not in text and "object at 0x" not in text
    assert conv.slots["escape"] is None and conv.slots["escape2"] is None
    # The refused expressions are logged for the flow's author.
    assert any("unsafe" in r.getMessage() for r in caplog.records)


# ---------------------------------------------------------------- moving between flows

MAIN = """\
flow: main
start: hello
steps:
  hello:
    say: "Main menu."
    next: sub
  sub:
    call: {flow: collect}
    next: after
  after:
    say: "Back in main with {{ slots.code }}."
    next: bye
  bye:
    end: true
"""

COLLECT = """\
flow: collect
start: code
steps:
  code:
    ask: {prompt: "Code?", slot: code, type: digits, length: 4}
    next: done
  done:
    return: true
"""


async def test_call_and_return_between_flows(tmp_path: Path) -> None:
    flows = load(tmp_path, MAIN, COLLECT)
    out = await play(flows, "main", Caller("dtmf:1234#"))
    conv = out.conversation
    assert bot_lines(conv) == ["Main menu.", "Code?", "Back in main with 1234."]
    assert (conv.flow, conv.position.flow, conv.position.stack) == ("main", "main", [])
    assert out.stop.status is Status.ENDED


async def test_sub_flow_return_address_survives_a_channel_change(tmp_path: Path) -> None:
    flows = load(tmp_path, MAIN, COLLECT)
    async with simulation(load_settings(None, {}), flows) as sim:
        first = await asyncio.wait_for(sim.run("main", Caller()), RUN_TIMEOUT)  # hangs up
        conv = first.conversation
        assert (conv.position.flow, conv.position.step) == ("collect", "code")
        assert conv.position.stack == [("main", "after")]

        stored = Conversation.from_dict(json.loads(json.dumps(conv.to_dict())), conv.timeline)
        chat = ChatCaller("1234")
        await asyncio.wait_for(FlowRun(flows, stored, chat, sim.services).run(), RUN_TIMEOUT)
    assert bot_lines(stored, "chat") == ["Code?", "Back in main with 1234."]
    assert stored.position.stack == []


async def test_return_without_a_caller_ends_the_conversation(tmp_path: Path) -> None:
    flows = load(tmp_path, COLLECT)
    out = await play(flows, "collect", Caller("1234"))
    assert (out.stop.status, out.stop.reason) == (Status.ENDED, "sub-flow returned with no caller")


OTHER = """\
flow: other
start: first
steps:
  first:
    say: "Other flow, first step."
    next: second
  second:
    end: "Other flow, second step."
"""


@pytest.mark.parametrize(
    ("goto", "said"),
    [
        ("{flow: other}", ["Other flow, first step.", "Other flow, second step."]),
        ("{flow: other, step: second}", ["Other flow, second step."]),
    ],
)
async def test_goto_other_flow(tmp_path: Path, goto: str, said: list[str]) -> None:
    start = f"flow: start\nstart: go\nsteps:\n  go:\n    goto: {goto}\n"
    flows = load(tmp_path, start, OTHER)
    out = await play(flows, "start", Caller())
    assert bot_lines(out.conversation) == said
    assert (out.conversation.flow, out.conversation.position.flow) == ("other", "other")
    assert out.stop.reason == "completed"


# ---------------------------------------------------------------- handing over


@pytest.mark.parametrize(
    ("customer", "priority"),
    [(BOB, 10), (ALICE, 1)],
    ids=["vip", "regular"],
)
async def test_transfer_to_queue_keeps_channel_open_and_records_handoff(
    customer: tuple[str, str], priority: int
) -> None:
    caller = Caller(*customer, "dtmf:0")
    out = await play(bank_flows(), "bank", caller)
    conv = out.conversation
    customer_id = customer[0].removeprefix("dtmf:").replace(" ", "").rstrip("#")

    assert bot_lines(conv)[-1] == "Please hold while I connect you to an agent."
    assert (out.stop.status, out.stop.close_channel) == (Status.QUEUED, False)
    assert conv.status is Status.QUEUED
    assert caller.ended is None  # the caller stays on the line while waiting
    assert conv.handoff == {
        "kind": "queue",
        "queue": "cards",
        "skills": ["banking"],
        "priority": priority,
        "sip_uri": None,
    }
    target = caller.transferred
    assert target is not None
    assert (target.queue, target.skills, target.priority) == ("cards", ("banking",), priority)
    assert target.headers == {
        "X-Conversation-Id": conv.id,
        "X-Customer-Id": customer_id,
        "X-Verified-By": "pin",
        "X-Intent": "talk_to_agent",
    }
    assert system_lines(conv)[-1] == "transferred to queue cards"


LOST_CARD = (*ALICE, "I lost my card", "yes")


async def test_escalate_records_resume_step() -> None:
    caller = Caller(*LOST_CARD)
    out = await play(bank_flows(), "bank", caller)
    conv = out.conversation
    assert bot_lines(conv)[-3:] == [
        "I have blocked your card ending in 4321. A new card is on its way.",
        "Would you like to continue by text message? I can send you a link.",
        "I've sent you a text message with a link. You can continue there at any time.",
    ]
    assert conv.handoff == {
        "kind": "escalation",
        "channel": "sms",
        "resume": "card_follow_up",
        "keep_call": False,
    }
    assert (conv.position.flow, conv.position.step) == ("bank", "card_follow_up")
    assert conv.status is Status.ESCALATED
    assert out.stop.reason == "continues by sms"
    assert caller.ended == "continues by sms"  # keep_call is off: the call ends
    assert system_lines(conv)[-1] == "continuing by sms; resumes at 'card_follow_up'"


async def test_resume_on_another_channel_continues_at_the_stored_step_without_re_asking() -> None:
    flows = bank_flows()
    async with simulation(load_settings(None, {}), flows) as sim:
        phone = Caller(*LOST_CARD)
        first = await asyncio.wait_for(sim.run("bank", phone), RUN_TIMEOUT)
        assert first.stop.status is Status.ESCALATED
        conv = first.conversation

        stored = Conversation.from_dict(json.loads(json.dumps(conv.to_dict())), conv.timeline)
        chat = ChatCaller("talk to an agent")
        stop = await asyncio.wait_for(FlowRun(flows, stored, chat, sim.services).run(), RUN_TIMEOUT)

    assert bot_lines(stored, "chat")[0] == (
        "Welcome back, Alice. Your replacement card for the card ending in 4321 "
        "arrives within five working days."
    )
    assert stored.channels == ["simulator", "chat"]
    # Identity and answers carried over: on chat, only the menu is asked.
    assert questions(stored, "simulator") == ["identify", "verify", "menu", "offer_sms"]
    assert questions(stored, "chat") == ["menu"]
    asked_twice = [
        step
        for step in questions(stored, "chat")
        if step in questions(stored, "simulator") and step != "menu"
    ]
    assert asked_twice == []
    assert len(chat.asked) == 1  # the menu, nothing else
    assert stored.identity.verified and stored.identity.verified_on == "simulator"
    assert stop.status is Status.QUEUED
    assert chat.transferred is not None and chat.transferred.headers["X-Customer-Id"] == "12345678"


@pytest.mark.parametrize(
    ("lines", "step"),
    [((), "identify"), (("dtmf:12345678#",), "verify")],
    ids=["account question", "pin question"],
)
async def test_customer_hangup_mid_question_keeps_position(
    lines: tuple[str, ...], step: str
) -> None:
    caller = Caller(*lines)
    out = await play(bank_flows(), "bank", caller)
    conv = out.conversation
    assert out.stop.reason == "customer left"
    assert (conv.position.flow, conv.position.step) == ("bank", step)
    assert conv.status is Status.ACTIVE  # can be picked up again
    last = conv.timeline[-1]
    assert (last.role, last.text) == (Role.SYSTEM, "customer left the simulator channel")
    assert caller.ended is None


async def test_conversation_is_persisted_after_every_turn() -> None:
    persisted: list[tuple[int, str, str]] = []

    async def persist(conv: Conversation) -> None:
        persisted.append((len(conv.timeline), conv.position.step, str(conv.status)))

    caller = Caller(
        "hello there",  # not an account number
        "(silence)",
        "dtmf:12345678#",
        "dtmf:0000#",  # wrong PIN
        "dtmf:2580#",
        "check balance",
        "yes",
        "I lost my card",
        "no",  # no SMS
        "no",  # nothing else
    )
    out = await play(bank_flows(), "bank", caller, persist=persist)
    conv = out.conversation
    turns = len(conv.timeline)

    assert caller.lines == []
    assert bot_lines(conv)[-1] == "Thank you for calling. Goodbye."
    assert turns > 25
    counts = [count for count, _, _ in persisted]
    missing = sorted(set(range(1, turns + 1)) - set(counts))
    assert missing == [], f"turns not followed by a persist: {missing}"
    assert counts == sorted(counts)
    assert persisted[-1] == (turns, "goodbye", "ended")
