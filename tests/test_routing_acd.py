"""The ACD router: who is offered what, in which order, and what happens when nobody answers."""

from __future__ import annotations

import random
from fractions import Fraction

import pytest

from ivr.routing.acd import (
    AgentState,
    Medium,
    Offer,
    Presence,
    QueuePolicy,
    Router,
    RoutingError,
    WaitingEntry,
)
from ivr.routing.estimate import HandlingTimes, estimated_wait

AVAILABLE = Presence.AVAILABLE


def agent(
    agent_id: str,
    *,
    skills: dict[str, int] | None = None,
    queues: tuple[str, ...] = ("sales",),
    capacity: dict[str, int] | None = None,
    idle_since: float = 0.0,
    presence: Presence = AVAILABLE,
    load: dict[str, int] | None = None,
) -> AgentState:
    return AgentState(
        agent_id,
        skills=skills or {},
        queues=frozenset(queues),
        capacity=capacity or {"voice": 1},
        presence=presence,
        idle_since=idle_since,
        load=load or {},
    )


def entry(
    conversation_id: str,
    *,
    queue: str = "sales",
    medium: Medium = "voice",
    skills: tuple[str, ...] = (),
    priority: int = 1,
    at: float = 0.0,
) -> WaitingEntry:
    return WaitingEntry(conversation_id, queue, medium, frozenset(skills), priority, at)


def router(*agents: AgentState, policies: tuple[QueuePolicy, ...] = ()) -> Router:
    routing = Router(policies)
    for one in agents:
        routing.upsert_agent(one)
    return routing


def pairs(offers: list[Offer]) -> list[tuple[str, str]]:
    return [(offer.conversation_id, offer.agent_id) for offer in offers]


def test_longest_idle_agent_gets_the_offer() -> None:
    # Neither insertion order nor agent_id order would pick "b".
    routing = router(
        agent("a", idle_since=300), agent("b", idle_since=100), agent("c", idle_since=200)
    )
    routing.enqueue(entry("c1", at=400))
    assert pairs(routing.assign(now=400)) == [("c1", "b")]
    assert routing.agent("b").offer == "c1"


def test_agent_without_the_required_skill_is_never_offered() -> None:
    routing = router(
        agent("fluent", skills={"spanish": 3}, idle_since=500),
        agent("longest_idle", skills={"billing": 9}, idle_since=0),
        agent("unrated", skills={"spanish": 0, "billing": 9}, idle_since=1),  # 0: not a skill
    )
    routing.enqueue(entry("c1", skills=("spanish", "billing"), at=600))
    assert routing.assign(now=600) == []  # nobody has both
    routing.enqueue(entry("c2", skills=("spanish",), at=601))
    assert pairs(routing.assign(now=601)) == [("c2", "fluent")]
    assert routing.entry("c1").offered_to is None


def test_higher_proficiency_breaks_a_tie_in_idle_time() -> None:
    routing = router(
        agent("a", skills={"spanish": 2, "billing": 3}, idle_since=100),
        agent("b", skills={"spanish": 4, "billing": 2}, idle_since=100),
        agent("c", skills={"spanish": 9}, idle_since=100),  # lacks billing
    )
    routing.enqueue(entry("c1", skills=("spanish", "billing"), at=200))
    assert pairs(routing.assign(now=200)) == [("c1", "b")]


def test_vip_is_served_before_a_normal_entry_that_came_first() -> None:
    routing = router(agent("a"))
    routing.enqueue(entry("normal", priority=1, at=100))
    routing.enqueue(entry("vip", priority=10, at=110))
    assert [e.conversation_id for e in routing.waiting("sales")] == ["vip", "normal"]
    assert pairs(routing.assign(now=110)) == [("vip", "a")]


@pytest.mark.parametrize(("waited", "first"), [(0, "vip"), (539, "vip"), (541, "normal")])
def test_a_normal_entry_that_waited_long_enough_goes_before_a_new_vip(
    waited: float, first: str
) -> None:
    # 9 priority points at 60 s each: the normal entry must have waited 540 s when the VIP came.
    routing = router(agent("a", load={"voice": 1}), policies=(QueuePolicy("sales", 60),))
    routing.enqueue(entry("normal", priority=1, at=1000))
    routing.enqueue(entry("vip", priority=10, at=1000 + waited))
    now = 1000 + waited + 1
    assert routing.waiting("sales")[0].conversation_id == first
    routing.release("a", "voice", now)
    assert pairs(routing.assign(now)) == [(first, "a")]


