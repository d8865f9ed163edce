"""A refused customer frame on the chat socket (`/chat/ws`): the socket's session and chat
continuity both raise it, and the endpoint (ivr.web.chat) answers it with an error frame."""

from __future__ import annotations


class BadMessage(ValueError):
    """A refused customer frame; the text is sent back as the error reason."""

    def __init__(self, reason: str, label: str, kind: str | None = None) -> None:
        super().__init__(reason)
        self.label = label  # metric label
        self.kind = kind  # for the page to act on (the error frame's `kind`), if any
