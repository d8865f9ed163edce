"""`escalate`: move the conversation to SMS or web chat, to continue at a named step.

The conversation keeps its identity and slots and records where it will resume; the handoff
(SMS gateway, signed link) sends the customer on their way, and only then is the step's `say`
said ("I've sent you a text"). Without a handoff, a number, or a text that can be sent (the
number opted out), the step does not pretend: it goes to the flow's error branch (`on_error`).
"""

from __future__ import annotations

import logging

from ivr.conversation import Status
from ivr.flow import model as m
from ivr.flow.engine import FlowRun, StepResult, Stop
from ivr.flow.templates import TemplateProblem, evaluate

log = logging.getLogger("ivr.flow")


async def run(step: m.EscalateStep, run: FlowRun) -> StepResult:
    action = step.escalate
    resume = action.resume or step.next or run.flow.header.start
    to = run.conv.contact.get("phone")
    if action.to:
        try:
            to = str(evaluate(action.to, run.context()) or "") or to
        except TemplateProblem as exc:
            log.error("flow %s: escalate.to: %s", run.flow.name, exc)
    handoff = run.services.handoff
    if handoff is None or not to:  # the link goes by text, for a chat too
        why = "no SMS gateway or chat link service" if handoff is None else "no phone number"
        return await run.give_up(
            run.error_step(step), f"cannot continue by {action.channel}: {why}"
        )
    run.conv.position.step = resume  # where the link (or a reply) will find it
    run.conv.handoff = {
        "kind": "escalation",
        "channel": action.channel,
        "resume": resume,
        "keep_call": action.keep_call,
    }
    try:
        await handoff.escalate(run.conv, action, to)
    except ValueError as exc:  # e.g. the number opted out of texts: nothing was sent
        run.conv.handoff = None
        return await run.give_up(
            run.error_step(step), f"cannot continue by {action.channel}: {exc}"
        )
    run.system(f"continuing by {action.channel}; resumes at {resume!r}")
    if action.say:  # only now: the text is on its way
        await run.say(action.say)
    return Stop(
        Status.ESCALATED, f"continues by {action.channel}", close_channel=not action.keep_call
    )
