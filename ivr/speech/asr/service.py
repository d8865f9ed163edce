"""The recognition side of the speech worker: one `AsrSession` per connection.

Protocol (frames of ivr.workers.ipc; → client to worker, ← worker to client):

    → {"op":"recognize","language":"en","grammar":[...] | null}
    → audio frames (16 kHz mono s16le, any size)
    → {"op":"end"}
    ← {"event":"partial","text":"..."}          zero or more, only when changed, every 40-100 ms
                                                of audio at most (per engine)
    ← {"event":"final","text":"...","confidence":0.87}

    → {"op":"cancel"}      abandons the current utterance (also one already ended):
    ← {"event":"cancelled"}    ...instead of its final. Ignored when there is none.

    → {"op":"ping","id":X} ← {"event":"pong","id":X}, sent after all audio received before the
                             ping is decoded: its round trip is the decoding lag.

    ← {"event":"error","message":"...","terminal":bool}
        terminal=true: the utterance just requested or in progress is over (bad language or
        grammar, a decoder failure); no final follows. terminal=false: a stray message (audio or
        "end" outside an utterance, an unknown op, "recognize" during an utterance); the
        current utterance, if any, goes on.

Every utterance gets exactly one terminal event: final, cancelled or a terminal error. Many
utterances follow each other on one connection (one connection per call). Audio after a
rejected "recognize" is dropped silently until the next "end", "cancel" or "recognize".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from ivr.speech.asr.base import BYTES_PER_SECOND, Engine, Utterance
from ivr.speech.asr.grammar import describe
from ivr.workers.ipc import Link, ProtocolError

log = logging.getLogger(__name__)

T = TypeVar("T")
CLOSE_TIMEOUT = 5.0
THREAD_BATCH = 0.1  # seconds of audio per decoding call for engines that decode in threads
MAX_UTTERANCE_SECONDS = 120.0  # audio past this is dropped (an open line must not fill memory)
# ProtocolErrors after which the stream is still in step (the whole frame was read).
_RECOVERABLE = ("unknown frame kind", "frame is not JSON", "a JSON frame must hold")


class _End:
    pass


class _Ping:
    def __init__(self, ping_id: Any) -> None:
        self.id = ping_id


_Item = bytes | _End | _Ping


class _Run:
    """One utterance: queued audio decoded in order by one pump task."""

    def __init__(
        self, session: AsrSession, engine: Engine, utterance: Utterance, previous: _Run | None
    ) -> None:
        self.session = session
        self.engine = engine
        self.utterance = utterance
        self.items: deque[_Item] = deque()
        self.wakeup = asyncio.Event()
        self.ended = False  # "end" received
        self.cancelled = False  # "cancel" received: skip audio, answer "cancelled"
        self.audio_bytes = 0
        self.ended_at = 0.0
        self.task = asyncio.create_task(self._pump(previous))

    @property
    def done(self) -> bool:
        return self.task.done()

    def add_audio(self, pcm: bytes) -> None:
        if self.audio_bytes >= MAX_UTTERANCE_SECONDS * BYTES_PER_SECOND:
            return
        self.audio_bytes += len(pcm)
        if self.audio_bytes >= MAX_UTTERANCE_SECONDS * BYTES_PER_SECOND:
            log.warning("utterance longer than %.0f s: the rest is ignored", MAX_UTTERANCE_SECONDS)
        self.put(pcm)

    def put(self, item: _Item) -> None:
        self.items.append(item)
        self.wakeup.set()

    def end(self) -> None:
        self.ended = True
        self.ended_at = time.perf_counter()
        self.put(_End())

    def cancel(self) -> None:
        self.cancelled = True
        if not self.ended:
            self.ended = True
            self.put(_End())

    def _ready(self) -> bool:
        """Is there something to do? For threaded engines, audio waits until THREAD_BATCH
        seconds of it (or a control item) are queued: every call is a thread hop, and Vosk
        runs best on >= 100 ms pieces (research notes)."""
        if not self.items:
            return False
        if not self.engine.threaded:
            return True
        queued = 0
        for item in self.items:
            if not isinstance(item, bytes):
                return True  # "end" or a ping: decode what is before it now
            queued += len(item)
        return queued >= THREAD_BATCH * BYTES_PER_SECOND

    async def _next(self) -> _Item | list[bytes]:
        """The next control item, or all the audio chunks waiting in a row (decoding them in
        one call means fewer calls per second)."""
        while not self._ready():
            self.wakeup.clear()
            await self.wakeup.wait()
        if not isinstance(self.items[0], bytes):
            return self.items.popleft()
        chunks: list[bytes] = []
        while self.items and isinstance(self.items[0], bytes):
            chunks.append(self.items.popleft())  # type: ignore[arg-type]
        return chunks

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        if self.engine.threaded:  # Vosk: decode off the loop, the GIL is released
            return await asyncio.to_thread(fn, *args)
        return fn(*args)  # PocketSphinx: holds the GIL anyway; cheapest on the loop

    async def _pump(self, previous: _Run | None) -> None:
        send = self.session.link.send
        try:
            if previous is not None:  # its final goes out before anything of ours
                await asyncio.wait([previous.task])  # (whatever its outcome: no raise)
            while True:
                item = await self._next()
                if isinstance(item, list):
                    if self.cancelled:
                        continue
                    partial = await self._call(self.utterance.feed, b"".join(item))
                    if partial is not None and not self.cancelled:
                        send({"event": "partial", "text": partial})
                elif isinstance(item, _Ping):
                    send({"event": "pong", "id": item.id})
                else:
                    break
            if self.cancelled:
                await self._call(self.utterance.cancel)
                send({"event": "cancelled"})
                return
            text, confidence = await self._call(self.utterance.finish)
            if self.cancelled:  # "cancel" came while we were finishing
                send({"event": "cancelled"})
                return
            send({"event": "final", "text": text, "confidence": confidence})
            # Never the text: the answer may be a spoken PIN (the worker is not told which).
            log.debug(
                "final after %.1f s of audio, %.0f ms after end: %d words (%.2f)",
                self.audio_bytes / BYTES_PER_SECOND,
                (time.perf_counter() - self.ended_at) * 1000,
                len(text.split()),
                confidence,
            )
        except asyncio.CancelledError:
            # Only as a last resort (see AsrSession.close). A thread may still be decoding into
            # a Vosk recogniser: leave that one alone, it is dropped with the utterance.
            if not self.engine.threaded:
                with contextlib.suppress(Exception):
                    self.utterance.cancel()  # gives the decoder back to its pool
            raise
        except Exception as exc:
            log.exception("recognition failed")
            with contextlib.suppress(Exception):
                self.utterance.cancel()
            send({"event": "error", "message": f"recognition failed: {exc}", "terminal": True})


class AsrSession:
    """One client connection: a sequence of utterances."""

    def __init__(self, engines: Mapping[str, Engine], link: Link) -> None:
        self.engines = engines
        self.link = link
        self.run: _Run | None = None  # the latest utterance (maybe still finishing)
        self.discarding = False  # after a rejected "recognize": drop audio quietly
        self.complained = False  # one "audio outside an utterance" error until things change

    @property
    def open_run(self) -> _Run | None:
        """The utterance that still takes audio (no "end"/"cancel" yet)."""
        return self.run if self.run is not None and not self.run.ended else None

    async def serve(self) -> None:
        try:
            while True:
                try:
                    message = await self.link.receive()
                except ProtocolError as exc:
                    recoverable = str(exc).startswith(_RECOVERABLE)
                    self._error(f"bad frame: {exc}", terminal=False)
                    if recoverable:
                        continue
                    break
                if message is None:
                    break
                if isinstance(message, bytes):
                    self._audio(message)
                else:
                    await self._command(message)
        except (ConnectionError, OSError):
            pass
        finally:
            await self.close()

    async def close(self) -> None:
        """The client is gone: abandon its utterance. The pump skips the queued audio and
        gives the decoder back; it is cancelled outright only if it hangs."""
        run = self.run
        if run is None or run.done:
            return
        if not run.cancelled:
            run.cancel()
        try:
            await asyncio.wait_for(asyncio.shield(run.task), CLOSE_TIMEOUT)
        except TimeoutError:
            log.warning("utterance did not stop within %.0f s: cancelling it", CLOSE_TIMEOUT)
            run.task.cancel()
        except Exception:
            pass

    def _error(self, message: str, terminal: bool) -> None:
        self.link.send({"event": "error", "message": message, "terminal": terminal})

    def _audio(self, pcm: bytes) -> None:
        run = self.open_run
        if run is not None:
            run.add_audio(pcm)
        elif not self.discarding and not self.complained:
            self.complained = True
            self._error("audio outside an utterance (send recognize first)", terminal=False)

    async def _command(self, message: dict[str, Any]) -> None:
        op = message.get("op")
        self.complained = False
        if op == "recognize":
            await self._recognize(message)
        elif op == "end":
            run = self.open_run
            if run is not None:
                run.end()
            elif self.discarding:
                self.discarding = False
            else:
                self._error("end without an utterance in progress", terminal=False)
        elif op == "cancel":
            if self.discarding:
                self.discarding = False
            elif self.run is not None and not self.run.done and not self.run.cancelled:
                self.run.cancel()
        elif op == "ping":
            pong = {"event": "pong", "id": message.get("id")}
            run = self.run
            if self.open_run is not None:
                self.open_run.put(_Ping(message.get("id")))  # after the audio before it
            elif run is not None and not run.done:  # finishing: after its final
                run.task.add_done_callback(lambda _: self.link.send(pong))
            else:
                self.link.send(pong)
        else:
            self._error(f"unknown op {op!r}", terminal=False)

    async def _recognize(self, message: dict[str, Any]) -> None:
        if self.open_run is not None:
            self._error("an utterance is already in progress (send end or cancel)", False)
            return
        self.discarding = False
        language = message.get("language")
        engine = self.engines.get(language) if isinstance(language, str) else None
        if engine is None:
            known = ", ".join(sorted(self.engines))
            self._reject(f"no recogniser for language {language!r} (this worker has: {known})")
            return
        grammar = message.get("grammar")
        try:
            if engine.threaded:  # a full-LM Vosk recogniser may have to be made: ~60 ms
                utterance = await asyncio.to_thread(engine.start, grammar)
            else:
                utterance = engine.start(grammar)
        except ValueError as exc:
            self._reject(f"bad grammar: {exc}")
            return
        except Exception as exc:
            log.exception("could not start an utterance")
            self._reject(f"recogniser failed to start: {exc}")
            return
        log.debug("utterance: %s, %s", language, describe(grammar))
        self.run = _Run(self, engine, utterance, self.run)

    def _reject(self, message: str) -> None:
        self.discarding = True
        self._error(message, terminal=True)
