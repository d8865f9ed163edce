"""The client of the TTS speech worker, for the control plane.

    client = await TtsClient.connect("/run/ivr/tts.sock")
    path = await client.render("Your balance is 12 dollars", "en")   # a cached 16 kHz WAV
    path = await client.convert("/srv/ivr/prompts/en/welcome.wav")    # a recording, normalised
    await client.close()

Requests may run concurrently on one client (each has an id). The result is a `PromptFile`: a
`str` holding the absolute path (use it as a path) with `.seconds` and `.cached`. Errors:
SpeechUnavailable (worker gone: connect again), SpeechError (it refused or failed this
request), SpeechTimeout.

Before asking, check the cache yourself with ivr.speech.tts.cache.cache_path: a hit costs a
`stat` and no round trip.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from typing import Any

from ivr.speech.errors import SpeechError, SpeechTimeout, SpeechUnavailable, connect_worker
from ivr.workers.ipc import Link, ProtocolError

log = logging.getLogger(__name__)


class PromptFile(str):
    """An absolute path to a 16 kHz mono WAV, plus what the worker said about it."""

    seconds: float
    cached: bool

    def __new__(cls, path: str, seconds: float = 0.0, cached: bool = False) -> PromptFile:
        self = super().__new__(cls, path)
        self.seconds = seconds
        self.cached = cached
        return self


class TtsClient:
    def __init__(self, link: Link, socket_path: str) -> None:
        self.socket_path = socket_path
        self.lost: SpeechUnavailable | None = None
        self._link = link
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._reader = asyncio.create_task(self._read_events())

    @classmethod
    async def connect(cls, socket_path: str, *, timeout: float = 5.0) -> TtsClient:
        return cls(await connect_worker(socket_path, "TTS", timeout), socket_path)

    async def render(self, text: str, language: str, *, timeout: float = 30.0) -> PromptFile:
        """`text` spoken in `language`, as a file in the prompt cache."""
        return await self._request({"op": "render", "text": text, "language": language}, timeout)

    async def convert(self, source: str, *, timeout: float = 30.0) -> PromptFile:
        """The recorded prompt `source` (an absolute path to a WAV) as a 16 kHz mono copy."""
        return await self._request({"op": "convert", "source": str(source)}, timeout)

    async def close(self) -> None:
        self._lose("the client was closed")
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._reader
        await self._link.close()

    @property
    def closed(self) -> bool:
        return self.lost is not None

    async def _request(self, message: dict[str, Any], timeout: float) -> PromptFile:
        if self.lost is not None:
            raise self.lost
        request_id = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        self._link.send({**message, "id": request_id})
        try:
            answer = await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise SpeechTimeout(
                f"TTS worker: no answer to {message['op']} in {timeout:.0f} s"
            ) from None
        finally:
            self._pending.pop(request_id, None)
        if answer.get("event") != "rendered":
            raise SpeechError(str(answer.get("message", f"unexpected answer {answer}")))
        return PromptFile(
            str(answer["path"]), float(answer.get("seconds", 0.0)), bool(answer.get("cached"))
        )

    def _lose(self, why: str) -> None:
        if self.lost is None:
            self.lost = SpeechUnavailable(f"TTS worker at {self.socket_path}: {why}")
        for future in self._pending.values():
            if not future.done():
                future.set_exception(self.lost)

    async def _read_events(self) -> None:
        why = "the worker closed the connection"
        try:
            while True:
                message = await self._link.receive()
                if message is None:
                    break
                if not isinstance(message, dict):
                    continue
                future = self._pending.get(message.get("id"))  # type: ignore[arg-type]
                if future is not None and not future.done():
                    future.set_result(message)
                elif message.get("event") == "error":
                    log.warning("TTS worker: %s", message.get("message"))
        except (ProtocolError, ConnectionError, OSError) as exc:
            why = f"connection lost: {exc}"
        finally:
            self._lose(why)
