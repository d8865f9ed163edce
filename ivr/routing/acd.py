"""Automatic call distribution: which waiting conversation is offered to which agent.

Pure logic: no I/O, no clock (whatever needs the time takes `now`, epoch seconds), no asyncio.
The control plane keeps one `Router` in memory, feeds it events (agents signing in, conversations
queued, offers answered) and turns the `Offer`s it returns into messages; persistence and
websockets live there. The `AgentState` and `WaitingEntry` objects the router holds and hands out
are its state: read them, change them only through its methods (re-enqueue to change a priority).

Routing rules
-------------
Order. Effective priority = priority + (now - enqueued_at) / aging_seconds of the entry's queue;
higher first, then earlier enqueued_at, then conversation_id. Aging keeps low priorities from
starving: a normal entry that has waited long enough overtakes a VIP who just arrived. Within one
queue this order never changes with time, so a queue keeps its entries sorted once by *virtual
arrival* = enqueued_at - priority * aging_seconds (earliest first, exact: no division); only
entries of different queues are compared at `now`.

One offer at a time. An entry on offer is not offered again, and an agent with a pending offer gets
no second one. An offer is live until its expires_at: at now >= expires_at it has expired.
Entries on offer still count as waiting in the views (`waiting`, `position`) with `offered_to` set.

Eligible agent for an entry: AVAILABLE, serves the entry's queue, has every required skill
(proficiency >= 1), load[medium] < capacity[medium], has not declined or missed it, and has no
pending offer. Media are counted apart, so an agent on a call may still take chats while their text
capacity allows, and the reverse.

Best agent. Fully idle agents first, the longest idle first (smallest idle_since); then agents
holding work, the fewest jobs first, then idle_since. Ties: higher summed proficiency on the
entry's skills, then agent_id.

Declines and misses. decline() puts the entry back with the agent in declined_by; expire() does the
same for a missed offer and puts the agent on BREAK (as Amazon Connect does: a missing agent is
offered nothing until they say they are back). Leaving AVAILABLE with an offer ringing withdraws it
(not a decline). Once declined_by covers every signed-in agent serving the queue (presence other
than OFFLINE), it is cleared at once, outside assign(), so the entry cycles through them again from
the next assign(). That is checked whenever declined_by grows or an agent leaves the queue.

Cost. assign() returns at once when no agent is free (the steady state of a busy centre).
Otherwise it merges, best first, streams of waiting entries that ask the same thing (queue, medium,
skills), each with the free agents able to take it ranked once per call. A stream nobody free can
take is never looked at entry by entry, and a stream leaves the merge as soon as its agents are
taken, so a call costs about (kinds of waiting entries x free agents), not waiting x agents.
"""

from __future__ import annotations

import heapq
from bisect import bisect_left, insort
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from itertools import islice, pairwise
from typing import Literal


class Presence(StrEnum):
    AVAILABLE = "available"
    BREAK = "break"
    WRAP_UP = "wrap_up"
    OFFLINE = "offline"


Medium = Literal["voice", "text"]  # a call, or a chat/SMS


class RoutingError(Exception):
    """An event that does not fit the router's state, e.g. accepting someone else's offer."""


@dataclass
class AgentState:
    agent_id: str
    skills: dict[str, int]  # skill -> proficiency 1..10
    queues: frozenset[str]  # queues this agent serves (only these are offered)
    capacity: dict[str, int]  # per medium, e.g. {"voice": 1, "text": 3}
    presence: Presence = Presence.OFFLINE
    idle_since: float = 0.0  # when the agent last became free of all work
    load: dict[str, int] = field(default_factory=dict)  # current assignments per medium
    offer: str | None = None  # conversation id offered to this agent right now


@dataclass
class WaitingEntry:
    conversation_id: str
    queue: str
    medium: Medium
    skills: frozenset[str]  # every one required
    priority: int  # higher is served first (e.g. VIP 10, normal 1)
    enqueued_at: float
    declined_by: set[str] = field(default_factory=set)  # agents who declined or missed it
    offered_to: str | None = None
    offer_expires: float | None = None


@dataclass(frozen=True)
class QueuePolicy:
    name: str
    aging_seconds: float = 60.0  # a waiting entry gains one priority point per this many seconds
    offer_timeout: float = 15.0  # seconds an agent has to accept


@dataclass(frozen=True)
class Offer:
    conversation_id: str
    agent_id: str
    queue: str
    expires_at: float


