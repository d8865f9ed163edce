"""Ask the primary classifier (Rasa), answer from the fallback (built-in matcher) when it can't.

`FallbackClassifier` never fails a turn because the NLU server is down or slow: the fallback
answers instead, and the outage is logged once (a WARNING when it starts, another when the
primary answers again), not once per turn.

Low confidence: when the primary answers below `threshold`, the fallback is asked too, and its
answer is used if it matched (the built-in matcher applies its own threshold and rejects
out-of-scope input; see `builtin.py`). Otherwise the result is intent None with the primary's
confidence and entities. Why: a statistical model trained on ten examples per intent is
sometimes unsure about near-verbatim answers ("agent", "yes please") that the word matcher
recognises with certainty, and asking it costs microseconds; when neither is sure, nobody
should act on a guess.

Counters (plain attributes, for metrics): `primary_answers`, `fallbacks_unavailable`,
`low_confidence`, `fallbacks_low_confidence`, `outages`; `primary_available` tells whether
the last call to the primary succeeded.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

from ivr.speech.nlu.base import IntentClassifier, NluResult
from ivr.speech.nlu.rasa import NluUnavailable

log = logging.getLogger(__name__)


class FallbackClassifier:
    """`IntentClassifier` that prefers `primary` and falls back to `fallback`.

    `timeout`, if given, bounds the primary call here too (for primaries without a timeout of
    their own); a timed-out call counts as the primary being unavailable.
    """

    def __init__(
        self,
        primary: IntentClassifier,
        fallback: IntentClassifier,
        threshold: float,
        *,
        timeout: float | None = None,
    ) -> None:
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {threshold}")
        self.primary = primary
        self.fallback = fallback
        self.threshold = threshold
        self.timeout = timeout
        # counters
        self.primary_answers = 0  # turns the primary answered (whatever its confidence)
        self.fallbacks_unavailable = 0  # turns answered by the fallback: primary failed
        self.low_confidence = 0  # primary answers below threshold
        self.fallbacks_low_confidence = 0  # ... of which the fallback answered instead
        self.outages = 0  # times the primary went from available to unavailable
        self.primary_available = True
        self._outage_started = 0.0
        self._outage_turns = 0

    @property
    def fallbacks(self) -> int:
        """All turns whose answer came from the fallback."""
        return self.fallbacks_unavailable + self.fallbacks_low_confidence

    async def parse(self, text: str, candidates: Sequence[str] | None = None) -> NluResult:
        try:
            if self.timeout is None:
                result = await self.primary.parse(text, candidates)
            else:
                result = await asyncio.wait_for(self.primary.parse(text, candidates), self.timeout)
        except NluUnavailable as exc:
            self._primary_failed(str(exc), None)
            return await self.fallback.parse(text, candidates)
        except TimeoutError as exc:
            self._primary_failed(str(exc) or f"no answer within {self.timeout} s", None)
            return await self.fallback.parse(text, candidates)
        except Exception as exc:  # a bug in the primary must not fail the turn either
            self._primary_failed(f"{type(exc).__name__}: {exc}", exc)
            return await self.fallback.parse(text, candidates)

        self._primary_answered()
        if result.intent is not None and result.confidence >= self.threshold:
            return result
        self.low_confidence += 1
        alternative = await self.fallback.parse(text, candidates)
        if alternative.intent is not None:
            self.fallbacks_low_confidence += 1
            return NluResult(
                intent=alternative.intent,
                confidence=alternative.confidence,
                entities={**alternative.entities, **result.entities},
                source=alternative.source,
            )
        return NluResult(
            intent=None,
            confidence=result.confidence,
            entities={**alternative.entities, **result.entities},
            source=result.source,
        )

    def _primary_failed(self, reason: str, exc: Exception | None) -> None:
        self.fallbacks_unavailable += 1
        self._outage_turns += 1
        if not self.primary_available:
            return
        self.primary_available = False
        self.outages += 1
        self._outage_started = time.monotonic()
        log.warning(
            "NLU primary %s unavailable (%s); answering with %s until it recovers",
            type(self.primary).__name__,
            reason,
            type(self.fallback).__name__,
            exc_info=exc,
        )

    def _primary_answered(self) -> None:
        self.primary_answers += 1
        if self.primary_available:
            return
        self.primary_available = True
        log.warning(
            "NLU primary %s recovered after %.1f s; %d turn(s) were answered by %s",
            type(self.primary).__name__,
            time.monotonic() - self._outage_started,
            self._outage_turns,
            type(self.fallback).__name__,
        )
        self._outage_turns = 0
