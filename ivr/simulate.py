"""Running a flow without a phone: the engine with the simulator channel, in one process.

Used by `ivr simulate` (interactive or `--script`) and by golden conversations. Lookups reach
the customer system configured in `[flow_env]`; when that is the built-in demo CRM, it is served
in-process on a free loopback port so a flow works with nothing else running.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from aiohttp import web

from ivr.config import Settings
from ivr.conversation import Conversation
from ivr.demo.crm import create_demo_crm
from ivr.flow.channel import Channel
from ivr.flow.engine import FlowRun, FlowServices, Stop
from ivr.flow.loader import FlowSet
from ivr.flow.model import EscalateAction
from ivr.flow.problems import FlowError, errors_in
from ivr.flow.validator import validate
from ivr.speech.nlu.factory import build_classifiers

SIMULATED_CALLER = "+15550100"  # the caller id a simulated call presents


class PrintingHandoff:
    """Stands for the SMS gateway in a simulation: says what it would do (a transfer to a
    queue is printed by the channel itself)."""

    def __init__(self, output: Callable[[str], None] = print) -> None:
        self.output = output
        self.sent: list[tuple[str, str | None]] = []

    async def escalate(self, conv: Conversation, action: EscalateAction, to: str | None) -> None:
        self.sent.append((action.channel, to))
        where = f" to {to}" if to else ""
        self.output(f"[{action.channel}{where}: a link to continue conversation {conv.id}]")


@dataclass
class Outcome:
    conversation: Conversation
    stop: Stop


def flow_paths(settings: Settings, extra: list[Path] | None = None) -> list[Path]:
    """The configured dialogs and prompts, plus any file named on the command line."""
    paths = [Path(settings.flows.dialogs), Path(settings.flows.prompts)]
    for path in extra or []:
        if not any(path.resolve().is_relative_to(p.resolve()) for p in paths if p.exists()):
            paths.append(path)
    return [p for p in paths if p.exists()]


def load_flows(settings: Settings, extra: list[Path] | None = None) -> FlowSet:
    env = settings.flow_env_with_defaults()
    flow_set, problems = validate(flow_paths(settings, extra), env_keys=env)
    if errors_in(problems):
        raise FlowError(errors_in(problems))
    return flow_set


class Simulation:
    """One flow set with everything a run needs; `run()` plays one conversation."""

    def __init__(self, flows: FlowSet, services: FlowServices) -> None:
        self.flows = flows
        self.services = services

    async def run(self, flow_name: str, channel: Channel) -> Outcome:
        flow = self.flows.flows[flow_name]
        conv = Conversation.start(flow.name, flow.header.start, flow.header.language)
        conv.contact["phone"] = SIMULATED_CALLER
        stop = await FlowRun(self.flows, conv, channel, self.services).run()
        return Outcome(conv, stop)


@contextlib.asynccontextmanager
async def simulation(
    settings: Settings,
    flows: FlowSet,
    persist: Callable | None = None,
    output: Callable[[str], None] = print,
) -> AsyncIterator[Simulation]:
    env = dict(settings.flow_env)
    async with contextlib.AsyncExitStack() as stack:
        if "CRM_URL" not in env and settings.demo.crm:
            env["CRM_URL"] = await stack.enter_async_context(_serve_demo_crm())
        session = await stack.enter_async_context(aiohttp.ClientSession())
        classifiers = build_classifiers(flows.intents, settings.nlu, session)

        async def keep_in_memory(conv: Conversation) -> None:
            return None

        services = FlowServices(
            persist=persist or keep_in_memory,
            http=session,
            nlu=classifiers.get,
            env=env,
            handoff=PrintingHandoff(output),
        )
        yield Simulation(flows, services)


@contextlib.asynccontextmanager
async def _serve_demo_crm() -> AsyncIterator[str]:
    runner = web.AppRunner(create_demo_crm(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()
