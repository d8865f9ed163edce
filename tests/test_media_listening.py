"""Listening on a call, frame by frame: barge-in, DTMF rules, end of utterance, timers.

The listener is pure logic (time is passed in), so these tests drive it with synthetic frames
and check what the caller would notice: when the prompt stops, when an answer is taken, what it
is.
"""

from __future__ import annotations

from collections import deque

import numpy as np
import pytest

from ivr.media.audio import FRAME_BYTES, split_frames
from ivr.media.call import refer_to
from ivr.media.listening import Answer, Listener, ListenSpec, frame_is_voiced, rms
from ivr.media.playback import LEAD_FRAMES, Playback
from ivr.media.worker import parse_invite

FRAME = 0.02
LOUD = (np.sin(np.arange(320) / 3.0) * 8000).astype("<i2").tobytes()
QUIET = bytes(FRAME_BYTES)


class Recorder:
    """The call side of the listener: remembers what it was asked to do."""

    def __init__(self) -> None:
        self.log: list[str] = []
        self.answers: list[Answer] = []
        self.fed = 0

    def barge_in(self) -> None:
        self.log.append("barge")

    def start_utterance(self, preroll: list[bytes]) -> None:
        self.log.append(f"start:{len(preroll)}")

    def feed_utterance(self, frame: bytes) -> None:
        self.fed += 1

    def end_utterance(self) -> None:
        self.log.append("end")

    def cancel_utterance(self) -> None:
        self.log.append("cancel")

    def give_answer(self, answer: Answer) -> None:
        self.answers.append(answer)


def run_frames(listener: Listener, frames: list[tuple[bytes, bool]], start: float) -> float:
    now = start
    for frame, voiced in frames:
        listener.frame(frame, voiced, now)
        listener.tick(now)
        now += FRAME
    return now


def test_speech_barges_in_after_three_voiced_frames_and_ends_after_the_trailing_silence() -> None:
    calls = Recorder()
    listener = Listener(ListenSpec(end_silence=0.3), calls, now=0.0)
    now = run_frames(listener, [(QUIET, False)] * 5, 0.0)
    assert calls.log == []
    now = run_frames(listener, [(LOUD, True)] * 3, now)
    assert calls.log[:2] == ["barge", "start:8"]  # 60 ms of speech: the prompt stops,
    # and the recogniser gets the audio before the decision too (5 quiet + 3 voiced frames)
    now = run_frames(listener, [(LOUD, True)] * 20 + [(QUIET, False)] * 14, now)
    assert "end" not in calls.log  # 280 ms of silence: still the same utterance
    run_frames(listener, [(QUIET, False)], now)
    assert calls.log[-1] == "end"
    listener.transcript("check my balance", 0.9, now)
    assert calls.answers == [Answer("speech", text="check my balance", confidence=0.9)]


def test_a_single_noisy_frame_does_not_barge_in() -> None:
    calls = Recorder()
    listener = Listener(ListenSpec(), calls, now=0.0)
    run_frames(listener, [(LOUD, True), (QUIET, False), (LOUD, True), (QUIET, False)] * 3, 0.0)
    assert calls.log == []


def test_without_barge_in_nothing_is_taken_until_the_prompt_is_over() -> None:
    calls = Recorder()
    listener = Listener(ListenSpec(barge_in=False), calls, now=0.0)
    run_frames(listener, [(LOUD, True)] * 10, 0.0)
    listener.digit("1", 0.3)
    assert calls.log == [] and calls.answers == []
    listener.prompts_finished(1.0)
    listener.digit("1", 1.1)
    listener.tick(4.2)
    assert calls.answers == [Answer("dtmf", digits="1")]


