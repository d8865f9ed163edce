"""Audio that plays under a call's prompts: hold music, and another leg's voice (a bridge).

A bridge joins a caller's leg and an agent's leg on the same media worker. Each leg's received
frames go into a `Relay`, which is the other leg's playback `source`; nothing else reaches the
agent's leg (no prompt of the bot is ever queued on it), so no prompt bleeds into the agent's
ear. The caller hears the music until the agent's leg has connected (ICE and DTLS take a
moment, and may fail); then queued prompts (a stale announcement) are dropped and the agent is
heard from their first word. If the agent's leg goes, the caller hears the music again.

Two clocks meet in a bridge (a SIP endpoint's and the browser's, or the loop's ticks against
either): the relay keeps a small cushion before it starts, and drops its oldest frames when a
faster sender runs ahead, so the delay stays bounded whatever the drift.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

CUSHION_FRAMES = 2  # 40 ms gathered before playing (after a start or a gap): rides out ticks
MAX_LAG_FRAMES = 8  # 160 ms: more waiting means the sender runs ahead; drop down to the cushion


class Relay:
    """Frames from one leg to the other, with a small jitter cushion."""

    def __init__(self) -> None:
        self.frames: deque[bytes] = deque()
        self._started = False
        self.dropped = 0  # frames dropped to keep the delay bounded (for the logs)

    def push(self, frame: bytes) -> None:
        self.frames.append(frame)
        if len(self.frames) > MAX_LAG_FRAMES:
            while len(self.frames) > CUSHION_FRAMES:
                self.frames.popleft()
                self.dropped += 1

    def next_frame(self) -> bytes | None:
        if not self._started:
            if len(self.frames) < CUSHION_FRAMES:
                return None
            self._started = True
        if not self.frames:
            self._started = False  # a gap: gather the cushion again
            return None
        return self.frames.popleft()


class Loop:
    """Hold music: the same frames over and over."""

    def __init__(self, frames: Sequence[bytes]) -> None:
        if not frames:
            raise ValueError("nothing to loop")
        self.frames = frames
        self.position = 0

    def next_frame(self) -> bytes:
        frame = self.frames[self.position]
        self.position = (self.position + 1) % len(self.frames)
        return frame
