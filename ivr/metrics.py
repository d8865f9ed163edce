"""Prometheus metrics: observers of runs and reloads; they never change what happens.

Each server has its own registry (no globals), so tests and several apps in one process do not
see each other's counts.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from ivr.conversation import Conversation, Status, Turn


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.conversations_started = Counter(
            "ivr_conversations_started",
            "Conversations started",
            ["flow", "channel"],
            registry=self.registry,
        )
        self.conversations_ended = Counter(
            "ivr_conversation_runs_ended",
            "Flow runs that stopped, by outcome",
            ["status"],
            registry=self.registry,
        )
        self.turns = Counter(
            "ivr_turns", "Timeline turns", ["channel", "role"], registry=self.registry
        )
        self.step_seconds = Histogram(
            "ivr_step_seconds",
            "Time spent in a flow step (including waiting for the customer)",
            ["kind"],
            registry=self.registry,
            buckets=(0.001, 0.005, 0.02, 0.1, 0.5, 2, 10, 60),
        )
        self.live_conversations = Gauge(
            "ivr_live_conversations", "Conversations with a running flow", registry=self.registry
        )
        self.flows_version = Gauge(
            "ivr_flows_version",
            "Version of the flows in service (bumps on each good reload)",
            registry=self.registry,
        )
        self.flow_reloads_refused = Gauge(
            "ivr_flow_loads_refused",
            "Loads refused because the flows did not validate",
            registry=self.registry,
        )
        self.chat_errors = Counter(
            "ivr_chat_input_errors",
            "Chat messages refused (empty, too large, malformed)",
            ["reason"],
            registry=self.registry,
        )
        self.nlu_fallbacks = Gauge(
            "ivr_nlu_fallback_turns",
            "Turns answered by the built-in matcher instead of Rasa",
            registry=self.registry,
        )

    # RunObserver
    def on_turn(self, conv: Conversation, turn: Turn) -> None:
        self.turns.labels(turn.channel, str(turn.role)).inc()

    def on_step(self, flow: str, kind: str, seconds: float) -> None:
        self.step_seconds.labels(kind).observe(seconds)

    def on_end(self, conv: Conversation, status: Status) -> None:
        self.conversations_ended.labels(str(status)).inc()
