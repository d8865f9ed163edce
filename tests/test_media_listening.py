"""Listening on a call, frame by frame: barge-in, DTMF rules, end of utterance, timers.

The listener is pure logic (time is passed in), so these tests drive it with frames and check
what the caller would notice: when the prompt stops, when an answer is taken, what it is. The
speech-detection cases use real audio through the worker's own VAD (WebRTC's, from pocketsphinx):
flite speech, as it arrives over G.711 too, and line noise, clicks and a cough-like burst.
"""

from __future__ import annotations

from collections import deque

import numpy as np
import pytest
import soxr
from pocketsphinx import Vad

from ivr.media.audio import FRAME_BYTES, split_frames
from ivr.media.call import refer_to
from ivr.media.listening import Answer, Ear, Listener, ListenSpec, frame_is_voiced, rms
from ivr.media.playback import LEAD_FRAMES, Playback
from ivr.media.worker import parse_invite
from tests.speech_audio import flite, needs_flite

FRAME = 0.02
LOUD = (np.sin(np.arange(320) / 3.0) * 8000).astype("<i2").tobytes()  # a vowel-like tone
QUIET = bytes(FRAME_BYTES)
RATE = 16000


class Recorder:
    """The call side of the listener: remembers what it was asked to do."""

    def __init__(self) -> None:
        self.log: list[str] = []
        self.answers: list[Answer] = []
        self.fed = 0
        self.sent: list[bytes] = []  # what went to the recogniser after the preroll

    def barge_in(self) -> None:
        self.log.append("barge")

    def hold_prompt(self) -> None:
        self.log.append("hold")

    def resume_prompt(self) -> None:
        self.log.append("resume")

    def start_utterance(self, preroll: list[bytes]) -> None:
        self.log.append(f"start:{len(preroll)}")

    def feed_utterance(self, frame: bytes) -> None:
        self.fed += 1
        self.sent.append(frame)

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


def test_speech_barges_in_after_two_voiced_frames_and_ends_after_the_trailing_silence() -> None:
    calls = Recorder()
    listener = Listener(ListenSpec(end_silence=0.3), calls, now=0.0)
    now = run_frames(listener, [(QUIET, False)] * 5, 0.0)
    assert calls.log == []
    now = run_frames(listener, [(LOUD, True)], now)
    assert calls.log == ["hold"]  # 20 ms of a voice: the prompt falls silent,
    now = run_frames(listener, [(LOUD, True)], now)
    assert calls.log[1:3] == ["barge", "start:7"]  # 40 ms: it is cut, and the recogniser
    # gets the audio before the decision too (5 quiet + 2 voiced frames)
    now = run_frames(listener, [(LOUD, True)] * 21 + [(QUIET, False)] * 14, now)
    assert "end" not in calls.log  # 280 ms of silence: still the same utterance
    run_frames(listener, [(QUIET, False)], now)
    assert calls.log[-1] == "end"
    listener.transcript("check my balance", 0.9, now)
    assert calls.answers == [Answer("speech", text="check my balance", confidence=0.9)]


def test_a_single_voiced_frame_only_pauses_the_prompt_which_then_plays_on() -> None:
    calls = Recorder()
    listener = Listener(ListenSpec(), calls, now=0.0)
    pattern = [(LOUD, True), (QUIET, False), (QUIET, False)]
    run_frames(listener, pattern * 5, 0.0)
    assert calls.log == ["hold", "resume"] * 5  # 40-60 ms of silence each time, no cut


