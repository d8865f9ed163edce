"""The conversation: the one record that outlives every channel.

A Conversation holds who the customer is and how that was verified, the slots collected, what was
looked up in customer systems, the timeline of every turn on every channel, and where the flow
stands. It is plain data: no I/O, no channel, no engine. The store persists it after every step;
channels come and go around it.

Secrets (PINs, anything collected by a `secure` step) never enter this model: they live only in
the memory of the flow run that asked for them (see `ivr.flow.engine.FlowRun.secrets`).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

SECURE_PLACEHOLDER = "[secure input]"


class Role(StrEnum):
    CUSTOMER = "customer"
    BOT = "bot"
    AGENT = "agent"
    SYSTEM = "system"


class Status(StrEnum):
    ACTIVE = "active"  # a flow is running (or waiting for the customer) on some channel
    QUEUED = "queued"  # handed to a human queue
    WITH_AGENT = "with_agent"  # a person has taken it from the queue
    TRANSFERRED = "transferred"  # handed to a SIP destination outside this server
    ESCALATED = "escalated"  # moved to another channel; resumes when the customer comes back
    ENDED = "ended"


@dataclass
class Identity:
    """Who the customer is, and how (and whether) that was proven."""

    customer_id: str | None = None
    verified: bool = False
    method: str | None = None  # "pin", "dob", ... never the secret itself
    verified_at: float | None = None
    verified_on: str | None = None  # channel on which verification happened
    failed_attempts: int = 0

    def mark_verified(self, customer_id: str, method: str, channel: str) -> None:
        self.customer_id = customer_id
        self.verified = True
        self.method = method
        self.verified_at = time.time()
        self.verified_on = channel


@dataclass
class Turn:
    """One entry of the timeline: something said or something that happened."""

    ts: float
    channel: str
    role: Role
    text: str
    meta: dict[str, Any] = field(default_factory=dict)  # intent, confidence, step, input kind

    def to_dict(self) -> dict[str, Any]:
        return {
            "ts": self.ts,
            "channel": self.channel,
            "role": str(self.role),
            "text": self.text,
            "meta": self.meta,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Turn:
        return cls(
            ts=float(data["ts"]),
            channel=data["channel"],
            role=Role(data["role"]),
            text=data["text"],
            meta=dict(data.get("meta") or {}),
        )


@dataclass
class Position:
    """Where the flow stands: the step to run next (or waiting on), with the sub-flow stack."""

    flow: str
    step: str
    stack: list[tuple[str, str]] = field(default_factory=list)  # (flow, step to return to)


@dataclass
class Conversation:
    flow: str
    position: Position
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    created_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)
    status: Status = Status.ACTIVE
    channels: list[str] = field(default_factory=list)  # in order of first appearance
    identity: Identity = field(default_factory=Identity)
    slots: dict[str, Any] = field(default_factory=dict)
    lookups: dict[str, Any] = field(default_factory=dict)  # customer-system data, by `as` name
    profile: dict[str, Any] = field(default_factory=dict)  # the verified customer's record
    last_intent: str | None = None
    language: str = "en"
    contact: dict[str, str] = field(default_factory=dict)  # caller number, email: to reach them
    handoff: dict[str, Any] | None = None  # queue/SIP/escalation target once handed over
    timeline: list[Turn] = field(default_factory=list)

    @classmethod
    def start(cls, flow: str, step: str, language: str = "en") -> Conversation:
        return cls(flow=flow, position=Position(flow=flow, step=step), language=language)

    def join(self, channel: str) -> None:
        if channel not in self.channels:
            self.channels.append(channel)

    def add_turn(self, channel: str, role: Role, text: str, **meta: Any) -> Turn:
        self.join(channel)
        turn = Turn(ts=time.time(), channel=channel, role=role, text=text, meta=meta)
        self.timeline.append(turn)
        self.updated_at = turn.ts
        return turn

    @property
    def current_channel(self) -> str | None:
        return self.timeline[-1].channel if self.timeline else None

    def to_dict(self) -> dict[str, Any]:
        """Everything but the timeline (which the store keeps as append-only rows)."""
        return {
            "id": self.id,
            "flow": self.flow,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "status": str(self.status),
            "channels": list(self.channels),
            "identity": asdict(self.identity),
            "slots": self.slots,
            "lookups": self.lookups,
            "profile": self.profile,
            "last_intent": self.last_intent,
            "language": self.language,
            "contact": self.contact,
            "handoff": self.handoff,
            "position": {
                "flow": self.position.flow,
                "step": self.position.step,
                "stack": [list(frame) for frame in self.position.stack],
            },
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], timeline: list[Turn] | None = None) -> Conversation:
        pos = data["position"]
        return cls(
            id=data["id"],
            flow=data["flow"],
            created_at=data["created_at"],
            updated_at=data["updated_at"],
            status=Status(data["status"]),
            channels=list(data.get("channels") or []),
            identity=Identity(**data.get("identity") or {}),
            slots=dict(data.get("slots") or {}),
            lookups=dict(data.get("lookups") or {}),
            profile=dict(data.get("profile") or {}),
            last_intent=data.get("last_intent"),
            language=data.get("language", "en"),
            contact=dict(data.get("contact") or {}),
            handoff=data.get("handoff"),
            position=Position(
                flow=pos["flow"],
                step=pos["step"],
                stack=[(f, s) for f, s in pos.get("stack") or []],
            ),
            timeline=list(timeline or []),
        )

    def public_view(self) -> dict[str, Any]:
        """The JSON the API and (later) the agent desktop show: never a secret."""
        view = self.to_dict()
        view["identity"] = {
            "customer_id": self.identity.customer_id,
            "verified": self.identity.verified,
            "method": self.identity.method,
            "verified_at": self.identity.verified_at,
            "verified_on": self.identity.verified_on,
        }
        view["timeline"] = [turn.to_dict() for turn in self.timeline]
        return view
