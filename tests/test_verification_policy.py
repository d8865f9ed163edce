"""A flow's `verification` policy: how long a verification counts on another channel
(`valid_minutes`) and which steps need one made on the channel in use (`reverify`).

Each test stores a conversation as an earlier channel left it (verified on the phone, or in the
chat, some minutes ago), then continues it on a scripted channel against the demo CRM, as a
continue link or a returning caller would. The validator's checks of the policy are here too.
"""

from __future__ import annotations

import asyncio
import textwrap
import time
from pathlib import Path

import pytest

from ivr.config import load_settings
from ivr.conversation import SECURE_PLACEHOLDER, Conversation, Role
from ivr.flow.engine import FlowRun
from ivr.flow.loader import FlowSet
from ivr.flow.validator import validate
from ivr.simulate import simulation
from tests.test_engine import Caller, ChatCaller, load

pytestmark = pytest.mark.timeout(30)

RUN_TIMEOUT = 10.0
PIN = "2580"  # Alice's, in the demo CRM

PAY = """\
flow: pay
start: welcome_back
defaults: {on_error: sorry, on_failure: sorry}
verification:
  valid_minutes: 30
  reverify: {steps: [payment], via: verify}
steps:
  identify:
    ask: {prompt: "Your account number?", slot: account_number, type: digits, length: 8}
    next: verify
  verify:
    verify:
      lookup: {url: "{{ env.CRM_URL }}/customers/{{ slots.account_number }}", as: customer}
      factor: {prompt: "Your PIN?", field: pin, method: pin, length: 4}
      keep: [first_name]
      attempts: 1
    on_success: menu
    on_failure: sorry
  welcome_back:
    branch:
      - when: customer.verified
        next: menu
      - when: slots.account_number
        next: verify
    next: identify
  menu:
    menu:
      prompt: "Say balance or pay."
      options:
        - {key: "1", label: balance, next: balance}
        - {key: "2", label: pay, next: payment}
  balance:
    say: "Your balance is 10 pounds."
    next: bye
  payment:
    say: "Payment sent, {{ customer.first_name }}."
    next: bye
  bye:
    end: "Goodbye."
  sorry:
    end: "Sorry."
"""


def flows(tmp_path: Path, policy: str | None = None) -> FlowSet:
    text = PAY
    if policy is not None:
        start = text.index("verification:")
        text = text[:start] + policy + text[text.index("\nsteps:") + 1 :]
    return load(tmp_path, text)


def stored(verified_on: str, minutes_ago: float, step: str = "welcome_back") -> Conversation:
    """A conversation as a channel left it: Alice identified and verified by PIN."""
    conv = Conversation.start("pay", step)
    conv.slots["account_number"] = "12345678"
    conv.profile = {"first_name": "Alice"}
    conv.identity.mark_verified("12345678", "pin", verified_on)
    conv.identity.verified_at = time.time() - minutes_ago * 60
    conv.add_turn(verified_on, Role.SYSTEM, "customer verified by pin")
    return conv


async def continue_on(flow_set: FlowSet, conv: Conversation, channel: Caller) -> None:
    async with simulation(load_settings(None, {}), flow_set) as sim:
        run = FlowRun(flow_set, conv, channel, sim.services)
        await asyncio.wait_for(run.run(), RUN_TIMEOUT)


def system_lines(conv: Conversation) -> list[str]:
    return [t.text for t in conv.timeline if t.role is Role.SYSTEM]


# ---------------------------------------------------------------- valid_minutes


@pytest.mark.parametrize(
    ("verified_on", "minutes_ago", "asked_again"),
    [("sip", 31, True), ("sip", 5, False), ("chat", 120, False)],
    ids=["older on another channel", "recent on another channel", "older on this channel"],
)
async def test_a_verification_older_than_valid_minutes_is_forgotten_on_another_channel(
    tmp_path: Path, verified_on: str, minutes_ago: float, asked_again: bool
) -> None:
    conv = stored(verified_on, minutes_ago)
    chat = ChatCaller(*([f"dtmf:{PIN}#"] if asked_again else []), "1")
    await continue_on(flows(tmp_path), conv, chat)

    expected = ["Your PIN?", "Say balance or pay."] if asked_again else ["Say balance or pay."]
    assert chat.asked == expected  # never the account number: the slots are kept
    expired = [line for line in system_lines(conv) if line.startswith("verification expired")]
    assert len(expired) == (1 if asked_again else 0)
    if asked_again:
        assert expired[0].startswith(f"verification expired: made on sip {minutes_ago} minutes")
        assert conv.identity.verified_on == "chat"  # proven again, here
    assert conv.identity.verified and conv.identity.customer_id == "12345678"
    assert PIN not in [t.text for t in conv.timeline]
    assert (SECURE_PLACEHOLDER in [t.text for t in conv.timeline if t.channel == "chat"]) is (
        asked_again
    )


