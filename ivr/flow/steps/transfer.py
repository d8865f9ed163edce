"""`transfer`: hand the customer to a human queue or to a SIP destination.

The conversation records where it went; the control plane's queues (`ivr.routing`, which route
it to an agent) and the channel (a SIP REFER with context headers) do the rest. A queue transfer
keeps the customer connected while they wait; a SIP transfer ends our part of the call.
"""

from __future__ import annotations

import logging

from ivr.conversation import Conversation, Status
from ivr.flow import model as m
from ivr.flow.channel import TransferTarget
from ivr.flow.engine import FlowRun, Jump, QueueClosed, StepResult, Stop
from ivr.flow.templates import TemplateProblem, evaluate

log = logging.getLogger("ivr.flow")


def priority_of(action: m.TransferAction, run: FlowRun) -> int | None:
    """The step's priority; None when it names none (the queue's own applies)."""
    if action.priority is None or isinstance(action.priority, int):
        return action.priority
    try:
        return int(evaluate(action.priority, run.context()) or 1)
    except (TemplateProblem, TypeError, ValueError) as exc:
        log.error("flow %s: priority %r: %s", run.flow.name, action.priority, exc)
        return None


def context_headers(conv: Conversation) -> dict[str, str]:
    """What a PBX, an ACD or an agent's SIP phone on the far end can pop: the conversation id
    and a short summary (also for the queues' transfer to an agent's phone, `ivr.routing`)."""
    headers = {"X-Conversation-Id": conv.id}
    if conv.identity.verified:
        headers["X-Customer-Id"] = str(conv.identity.customer_id)
        headers["X-Verified-By"] = str(conv.identity.method)
    if conv.last_intent:
        headers["X-Intent"] = conv.last_intent
    return headers


async def run(step: m.TransferStep, run: FlowRun) -> StepResult:
    action = step.transfer
    queue = action.queue
    if queue is not None and run.services.queues is not None:
        admitted = run.services.queues.admit(queue)
        if isinstance(admitted, QueueClosed):
            return await closed(admitted, run)
        queue = admitted  # itself, or where its closed-hours overflow leads
    if action.say:
        await run.say(action.say)
    target = TransferTarget(
        queue=queue,
        skills=tuple(action.skills),
        priority=priority_of(action, run),
        sip_uri=action.sip,
        headers=context_headers(run.conv),
    )
    where = f"queue {target.queue}" if target.queue else f"{target.sip_uri}"
    run.conv.handoff = {
        "kind": "queue" if target.queue else "sip",
        "queue": target.queue,
        "skills": list(target.skills),
        "priority": target.priority,
        "sip_uri": target.sip_uri,
    }
    run.system(f"transferred to {where}")
    if not await run.channel.transfer(target):
        run.conv.handoff = None
        fallback = run.failure_step(step)
        here = run.conv.position.step
        return await run.give_up(
            None if fallback == here else fallback, f"transfer to {where} failed"
        )
    if target.queue:
        if run.services.queues is not None:  # none in the simulator: the run just stops there
            await run.services.queues.enqueue(run.conv, target, run.channel)
        return Stop(Status.QUEUED, f"waiting in queue {target.queue}", close_channel=False)
    return Stop(Status.TRANSFERRED, f"transferred to {target.sip_uri}")


async def closed(queue: QueueClosed, run: FlowRun) -> StepResult:
    """The queue is closed: its message and the end, or its closed-hours flow from the start."""
    run.system(f"queue {queue.queue} is closed")
    if queue.message:
        await run.say(queue.message)
    target = run.flows.flows.get(queue.flow) if queue.flow else None
    if target is not None:  # (a hot reload may have removed it: the validator checks both)
        run.conv.flow = target.name  # handed over for good, as a `goto` does
        return Jump(target.name, target.header.start)
    return Stop(Status.ENDED, f"queue {queue.queue} is closed")