_Key = tuple[float, float, str]  # (virtual arrival, enqueued_at, conversation_id): queue order
_Kind = tuple[str, frozenset[str]]  # (medium, skills): entries the same agents can take


@dataclass
class _Queue:
    policy: QueuePolicy
    agents: set[str] = field(default_factory=set)  # serving it
    free: set[str] = field(default_factory=set)  # of those: available, no offer, spare capacity
    keys: list[_Key] = field(default_factory=list)  # every entry not yet accepted, in order
    ready: dict[_Kind, list[_Key]] = field(default_factory=dict)  # those not on offer, by kind

    def key(self, entry: WaitingEntry) -> _Key:
        virtual = entry.enqueued_at - entry.priority * self.policy.aging_seconds
        return (virtual, entry.enqueued_at, entry.conversation_id)

    def rank(self, key: _Key, now: float) -> tuple[float, float, str]:
        """Sorts entries of any queue at `now`: minus the effective priority, then the ties."""
        return ((key[0] - now) / self.policy.aging_seconds, key[1], key[2])


@dataclass(slots=True)
class _Free:
    """A free agent as assign() sees them."""

    agent: AgentState
    order: tuple[int, float, str]  # fewest jobs, longest idle, agent_id
    media: set[str]  # media with room left
    skills: frozenset[str]  # those with proficiency >= 1


class _Stream:
    """One queue's waiting entries of one kind, and the free agents able to take them."""

    __slots__ = ("first", "keys", "pool", "queue")

    def __init__(self, queue: _Queue, keys: list[_Key], pool: list[AgentState]) -> None:
        self.queue, self.keys = queue, keys
        self.pool = pool  # best first
        self.first = 0  # pool[:first] are taken already in this assign()

    def pick(self, declined: set[str], taken: set[str]) -> AgentState | None:
        while self.first < len(self.pool) and self.pool[self.first].agent_id in taken:
            self.first += 1
        # Without declines this returns pool[first] at once.
        for agent in islice(self.pool, self.first, None):
            if agent.agent_id not in taken and agent.agent_id not in declined:
                return agent
        return None

    def exhausted(self) -> bool:
        return self.first >= len(self.pool)


