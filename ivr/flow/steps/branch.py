"""`branch`: go to the first case whose condition holds, else to `next`.

A condition that fails at run time (a type error in the author's expression) counts as false
and is logged: the caller is never stuck on it.
"""

from __future__ import annotations

import logging

from ivr.flow import model as m
from ivr.flow.engine import FlowRun, Next
from ivr.flow.templates import TemplateProblem, evaluate

log = logging.getLogger("ivr.flow")


async def run(step: m.BranchStep, run: FlowRun) -> Next:
    context = run.context()
    for case in step.branch:
        try:
            if evaluate(case.when, context):
                return Next(case.next)
        except TemplateProblem as exc:
            log.error("flow %s step %s: %s", run.flow.name, run.conv.position.step, exc)
    return Next(step.next)
