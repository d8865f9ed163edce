"""The context card: what an agent sees when a conversation is offered to them.

Who the customer is and *how* that was proven (method, time, channel; never the secret), what
they want (the last intent), what the flow collected and looked up, everything said on every
channel in order, and their earlier conversations. Built from the stored conversation only, so
every channel's conversations give the same card. Secure answers never reach it: the timeline
holds a placeholder for them (`ivr.conversation.SECURE_PLACEHOLDER`), and slots never hold them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ivr.conversation import Conversation

EARLIER_SHOWN = 5  # earlier conversations listed on the card


def context_card(
    conv: Conversation,
    *,
    queue: str,
    waited: float | None = None,
    earlier: Sequence[Conversation] = (),
    medium: str | None = None,
    line: str | None = None,
    customer_left: bool = False,
) -> dict[str, Any]:
    """`medium` (voice or text) and `line` (the channel the customer is on now) say how the
    agent answers; `customer_left` that nobody is there to answer any more."""
    identity = conv.identity
    name = conv.profile.get("name") or conv.profile.get("full_name")
    return {
        "conversation_id": conv.id,
        "queue": queue,
        "waited": waited,
        "medium": medium,
        "line": line,
        "customer_left": customer_left,
        "status": str(conv.status),
        "flow": conv.flow,
        "channels": list(conv.channels),
        "contact": dict(conv.contact),
        "customer": {
            "id": identity.customer_id,
            "name": name,
            "verified": identity.verified,
            "method": identity.method,
            "verified_at": identity.verified_at,
            "verified_on": identity.verified_on,
            "failed_attempts": identity.failed_attempts,
        },
        "intent": conv.last_intent,
        "slots": dict(conv.slots),
        "lookups": dict(conv.lookups),
        "profile": dict(conv.profile),
        "handoff": conv.handoff,
        "transcript": [turn.to_dict() for turn in conv.timeline],
        "earlier": [
            {
                "id": other.id,
                "flow": other.flow,
                "status": str(other.status),
                "created_at": other.created_at,
                "channels": list(other.channels),
                "intent": other.last_intent,
                "wrap_up": (other.handoff or {}).get("wrap_up"),
            }
            for other in earlier
            if other.id != conv.id
        ][:EARLIER_SHOWN],
    }
