"""The client of an ASR speech worker, for the processes that have the audio (media workers).

    client = await AsrClient.connect("/run/ivr/asr-1.sock")       # one connection per call
    utt = await client.recognize("en", ["yes", "no"], on_partial=print)
    utt.feed(pcm)                     # 16 kHz mono s16le, any size; never blocks
    text, confidence = await utt.finish(timeout=5.0)
    ...
    await client.close()

Utterances on one client follow each other: `recognize` while the previous utterance is still
open cancels it first (and waits for the worker to confirm), so events never mix. Errors:
SpeechUnavailable (the worker is gone: connect a new client), SpeechError (the worker refused
the utterance, e.g. an unknown language), SpeechTimeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from ivr.speech.errors import SpeechError, SpeechTimeout, SpeechUnavailable, connect_worker
from ivr.workers.ipc import Link, ProtocolError

log = logging.getLogger(__name__)

PartialCallback = Callable[[str], Any]


def _quiet(future: asyncio.Future[Any]) -> None:
    """Mark a future's exception as seen: nobody may be waiting for an abandoned utterance."""
    if not future.cancelled():
        future.exception()


class AsrUtterance:
    """One utterance on its way to the worker; made by `AsrClient.recognize`."""

    def __init__(
        self,
        client: AsrClient,
        language: str,
        grammar: list[str] | None,
        on_partial: PartialCallback | None,
    ) -> None:
        self.client = client
        self.language = language
        self.grammar = grammar
        self.on_partial = on_partial
        self.partial = ""  # the latest partial text
        self.ending = False  # "end" or "cancel" sent: no more audio
        self._cancel_sent = False
        self._terminal: asyncio.Future[tuple[str, float] | None] = (
            asyncio.get_running_loop().create_future()
        )
        self._terminal.add_done_callback(_quiet)
        self._partials: asyncio.Queue[str | None] = asyncio.Queue()

    @property
    def done(self) -> bool:
        """A final, a cancellation or an error arrived (or the connection was lost)."""
        return self._terminal.done()

    def feed(self, pcm: bytes) -> None:
        """Send audio (never blocks: asyncio buffers it). Ignored once the utterance is ending
        or over; SpeechUnavailable when the connection is lost."""
        self.client._check()
        if not self.ending and not self.done:
            self.client._send_audio(pcm)

    async def drain(self) -> None:
        """Wait until the socket buffer has room: for producers faster than real time."""
        await self.client._drain()

    async def partials(self) -> AsyncIterator[str]:
        """The partial texts as they come, until the utterance is over."""
        while True:
            text = await self._partials.get()
            if text is None:
                return
            yield text

    async def finish(self, timeout: float = 5.0) -> tuple[str, float]:
        """Say the audio is complete and wait for (text, confidence). Empty text: nothing was
        recognised (or, with a grammar, nothing matched well enough)."""
        if not self.ending:
            self.ending = True
            self.client._send({"op": "end"})
        try:
            result = await asyncio.wait_for(asyncio.shield(self._terminal), timeout)
        except TimeoutError:
            self._send_cancel()  # the worker drops it when it gets there
            raise SpeechTimeout(f"no transcript within {timeout:.1f} s") from None
        if result is None:
            raise SpeechError("the utterance was cancelled")
        return result

    async def cancel(self, timeout: float = 2.0) -> None:
        """Abandon the utterance and wait for the worker to confirm. Quiet when it is already
        over, or when the connection is gone (then it is over too)."""
        if self.done:
            return
        self._send_cancel()
        try:
            await asyncio.wait_for(asyncio.shield(self._terminal), timeout)
        except TimeoutError:
            raise SpeechTimeout(f"cancel not confirmed within {timeout:.1f} s") from None
        except (SpeechError, SpeechUnavailable):
            pass

    def _send_cancel(self) -> None:
        if not self._cancel_sent and not self.done and self.client.lost is None:
            self._cancel_sent = True
            self.ending = True
            self.client._send({"op": "cancel"})

    # events, from the client's reader
    def _on_partial(self, text: str) -> None:
        if self.done:
            return
        self.partial = text
        self._partials.put_nowait(text)
        if self.on_partial is not None:
            try:
                self.on_partial(text)
            except Exception:
                log.exception("partial callback failed")

    def _settle(
        self, result: tuple[str, float] | None = None, error: Exception | None = None
    ) -> None:
        if self.done:
            return
        if error is not None:
            self._terminal.set_exception(error)
        else:
            self._terminal.set_result(result)
        self._partials.put_nowait(None)