def test_aging_is_per_queue_and_orders_entries_across_queues() -> None:
    policies = (QueuePolicy("fast", aging_seconds=10), QueuePolicy("slow", aging_seconds=100))
    routing = router(agent("a", queues=("fast", "slow")), policies=policies)
    routing.enqueue(entry("slow_vip", queue="slow", priority=5, at=0))
    routing.enqueue(entry("fast_normal", queue="fast", priority=1, at=0))
    # At 100 s: slow_vip 5 + 1 = 6, fast_normal 1 + 10 = 11.
    assert [e.conversation_id for e in routing.waiting(now=100)] == ["fast_normal", "slow_vip"]
    # At 20 s: slow_vip 5.2, fast_normal 3.
    assert [e.conversation_id for e in routing.waiting(now=20)] == ["slow_vip", "fast_normal"]
    assert pairs(routing.assign(now=100)) == [("fast_normal", "a")]


def test_a_missed_offer_goes_to_the_next_agent_and_the_missing_agent_goes_on_break() -> None:
    policies = (QueuePolicy("sales", offer_timeout=15),)
    routing = router(agent("a", idle_since=0), agent("b", idle_since=50), policies=policies)
    routing.enqueue(entry("c1", at=100))
    assert pairs(routing.assign(now=100)) == [("c1", "a")]
    assert routing.next_deadline() == 115
    assert routing.expire(now=114.9) == []
    assert routing.assign(now=114.9) == []  # still ringing "a"; "b" is not rung too
    assert pairs(routing.expire(now=115)) == [("c1", "a")]
    assert routing.agent("a").presence == Presence.BREAK
    assert routing.entry("c1").declined_by == {"a"}
    assert routing.next_deadline() is None
    assert pairs(routing.assign(now=116)) == [("c1", "b")]
    routing.set_presence("a", AVAILABLE, now=120)
    routing.enqueue(entry("c2", at=121))
    assert pairs(routing.assign(now=121)) == [("c2", "a")]  # back once they said so


def test_accepting_too_late_or_someone_elses_offer_is_refused() -> None:
    routing = router(agent("a"), agent("b", idle_since=10))
    routing.enqueue(entry("c1", at=100))
    routing.assign(now=100)
    with pytest.raises(RoutingError, match="offered to 'a'"):
        routing.accept("c1", "b", now=101)
    with pytest.raises(RoutingError, match="expired"):
        routing.accept("c1", "a", now=115)
    assert routing.entry("c1").offered_to == "a"


def test_a_declined_offer_goes_to_the_next_agent_and_the_decliner_stays_available() -> None:
    routing = router(agent("a", idle_since=0), agent("b", idle_since=50), agent("c", idle_since=60))
    routing.enqueue(entry("c1", at=100))
    routing.assign(now=100)
    routing.decline("c1", "a", now=101)
    assert routing.agent("a").presence == AVAILABLE and routing.agent("a").offer is None
    assert pairs(routing.assign(now=101)) == [("c1", "b")]
    routing.enqueue(entry("c2", at=102))
    assert pairs(routing.assign(now=102)) == [("c2", "a")]


def test_an_entry_declined_by_every_agent_cycles_through_them_again() -> None:
    routing = router(
        agent("a", idle_since=0), agent("b", idle_since=50), agent("off", presence=Presence.OFFLINE)
    )
    routing.enqueue(entry("c1", at=100))
    routing.assign(now=100)
    routing.decline("c1", "a", now=101)
    routing.assign(now=101)
    routing.decline("c1", "b", now=102)
    assert routing.entry("c1").declined_by == set()  # "off" is not signed in
    assert pairs(routing.assign(now=102)) == [("c1", "a")]


def test_an_entry_queued_again_after_every_agent_declined_it_is_offered_again() -> None:
    routing = router(agent("a"), agent("b", idle_since=5))
    routing.enqueue(WaitingEntry("c1", "sales", "voice", frozenset(), 1, 0, declined_by={"a", "b"}))
    assert pairs(routing.assign(now=10)) == [("c1", "a")]