class Router:
    """Agents, waiting conversations and pending offers of every queue, in memory."""

    def __init__(self, policies: Iterable[QueuePolicy] = ()) -> None:
        self._policies: dict[str, QueuePolicy] = {}
        self._queues: dict[str, _Queue] = {}
        self._agents: dict[str, AgentState] = {}
        self._served: dict[str, frozenset[str]] = {}  # agent id -> the queues indexed for them
        self._free: dict[str, _Free] = {}  # agents who could take something now
        self._entries: dict[str, WaitingEntry] = {}  # every entry not yet accepted
        self._keys: dict[str, _Key] = {}  # conversation id -> its key in its queue
        self._offers: dict[str, Offer] = {}  # conversation id -> pending offer
        self.set_policies(policies)

    def set_policies(self, policies: Iterable[QueuePolicy]) -> None:
        """Replaces every policy; a queue without one gets `QueuePolicy(name)` defaults."""
        self._policies = {policy.name: policy for policy in policies}
        for name, queue in self._queues.items():
            old, queue.policy = queue.policy, self._policies.get(name) or QueuePolicy(name)
            if queue.policy.aging_seconds != old.aging_seconds:
                self._rekey(queue)

    # agents

    def upsert_agent(self, agent: AgentState) -> None:
        """Adds an agent, or replaces a known one's profile (skills, queues, capacity).

        A known agent keeps their state (presence, idle_since, load, offer): profile edits do not
        sign anyone out. Change presence with `set_presence`.
        """
        old = self._agents.get(agent.agent_id)
        left = self._detach(agent.agent_id)
        if old is not None:
            agent.presence, agent.idle_since = old.presence, old.idle_since
            agent.load, agent.offer = old.load, old.offer
        self._agents[agent.agent_id] = agent
        # A copy: the index stays right even if the caller edits agent.queues in place.
        served = self._served[agent.agent_id] = frozenset(agent.queues)
        for name in served:
            self._queue(name).agents.add(agent.agent_id)
        self._refresh(agent)
        for name in left - served:
            self._recycle_queue(name)

    def remove_agent(self, agent_id: str) -> Offer | None:
        """Forgets an agent; returns their pending offer, whose entry is waiting again."""
        agent = self._agents.get(agent_id)
        if agent is None:
            return None
        offer = self._withdraw(agent.offer) if agent.offer else None
        del self._agents[agent_id]
        for name in self._detach(agent_id):
            self._recycle_queue(name)
        return offer

    def set_presence(self, agent_id: str, presence: Presence, now: float) -> Offer | None:
        """Becoming AVAILABLE with no load sets idle_since = now. Leaving AVAILABLE withdraws
        a ringing offer (its entry waits again, the agent is not counted as declining it); it is
        returned so the agent's desktop can stop ringing."""
        agent = self._agent(agent_id)
        presence = Presence(presence)
        offer = None
        if presence != Presence.AVAILABLE and agent.offer:
            offer = self._withdraw(agent.offer)
        if presence == Presence.AVAILABLE != agent.presence and not any(agent.load.values()):
            agent.idle_since = now
        signing_out = presence == Presence.OFFLINE != agent.presence
        agent.presence = presence
        self._refresh(agent)
        if signing_out:
            for name in self._served[agent_id]:
                self._recycle_queue(name)
        return offer

    def agent(self, agent_id: str) -> AgentState | None:
        return self._agents.get(agent_id)

    def agents(self) -> list[AgentState]:
        return sorted(self._agents.values(), key=lambda agent: agent.agent_id)

    def staffed(self, queue: str) -> int:
        """Agents signed in (any presence but OFFLINE) who serve `queue`."""
        return len(self._signed_in(queue))

    # waiting conversations

    def enqueue(self, entry: WaitingEntry) -> None:
        """Queues a conversation; a known conversation id is replaced (and its offer dropped)."""
        if entry.conversation_id in self._entries:
            self.remove(entry.conversation_id)
        entry.offered_to = entry.offer_expires = None
        queue = self._queue(entry.queue)
        key = self._keys[entry.conversation_id] = queue.key(entry)
        self._entries[entry.conversation_id] = entry
        insort(queue.keys, key)
        self._set_ready(entry)
        self._recycle(entry)

    def remove(self, conversation_id: str) -> WaitingEntry | None:
        """Takes a conversation out (abandoned, or taken elsewhere), freeing the agent it rings.

        The returned entry still names that agent in `offered_to`."""
        entry = self._entries.pop(conversation_id, None)
        if entry is None:
            return None
        queue = self._queues[entry.queue]
        key = self._keys.pop(conversation_id)
        del queue.keys[bisect_left(queue.keys, key)]
        offer = self._offers.pop(conversation_id, None)
        if offer is None:
            self._unset_ready(entry, key)
        elif (agent := self._agents.get(offer.agent_id)) is not None:
            agent.offer = None
            self._refresh(agent)
        return entry

    def entry(self, conversation_id: str) -> WaitingEntry | None:
        return self._entries.get(conversation_id)

    # routing

    def assign(self, now: float) -> list[Offer]:
        """Offers waiting entries to free agents, best entry first; see the module docstring."""
        if not self._free:
            return []
        free = self._free
        heap: list[tuple[float, float, str, int, _Stream]] = []
        for queue in self._queues.values():
            if queue.free and queue.ready:
                for stream in self._streams(queue, free):
                    heap.append((*queue.rank(stream.keys[0], now), 0, stream))
        heapq.heapify(heap)
        chosen: list[tuple[WaitingEntry, AgentState]] = []
        taken: set[str] = set()
        while heap and len(taken) < len(free):
            *_, i, stream = heap[0]
            entry = self._entries[stream.keys[i][2]]
            agent = stream.pick(entry.declined_by, taken)
            if agent is not None:
                chosen.append((entry, agent))
                taken.add(agent.agent_id)
            elif stream.exhausted():
                heapq.heappop(heap)
                continue
            if i + 1 < len(stream.keys):
                rank = stream.queue.rank(stream.keys[i + 1], now)
                heapq.heapreplace(heap, (*rank, i + 1, stream))
            else:
                heapq.heappop(heap)
        # The streams read the ready lists, so they change only now.
        return [self._make_offer(entry, agent, now) for entry, agent in chosen]

    def accept(self, conversation_id: str, agent_id: str, now: float) -> WaitingEntry:
        """The agent takes the conversation: it leaves the queue and adds to their load."""
        offer = self._pending(conversation_id, agent_id)
        if now >= offer.expires_at:
            raise RoutingError(
                f"the offer of {conversation_id!r} to {agent_id!r} expired at {offer.expires_at}; "
                "expire() puts the conversation back in its queue"
            )
        del self._offers[conversation_id]
        entry = self._entries.pop(conversation_id)
        queue = self._queues[entry.queue]
        del queue.keys[bisect_left(queue.keys, self._keys.pop(conversation_id))]
        agent = self._agents[agent_id]
        agent.offer = None
        agent.load[entry.medium] = agent.load.get(entry.medium, 0) + 1
        self._refresh(agent)
        return entry

    def decline(self, conversation_id: str, agent_id: str, now: float) -> None:
        """The agent says no: the entry waits again and skips them; they stay available."""
        self._pending(conversation_id, agent_id)
        self._withdraw(conversation_id)
        entry = self._entries[conversation_id]
        entry.declined_by.add(agent_id)
        self._recycle(entry)

    def expire(self, now: float) -> list[Offer]:
        """Offers nobody answered by now: entries wait again, skipping the agents who are put on
        BREAK."""
        due = [offer for offer in self._offers.values() if offer.expires_at <= now]
        due.sort(key=lambda offer: (offer.expires_at, offer.conversation_id))
        for offer in due:
            self._withdraw(offer.conversation_id)
            agent = self._agents[offer.agent_id]
            agent.presence = Presence.BREAK
            self._refresh(agent)
            entry = self._entries[offer.conversation_id]
            entry.declined_by.add(offer.agent_id)
            self._recycle(entry)
        return due

    def release(
        self, agent_id: str, medium: Medium, now: float, wrap_up: bool = False
    ) -> Offer | None:
        """A job ended. With no load left the agent goes to WRAP_UP if asked (which withdraws a
        ringing offer, returned), else their idle time starts now."""
        agent = self._agent(agent_id)
        if agent.load.get(medium, 0) < 1:
            raise RoutingError(f"agent {agent_id!r} has no {medium} job to release")
        agent.load[medium] -= 1
        if any(agent.load.values()):
            self._refresh(agent)
            return None
        if wrap_up:
            return self.set_presence(agent_id, Presence.WRAP_UP, now)
        agent.idle_since = now
        self._refresh(agent)
        return None

    # views

    def waiting(self, queue: str | None = None, now: float | None = None) -> list[WaitingEntry]:
        """Entries not yet accepted (those on offer too), in routing order.

        One queue's order does not depend on `now`; across queues (queue=None) it does, and
        without `now` it is taken at the newest entry's enqueued_at."""
        if queue is not None:
            found = self._queues.get(queue)
            return [self._entries[key[2]] for key in found.keys] if found else []
        entries = list(self._entries.values())
        at = now if now is not None else max((e.enqueued_at for e in entries), default=0.0)
        return sorted(
            entries, key=lambda e: self._queues[e.queue].rank(self._keys[e.conversation_id], at)
        )

    def position(self, conversation_id: str, now: float) -> int | None:
        """1-based place among the entries of its queue (those on offer included), or None."""
        entry = self._entries.get(conversation_id)
        if entry is None:
            return None
        return bisect_left(self._queues[entry.queue].keys, self._keys[conversation_id]) + 1

    def next_deadline(self) -> float | None:
        """The earliest pending offer expiry: when the service should call expire()."""
        return min((offer.expires_at for offer in self._offers.values()), default=None)

    # internals

    def _queue(self, name: str) -> _Queue:
        queue = self._queues.get(name)
        if queue is None:
            queue = self._queues[name] = _Queue(self._policies.get(name) or QueuePolicy(name))
        return queue

    def _agent(self, agent_id: str) -> AgentState:
        agent = self._agents.get(agent_id)
        if agent is None:
            raise RoutingError(f"unknown agent {agent_id!r}; upsert_agent() them first")
        return agent

    def _pending(self, conversation_id: str, agent_id: str) -> Offer:
        offer = self._offers.get(conversation_id)
        if offer is None or offer.agent_id != agent_id:
            holder = f" (it is offered to {offer.agent_id!r})" if offer else ""
            raise RoutingError(
                f"conversation {conversation_id!r} is not on offer to agent {agent_id!r}{holder}"
            )
        return offer

    def _refresh(self, agent: AgentState) -> None:
        """Keeps the free-agent indexes true after any change to the agent."""
        media = {medium for medium, n in agent.capacity.items() if agent.load.get(medium, 0) < n}
        free = agent.presence == Presence.AVAILABLE and agent.offer is None and bool(media)
        for name in self._served[agent.agent_id]:
            pool = self._queues[name].free
            if free:
                pool.add(agent.agent_id)
            else:
                pool.discard(agent.agent_id)
        if free:
            # What assign() needs of them, computed once per change rather than once per call.
            order = (sum(agent.load.values()), agent.idle_since, agent.agent_id)
            skills = frozenset(skill for skill, level in agent.skills.items() if level >= 1)
            self._free[agent.agent_id] = _Free(agent, order, media, skills)
        else:
            self._free.pop(agent.agent_id, None)

    def _detach(self, agent_id: str) -> frozenset[str]:
        """Takes the agent out of the indexes; returns the queues they were in."""
        self._free.pop(agent_id, None)
        served = self._served.pop(agent_id, frozenset())
        for name in served:
            self._queues[name].agents.discard(agent_id)
            self._queues[name].free.discard(agent_id)
        return served

    def _streams(self, queue: _Queue, free: dict[str, _Free]) -> list[_Stream]:
        """The queue's waiting entries by kind, each with the free agents able to take them, best
        first; kinds nobody free can take are left out."""
        members = sorted((free[agent_id] for agent_id in queue.free), key=lambda f: f.order)
        # Proficiency only breaks ties of load and idle time: sort again only if there are any.
        tied = any(a.order[:2] == b.order[:2] for a, b in pairwise(members))
        reach: dict[str, frozenset[str]] = {}  # medium -> every skill of those with room for it
        for f in members:
            for medium in f.media:
                reach[medium] = reach.get(medium, frozenset()) | f.skills
        streams = []
        for (medium, skills), keys in queue.ready.items():
            if medium not in reach or not skills <= reach[medium]:
                continue  # a quick no, before looking at each agent
            pool = [f.agent for f in members if medium in f.media and skills <= f.skills]
            if tied:
                pool.sort(
                    key=lambda a: (
                        sum(a.load.values()),
                        a.idle_since,
                        -sum(a.skills[skill] for skill in skills),
                        a.agent_id,
                    )
                )
            if pool:
                streams.append(_Stream(queue, keys, pool))
        return streams

    def _make_offer(self, entry: WaitingEntry, agent: AgentState, now: float) -> Offer:
        queue = self._queues[entry.queue]
        offer = Offer(
            entry.conversation_id, agent.agent_id, entry.queue, now + queue.policy.offer_timeout
        )
        self._offers[entry.conversation_id] = offer
        self._unset_ready(entry, self._keys[entry.conversation_id])
        entry.offered_to, entry.offer_expires = agent.agent_id, offer.expires_at
        agent.offer = entry.conversation_id
        self._refresh(agent)
        return offer

    def _withdraw(self, conversation_id: str) -> Offer:
        """Cancels a pending offer: the entry waits again, the agent is free of it."""
        offer = self._offers.pop(conversation_id)
        entry = self._entries[conversation_id]
        entry.offered_to = entry.offer_expires = None
        self._set_ready(entry)
        agent = self._agents[offer.agent_id]
        agent.offer = None
        self._refresh(agent)
        return offer

    def _set_ready(self, entry: WaitingEntry) -> None:
        kind = (entry.medium, entry.skills)
        ready = self._queues[entry.queue].ready
        insort(ready.setdefault(kind, []), self._keys[entry.conversation_id])

    def _unset_ready(self, entry: WaitingEntry, key: _Key) -> None:
        kind = (entry.medium, entry.skills)
        ready = self._queues[entry.queue].ready
        keys = ready[kind]
        del keys[bisect_left(keys, key)]
        if not keys:
            del ready[kind]  # so assign() never looks at empty streams

    def _signed_in(self, name: str) -> set[str]:
        queue = self._queues.get(name)
        if queue is None:
            return set()
        agents = self._agents
        return {i for i in queue.agents if agents[i].presence != Presence.OFFLINE}

    def _recycle(self, entry: WaitingEntry, signed_in: set[str] | None = None) -> None:
        """Clears declined_by once it covers every signed-in agent of the queue."""
        if not entry.declined_by:
            return
        if signed_in is None:
            signed_in = self._signed_in(entry.queue)
        if signed_in <= entry.declined_by:
            entry.declined_by.clear()

    def _recycle_queue(self, name: str) -> None:
        queue = self._queues.get(name)
        if queue is None:
            return
        signed_in = self._signed_in(name)
        for key in queue.keys:
            self._recycle(self._entries[key[2]], signed_in)

    def _rekey(self, queue: _Queue) -> None:
        """New keys for every entry after the queue's aging changed."""
        for key in queue.keys:
            self._keys[key[2]] = queue.key(self._entries[key[2]])
        queue.keys = sorted(self._keys[key[2]] for key in queue.keys)
        for kind, keys in queue.ready.items():
            queue.ready[kind] = sorted(self._keys[key[2]] for key in keys)
