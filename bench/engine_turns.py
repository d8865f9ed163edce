"""Turns per second through the flow engine on one core, with a simulated channel.

Prints three figures and their ratios to the first (the baseline, same run):
  1. engine only: a say/menu/ask/branch loop, intents by the built-in matcher, kept in memory
  2. the same, persisted to SQLite after every turn (what `ivr serve` does)
  3. the bank example end to end (HTTP lookups to the demo CRM over loopback), in memory
A "turn" is one timeline entry (bot line, customer answer or system event).

    .venv/bin/python bench/engine_turns.py [--seconds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from ivr.channels.simulator import SimulatorChannel
from ivr.config import load_settings
from ivr.conversation import Conversation
from ivr.simulate import load_flows, simulation
from ivr.store import open_store

LOOP_FLOW = """
flow: loop
start: hello
steps:
  hello:
    say: "Hello {{ customer.first_name or 'there' }}."
    next: menu
  menu:
    menu:
      prompt: "Say check balance, lost card, or agent."
      options:
        - {intent: check_balance, key: "1", next: number}
        - {intent: report_lost_card, key: "2", next: number}
        - {intent: talk_to_agent, key: "0", next: bye}
  number:
    ask: {prompt: "Your eight digit number?", slot: n, type: digits, length: 8}
    next: check
  check:
    branch:
      - when: slots.n == '12345678'
        next: bye
    next: menu
  bye:
    end: "Goodbye."
"""
LOOP_LINES = ["I lost my card", "one two three four five six seven eight"]
BANK_LINES = ["12345678", "dtmf:2580#", "what's my balance", "no"]


def reader(lines: list[str]) -> Callable[[], Awaitable[str | None]]:
    feed = iter(lines)

    async def read() -> str | None:
        return next(feed, None)

    return read


async def measure(sim, flow: str, lines: list[str], seconds: float) -> tuple[float, int]:
    turns = runs = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        outcome = await sim.run(flow, SimulatorChannel(reader(lines), lambda text: None))
        turns += len(outcome.conversation.timeline)
        runs += 1
    return turns / (time.perf_counter() - started), runs


async def main(seconds: float) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        flow_dir = Path(tmp) / "flows"
        flow_dir.mkdir()
        (flow_dir / "loop.yaml").write_text(LOOP_FLOW)
        settings = load_settings(None, {})
        flows = load_flows(settings, [flow_dir])
        results: list[tuple[str, float, int]] = []
        async with simulation(settings, flows) as sim:
            rate, runs = await measure(sim, "loop", LOOP_LINES, seconds)
            results.append(("engine only, in memory (baseline)", rate, runs))
        async with open_store(f"sqlite:///{tmp}/bench.db") as store:

            async def persist(conv: Conversation) -> None:
                await store.save(conv)

            async with simulation(settings, flows, persist=persist) as sim:
                rate, runs = await measure(sim, "loop", LOOP_LINES, seconds)
                results.append(("engine, SQLite after every turn", rate, runs))
        async with simulation(settings, flows) as sim:
            rate, runs = await measure(sim, "bank", BANK_LINES, seconds)
            results.append(("bank flow with HTTP lookups, in memory", rate, runs))
    base = results[0][1]
    print(f"{'case':<42} {'turns/s':>10} {'runs':>7} {'ratio':>7}")
    for name, rate, runs in results:
        print(f"{name:<42} {rate:>10.0f} {runs:>7} {rate / base:>7.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core
    asyncio.run(main(args.seconds))