@pytest.mark.parametrize("leaves", ["signs out", "is removed", "moves to another queue"])
def test_when_an_agent_leaves_the_entry_cycles_among_those_left(leaves: str) -> None:
    routing = router(agent("a", idle_since=0), agent("b", load={"voice": 1}))
    routing.enqueue(entry("c1", at=100))
    routing.assign(now=100)
    routing.decline("c1", "a", now=101)
    assert routing.assign(now=101) == []  # waits for "b", who is on a call
    if leaves == "signs out":
        routing.set_presence("b", Presence.OFFLINE, now=102)
    elif leaves == "is removed":
        routing.remove_agent("b")
    else:
        routing.upsert_agent(agent("b", queues=("support",)))
    assert pairs(routing.assign(now=102)) == [("c1", "a")]


def test_one_call_plus_three_chats_and_a_fourth_chat_waits() -> None:
    routing = router(agent("a", capacity={"voice": 1, "text": 3}))
    routing.enqueue(entry("call", at=1))
    for i in range(1, 5):
        routing.enqueue(entry(f"chat{i}", medium="text", at=1 + i))
    now = 10.0
    taken = []
    while offers := routing.assign(now):
        (offer,) = offers  # one offer at a time per agent
        taken.append(routing.accept(offer.conversation_id, "a", now).conversation_id)
        now += 1
    assert taken == ["call", "chat1", "chat2", "chat3"]
    assert routing.agent("a").load == {"voice": 1, "text": 3}
    assert [e.conversation_id for e in routing.waiting("sales")] == ["chat4"]
    routing.release("a", "text", now)
    assert pairs(routing.assign(now)) == [("chat4", "a")]


def test_a_free_agent_ranks_before_a_busy_one_and_fewer_jobs_before_more() -> None:
    text = {"voice": 1, "text": 3}
    routing = router(
        agent("two_chats", capacity=text, load={"text": 2}, idle_since=0),
        agent("one_chat", capacity=text, load={"text": 1}, idle_since=50),
        agent("idle", capacity=text, idle_since=90),
    )
    for i in range(3):
        routing.enqueue(entry(f"chat{i}", medium="text", at=100 + i))
    assert pairs(routing.assign(now=110)) == [
        ("chat0", "idle"),
        ("chat1", "one_chat"),
        ("chat2", "two_chats"),
    ]


@pytest.mark.parametrize("presence", [Presence.BREAK, Presence.WRAP_UP, Presence.OFFLINE])
def test_an_agent_on_break_wrap_up_or_offline_gets_nothing(presence: Presence) -> None:
    routing = router(agent("a", presence=presence))
    routing.enqueue(entry("c1", at=0))
    assert routing.assign(now=10) == []
    routing.set_presence("a", AVAILABLE, now=20)
    assert pairs(routing.assign(now=20)) == [("c1", "a")]


def test_an_agent_not_serving_a_queue_is_never_offered_its_entries() -> None:
    routing = router(
        agent("sales_only", queues=("sales",)),
        agent("both", queues=("sales", "support"), idle_since=9),
    )
    routing.enqueue(entry("s1", queue="support", at=0))
    routing.enqueue(entry("s2", queue="support", at=1))
    assert pairs(routing.assign(now=10)) == [("s1", "both")]
    assert routing.entry("s2").offered_to is None
    assert routing.agent("sales_only").offer is None


def test_removing_an_offered_entry_frees_the_agent() -> None:
    routing = router(agent("a"))
    routing.enqueue(entry("c1", at=0))
    routing.enqueue(entry("c2", at=1))
    routing.assign(now=5)
    removed = routing.remove("c1")
    assert removed is not None and removed.offered_to == "a"
    assert routing.agent("a").offer is None
    assert routing.next_deadline() is None
    assert pairs(routing.assign(now=6)) == [("c2", "a")]
    assert routing.remove("c1") is None


def test_removing_an_agent_puts_their_offer_back() -> None:
    routing = router(agent("a"), agent("b", load={"voice": 1}))
    routing.enqueue(entry("c1", at=0))
    routing.assign(now=5)
    offer = routing.remove_agent("a")
    assert offer is not None and offer.conversation_id == "c1"
    assert routing.entry("c1").offered_to is None
    assert routing.agent("a") is None
    routing.release("b", "voice", now=6)
    assert pairs(routing.assign(now=6)) == [("c1", "b")]


