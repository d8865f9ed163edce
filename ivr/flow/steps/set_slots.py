"""`set`: compute slot values from expressions (kept JSON-serialisable for the store)."""

from __future__ import annotations

import logging
import math
from typing import Any

from ivr.flow import model as m
from ivr.flow.engine import FlowRun, Next
from ivr.flow.templates import TemplateProblem, evaluate

log = logging.getLogger("ivr.flow")


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None  # inf and NaN cannot be stored
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return str(value)


async def run(step: m.SetStep, run: FlowRun) -> Next:
    for name, expression in step.set.items():
        try:
            run.conv.slots[name] = _jsonable(evaluate(expression, run.context()))
        except TemplateProblem as exc:
            log.error("flow %s step %s: %s", run.flow.name, run.conv.position.step, exc)
            run.conv.slots[name] = None
    return Next(step.next)
