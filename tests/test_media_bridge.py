"""What plays under a call's prompts (ivr.media.bridge, ivr.media.playback): hold music, and
the other leg of a bridge. Pure logic, frame by frame, as the media worker's loop drives it."""

from __future__ import annotations

from collections import deque

from ivr.media.bridge import CUSHION_FRAMES, MAX_LAG_FRAMES, Loop, Relay
from ivr.media.playback import Playback

FRAME_BYTES = 640


def frame(n: int) -> bytes:
    return bytes([n % 256]) * FRAME_BYTES


def hear(playback: Playback, outgoing: deque[bytes], count: int) -> list[bytes]:
    """`count` frames as the clock thread takes them, the loop topping up before each."""
    heard = []
    for _ in range(count):
        playback.feed()
        heard.append(outgoing.popleft() if outgoing else b"")
    return heard


def test_a_prompt_plays_over_the_music_and_the_music_goes_on_where_it_was() -> None:
    outgoing: deque[bytes] = deque()
    playback = Playback(outgoing)
    music = [frame(100 + n) for n in range(6)]
    playback.source = Loop(music)
    assert hear(playback, outgoing, 3) == music[:3]
    assert not playback.playing  # music is not "playing": nothing waits for it to end
    notice = [frame(n) for n in range(3)]
    playback.enqueue(notice, barge_in=False)
    assert playback.playing
    # The music frames already buffered (60 ms here) play out first, then the notice.
    heard = hear(playback, outgoing, 3 + 3 + 4)
    assert heard[:3] == music[3:6]
    assert heard[3:6] == notice
    assert heard[6:] == music[:4]
    assert not playback.playing


def test_a_hang_up_queued_after_the_last_prompt_does_not_wait_for_the_music() -> None:
    outgoing: deque[bytes] = deque()
    playback = Playback(outgoing, source=Loop([frame(7)] * 50))
    playback.enqueue([frame(1)] * 5, barge_in=False)
    for _ in range(20):
        if not playback.playing:
            break
        hear(playback, outgoing, 1)
    assert not playback.playing  # the prompt was heard: the hang-up may follow


def test_the_relay_gathers_a_cushion_then_plays_every_frame_in_order() -> None:
    relay = Relay()
    relay.push(frame(1))
    assert relay.next_frame() is None  # one frame is no cushion yet
    relay.push(frame(2))
    assert [relay.next_frame(), relay.next_frame()] == [frame(1), frame(2)]
    assert relay.next_frame() is None  # a gap: gather again
    relay.push(frame(3))
    assert relay.next_frame() is None
    relay.push(frame(4))
    assert relay.next_frame() == frame(3)


def test_a_sender_running_ahead_loses_its_oldest_frames_not_the_newest() -> None:
    relay = Relay()
    for n in range(MAX_LAG_FRAMES + 1):
        relay.push(frame(n))
    assert len(relay.frames) == CUSHION_FRAMES
    assert relay.dropped == MAX_LAG_FRAMES + 1 - CUSHION_FRAMES
    assert relay.next_frame() == frame(MAX_LAG_FRAMES + 1 - CUSHION_FRAMES)


def test_a_bridged_legs_voice_reaches_the_other_leg_with_a_bounded_delay() -> None:
    """The agent's frames, relayed to the caller's playback one per 20 ms tick, arrive in
    order and no later than the cushion plus the playback's lead."""
    relay = Relay()
    outgoing: deque[bytes] = deque()
    playback = Playback(outgoing, source=relay)
    heard: list[bytes] = []
    for n in range(50):
        relay.push(frame(n + 1))
        heard += hear(playback, outgoing, 1)
    voiced = [f for f in heard if f]
    assert voiced == [frame(n + 1) for n in range(len(voiced))]
    assert len(heard) - len(voiced) <= CUSHION_FRAMES
