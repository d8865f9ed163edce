"""Routing decisions per second through the ACD router (ivr/routing/acd.py), on one core.

1,000 waiting conversations (5 queues, mixed languages, topics, priorities, calls and chats) and
200 agents (various skills, 1 to 3 queues, one call and 0, 2 or 3 chats each). Three cases:
  a. every agent busy, a conversation arrives: assign() finds nobody free (the steady state)
  b. an agent finishes a job: assign() offers them the best entry they can take, they accept
     (one decision), a new conversation arrives; repeated
  c. 200 agents sign in at once: one assign() makes up to 200 offers
For each case it prints decisions/s and the p50/p95 of one assign() call in microseconds, then the
same for a naive router in the same run (every waiting entry x every agent, sorted afresh on each
call). The naive offers must equal the router's, and the ratio shows the speedup.

    .venv/bin/python bench/routing_decisions.py [--seconds 2] [--seed 1]
"""

from __future__ import annotations

import argparse
import copy
import os
import random
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from ivr.routing.acd import AgentState, Medium, Offer, Presence, QueuePolicy, Router, WaitingEntry

QUEUES = {"cards": 30.0, "loans": 60.0, "support": 60.0, "sales": 90.0, "vip": 120.0}  # aging
LANGUAGES = ["en", "es", "fr"]
TOPICS = ["billing", "tech", "fraud", "mortgage"]
MEDIA: list[Medium] = ["voice", "text"]
NOW = 1_700_000_000.0
NAIVE_RUNS = 5  # the naive router is slow: it is timed (and checked) on the first calls only

Pairs = list[tuple[str, str]]
World = tuple[list[WaitingEntry], list[AgentState]]


def make_entry(rng: random.Random, number: int, at: float) -> WaitingEntry:
    skills = {rng.choices(LANGUAGES, weights=[7, 2, 1])[0]}
    if rng.random() < 0.5:
        skills.add(rng.choice(TOPICS))
    return WaitingEntry(
        conversation_id=f"c{number:06d}",
        queue=rng.choice(list(QUEUES)),
        medium=rng.choices(MEDIA, weights=[6, 4])[0],
        skills=frozenset(skills),
        priority=rng.choices([1, 5, 10], weights=[85, 10, 5])[0],
        enqueued_at=at,
    )


def make_world(rng: random.Random) -> World:
    entries = [make_entry(rng, i, NOW - 1800 + i * 1.5) for i in range(1000)]
    agents = []
    for i in range(200):
        languages = ["en", *[lang for lang in ("es", "fr") if rng.random() < 0.25]]
        topics = rng.sample(TOPICS, rng.randint(1, 3))
        agents.append(
            AgentState(
                agent_id=f"a{i:03d}",
                skills={skill: rng.randint(1, 10) for skill in languages + topics},
                queues=frozenset(rng.sample(list(QUEUES), rng.randint(1, 3))),
                capacity={"voice": 1, "text": rng.choice([0, 2, 3])},
                presence=Presence.AVAILABLE,
                idle_since=NOW - 3600 + rng.uniform(0, 1800),
            )
        )
    return entries, agents


def build(world: World, busy: bool) -> tuple[Router, dict[str, WaitingEntry], list[AgentState]]:
    """A fresh router over copies of the world; the waiting dict and agents mirror its state
    (the same objects) for the naive router."""
    router = Router(QueuePolicy(name, aging_seconds=aging) for name, aging in QUEUES.items())
    entries, agents = copy.deepcopy(world)
    for agent in agents:
        if busy:
            agent.load = {medium: n for medium, n in agent.capacity.items() if n}
        router.upsert_agent(agent)
    for entry in entries:
        router.enqueue(entry)
    return router, {e.conversation_id: e for e in entries}, agents


def naive_assign(entries: Iterable[WaitingEntry], agents: list[AgentState], now: float) -> Pairs:
    """The routing rules without indexes: sort every entry, try every agent on each."""

    def order(e: WaitingEntry) -> tuple[float, float, str]:
        aging = QUEUES[e.queue]
        return (
            (e.enqueued_at - e.priority * aging - now) / aging,
            e.enqueued_at,
            e.conversation_id,
        )

    taken: set[str] = set()
    chosen = []
    for e in sorted((e for e in entries if e.offered_to is None), key=order):
        best: tuple[int, float, int, str] | None = None
        for a in agents:
            if (
                a.presence == Presence.AVAILABLE
                and a.offer is None
                and a.agent_id not in taken
                and e.queue in a.queues
                and a.load.get(e.medium, 0) < a.capacity.get(e.medium, 0)
                and all(a.skills.get(s, 0) >= 1 for s in e.skills)
                and a.agent_id not in e.declined_by
            ):
                rank = (sum(a.load.values()), a.idle_since, -sum(a.skills[s] for s in e.skills))
                if best is None or (*rank, a.agent_id) < best:
                    best = (*rank, a.agent_id)
        if best is not None:
            taken.add(best[3])
            chosen.append((e.conversation_id, best[3]))
    return chosen