def test_going_on_break_withdraws_a_ringing_offer() -> None:
    routing = router(agent("a"), agent("b", idle_since=1))
    routing.enqueue(entry("c1", at=0))
    routing.assign(now=5)
    withdrawn = routing.set_presence("a", Presence.BREAK, now=6)
    assert withdrawn is not None and withdrawn.agent_id == "a"
    assert routing.entry("c1").declined_by == set()
    assert pairs(routing.assign(now=6)) == [("c1", "b")]


def test_an_agent_who_just_finished_waits_behind_one_idle_for_longer() -> None:
    routing = router(agent("a", idle_since=0, load={"voice": 1}), agent("b", idle_since=30))
    routing.release("a", "voice", now=50)
    assert routing.agent("a").idle_since == 50
    routing.enqueue(entry("c1", at=60))
    assert pairs(routing.assign(now=60)) == [("c1", "b")]


def test_release_starts_idle_time_or_wrap_up() -> None:
    routing = router(agent("a", capacity={"voice": 1, "text": 2}, load={"voice": 1, "text": 1}))
    routing.release("a", "voice", now=50)
    assert routing.agent("a").idle_since == 0  # still holds a chat
    routing.release("a", "text", now=60, wrap_up=True)
    assert routing.agent("a").presence == Presence.WRAP_UP
    routing.set_presence("a", AVAILABLE, now=90)
    assert routing.agent("a").idle_since == 90
    with pytest.raises(RoutingError, match="no voice job"):
        routing.release("a", "voice", now=91)


def test_positions_and_estimated_wait() -> None:
    routing = router(
        agent("a", load={"voice": 1}),
        agent("b", load={"voice": 1}),
        agent("gone", presence=Presence.OFFLINE),
    )
    routing.enqueue(entry("c1", at=0))
    routing.enqueue(entry("c2", at=5))
    routing.enqueue(entry("vip", priority=10, at=10))
    assert [routing.position(c, now=10) for c in ("vip", "c1", "c2")] == [1, 2, 3]
    assert routing.position("unknown", now=10) is None
    assert routing.staffed("sales") == 2
    times = HandlingTimes(keep=2, default=180)
    assert times.average("sales") == 180
    for seconds in (1000, 100, 200):
        times.record("sales", seconds)
    assert times.average("sales") == 150  # the last two
    wait = estimated_wait(routing.position("c2", now=10), routing.staffed("sales"), 150)
    assert wait == 225  # third in line, two agents: 3 * 150 / 2
    assert estimated_wait(1, 0, 150) == 150
    assert estimated_wait(1, 2, 150, free_agents=1) == 0


def test_reenqueue_keeps_one_entry() -> None:
    routing = router(agent("a"))
    routing.enqueue(entry("c1", at=0))
    routing.enqueue(entry("c2", at=5))
    routing.assign(now=6)  # c1 rings "a"
    routing.enqueue(entry("c1", priority=1, at=10))
    assert [e.conversation_id for e in routing.waiting("sales")] == ["c2", "c1"]
    assert routing.agent("a").offer is None  # the old offer went with the old entry
    assert pairs(routing.assign(now=11)) == [("c2", "a")]


def test_changing_aging_reorders_a_queue() -> None:
    routing = router()
    routing.enqueue(entry("normal", priority=1, at=0))
    routing.enqueue(entry("vip", priority=3, at=200))
    assert [e.conversation_id for e in routing.waiting("sales")] == ["normal", "vip"]
    routing.set_policies([QueuePolicy("sales", aging_seconds=1000)])
    assert [e.conversation_id for e in routing.waiting("sales")] == ["vip", "normal"]


def test_a_profile_edit_keeps_the_agent_signed_in_and_moves_them_between_queues() -> None:
    routing = router(agent("a", queues=("sales",), idle_since=7))
    routing.upsert_agent(agent("a", queues=("support",), presence=Presence.OFFLINE))
    assert routing.agent("a").presence == AVAILABLE and routing.agent("a").idle_since == 7
    routing.enqueue(entry("s", queue="sales", at=10))
    routing.enqueue(entry("t", queue="support", at=11))
    assert pairs(routing.assign(now=12)) == [("t", "a")]


def test_an_agent_edited_in_place_and_upserted_again_moves_queues() -> None:
    a = agent("a", queues=("sales",))
    routing = router(a)
    a.queues = frozenset({"support"})
    routing.upsert_agent(a)
    routing.enqueue(entry("s", queue="sales", at=10))
    assert routing.assign(now=11) == []
    assert routing.staffed("sales") == 0 and routing.staffed("support") == 1


