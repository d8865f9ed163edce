"""What every intent classifier takes and gives.

The intent catalogue is what ops staff write once in `dialogs/*.yaml` (files with a top-level
`intents:` key); the built-in matcher reads it directly and `ivr nlu export-rasa` turns it into
Rasa training data, so there is one source of truth for both engines.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class IntentCatalog:
    language: str
    intents: dict[str, tuple[str, ...]]  # intent name -> example utterances
    entities: dict[str, str] = field(default_factory=dict)  # entity name -> regex pattern


@dataclass(frozen=True)
class NluResult:
    intent: str | None  # None: nothing matched well enough
    confidence: float
    entities: dict[str, str] = field(default_factory=dict)
    source: str = "builtin"  # which engine answered: "builtin" | "rasa"


class IntentClassifier(Protocol):
    async def parse(self, text: str, candidates: Sequence[str] | None = None) -> NluResult:
        """Classify `text`. `candidates` are the intents the current step expects: a
        classifier should prefer them (an IVR question has few valid answers)."""
        ...