@dataclass
class Result:
    decisions: int = 0
    spent: float = 0.0  # seconds inside the router
    assign: list[float] = field(default_factory=list)  # one assign() call each
    naive: list[float] = field(default_factory=list)
    note: str = ""

    def naive_offers(
        self, waiting: dict[str, WaitingEntry], agents: list[AgentState], now: float
    ) -> Pairs | None:
        """What the naive router offers in this state, on the first calls; else None."""
        if len(self.naive) >= NAIVE_RUNS:
            return None
        started = time.perf_counter()
        offers = naive_assign(waiting.values(), agents, now)
        self.naive.append(time.perf_counter() - started)
        return offers

    def routed(self, router: Router, now: float, expected: Pairs | None) -> list[Offer]:
        started = time.perf_counter()
        offers = router.assign(now)
        self.assign.append(time.perf_counter() - started)
        if expected is not None:
            got = [(o.conversation_id, o.agent_id) for o in offers]
            assert got == expected, "the naive router disagrees"
        return offers


def arrive(router: Router, waiting: dict[str, WaitingEntry], entry: WaitingEntry) -> None:
    router.enqueue(entry)
    waiting[entry.conversation_id] = entry


def all_busy(world: World, seconds: float, rng: random.Random) -> Result:
    router, waiting, agents = build(world, busy=True)
    result, now, number = Result(), NOW, 10_000
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        now += 0.5
        entry = make_entry(rng, number, now)
        number += 1
        arrive(router, waiting, entry)
        expected = result.naive_offers(waiting, agents, now)
        assert not result.routed(router, now, expected)
        result.decisions += 1  # "nobody is free" is the decision
        router.remove(entry.conversation_id)  # 1,000 keep waiting
        del waiting[entry.conversation_id]
    result.spent = sum(result.assign)
    return result


def agent_freed(world: World, seconds: float, rng: random.Random) -> Result:
    router, waiting, agents = build(world, busy=True)
    result, now, number, freed = Result(), NOW, 20_000, 0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        now += 0.5
        agent = rng.choice([a for a in agents if any(a.load.values())])
        medium = rng.choice([m for m in MEDIA if agent.load.get(m)])
        router.release(agent.agent_id, medium, now)
        freed += 1
        expected = result.naive_offers(waiting, agents, now)
        started = time.perf_counter()
        offers = result.routed(router, now, expected)
        for offer in offers:
            router.accept(offer.conversation_id, offer.agent_id, now)
        result.spent += time.perf_counter() - started
        result.decisions += len(offers)
        for offer in offers:  # as many arrive as were answered: 1,000 keep waiting
            del waiting[offer.conversation_id]
            arrive(router, waiting, make_entry(rng, number, now))
            number += 1
    free = sum(1 for a in agents if any(a.load.get(m, 0) < n for m, n in a.capacity.items()))
    result.note = (
        f"b: {result.decisions:,} offers for {freed:,} freed jobs;"
        f" {free} agents had room nobody waiting could use at the end"
    )
    return result


def sign_in(world: World, seconds: float) -> Result:
    result = Result()
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or not result.assign:
        router, waiting, agents = build(world, busy=False)
        expected = result.naive_offers(waiting, agents, NOW)
        offers = result.routed(router, NOW, expected)
        result.decisions += len(offers)
    result.spent = sum(result.assign)
    result.note = f"c: {result.decisions // len(result.assign)} offers per assign()"
    return result


def micros(times: list[float], q: float) -> float:
    ordered = sorted(times)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1e6


def main(seconds: float, seed: int) -> None:
    rng = random.Random(seed)
    world = make_world(rng)
    cases = [
        ("a. all busy, a conversation arrives", all_busy(world, seconds, rng)),
        ("b. an agent is freed: assign + accept", agent_freed(world, seconds, rng)),
        ("c. 200 agents sign in: one assign", sign_in(world, seconds)),
    ]
    print("1,000 waiting, 200 agents, 5 queues; microseconds of one assign() call")
    print(f"{'case':<38} {'decisions/s':>12} {'p50':>8} {'p95':>8} {'naive p50':>10} {'ratio':>7}")
    for name, result in cases:
        p50, naive = micros(result.assign, 0.5), micros(result.naive, 0.5)
        print(
            f"{name:<38} {result.decisions / result.spent:>12,.0f} {p50:>8.1f}"
            f" {micros(result.assign, 0.95):>8.1f} {naive:>10,.0f} {naive / p50:>6,.0f}x"
        )
    for _, result in cases:
        if result.note:
            print(result.note)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="per case")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core
    main(args.seconds, args.seed)