# The rules written out literally (every entry x every agent, exact arithmetic), to hold the
# indexed router to them through random sequences of events.


def reference_assign(routing: Router, aging: dict[str, float], now: float) -> list[tuple[str, str]]:
    def order(e: WaitingEntry) -> tuple[Fraction, float, str]:
        effective = e.priority + (Fraction(now) - Fraction(e.enqueued_at)) / Fraction(
            aging[e.queue]
        )
        return (-effective, e.enqueued_at, e.conversation_id)

    def eligible(a: AgentState, e: WaitingEntry) -> bool:
        return (
            a.presence == AVAILABLE
            and a.offer is None
            and e.queue in a.queues
            and all(a.skills.get(s, 0) >= 1 for s in e.skills)
            and a.load.get(e.medium, 0) < a.capacity.get(e.medium, 0)
            and a.agent_id not in e.declined_by
        )

    def best(a: AgentState, e: WaitingEntry) -> tuple[int, float, int, str]:
        return (sum(a.load.values()), a.idle_since, -sum(a.skills[s] for s in e.skills), a.agent_id)

    taken: set[str] = set()
    chosen = []
    for e in sorted((e for e in routing.waiting(now=now) if e.offered_to is None), key=order):
        able = [a for a in routing.agents() if a.agent_id not in taken and eligible(a, e)]
        if able:
            pick = min(able, key=lambda a: best(a, e))
            taken.add(pick.agent_id)
            chosen.append((e.conversation_id, pick.agent_id))
    return chosen


@pytest.mark.parametrize("seed", range(40))
def test_assign_follows_the_rules_through_random_events(seed: int) -> None:
    rng = random.Random(seed)
    queues = ["q0", "q1", "q2"]
    aging = {"q0": 30.0, "q1": 60.0, "q2": 90.0}
    routing = Router(QueuePolicy(q, aging_seconds=a, offer_timeout=20) for q, a in aging.items())
    skills = ["en", "es", "billing"]
    for i in range(12):
        routing.upsert_agent(
            AgentState(
                f"a{i}",
                skills={s: rng.randint(1, 5) for s in skills if rng.random() < 0.6},
                queues=frozenset(rng.sample(queues, rng.randint(1, 2))),
                capacity={"voice": 1, "text": rng.choice([0, 2, 3])},
                presence=rng.choice([AVAILABLE, AVAILABLE, Presence.BREAK]),
                idle_since=float(rng.randint(0, 5) * 10),  # ties on purpose
            )
        )
    now, next_id, checked = 100, 0, 0
    for _ in range(150):
        now += rng.randint(0, 7)
        event = rng.random()
        if event < 0.35:
            routing.enqueue(
                WaitingEntry(
                    f"c{next_id}" if rng.random() < 0.9 else f"c{rng.randint(0, next_id)}",
                    rng.choice(queues),
                    rng.choice(["voice", "text"]),
                    frozenset(rng.sample(skills, rng.randint(0, 2))),
                    rng.choice([1, 1, 1, 5, 10]),
                    float(now),
                )
            )
            next_id += 1
        elif event < 0.55 and (ringing := [e for e in routing.waiting() if e.offered_to]):
            e = rng.choice(ringing)
            assert e.offered_to is not None and e.offer_expires is not None
            if now < e.offer_expires and rng.random() < 0.6:
                routing.accept(e.conversation_id, e.offered_to, now)
            else:
                routing.decline(e.conversation_id, e.offered_to, now)
        elif event < 0.7:
            busy = [(a, m) for a in routing.agents() for m, n in a.load.items() if n]
            if busy:
                a, m = rng.choice(busy)
                routing.release(a.agent_id, m, now, wrap_up=rng.random() < 0.3)
        elif event < 0.8:
            a = rng.choice(routing.agents())
            routing.set_presence(a.agent_id, rng.choice(list(Presence)), now)
        elif event < 0.85 and (waiting := routing.waiting("q1")):
            routing.remove(rng.choice(waiting).conversation_id)
        routing.expire(now)
        expected = reference_assign(routing, aging, now)
        assert pairs(routing.assign(now)) == expected
        checked += len(expected)
    assert checked > 10  # the sequence did route things
