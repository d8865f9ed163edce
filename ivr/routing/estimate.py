"""Estimated waits: recent handling times per queue and the expected wait of a queue position.

Pure arithmetic, no clock and no I/O; `Router.staffed(queue)` counts the agents serving a queue.
"""

from __future__ import annotations

from collections import deque


class HandlingTimes:
    """Recent handling times per queue (talk + wrap-up seconds), to estimate waits."""

    def __init__(self, keep: int = 50, default: float = 180.0) -> None:
        self.keep = keep
        self.default = default  # until a queue has handled anything
        self._times: dict[str, deque[float]] = {}

    def record(self, queue: str, seconds: float) -> None:
        self._times.setdefault(queue, deque(maxlen=self.keep)).append(seconds)

    def average(self, queue: str) -> float:
        """Mean of the last `keep` handling times of the queue, or the default when none."""
        times = self._times.get(queue)
        return sum(times) / len(times) if times else self.default


def estimated_wait(
    position: int, agents_serving: int, average_handle: float, free_agents: int = 0
) -> float:
    """Seconds until someone is expected to answer the conversation at `position` (1-based).

    Busy agents each finish a job about once per `average_handle`, so together they reach one
    more position every average_handle / agents_serving seconds (exact when handling times are
    exponential). The first `free_agents` positions are being answered now (an agent is free or
    the offer is ringing): 0.
    """
    ahead = position - free_agents
    if ahead <= 0:
        return 0.0
    return ahead * average_handle / max(1, agents_serving)
