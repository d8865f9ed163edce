"""`ask`: collect one typed answer (digits, number, date, yes/no, text) into a slot.

A `secure` answer goes to `FlowRun.secrets` only: it is never a slot, never stored, and the
timeline shows a placeholder.
"""

from __future__ import annotations

from typing import Any

from ivr.flow import model as m
from ivr.flow.channel import CustomerInput, InputSpec
from ivr.flow.engine import FlowRun, Next, StepResult, listening_spec
from ivr.flow.values import parse_answer, yes_no_hints


def input_spec(action: m.AskAction, language: str = "en") -> InputSpec:
    hints: tuple[str, ...] = tuple(action.hints)
    if action.type == "yes_no":
        hints += yes_no_hints(language)
    return listening_spec(
        action,
        max_digits=action.length or action.max_length,
        terminator=action.terminator,
        hints=hints,
        secure=action.secure,
        expect=action.type,
    )


async def run(step: m.AskStep, run: FlowRun) -> StepResult:
    action = step.ask

    async def interpret(answer: CustomerInput) -> Any | None:
        return parse_answer(
            answer,
            action.type,
            length=action.length,
            min_length=action.min_length,
            max_length=action.max_length,
            terminator=action.terminator,
            date_format=action.date_format,
            language=run.conv.language,
        )

    spec = input_spec(action, run.conv.language)
    value = await run.collect(action.prompt, action, spec, interpret)
    if value is None:
        return await run.give_up(run.failure_step(step), f"no valid answer for {action.slot!r}")
    if action.secure:
        run.secrets[action.slot] = str(value)
    else:
        run.conv.slots[action.slot] = value
    return Next(step.next)
