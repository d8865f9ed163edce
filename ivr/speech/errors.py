"""What the speech workers' clients raise."""

from __future__ import annotations


class SpeechUnavailable(ConnectionError):
    """The speech worker cannot be reached, or the connection to it was lost (it exited or was
    restarted). A ConnectionError, so callers that reconnect on those do so here too."""


class SpeechError(RuntimeError):
    """The speech worker refused or failed a request; its message says why."""


class SpeechTimeout(TimeoutError):
    """The speech worker did not answer in time."""
