"""Continue links: a signed, expiring, single-use URL that brings a customer back to their
conversation on another channel (`/c/<token>`, sent by SMS when a flow escalates).

The token is `<conversation id>.<nonce>.<timestamp>.<signature>`: an HMAC-SHA256 signature
(itsdangerous, salted for this one use) over the conversation id and a random nonce, and the
time it was made. Nothing else, and no personal data: the conversation id is a random handle
that opens nothing without the signature. A token is refused as forged (403) when the signature
does not hold, as expired (410) after `ttl_seconds`, and as used (410) once it was redeemed:
`redeem` records its nonce, insert-or-fail, so of two browsers racing exactly one wins.
`check` answers the same without using the link up (SMS apps fetch links for previews).

The web side (`ivr.web.continue_page`) turns refusals into pages; this module knows no HTTP.

`ResumeHandles` share the links' secret under a salt of their own: a web chat's handle to come
back to its conversation after a reload or a dropped socket (`ivr.web.visitor`). Not single use
(a page may reload several times), bound to one conversation, valid `ttl_seconds` after issue.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable
from typing import Literal

from itsdangerous import BadSignature, TimestampSigner

from ivr.store.links import LinkStore

SALT = "ivr.continue-link"
RESUME_SALT = "ivr.chat-resume"  # the same secret signs no link that passes as a handle
MAX_TOKEN_CHARS = 512  # ours are about 100; longer ones are not read at all
Refusal = Literal["forged", "expired", "used"]

REASONS: dict[Refusal, str] = {
    "forged": "This link is not valid. Please check that you opened the whole link from the "
    "message, or contact us again.",
    "expired": "This link has expired. Please contact us again and we will send you a new one.",
    "used": "This link was already used. Each link opens the conversation once; please "
    "contact us again for a new one.",
}


class LinkRefused(Exception):
    """A link that does not open the conversation; str() is the reason to show the customer."""

    def __init__(self, kind: Refusal) -> None:
        super().__init__(REASONS[kind])
        self.kind = kind
        self.status = 403 if kind == "forged" else 410


class _ClockedSigner(TimestampSigner):
    """A TimestampSigner whose clock is ours (tests move it)."""

    def __init__(self, secret: bytes, clock: Callable[[], float], salt: str = SALT) -> None:
        super().__init__(secret, salt=salt, digest_method=hashlib.sha256)
        self._clock = clock

    def get_timestamp(self) -> int:
        return int(self._clock())


class ContinueLinks:
    def __init__(
        self,
        secret: bytes,
        base_url: str,
        ttl_seconds: float,
        store: LinkStore,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not secret:
            raise ValueError("continue links need a secret")
        self._secret = secret
        self._signer = _ClockedSigner(secret, clock)
        self._handles: dict[float, ResumeHandles] = {}
        self._base_url = base_url.rstrip("/")
        self._ttl = ttl_seconds
        self._store = store
        self._clock = clock

    def make(self, conversation_id: str) -> str:
        """The URL that continues `conversation_id`: `{base_url}/c/{token}`."""
        nonce = secrets.token_urlsafe(9)  # 72 bits: unique per link; the signature is the lock
        token = self._signer.sign(f"{conversation_id}.{nonce}").decode("ascii")
        return f"{self._base_url}/c/{token}"

    def _open(self, token: str) -> tuple[str, str, float]:
        """(conversation id, nonce, expiry time) of a genuine, unexpired token."""
        if not token or len(token) > MAX_TOKEN_CHARS or not token.isascii():
            raise LinkRefused("forged")
        try:
            value, signed_at = self._signer.unsign(token, return_timestamp=True)
        except BadSignature:  # a bad signature, or a malformed token
            raise LinkRefused("forged") from None
        conversation_id, _, nonce = value.decode("ascii").rpartition(".")
        if not conversation_id or not nonce:
            raise LinkRefused("forged")
        expires_at = signed_at.timestamp() + self._ttl
        # A clock a second behind the signing node's is not "expired": only the upper bound.
        if self._clock() > expires_at:
            raise LinkRefused("expired")
        return conversation_id, nonce, expires_at

    async def check(self, token: str) -> str:
        """The conversation id of a valid, unused link (LinkRefused otherwise); uses nothing."""
        conversation_id, nonce, _ = self._open(token)
        if await self._store.used(nonce):
            raise LinkRefused("used")
        return conversation_id

    async def redeem(self, token: str) -> str:
        """As `check`, and the link is used up: it opens its conversation this once."""
        conversation_id, nonce, expires_at = self._open(token)
        if not await self._store.use(nonce, conversation_id, expires_at, now=self._clock()):
            raise LinkRefused("used")
        return conversation_id

    def resume_handles(self, ttl_seconds: float) -> ResumeHandles:
        """Web chats' resume handles, signed with this secret (and clock) under their own salt."""
        handles = self._handles.get(ttl_seconds)
        if handles is None:
            handles = self._handles[ttl_seconds] = ResumeHandles(
                self._secret, ttl_seconds, self._clock
            )
        return handles


HandleRefusal = Literal["forged", "expired"]


class HandleRefused(Exception):
    """A resume handle that does not open its conversation; str() says why, naming nothing."""

    def __init__(self, kind: HandleRefusal) -> None:
        super().__init__(
            "This chat could not be resumed." if kind == "forged"
            else "This chat was left too long ago to be resumed."
        )  # fmt: skip
        self.kind = kind


class ResumeHandles:
    """`<conversation id>.<timestamp>.<signature>`: the conversation it names, signed, valid
    `ttl_seconds` after it was made. Whether that conversation may go on is the caller's check."""

    def __init__(
        self, secret: bytes, ttl_seconds: float, clock: Callable[[], float] = time.time
    ) -> None:
        if not secret:
            raise ValueError("resume handles need a secret")
        self._signer = _ClockedSigner(secret, clock, RESUME_SALT)
        self._ttl = ttl_seconds
        self._clock = clock

    def make(self, conversation_id: str) -> str:
        return self._signer.sign(conversation_id).decode("ascii")

    def open(self, token: str) -> str:
        """The conversation id of a genuine, unexpired handle; HandleRefused otherwise."""
        if not token or len(token) > MAX_TOKEN_CHARS or not token.isascii():
            raise HandleRefused("forged")
        try:
            value, signed_at = self._signer.unsign(token, return_timestamp=True)
        except BadSignature:
            raise HandleRefused("forged") from None
        conversation_id = value.decode("ascii")
        if not conversation_id:
            raise HandleRefused("forged")
        if self._clock() > signed_at.timestamp() + self._ttl:
            raise HandleRefused("expired")
        return conversation_id