def test_keys_end_at_the_terminator_the_length_or_the_inter_digit_timeout() -> None:
    for spec, keys, expected in [
        (ListenSpec(terminator="#"), "1234#", "1234"),
        (ListenSpec(max_digits=4, terminator=None), "12345", "1234"),
        (ListenSpec(max_digits=8, inter_digit=2.0), "12", "12"),
    ]:
        calls = Recorder()
        listener = Listener(spec, calls, now=0.0)
        listener.prompts_finished(0.0)
        for i, key in enumerate(keys):
            listener.digit(key, 0.1 * i)
        listener.tick(0.1 * len(keys) + 1.0)
        assert calls.answers == [] or calls.answers[0].digits == expected
        listener.tick(10.0)
        assert calls.answers == [Answer("dtmf", digits=expected)]


def test_a_key_during_speech_cancels_the_utterance() -> None:
    calls = Recorder()
    listener = Listener(ListenSpec(max_digits=1), calls, now=0.0)
    run_frames(listener, [(LOUD, True)] * 5, 0.0)
    listener.digit("2", 0.2)
    assert "cancel" in calls.log
    assert calls.answers == [Answer("dtmf", digits="2")]


def test_no_input_counts_from_the_end_of_the_prompt() -> None:
    calls = Recorder()
    listener = Listener(ListenSpec(timeout=5.0), calls, now=0.0)
    listener.tick(10.0)  # the prompt is still playing: no clock yet
    assert calls.answers == []
    listener.prompts_finished(10.0)
    listener.tick(14.9)
    assert calls.answers == []
    listener.tick(15.0)
    assert calls.answers == [Answer("none")]


def test_an_empty_transcript_is_not_an_answer_and_restarts_the_no_input_clock() -> None:
    calls = Recorder()
    listener = Listener(ListenSpec(timeout=5.0), calls, now=0.0)
    listener.prompts_finished(0.0)
    now = run_frames(listener, [(LOUD, True)] * 5 + [(QUIET, False)] * 16, 1.0)
    listener.transcript("", None, now)
    listener.tick(now + 4.9)
    assert calls.answers == []
    listener.tick(now + 5.0)
    assert calls.answers == [Answer("none")]


def test_an_endless_utterance_is_cut_at_max_speech() -> None:
    calls = Recorder()
    listener = Listener(ListenSpec(max_speech=1.0), calls, now=0.0)
    run_frames(listener, [(LOUD, True)] * 60, 0.0)
    assert calls.log.count("end") == 1


def test_quiet_frames_are_never_voiced_whatever_the_vad_says() -> None:
    class AlwaysSpeech:
        def is_speech(self, frame: bytes) -> bool:
            return True

    assert not frame_is_voiced(AlwaysSpeech(), QUIET)
    assert frame_is_voiced(AlwaysSpeech(), LOUD)
    assert rms(QUIET) == 0.0 and rms(LOUD) > 5000


def test_barge_in_drops_bargeable_prompts_but_never_a_legal_notice() -> None:
    outgoing: deque[bytes] = deque()
    playback = Playback(outgoing)
    playback.enqueue([b"n" * FRAME_BYTES] * 10, barge_in=False)
    playback.enqueue([b"q" * FRAME_BYTES] * 10, barge_in=True)
    playback.feed()
    assert len(outgoing) == LEAD_FRAMES
    assert not playback.barge_in()  # the notice plays on
    while playback.items and not playback.items[0].barge_in:
        outgoing.clear()
        playback.feed()
    outgoing.clear()
    playback.feed()
    assert playback.barge_in()
    assert not playback.playing


def test_prompt_audio_is_split_into_whole_frames() -> None:
    frames = split_frames(b"\x01" * (FRAME_BYTES * 2 + 10))
    assert [len(f) for f in frames] == [FRAME_BYTES] * 3
    assert frames[-1].endswith(b"\x00" * (FRAME_BYTES - 10))


INVITE = (
    "INVITE sip:100@127.0.0.1:5080 SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 127.0.0.1:5090;branch=z9hG4bK1\r\n"
    'f: "Alice" <sip:+4412345@127.0.0.1;user=phone>;tag=1\r\n'
    "To: <sip:100@127.0.0.1>\r\n"
    "Call-ID: abc@127.0.0.1\r\n"
    "X-Context-Id: ctx-1\r\n"
    "User-to-User: 0455;encoding=hex\r\n"
    "Content-Length: 0\r\n\r\n"
)


