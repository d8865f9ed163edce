"""What a call is saying: a queue of prompts, each bargeable or not, fed to the audio port.

Under the prompts there may be a `source`: audio that plays whenever no prompt does (hold
music, or the other side of a bridge, see `ivr.media.bridge`). A prompt queued over it is heard
first, then the source goes on; the source never counts as "playing" (nothing waits for it to
end: a hang-up queued after the last prompt happens while music would still play).

The loop keeps a small lead of frames in the port's outgoing buffer (the clock thread takes one
every 20 ms); a barge-in drops the buffered frames and the bargeable prompts at the head of the
queue at once, so the caller hears the prompt stop at the bridge's next tick. A hold takes the
buffered frames back instead (the caller may be starting to speak): the prompt falls silent
just as fast, and a resume plays on from the very frame it stopped at.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Protocol

LEAD_FRAMES = 4  # 80 ms buffered ahead: rides out loop jitter, and is all a barge-in must drop


class Source(Protocol):
    def next_frame(self) -> bytes | None:
        """The next 20 ms frame, or None when there is nothing to play now."""
        ...


@dataclass
class PromptItem:
    frames: list[bytes]
    barge_in: bool
    position: int = 0

    @property
    def finished(self) -> bool:
        return self.position >= len(self.frames)


@dataclass
class Playback:
    outgoing: deque[bytes]  # shared with the audio port: popped by the clock thread
    items: deque[PromptItem] = field(default_factory=deque)
    # How many frames in `outgoing` belong to a bargeable item (a non-bargeable one never has
    # its frames dropped): track by the item currently feeding.
    _feeding: PromptItem | None = None
    held: list[bytes] | None = None  # frames taken back from `outgoing` by `hold`
    source: Source | None = None  # plays under the prompts (hold music, a bridged leg)
    _prompt_fed: bool = False  # the last frame put into `outgoing` was a prompt's

    def enqueue(self, frames: list[bytes], barge_in: bool) -> None:
        if frames:
            self.items.append(PromptItem(frames, barge_in))

    def feed(self) -> None:
        """Top up the outgoing buffer (called every loop tick)."""
        if self.held is not None:
            return
        while len(self.outgoing) < LEAD_FRAMES:
            if self.items:
                item = self.items[0]
                self._feeding = item
                self.outgoing.append(item.frames[item.position])
                self._prompt_fed = True
                item.position += 1
                if item.finished:
                    self.items.popleft()
            elif self.source is not None and (frame := self.source.next_frame()) is not None:
                self.outgoing.append(frame)
                self._prompt_fed = False
            else:
                return

    @property
    def playing(self) -> bool:
        """Is a prompt being heard (or queued)? A source's audio does not count."""
        prompt_buffered = bool(self.outgoing) and self._prompt_fed
        return bool(self.items) or prompt_buffered or self.held is not None

    @property
    def bargeable_now(self) -> bool:
        """Is what the caller hears now allowed to be cut?"""
        if self.held is not None:
            return True  # only bargeable prompts are held
        if self.outgoing and self._feeding is not None:
            return self._feeding.barge_in
        return bool(self.items) and self.items[0].barge_in

    def barge_in(self) -> bool:
        """Stop what is playing if it may be cut; True if anything was stopped."""
        if not self.playing or not self.bargeable_now:
            return False
        self.outgoing.clear()
        self.held = None
        while self.items and self.items[0].barge_in:
            self.items.popleft()
        self._feeding = None
        return True

    def hold(self) -> bool:
        """Silence a bargeable prompt at once, keeping its place; True if one was held."""
        if self.held is not None or not self.playing or not self.bargeable_now:
            return False
        held: list[bytes] = []
        while True:  # the clock thread may take one meanwhile: that one is simply heard
            try:
                held.append(self.outgoing.popleft())
            except IndexError:
                break
        self.held = held
        return True

    def resume(self) -> None:
        """Play on from the frame `hold` stopped at."""
        if self.held is not None:
            held, self.held = self.held, None
            self.outgoing.extend(held)  # empty meanwhile: nothing feeds it while held
            self.feed()

    def stop(self) -> None:
        """Drop the prompts (a source plays on)."""
        self.outgoing.clear()
        self.items.clear()
        self.held = None
        self._feeding = None
        self._prompt_fed = False
