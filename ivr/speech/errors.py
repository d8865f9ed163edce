"""What the speech workers' clients raise, and how they connect."""

from __future__ import annotations

import asyncio

from ivr.workers.ipc import Link


class SpeechUnavailable(ConnectionError):
    """The speech worker cannot be reached, or the connection to it was lost (it exited or was
    restarted). A ConnectionError, so callers that reconnect on those do so here too."""


class SpeechError(RuntimeError):
    """The speech worker refused or failed a request; its message says why."""


class SpeechTimeout(TimeoutError):
    """The speech worker did not answer in time."""


async def connect_worker(socket_path: str, role: str, timeout: float) -> Link:
    """A connection to the `role` ("ASR", "TTS") worker at `socket_path`, or SpeechUnavailable."""
    try:
        return await asyncio.wait_for(Link.connect(socket_path), timeout)
    except (TimeoutError, OSError) as exc:
        raise SpeechUnavailable(
            f"{role} worker at {socket_path} is not available: {exc or 'timed out'}"
        ) from None
