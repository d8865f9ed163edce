"""The control plane's side of the media workers: their socket, their calls, their loss.

Media workers connect to one Unix socket of the control plane and say hello with their name.
From then on the gateway hands `incoming` calls to the phone service and routes every other
event to the call it is about (`CallHandle`). A worker whose connection drops (it crashed or was
killed) loses its calls: each gets a final `ended` event with the reason "media worker lost", so
its conversation is stored as ended by the usual path, and nothing else is disturbed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from ivr.workers.ipc import Link, ProtocolError

log = logging.getLogger("ivr.voice")

WORKER_LOST = "media worker lost"


@dataclass
class WorkerLink:
    name: str
    link: Link
    max_calls: int = 4
    calls: dict[str, CallHandle] = field(default_factory=dict)

    def send(self, message: dict[str, Any]) -> None:
        self.link.send(message)


class CallHandle:
    """One call as the control plane sees it: commands out, its events in order."""

    def __init__(self, key: str, worker: WorkerLink, details: dict[str, Any]) -> None:
        self.key = key
        self.worker = worker
        self.details = details
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.ended: dict[str, Any] | None = None
        self._requests = 0

    def send(self, op: str, **fields: Any) -> None:
        if self.ended is None:
            self.worker.send({"op": op, "call": self.key, **fields})

    def next_request(self) -> int:
        self._requests += 1
        return self._requests

    def deliver(self, event: dict[str, Any]) -> None:
        if event.get("event") == "ended":
            if self.ended is not None:
                return
            self.ended = event
        self.events.put_nowait(event)


IncomingHandler = Callable[[CallHandle], Awaitable[None]]


class MediaGateway:
    def __init__(self, socket_path: str, on_incoming: IncomingHandler) -> None:
        self.socket_path = socket_path
        self.on_incoming = on_incoming
        self.workers: dict[str, WorkerLink] = {}
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> MediaGateway:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.socket_path)
        self._server = await asyncio.start_unix_server(self._serve, self.socket_path)
        os.chmod(self.socket_path, 0o600)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.close()
        for worker in list(self.workers.values()):
            await worker.link.close()
        for task in list(self._tasks):
            task.cancel()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.socket_path)

    def ready(self, name: str) -> bool:
        """Has worker `name` connected (its readiness check for the supervisor)?"""
        return name in self.workers

    @property
    def call_count(self) -> int:
        return sum(len(w.calls) for w in self.workers.values())

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        link = Link(reader, writer)
        worker: WorkerLink | None = None
        try:
            hello = await asyncio.wait_for(link.receive(), timeout=10)
            if (
                not isinstance(hello, dict)
                or hello.get("event") != "hello"
                or not isinstance(hello.get("worker"), str)
            ):
                log.error("a process connected to the media socket without saying hello")
                return
            worker = WorkerLink(str(hello["worker"]), link, int(hello.get("max_calls", 4)))
            self.workers[worker.name] = worker
            log.info("media worker %s connected", worker.name)
            while (message := await link.receive()) is not None:
                if isinstance(message, dict):
                    self._dispatch(worker, message)
        except (ProtocolError, ConnectionError, TimeoutError) as exc:
            log.error("media worker link: %s", exc)
        finally:
            if worker is not None:
                if self.workers.get(worker.name) is worker:
                    del self.workers[worker.name]
                for handle in list(worker.calls.values()):
                    handle.deliver({"event": "ended", "call": handle.key, "reason": WORKER_LOST})
                worker.calls.clear()
                log.warning("media worker %s disconnected", worker.name)
            await link.close()

    def _dispatch(self, worker: WorkerLink, message: dict[str, Any]) -> None:
        event = message.get("event")
        key = str(message.get("call"))
        if event == "incoming":
            handle = CallHandle(key, worker, message)
            worker.calls[key] = handle
            task = asyncio.create_task(self.on_incoming(handle), name=f"call-{key}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            return
        if event == "registration":
            return
        handle = worker.calls.get(key)
        if handle is None:
            if event == "error":
                log.warning("media worker %s: %s", worker.name, message.get("message"))
            return
        handle.deliver(message)
        if event == "ended":
            worker.calls.pop(key, None)
