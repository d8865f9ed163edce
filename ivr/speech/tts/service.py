"""The synthesis side of the speech worker: one `TtsSession` per connection.

Protocol (frames of ivr.workers.ipc; → client to worker, ← worker to client):

    → {"op":"render","id":N,"text":"...","language":"en"}
    → {"op":"convert","id":N,"source":"/abs/recorded.wav"}
    ← {"event":"rendered","id":N,"path":"/abs/path.wav","seconds":2.31,"cached":false}
    ← {"event":"error","id":N,"message":"..."}

Several requests may be in flight on one connection; answers come as they are ready (match them
by id). Renders queue on the worker's single pyttsx3 engine; the same file requested twice at
once is rendered once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ivr.speech.tts.render import (
    RENDER_TIMEOUT,
    Rendered,
    Renderer,
    RendererStuck,
    TtsError,
    convert_recording,
)
from ivr.workers.ipc import Link, ProtocolError

log = logging.getLogger(__name__)

_RECOVERABLE = ("unknown frame kind", "frame is not JSON", "a JSON frame must hold")


class TtsService:
    """State shared by every connection: the renderer and the renders under way."""

    def __init__(self, renderer: Renderer, on_stuck: Callable[[], None] | None = None) -> None:
        self.renderer = renderer
        self.on_stuck = on_stuck  # the worker exits so its supervisor starts a fresh one
        self._inflight: dict[Path, asyncio.Future[Rendered]] = {}

    async def render(self, text: str, language: str) -> Rendered:
        dest = self.renderer.path_for(text, language)
        shared = self._inflight.get(dest)
        if shared is None:
            future = self.renderer.submit(text, language)
            if future.done():  # a cache hit
                return future.result()
            shared = asyncio.wrap_future(future)
            self._inflight[dest] = shared
            shared.add_done_callback(lambda _: self._inflight.pop(dest, None))
        try:
            rendered = await asyncio.wait_for(asyncio.shield(shared), RENDER_TIMEOUT)
        except TimeoutError:
            self.renderer.broken = True
            if self.on_stuck is not None:
                self.on_stuck()
            raise RendererStuck("the speech synthesiser is stuck; the worker restarts") from None
        return rendered

    async def convert(self, source: str) -> Rendered:
        return await asyncio.to_thread(convert_recording, self.renderer.cache_dir, source)

    async def serve(self, link: Link) -> None:
        tasks: set[asyncio.Task[None]] = set()
        try:
            while True:
                try:
                    message = await link.receive()
                except ProtocolError as exc:
                    link.send({"event": "error", "id": None, "message": f"bad frame: {exc}"})
                    if str(exc).startswith(_RECOVERABLE):
                        continue
                    break
                if message is None:
                    break
                if isinstance(message, bytes):
                    link.send({"event": "error", "id": None, "message": "unexpected audio"})
                    continue
                task = asyncio.create_task(self._answer(link, message))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
        except (ConnectionError, OSError):
            pass
        finally:
            for task in tasks:
                task.cancel()
            with contextlib.suppress(Exception):
                await asyncio.gather(*tasks, return_exceptions=True)

    async def _answer(self, link: Link, message: dict[str, Any]) -> None:
        request_id = message.get("id")
        op = message.get("op")
        try:
            if op == "render":
                text, language = message.get("text"), message.get("language")
                if not isinstance(text, str) or not isinstance(language, str):
                    raise TtsError("render needs a text and a language (strings)")
                rendered = await self.render(text, language)
            elif op == "convert":
                source = message.get("source")
                if not isinstance(source, str):
                    raise TtsError("convert needs a source (an absolute path)")
                rendered = await self.convert(source)
            else:
                raise TtsError(f"unknown op {op!r}")
        except (TtsError, ValueError) as exc:
            link.send({"event": "error", "id": request_id, "message": str(exc)})
            return
        except Exception as exc:
            log.exception("%s failed", op)
            link.send({"event": "error", "id": request_id, "message": f"{op} failed: {exc}"})
            return
        link.send(
            {
                "event": "rendered",
                "id": request_id,
                "path": str(rendered.path.resolve()),
                "seconds": round(rendered.seconds, 3),
                "cached": rendered.cached,
            }
        )
