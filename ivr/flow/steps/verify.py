"""`verify`: identify the customer with a lookup and prove it with a second factor.

The factor (PIN, date of birth, ...) is compared in constant time with a field of the lookup
result; that field is removed before anything is kept, so the secret is never stored, logged or
shown. What *is* recorded is how and when the customer was verified, for every later channel and
for the agent's screen.
"""

from __future__ import annotations

import hmac
from typing import Any

from ivr.flow import model as m
from ivr.flow.channel import CustomerInput, InputSpec
from ivr.flow.engine import FlowRun, Next, StepResult, listening_spec
from ivr.flow.steps.http import LookupFailed, fetch_json
from ivr.flow.values import parse_answer


def factor_spec(factor: m.VerifyFactor) -> InputSpec:
    return listening_spec(
        factor,
        max_digits=factor.length,
        terminator=factor.terminator,
        secure=True,
        expect=factor.type,
    )


def _matches(answer: Any, expected: Any) -> bool:
    return hmac.compare_digest(str(answer).encode(), str(expected).encode())


async def run(step: m.VerifyStep, run: FlowRun) -> StepResult:
    action = step.verify
    factor = action.factor
    identity = run.conv.identity
    try:
        record = await fetch_json(run, action.lookup)
    except LookupFailed as exc:
        if exc.status == 404:
            identity.failed_attempts += 1
            return await run.give_up(step.on_failure, "verification failed: no such customer")
        return await run.give_up(run.error_step(step), f"verification lookup failed: {exc}")
    if not isinstance(record, dict) or factor.field not in record or action.id_field not in record:
        return await run.give_up(
            run.error_step(step),
            f"verification lookup answer lacks {factor.field!r} or {action.id_field!r}",
        )
    expected = record[factor.field]
    kept = {
        k: v
        for k, v in record.items()
        if k != factor.field and (action.keep is None or k in action.keep or k == action.id_field)
    }

    async def interpret(answer: CustomerInput) -> Any | None:
        return parse_answer(
            answer,
            factor.type,
            length=factor.length,
            terminator=factor.terminator,
            date_format=factor.date_format,
        )

    method = factor.method or factor.field
    for attempt in range(action.attempts):
        value = await run.collect(factor.prompt, factor, factor_spec(factor), interpret)
        if value is not None and _matches(value, expected):
            identity.mark_verified(str(record[action.id_field]), method, run.channel.name)
            run.conv.profile = kept
            run.conv.lookups[action.lookup.as_] = kept
            run.system(f"customer verified by {method}")
            return Next(step.on_success)
        identity.failed_attempts += 1
        if attempt < action.attempts - 1:
            if value is None:  # nothing usable was said: not a wrong PIN
                await run.say(factor.no_match or run.default_text("no_match"))
            elif action.wrong:
                await run.say(action.wrong)
    return await run.give_up(
        step.on_failure, f"verification by {method} failed after {action.attempts} attempts"
    )