def test_voiced_sound_that_never_becomes_speech_does_not_hold_the_prompt_for_long(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Music or a TV: every other frame sounds a little voiced, never enough to be speech. The
    prompt is held at most 300 ms, then plays on and is not held again for a second."""
    import ivr.media.listening as listening

    between = (listening.HOLD_PERIODIC + listening.PERIODIC) / 2
    monkeypatch.setattr(listening, "periodicity", lambda audio: between)
    calls = Recorder()
    listener = Listener(ListenSpec(), calls, now=0.0)
    events: list[tuple[int, str]] = []
    for index, frame in enumerate([(LOUD, True), (QUIET, False)] * 50):  # 2 s
        before = len(calls.log)
        run_frames(listener, [frame], index * FRAME)
        events += [(index, what) for what in calls.log[before:]]
    assert events == [(0, "hold"), (14, "resume"), (66, "hold"), (80, "resume")]


def test_a_prompt_held_for_speech_plays_on_from_the_frame_it_stopped_at() -> None:
    outgoing: deque[bytes] = deque()
    playback = Playback(outgoing)
    frames = [bytes([n]) * FRAME_BYTES for n in range(10)]
    playback.enqueue(frames, barge_in=True)
    playback.feed()
    heard = [outgoing.popleft()]  # the clock thread took frame 0
    assert playback.hold()
    playback.feed()
    assert not outgoing and playback.playing  # silent, and still playing
    playback.resume()
    while playback.playing:
        heard.append(outgoing.popleft())
        playback.feed()
    assert heard == frames  # nothing lost, nothing repeated


def telephone(pcm: bytes) -> bytes:
    """`pcm` as it arrives over a G.711 call: the 8 kHz band, mu-law quantised (8 bits)."""
    samples = soxr.resample(np.frombuffer(pcm, "<i2").astype(np.float32), RATE, 8000) / 32768
    mu = 255.0
    coded = np.round(np.sign(samples) * np.log1p(mu * np.abs(samples)) / np.log1p(mu) * 127)
    decoded = np.sign(coded) * np.expm1(np.abs(coded) / 127 * np.log1p(mu)) / mu * 32768
    wide = soxr.resample(decoded.astype(np.float32), 8000, RATE)
    return np.clip(np.rint(wide), -32768, 32767).astype("<i2").tobytes()


def noise(seconds: float, level: float, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, level, int(seconds * RATE))


def pcm(*parts: np.ndarray | bytes) -> bytes:
    joined = np.concatenate(
        [np.frombuffer(p, "<i2").astype(np.float64) if isinstance(p, bytes) else p for p in parts]
    )
    return np.clip(np.rint(joined), -32768, 32767).astype("<i2").tobytes()


class Line:
    """A call's received audio through the media worker's own hearing (`Ear`: the line's
    background level and a WebRTC VAD) into a listener, frame by frame."""

    def __init__(self, spec: ListenSpec | None = None) -> None:
        self.calls = Recorder()
        self.listener = Listener(spec or ListenSpec(), self.calls, now=0.0)
        self.ear = Ear(Vad(Vad.LOOSE, RATE, FRAME))
        self.frames = 0
        self.barged_at: int | None = None  # the frame at which the prompt was cut
        self.silenced_at: int | None = None  # ...or held, if that came first

    @property
    def now(self) -> float:
        return self.frames * FRAME

    def hear(self, audio: bytes) -> None:
        for frame in split_frames(audio):
            self.ear.hear(self.listener, frame, rms(frame), self.now)
            if self.barged_at is None and "barge" in self.calls.log:
                self.barged_at = self.frames
            if self.silenced_at is None and {"hold", "barge"} & set(self.calls.log):
                self.silenced_at = self.frames
            self.frames += 1

    @property
    def said(self) -> list[str]:
        """What the listener asked of the call, holds and resumes aside."""
        return [entry for entry in self.calls.log if entry not in ("hold", "resume")]


def first_loud(audio: bytes) -> int:
    return next(i for i, f in enumerate(split_frames(audio)) if rms(f) >= 400)


@needs_flite
@pytest.mark.parametrize("word", ["yes", "no", "operator", "hello"])
@pytest.mark.parametrize("line", ["wideband", "telephone"])
def test_a_caller_who_starts_speaking_silences_the_prompt_at_once_and_cuts_it_next_frame(
    word: str, line: str
) -> None:
    audio = flite(word) if line == "wideband" else telephone(flite(word))
    heard = Line()
    heard.hear(audio)
    assert heard.silenced_at is not None and heard.barged_at is not None
    # Within the first syllable's first 20 ms over the phone (G.711); wideband onsets of
    # "operator" and "hello" sound less voiced at first: silenced and cut 20 ms later.
    assert heard.silenced_at <= first_loud(audio) + (line == "wideband")
    assert heard.barged_at <= first_loud(audio) + 1
    assert "resume" not in heard.calls.log
    assert heard.said[:3] == ["barge", "start:15", "end"]  # 300 ms of audio before it too


@needs_flite
def test_a_word_that_opens_with_a_hiss_cuts_the_prompt_at_its_vowel() -> None:
    audio = telephone(flite("check my balance"))
    heard = Line()
    heard.hear(audio)
    assert heard.barged_at is not None
    assert heard.barged_at <= first_loud(audio) + 5  # "ch" is not voiced; the "e" is
    assert heard.said[1] == "start:15"  # the recogniser still gets "ch" (300 ms before)


@needs_flite
def test_steady_line_noise_never_barges_in_and_speech_over_it_still_does() -> None:
    hiss = noise(6.0, 800.0)  # about -32 dBFS: a bad line, far above the fixed floor
    heard = Line()
    heard.hear(pcm(hiss[: 3 * RATE]))
    assert heard.calls.log == []
    clean = telephone(flite("yes"))
    answer = np.frombuffer(clean, "<i2").astype(np.float64)
    heard.hear(pcm(answer + hiss[3 * RATE : 3 * RATE + answer.size]))
    assert heard.barged_at is not None
    assert heard.barged_at <= 3 * 50 + first_loud(clean) + 2


def test_clicks_never_barge_in() -> None:
    line = np.zeros(2 * RATE)
    for at in (3000, 9955, 16315, 22000, 28790):  # in frames and across their boundaries
        line[at : at + 32] = 20000 * np.hanning(32)
    heard = Line()
    heard.hear(pcm(line))
    assert heard.calls.log == []


def test_a_cough_never_barges_in() -> None:
    # A cough is a burst of noise: sudden, loud, fading in a few hundred ms, and not voiced.
    length = int(0.3 * RATE)
    burst = noise(0.3, 8000.0) * np.exp(-np.arange(length) / (length / 3))
    heard = Line()
    heard.hear(pcm(np.zeros(RATE // 2), burst, np.zeros(RATE)))
    assert heard.calls.log == []


def answer_then_silence(
    spec: ListenSpec, partial: str, quiet: int
) -> tuple[Listener, Recorder, float]:
    """Speech, the recogniser's partial text while it lasts, then `quiet` silent frames."""
    calls = Recorder()
    listener = Listener(spec, calls, now=0.0)
    now = run_frames(listener, [(LOUD, True)] * 10, 0.0)
    listener.partial(partial, now)
    now = run_frames(listener, [(QUIET, False)] * quiet, now)
    return listener, calls, now


def test_a_complete_answer_of_a_closed_list_is_taken_after_a_short_pause() -> None:
    spec = ListenSpec(grammar=("yes", "no"), end_silence=0.3, complete_silence=0.15)
    _, calls, _ = answer_then_silence(spec, "yes", 7)
    assert "end" not in calls.log  # 140 ms: the caller may still be going on
    _, calls, _ = answer_then_silence(spec, "yes", 8)
    assert calls.log[-1] == "end"  # 160 ms after "yes", not 300


@pytest.mark.parametrize(
    ("grammar", "partial"),
    [
        (("no", "no thanks"), "no"),  # "no" may become "no thanks"
        (None, "yes"),  # free speech: anything may follow
        (("<digits>",), "one two"),  # a number is never known to be complete
        (("yes", "no"), "ye"),  # not a phrase (yet)
    ],
)
def test_an_answer_that_may_go_on_waits_the_full_trailing_silence(
    grammar: tuple[str, ...] | None, partial: str
) -> None:
    spec = ListenSpec(grammar=grammar, end_silence=0.3, complete_silence=0.15)
    _, calls, _ = answer_then_silence(spec, partial, 14)
    assert "end" not in calls.log
    _, calls, _ = answer_then_silence(spec, partial, 15)
    assert calls.log[-1] == "end"


def test_a_late_partial_that_completes_the_answer_ends_it_at_once() -> None:
    spec = ListenSpec(grammar=("yes", "no"), end_silence=0.3, complete_silence=0.15)
    listener, calls, now = answer_then_silence(spec, "", 10)
    assert "end" not in calls.log
    listener.partial("Yes", now)  # the recogniser caught up with the audio
    assert calls.log[-1] == "end"


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


def test_the_recogniser_hears_pauses_inside_an_answer_but_not_all_the_silence_after_it() -> None:
    calls = Recorder()
    listener = Listener(ListenSpec(end_silence=0.3), calls, now=0.0)
    word = [(LOUD, True)] * 10
    pause = [(bytes([1]) * FRAME_BYTES, False)] * 12  # 240 ms: not the end of the answer
    tail = [(bytes([2]) * FRAME_BYTES, False)] * 15  # 300 ms: the end
    run_frames(listener, word + pause + word + tail, 0.0)
    assert calls.log[-1] == "end"
    sent = calls.sent
    assert sent.count(pause[0][0]) == 12  # all of the pause, in its place
    assert sent.index(pause[0][0]) == 8 and sent[8 + 12 : 8 + 12 + 10] == [LOUD] * 10
    assert sent.count(tail[0][0]) == 8  # 160 ms of the trailing silence, not 300


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
    from ivr.media.leg import VoiceLeg

    worker = StubWorker()
    return VoiceLeg("w-1", worker=worker), worker  # type: ignore[arg-type]


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
