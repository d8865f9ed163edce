"""Checks on a browser's WebRTC signalling frames (an SDP offer, a trickled ICE candidate),
shared by the visitor's socket and the agent's desk: both hand them to a media worker."""

from __future__ import annotations

from typing import Any

MAX_SDP_BYTES = 64 * 1024
MAX_CANDIDATE_CHARS = 512
MAX_CANDIDATES = 20  # a browser trickles a handful: one per interface and protocol


class BadSignal(ValueError):
    """A refused offer or candidate; the text says what is wrong with it."""

    def __init__(self, reason: str, label: str = "malformed") -> None:
        super().__init__(reason)
        self.label = label  # metric label


def offer_sdp(frame: dict[str, Any]) -> str:
    sdp = frame.get("sdp")
    if not isinstance(sdp, str) or not sdp.strip():
        raise BadSignal('"sdp" must be the offer\'s SDP text')
    if len(sdp.encode("utf-8", "surrogatepass")) > MAX_SDP_BYTES:
        raise BadSignal(f"the offer is larger than {MAX_SDP_BYTES} bytes", "too_large")
    return sdp


def ice_candidate(frame: dict[str, Any]) -> tuple[str, str | None, int | None]:
    """(the candidate line, its sdpMid, its sdpMLineIndex)."""
    candidate, mid, index = frame.get("candidate"), frame.get("sdpMid"), frame.get("sdpMLineIndex")
    if (
        not isinstance(candidate, str)
        or not candidate.startswith("candidate:")
        or len(candidate) > MAX_CANDIDATE_CHARS
        or not (isinstance(mid, str) or isinstance(index, int))
    ):
        raise BadSignal(
            '"candidate" must be an ICE candidate line ("candidate:...") with its '
            '"sdpMid" or "sdpMLineIndex"'
        )
    return (
        candidate,
        mid if isinstance(mid, str) else None,
        index if isinstance(index, int) else None,
    )
