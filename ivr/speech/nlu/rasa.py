"""Rasa Open Source as an intent classifier, over its HTTP API.

Rasa 3.6 needs Python 3.10, so it runs as a separate process from its own virtual environment
(`scripts/setup-rasa.sh`, `rasa run --enable-api`); this module only speaks HTTP to it:
`RasaClassifier` posts to `/model/parse`, `rasa_status` reads `/status` (or `/version`) for
health checks. Every failure (refused connection, timeout, HTTP error, unexpected body) is
raised as `NluUnavailable`, which `FallbackClassifier` turns into an answer from the built-in
matcher.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import aiohttp

from ivr.speech.nlu.base import NluResult

# Intent names Rasa uses for "no intent" (its own FallbackClassifier component).
_NO_INTENT = frozenset({"nlu_fallback"})


class NluUnavailable(Exception):
    """The NLU service did not give a usable answer (down, slow, erroring, or garbled).

    `status` is the HTTP status when the server answered with an error, else None."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class RasaClassifier:
    """`IntentClassifier` backed by a Rasa server's `POST /model/parse`.

    Confidences are Rasa's, unfiltered: wrap it in `FallbackClassifier` for a threshold.
    If no session is given, one is created on first use; call `close()` (or use
    `async with`) to release it.
    """

    def __init__(
        self, url: str, session: aiohttp.ClientSession | None = None, timeout: float = 1.0
    ) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._session = session
        self._owns_session = session is None

    async def __aenter__(self) -> RasaClassifier:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    async def parse(self, text: str, candidates: Sequence[str] | None = None) -> NluResult:
        body = await _request(
            self._get_session(), "POST", f"{self.url}/model/parse", self.timeout, {"text": text}
        )
        try:
            return _to_result(body, candidates)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise NluUnavailable(
                f"Rasa at {self.url} answered /model/parse with an unexpected body: "
                f"{_preview(body)} ({exc!r})"
            ) from exc

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
            self._owns_session = True
        return self._session


async def rasa_status(
    url: str, session: aiohttp.ClientSession | None = None, timeout: float = 2.0
) -> dict[str, Any]:
    """Health of a Rasa server: the JSON of `GET /status` (loaded model, fingerprint), or of
    `GET /version` when /status is refused (it needs a token when Rasa runs with auth).
    Raises `NluUnavailable` if the server does not answer with either."""
    url = url.rstrip("/")
    own = session is None
    active = session if session is not None else aiohttp.ClientSession()
    try:
        try:
            status = await _request(active, "GET", f"{url}/status", timeout)
        except NluUnavailable as first:
            if first.status is None:  # unreachable or slow: /version will not do better
                raise
            status = await _request(active, "GET", f"{url}/version", timeout)
        if not isinstance(status, dict):
            raise NluUnavailable(f"Rasa at {url} answered with {_preview(status)}, not an object")
        return status
    finally:
        if own:
            await active.close()


async def _request(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    timeout: float,
    payload: dict[str, Any] | None = None,
) -> Any:
    try:
        async with session.request(
            method, url, json=payload, timeout=aiohttp.ClientTimeout(total=timeout)
        ) as response:
            raw = await response.read()
            if response.status != 200:
                raise NluUnavailable(
                    f"Rasa {method} {url} answered HTTP {response.status}: "
                    f"{raw[:200].decode('utf-8', 'replace')!r}",
                    status=response.status,
                )
    except TimeoutError as exc:
        raise NluUnavailable(f"Rasa {method} {url} did not answer within {timeout:g} s") from exc
    except aiohttp.ClientError as exc:
        raise NluUnavailable(f"Rasa {method} {url} is unreachable: {exc}") from exc
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise NluUnavailable(
            f"Rasa {method} {url} answered with invalid JSON: {raw[:200]!r}"
        ) from exc


def _to_result(body: Any, candidates: Sequence[str] | None) -> NluResult:
    if not isinstance(body, dict):
        raise TypeError(f"expected an object, got {type(body).__name__}")
    intent = body.get("intent") or {}
    name: str | None = intent.get("name")
    confidence = float(intent.get("confidence") or 0.0)
    if candidates is not None:
        wanted = set(candidates)
        ranking = body.get("intent_ranking") or [intent]
        chosen = next((r for r in ranking if r.get("name") in wanted), None)
        name = chosen["name"] if chosen else None
        confidence = float(chosen.get("confidence") or 0.0) if chosen else 0.0
    if name in _NO_INTENT or not name:
        name = None
    entities: dict[str, str] = {}
    for entity in body.get("entities") or []:
        entities.setdefault(str(entity["entity"]), str(entity["value"]))
    return NluResult(
        intent=name,
        confidence=min(1.0, max(0.0, confidence)),
        entities=entities,
        source="rasa",
    )


def _preview(body: Any) -> str:
    return repr(body)[:200]


__all__ = ["NluUnavailable", "RasaClassifier", "rasa_status"]
