"""The control plane's side of the media workers: their socket, their calls, their loss.

Media workers connect to one Unix socket of the control plane and say hello with their name.
From then on the gateway hands `incoming` calls to the phone service and routes every other
event to the call it is about (`CallHandle`); `dial` places a call from a worker with a free SIP
slot. A worker whose connection drops (it crashed or was
killed) loses its calls: each gets a final `ended` event with the reason "media worker lost", so
its conversation is stored as ended by the usual path, and nothing else is disturbed.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from ivr.workers.ipc import Link, ProtocolError

log = logging.getLogger("ivr.voice")

WORKER_LOST = "media worker lost"
ANSWER_TIMEOUT = 10.0  # seconds for a media worker to answer a browser's offer


class NoMediaWorker(RuntimeError):
    """No media worker can take the call now (none started, or all full)."""


class DialFailed(RuntimeError):
    """A call we placed was not answered: the far end's final status (486 busy, 603
    declined...), or 408 when nobody answered in time."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"{status} {reason}".strip())
        self.status = status
        self.reason = reason


@dataclass
class WorkerLink:
    name: str
    link: Link
    max_calls: int = 4
    max_browser_calls: int = 0
    calls: dict[str, CallHandle] = field(default_factory=dict)

    @property
    def sip_calls(self) -> int:
        """Phone calls, incoming and placed: pjsua's slots (`max_calls`)."""
        return sum(not h.browser for h in self.calls.values())

    @property
    def browser_calls(self) -> int:
        """Visitors' browser calls (an agent's leg rides with its caller's call)."""
        return sum(h.browser and "bridge" not in h.details for h in self.calls.values())

    def send(self, message: dict[str, Any]) -> None:
        self.link.send(message)


class CallHandle:
    """One call as the control plane sees it: commands out, its events in order."""

    def __init__(
        self, key: str, worker: WorkerLink, details: dict[str, Any], browser: bool = False
    ) -> None:
        self.key = key
        self.worker = worker
        self.details = details
        self.browser = browser  # a WebRTC leg (else a SIP call)
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.ended: dict[str, Any] | None = None
        self.over = asyncio.Event()  # set with `ended`: for those who wait without reading events
        # Called with every event as it arrives (the widget's live captions and call state),
        # before it is queued for the channel.
        self.observers: list[Callable[[dict[str, Any]], None]] = []
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
            self.over.set()
        for observer in list(self.observers):
            try:
                observer(event)
            except Exception:  # a broken observer must not lose the call its events
                log.exception("call %s: event observer failed", self.key)
        self.events.put_nowait(event)


IncomingHandler = Callable[[CallHandle], Awaitable[None]]


async def browser_leg(
    worker: WorkerLink, key: str, offer_sdp: str, bridge: str | None = None
) -> tuple[CallHandle, str]:
    """A browser's leg on `worker` (bridged to its call `bridge`, for an agent): its handle and
    the SDP answer. ValueError with the worker's reason when refused, TimeoutError when no
    answer came."""
    details: dict[str, Any] = {"browser": True}
    message: dict[str, Any] = {"op": "offer", "call": key, "sdp": offer_sdp}
    if bridge is not None:
        details["bridge"] = message["bridge"] = bridge
    handle = CallHandle(key, worker, details, browser=True)
    worker.calls[key] = handle
    worker.send(message)
    try:
        async with asyncio.timeout(ANSWER_TIMEOUT):
            while True:
                event = await handle.events.get()
                if event.get("event") == "webrtc_answer":
                    return handle, str(event.get("sdp", ""))
                if event.get("event") == "ended":
                    raise ValueError(str(event.get("reason") or "the call was refused"))
    except BaseException:
        handle.send("hangup", now=True)
        worker.calls.pop(key, None)
        raise


class MediaGateway:
    def __init__(self, socket_path: str, on_incoming: IncomingHandler) -> None:
        self.socket_path = socket_path
        self.on_incoming = on_incoming
        self.workers: dict[str, WorkerLink] = {}
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._browser_numbers = itertools.count(1)
        self._dial_numbers = itertools.count(1)

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

    @property
    def takes_browser_calls(self) -> bool:
        return any(w.max_browser_calls for w in self.workers.values())

    async def browser_call(self, offer_sdp: str) -> tuple[CallHandle, str]:
        """Place a browser's call on the least busy media worker: (its handle, the SDP answer).

        Raises NoMediaWorker when none can take it, ValueError with the worker's reason when
        the offer was refused (malformed SDP, no audio), TimeoutError when no answer came."""
        workers = [w for w in self.workers.values() if w.browser_calls < w.max_browser_calls]
        if not workers:
            raise NoMediaWorker(
                "no media worker can take a browser call now"
                if self.takes_browser_calls
                else "browser calls are not enabled on this server"
            )
        worker = min(workers, key=lambda w: (w.browser_calls, len(w.calls)))
        key = f"{worker.name}-b{next(self._browser_numbers)}"
        return await browser_leg(worker, key, offer_sdp)

    async def dial(
        self,
        uri: str,
        headers: dict[str, str],
        *,
        from_user: str | None = None,
        timeout: float = 45.0,
    ) -> CallHandle:
        """Call `uri` (the INVITE carries `headers`) from the media worker with the most free
        SIP slots; returns the call's handle once it is answered and its audio is up.

        Raises NoMediaWorker when every worker's slots are taken, DialFailed with the far
        end's status when it refused (or the worker could not place it), and
        DialFailed(408, "no answer") after `timeout` seconds, the call then cancelled."""
        workers = [w for w in self.workers.values() if w.sip_calls < w.max_calls]
        if not workers:
            raise NoMediaWorker("no media worker has a free line for an outgoing call now")
        worker = min(workers, key=lambda w: (w.sip_calls, len(w.calls)))
        key = f"{worker.name}-o{next(self._dial_numbers)}"  # not a worker's own numbering
        details = {"dialled": True, "request_uri": uri, "headers": dict(headers)}
        handle = CallHandle(key, worker, details)
        worker.calls[key] = handle
        message: dict[str, Any] = {"op": "dial", "call": key, "uri": uri, "headers": headers}
        if from_user:
            message["from_user"] = from_user
        worker.send(message)
        try:
            async with asyncio.timeout(timeout):
                while True:
                    event = await handle.events.get()
                    if event.get("event") == "answered":
                        return handle
                    if event.get("event") == "ended":
                        code = int(event.get("code") or 0)
                        # A 2xx here: answered and hung up before its audio was up.
                        raise DialFailed(code if code >= 300 else 500,
                                         str(event.get("reason") or "the call ended"))  # fmt: skip
        except TimeoutError:
            self._abandon(handle)
            raise DialFailed(408, "no answer") from None
        except BaseException:
            self._abandon(handle)
            raise

    @staticmethod
    def _abandon(handle: CallHandle) -> None:
        """Hang up (CANCEL while it rings) and forget a call whose dial failed: its slot
        counts as free again, and its late events go nowhere. (A worker whose pjsua still
        holds the slot, waiting for the far end, refuses the next dial with 503.)"""
        handle.send("hangup", now=True)
        handle.worker.calls.pop(handle.key, None)

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
            worker = WorkerLink(
                str(hello["worker"]),
                link,
                int(hello.get("max_calls", 4)),
                int(hello.get("max_browser_calls", 0)),
            )
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