def test_an_invite_gives_the_dialled_number_the_caller_and_the_context_headers() -> None:
    details = parse_invite(INVITE)
    assert details["request_user"] == "100"
    assert details["to_user"] == "100"
    assert details["from_user"] == "+4412345"
    assert details["headers"] == {"X-Context-Id": "ctx-1", "User-to-User": "0455;encoding=hex"}


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        (
            "sip:agent@pbx",
            "<sip:agent@pbx?X-Conversation-Id=a%20b&User-to-User=04%3Bencoding%3Dhex>",
        ),
        (
            "<sip:agent@pbx?x=1>",
            "<sip:agent@pbx?x=1&X-Conversation-Id=a%20b&User-to-User=04%3Bencoding%3Dhex>",
        ),
    ],
)
def test_refer_to_carries_the_context_headers_escaped(uri: str, expected: str) -> None:
    headers = {"X-Conversation-Id": "a b", "User-to-User": "04;encoding=hex"}
    assert refer_to(uri, headers) == expected


def test_a_notice_queued_before_the_question_is_heard_in_full_keys_and_all() -> None:
    calls = Recorder()
    listener = Listener(ListenSpec(barge_in=True, max_digits=1), calls, now=0.0)
    listener.interruptible = False  # the call is still playing a non-bargeable notice
    listener.digit("1", 0.1)
    run_frames(listener, [(LOUD, True)] * 10, 0.2)
    assert calls.log == [] and calls.answers == []
    listener.interruptible = True  # the question itself has started
    listener.digit("1", 1.0)
    assert calls.answers == [Answer("dtmf", digits="1")]


class StubWorker:
    """The media worker as a call leg sees it: a clock and an event sink."""

    def __init__(self) -> None:
        self.now = 0.0
        self.events: list[dict[str, object]] = []
        self.loop = self

    def time(self) -> float:
        return self.now

    def emit(self, event: dict[str, object]) -> None:
        self.events.append(event)


def leg_with_stub() -> tuple[object, StubWorker]:
    from ivr.media.call import CallLeg

    worker = StubWorker()
    return CallLeg("w-1", call=None, worker=worker), worker  # type: ignore[arg-type]


def test_keys_typed_ahead_of_the_question_answer_it() -> None:
    leg, worker = leg_with_stub()
    leg.digit("2", 0.0)  # pressed before the menu was asked
    leg.listen(1, ListenSpec(max_digits=1, terminator=None))
    assert [e["digits"] for e in worker.events if e["event"] == "input"] == ["2"]


def test_the_pound_after_a_complete_entry_is_not_the_next_answer() -> None:
    leg, worker = leg_with_stub()
    leg.listen(1, ListenSpec(max_digits=8, terminator="#"))
    for key in "12345678":
        leg.digit(key, 1.0)
    leg.listen(2, ListenSpec(max_digits=4, terminator="#"))
    leg.digit("#", 1.2)  # the habit of ending every entry with #
    for key in "2580":
        leg.digit(key, 2.0)
    answers = [(e["request"], e["digits"]) for e in worker.events if e["event"] == "input"]
    assert answers == [(1, "12345678"), (2, "2580")]


def test_invites_in_other_spellings_still_give_the_numbers() -> None:
    details = parse_invite(
        "INVITE SIP:%2B4420794600@127.0.0.1 SIP/2.0\r\n"
        "from: <tel:+44-20-7946-0000>;tag=9\r\n"
        "TO: <sip:2000@127.0.0.1>\r\n"
        "call-id: x1\r\n"
        "x-context: a\r\n  continued\r\n\r\n"
    )
    assert details["request_user"] == "+4420794600"
    assert details["from_user"] == "+442079460000"
    assert details["to_user"] == "2000"
    assert details["call_id"] == "x1"
    assert details["headers"] == {"x-context": "a continued"}
