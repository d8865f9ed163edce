"""`goto`, `call` and `return`: moving between steps and flows.

`call` runs another flow as a sub-flow and comes back to `next` when it reaches `return`;
the return address is part of the stored position, so it survives a channel change.
"""

from __future__ import annotations

from ivr.conversation import Status
from ivr.flow import model as m
from ivr.flow.engine import FlowRun, Jump, Next, StepResult, Stop


async def run_goto(step: m.GotoStep, run: FlowRun) -> StepResult:
    if isinstance(step.goto, str):
        return Next(step.goto)
    target = run.flows.flows[step.goto.flow]
    run.conv.flow = target.name  # handed over for good (a `call` returns, so it does not)
    return Jump(target.name, step.goto.step or target.header.start)


async def run_call(step: m.CallStep, run: FlowRun) -> StepResult:
    target = run.flows.flows[step.call.flow]
    run.conv.position.stack.append((run.flow.name, step.next))
    return Jump(target.name, target.header.start)


async def run_return(step: m.ReturnStep, run: FlowRun) -> StepResult:
    if not run.conv.position.stack:
        return Stop(Status.ENDED, "sub-flow returned with no caller")
    flow, next_step = run.conv.position.stack.pop()
    return Jump(flow, next_step)
