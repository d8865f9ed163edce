"""`end`: say a last word (optional) and close the conversation."""

from ivr.conversation import Status
from ivr.flow import model as m
from ivr.flow.engine import FlowRun, Stop


async def run(step: m.EndStep, run: FlowRun) -> Stop:
    if isinstance(step.end, str):
        await run.say(step.end)
    return Stop(Status.ENDED, "completed")
