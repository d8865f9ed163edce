"""`say`: tell the customer something, then go on."""

from ivr.flow import model as m
from ivr.flow.engine import FlowRun, Next


async def run(step: m.SayStep, run: FlowRun) -> Next:
    await run.say(step.say, barge_in=step.barge_in)
    return Next(step.next)