class AsrClient:
    """A connection to one ASR worker. Use one per call; close it when the call ends."""

    def __init__(self, link: Link, socket_path: str) -> None:
        self.socket_path = socket_path
        self.lost: SpeechUnavailable | None = None  # set when the connection is gone
        self._link = link
        self._current: AsrUtterance | None = None
        self._lock = asyncio.Lock()
        self._pongs: dict[int, asyncio.Future[None]] = {}
        self._ping_ids = itertools.count(1)
        self._reader = asyncio.create_task(self._read_events())

    @classmethod
    async def connect(cls, socket_path: str, *, timeout: float = 5.0) -> AsrClient:
        return cls(await connect_worker(socket_path, "ASR", timeout), socket_path)

    async def recognize(
        self,
        language: str,
        grammar: Sequence[str] | None = None,
        *,
        on_partial: PartialCallback | None = None,
        timeout: float = 5.0,
    ) -> AsrUtterance:
        """Start an utterance. `grammar`: the expected phrases (see ivr.speech.asr.grammar),
        None for free speech. `on_partial(text)` is called with each new partial text.
        A refusal (unknown language, bad grammar) surfaces in `finish` as SpeechError."""
        self._check()
        async with self._lock:
            previous = self._current
            if previous is not None and not previous.done:
                previous._send_cancel()
                try:
                    await asyncio.wait_for(asyncio.shield(previous._terminal), timeout)
                except TimeoutError:
                    self._lose(f"ASR worker did not end the previous utterance in {timeout} s")
                    await self.close()
                    raise SpeechTimeout("the previous utterance did not end in time") from None
                except Exception:
                    pass  # its outcome is its owner's business
            self._check()
            utterance = AsrUtterance(
                self, language, list(grammar) if grammar is not None else None, on_partial
            )
            self._current = utterance
            self._send({"op": "recognize", "language": language, "grammar": utterance.grammar})
            return utterance

    async def ping(self, timeout: float = 5.0) -> float:
        """Round trip in seconds. During an utterance the worker answers once all audio sent
        before the ping is decoded, so this measures how far decoding lags behind."""
        self._check()
        ping_id = next(self._ping_ids)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        future.add_done_callback(_quiet)
        self._pongs[ping_id] = future
        started = time.perf_counter()
        self._send({"op": "ping", "id": ping_id})
        try:
            await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise SpeechTimeout(f"no pong within {timeout:.1f} s") from None
        finally:
            self._pongs.pop(ping_id, None)
        return time.perf_counter() - started

    async def close(self) -> None:
        self._lose("the client was closed")
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._reader
        await self._link.close()

    @property
    def closed(self) -> bool:
        return self.lost is not None

    # ------------------------------------------------------------------ internals

    def _check(self) -> None:
        if self.lost is not None:
            raise self.lost

    def _send(self, message: dict[str, Any]) -> None:
        self._check()
        self._link.send(message)

    def _send_audio(self, pcm: bytes) -> None:
        self._check()
        self._link.send_audio(pcm)

    async def _drain(self) -> None:
        self._check()
        try:
            await self._link.drain()
        except (ConnectionError, OSError) as exc:
            self._lose(f"connection lost: {exc}")
            self._check()

    def _lose(self, why: str) -> None:
        if self.lost is None:
            self.lost = SpeechUnavailable(f"ASR worker at {self.socket_path}: {why}")
        if self._current is not None:
            self._current._settle(error=self.lost)
        for future in self._pongs.values():
            if not future.done():
                future.set_exception(self.lost)

    async def _read_events(self) -> None:
        why = "the worker closed the connection"
        try:
            while True:
                message = await self._link.receive()
                if message is None:
                    break
                if isinstance(message, dict):
                    self._dispatch(message)
        except (ProtocolError, ConnectionError, OSError) as exc:
            why = f"connection lost: {exc}"
        finally:
            self._lose(why)

    def _dispatch(self, message: dict[str, Any]) -> None:
        event = message.get("event")
        current = self._current
        if event == "pong":
            future = self._pongs.get(message.get("id"))  # type: ignore[arg-type]
            if future is not None and not future.done():
                future.set_result(None)
        elif current is None:
            log.debug("ASR event %r outside an utterance", event)  # not its text: PINs
        elif event == "partial":
            current._on_partial(str(message.get("text", "")))
        elif event == "final":
            current._settle((str(message.get("text", "")), float(message.get("confidence", 0.0))))
        elif event == "cancelled":
            current._settle(None)
        elif event == "error":
            text = str(message.get("message", "unknown error"))
            if message.get("terminal"):
                current._settle(error=SpeechError(text))
            else:
                log.warning("ASR worker: %s", text)
        else:
            log.debug("unknown ASR event %r", event)