async def test_without_a_policy_a_verification_counts_on_every_channel(tmp_path: Path) -> None:
    conv = stored("sip", 24 * 60)
    chat = ChatCaller("1")
    await continue_on(flows(tmp_path, policy=""), conv, chat)
    assert chat.asked == ["Say balance or pay."]
    assert conv.identity.verified_on == "sip"


# ---------------------------------------------------------------- reverify


async def test_a_reverify_step_verifies_again_on_this_channel_then_goes_back_to_it(
    tmp_path: Path,
) -> None:
    conv = stored("sip", 5)  # recent: valid_minutes keeps it, but not for a payment
    chat = ChatCaller("2", f"dtmf:{PIN}#")
    await continue_on(flows(tmp_path), conv, chat)

    assert chat.asked == ["Say balance or pay.", "Your PIN?"]
    assert chat.output[-3:-1] == ["bot: Payment sent, Alice.", "bot: Goodbye."]
    assert "step 'payment' needs a verification made on this channel; verifying at 'verify'" in (
        system_lines(conv)
    )
    assert conv.identity.verified and conv.identity.verified_on == "chat"


async def test_a_reverify_step_goes_on_after_a_verification_on_this_channel(
    tmp_path: Path,
) -> None:
    chat = ChatCaller("2")
    conv = stored("chat", 5)
    await continue_on(flows(tmp_path), conv, chat)
    assert chat.asked == ["Say balance or pay."]
    assert chat.output[-3:-1] == ["bot: Payment sent, Alice.", "bot: Goodbye."]


async def test_a_reverify_step_needs_a_verification_within_its_minutes(tmp_path: Path) -> None:
    policy = "verification:\n  reverify: {steps: [payment], via: verify, within_minutes: 10}\n"
    chat = ChatCaller("2", f"dtmf:{PIN}#")
    conv = stored("chat", 20)  # on this channel, but too long ago for a payment
    await continue_on(flows(tmp_path, policy), conv, chat)
    assert chat.asked == ["Say balance or pay.", "Your PIN?"]
    assert chat.output[-3:-1] == ["bot: Payment sent, Alice.", "bot: Goodbye."]


async def test_a_failed_reverification_does_not_reach_the_step(tmp_path: Path) -> None:
    conv = stored("sip", 5)
    chat = ChatCaller("2", "dtmf:0000#")
    await continue_on(flows(tmp_path), conv, chat)
    assert chat.output[-2] == "bot: Sorry."
    assert "bot: Payment sent, Alice." not in chat.output
    assert not conv.identity.verified  # the phone's verification was dropped, not restored


async def test_other_steps_are_not_guarded(tmp_path: Path) -> None:
    chat = ChatCaller("1")
    conv = stored("sip", 5)
    await continue_on(flows(tmp_path), conv, chat)
    assert chat.asked == ["Say balance or pay."]
    assert conv.identity.verified_on == "sip"


# ---------------------------------------------------------------- the validator


def problems_of(tmp_path: Path, policy: str) -> list[str]:
    start = PAY.index("verification:")
    text = PAY[:start] + textwrap.dedent(policy) + PAY[PAY.index("\nsteps:") + 1 :]
    (tmp_path / "flow.yaml").write_text(text, encoding="utf-8")
    _, problems = validate([tmp_path], ["CRM_URL"])
    return [str(p).replace(str(tmp_path) + "/", "") for p in problems]


@pytest.mark.parametrize(
    ("policy", "problem"),
    [
        (
            "verification:\n  reverify: {steps: [paymnt], via: verify}\n",
            "flow.yaml:5:22: unknown step 'paymnt' (did you mean 'payment'?)",
        ),
        (
            "verification:\n  reverify: {steps: [payment], via: verfy}\n",
            "flow.yaml:5:37: unknown step 'verfy' (did you mean 'verify'?)",
        ),
        (
            "verification:\n  reverify: {steps: [payment, verify], via: verify}\n",
            "flow.yaml:5:45: step 'verify' verifies again for the steps in 'steps', so it cannot "
            "be one of them: it would send the customer to itself",
        ),
        (
            "verification:\n  reverify: {steps: [payment], via: balance}\n",
            "flow.yaml:5:37: step 'balance' leads to no 'verify' step: the customer could never "
            "be verified again; name the verify step (or one leading to it)",
        ),
        (
            "verification:\n  valid_minutes: 0\n",
            "flow.yaml:5:18: verification.valid_minutes: Input should be greater than 0",
        ),
        (
            "verification:\n  reverify: {step: [payment], via: verify}\n",
            "flow.yaml:5:14: unknown field 'step' (did you mean 'steps'?)",
        ),
    ],
    ids=["unknown step", "unknown via", "via guarded", "via never verifies", "zero", "typo"],
)
def test_the_validator_checks_the_policy(tmp_path: Path, policy: str, problem: str) -> None:
    problems = problems_of(tmp_path, policy)
    assert any(p.startswith(problem) for p in problems), problems
