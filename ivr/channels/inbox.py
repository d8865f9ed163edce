"""`Inbox`: what a customer sends on a text channel (chat, SMS), waiting to be read in order.

Bounded, so a flood is refused (`put` answers False) rather than held; `close()` makes the next
`get` raise ChannelClosed, even when the inbox is full (the oldest message gives way).
"""

from __future__ import annotations

import asyncio
from typing import Generic, TypeVar

from ivr.flow.channel import ChannelClosed

T = TypeVar("T")
_CLOSED = object()
INBOX_SIZE = 64


class Inbox(Generic[T]):
    def __init__(self, size: int = INBOX_SIZE) -> None:
        self._queue: asyncio.Queue[T | object] = asyncio.Queue(maxsize=size)

    def put(self, item: T) -> bool:
        """Keep `item` for the next `get`; False when too many are already waiting."""
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:
            return False
        return True

    def close(self) -> None:
        while True:
            try:
                self._queue.put_nowait(_CLOSED)
                return
            except asyncio.QueueFull:
                self._queue.get_nowait()

    def drop_waiting(self) -> None:
        """Forget what waits unread (an answer to a secure question must not reach an agent)."""
        while not self._queue.empty():
            self._queue.get_nowait()

    def empty(self) -> bool:
        return self._queue.empty()

    async def get(self, timeout: float | None, why_closed: str) -> T:
        """The next item; TimeoutError after `timeout` seconds (None: no limit); ChannelClosed
        with `why_closed` once closed."""
        item = await asyncio.wait_for(self._queue.get(), timeout)
        if item is _CLOSED:
            raise ChannelClosed(why_closed)
        return item  # type: ignore[return-value]
