"""One module per step kind; `run_step` dispatches a validated step to its runner."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from ivr.flow import model as m
from ivr.flow.engine import FlowRun, StepResult
from ivr.flow.steps import (
    ask,
    branch,
    end,
    escalate,
    http,
    menu,
    navigation,
    say,
    set_slots,
    transfer,
    verify,
)

Runner = Callable[[Any, FlowRun], Awaitable[StepResult]]

RUNNERS: dict[type[m.Step], Runner] = {
    m.SayStep: say.run,
    m.AskStep: ask.run,
    m.MenuStep: menu.run,
    m.BranchStep: branch.run,
    m.SetStep: set_slots.run,
    m.HttpStep: http.run,
    m.VerifyStep: verify.run,
    m.TransferStep: transfer.run,
    m.EscalateStep: escalate.run,
    m.GotoStep: navigation.run_goto,
    m.CallStep: navigation.run_call,
    m.ReturnStep: navigation.run_return,
    m.EndStep: end.run,
}


async def run_step(step: m.Step, run: FlowRun) -> StepResult:
    return await RUNNERS[type(step)](step, run)
