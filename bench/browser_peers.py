"""Browser callers for bench/browser_calls.py: aiortc peers on the widget's socket (`/chat/ws`),
in a process of their own so that their CPU is measured apart from the server's.

Each peer does what the widget does: opens the socket, sends a `call` frame with its SDP offer,
applies the `call_answer`, and talks: Opus audio out (looped speech, or silence and a clip when
told to answer), keys on the "keys" data channel. What it receives is timed twice: when each
RTP packet reached the peer (its socket, before aiortc's receive buffer: what the server sent
and when), and when aiortc decoded it (80 ms later: aiortc releases a packet once 4 more have
arrived; a browser's jitter buffer adds its own delay too).

    browser_peers.py --plan '{"scenario": "load", "url": "http://127.0.0.1:8700", ...}'

Scenarios (`scenario` in the plan): `load` (`calls` peers at once until a `stop` command on
stdin, then their audio figures over the command's `window`), `setup` (`calls` calls one at a
time: offer -> answer -> connected -> first bot audio), `turns` (one call answering a yes/no
question `turns` times with `say`). Everything goes out as JSON lines on stdout; the last one
is {"event": "result", ...}. All times are CLOCK_MONOTONIC, shared with the bench.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import itertools
import json
import math
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
import numpy as np  # noqa: E402
import soxr  # noqa: E402
from aiortc import RTCPeerConnection, RTCSessionDescription  # noqa: E402
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack  # noqa: E402
from aiortc.rtcrtpreceiver import RTCRtpReceiver  # noqa: E402

from ivr.media.webrtc import PacedTrack, use_host_addresses  # noqa: E402
from ivr.softphone.audio import frame_rms, split_frames, synthesise  # noqa: E402

THRESHOLD = 400.0  # frame RMS counted as speech, as bench/voice_calls.py and sip_caller.py
FRAME_S = 0.02
LATE_GAP = 0.06  # a packet this long after the previous one: a gap the visitor may hear
TIMEOUT = 15.0  # any one step of a call (answer, ICE + DTLS, first audio, a reply)
POLL = 0.005
PEER_RATE = 48000  # what browsers capture and send
PEER_SAMPLES = PEER_RATE * 20 // 1000
PEER_FRAME_BYTES = PEER_SAMPLES * 2 * 2  # stereo s16
PEER_SILENCE = bytes(PEER_FRAME_BYTES)


class CallFailed(Exception):
    pass


def emit(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


async def until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll `condition` (cheap: lists and attributes) until true, or fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise CallFailed(f"{what}: not within {timeout:g} s")
        await asyncio.sleep(POLL)


# ------------------------------------------------------------------ RTP arrival times


def time_rtp_arrivals() -> None:
    """Stamp every RTP packet a receiver gets (`bench_rtp`: time, sequence, timestamp), before
    aiortc's receive buffer holds it. aiortc has no hook for it: its handler is wrapped, here,
    in this load generator only."""
    handle = RTCRtpReceiver._handle_rtp_packet

    async def timed(self: RTCRtpReceiver, packet: Any, arrival_time_ms: int) -> None:
        log = getattr(self, "bench_rtp", None)
        if log is not None:
            log.append((time.monotonic(), packet.sequence_number, packet.timestamp))
        await handle(self, packet, arrival_time_ms)

    RTCRtpReceiver._handle_rtp_packet = timed  # type: ignore[method-assign]


# ------------------------------------------------------------------ what a peer says


def browser_frames(pcm: bytes) -> list[bytes]:
    """16 kHz mono PCM as a browser's microphone track: 20 ms frames of 48 kHz stereo. (aiortc's
    Opus encoder holds back a frame of anything else in its resampler: 20 ms more to every
    answer than a browser takes.) Frame i is the 16 kHz frame i, resampled as a whole."""
    samples = np.frombuffer(pcm[: len(pcm) // 2 * 2], "<i2").astype(np.float32)
    up = np.clip(np.rint(soxr.resample(samples, 16000, PEER_RATE)), -32768, 32767)
    stereo = np.repeat(up.astype("<i2"), 2).tobytes()
    frames = [stereo[i : i + PEER_FRAME_BYTES] for i in range(0, len(stereo), PEER_FRAME_BYTES)]
    if frames and len(frames[-1]) < PEER_FRAME_BYTES:
        frames[-1] += bytes(PEER_FRAME_BYTES - len(frames[-1]))
    return frames


@dataclass
class Clip:
    """Speech to send, and which of its frames is the last voiced one (the end of speech)."""

    frames: list[bytes]
    last_voiced: int

    @classmethod
    def of(cls, text: str) -> Clip:
        frames = split_frames(synthesise(text, "flite"))
        loud = [i for i, f in enumerate(frames) if frame_rms(f) >= THRESHOLD]
        if not loud:
            raise RuntimeError(f"flite said nothing audible for {text!r}")
        lead = max(0, loud[0] - 2)  # flite's leading silence, but 40 ms
        return cls(browser_frames(b"".join(frames[lead:])), loud[-1] - lead)


class PeerVoice(PacedTrack):
    """The visitor's microphone: one 48 kHz stereo frame from `mouth` per `recv` (silence when
    it has none), paced as the server's own track is."""

    def __init__(self, mouth: Mouth) -> None:
        super().__init__()
        self.mouth = mouth

    def next_frame(self) -> bytes:
        try:
            return self.mouth.popleft()
        except IndexError:
            return PEER_SILENCE


class Mouth(deque[bytes]):
    """The peer's outgoing audio, popped every 20 ms by its `PeerVoice` track: queued clips
    first, else the background (looped speech, or nothing: silence). `say` tells when a
    clip's last voiced frame was taken (handed to aiortc's encoder)."""

    def __init__(self, background: list[bytes]) -> None:
        super().__init__()
        self.background = background
        self.position = 0
        self.taken = 0
        self.marks: list[tuple[int, asyncio.Future[float]]] = []

    def say(self, clip: Clip) -> asyncio.Future[float]:
        done: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self.marks.append((self.taken + len(self) + clip.last_voiced + 1, done))
        self.extend(clip.frames)
        return done

    def popleft(self) -> bytes:
        if len(self):
            frame = super().popleft()
            self.taken += 1
            for mark in [m for m in self.marks if m[0] <= self.taken]:
                self.marks.remove(mark)
                if not mark[1].done():
                    mark[1].set_result(time.monotonic())
            return frame
        if not self.background:
            raise IndexError  # PeerVoice sends silence
        frame = self.background[self.position % len(self.background)]
        self.position += 1
        return frame


# ------------------------------------------------------------------ what a peer hears


@dataclass
class Heard:
    """Received audio: per decoded frame, when its RTP packet arrived, when aiortc decoded it,
    and its RMS."""

    rtp: list[tuple[float, int, int]]  # the receiver's `bench_rtp`
    arrivals: list[float] = field(default_factory=list)
    decoded: list[float] = field(default_factory=list)
    rms: list[float] = field(default_factory=list)
    last_loud: float = 0.0  # when the latest loud frame's packet arrived
    _by_timestamp: dict[int, float] = field(default_factory=dict)
    _indexed: int = 0

    def arrival_of(self, pts: int, fallback: float) -> float:
        """When the packet of a decoded frame arrived: aiortc's decoded pts counts from the
        first packet's RTP timestamp."""
        for t, _, timestamp in self.rtp[self._indexed :]:
            self._by_timestamp[timestamp] = t
        self._indexed = len(self.rtp)
        if not self.rtp:
            return fallback
        return self._by_timestamp.pop((self.rtp[0][2] + pts) & 0xFFFFFFFF, fallback)

    async def listen(self, track: MediaStreamTrack) -> None:
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            now = time.monotonic()
            samples = np.frombuffer(frame.planes[0], "<i2")[: frame.samples * 2]
            level = math.sqrt(float(np.dot(samples, samples.astype(np.float64))) / len(samples))
            arrival = self.arrival_of(int(frame.pts or 0), now)
            self.arrivals.append(arrival)
            self.decoded.append(now)
            self.rms.append(level)
            if level >= THRESHOLD:
                self.last_loud = arrival

    def first_loud(self, after: float) -> int | None:
        """Index of the first loud frame whose packet arrived after `after` (polled every few
        ms: it starts at `after`, not at the call's first frame)."""
        start = bisect.bisect_right(self.arrivals, after)
        return next(
            (i for i in range(start, len(self.rms)) if self.rms[i] >= THRESHOLD),
            None,
        )


Stall = tuple[float, float]  # (when this process's loop woke, how late)


def ours(t: float, gap: float, stalls: list[Stall]) -> bool:
    """Was a gap this process's fault: did its loop stall around `t` long enough that the
    packet may have waited in our socket rather than on its way (the gap less the stall is
    no longer late)?"""
    return any(t - 0.005 <= end <= t + 0.025 and lag >= gap - LATE_GAP for end, lag in stalls)


def audio_figures(
    rtp: list[tuple[float, int, int]], t0: float, t1: float, stalls: list[Stall]
) -> dict[str, Any]:
    """The server's audio as one peer got it between t0 and t1: packets, the ones that came
    more than LATE_GAP after the previous one (late; `ours`: explained by this process's own
    loop stalls), sequence numbers that never came (lost), and the packets the 50/s clock
    expected that were never sent (short: the sender fell more than 200 ms behind and skipped
    ahead). `gaps_pct` counts what is the server's: late but not ours, lost and short."""
    inside = [(t, seq) for t, seq, _ in rtp if t0 <= t <= t1]
    expected = (t1 - t0) / FRAME_S
    pairs = list(itertools.pairwise(inside))
    late = [(b[0], b[0] - a[0]) for a, b in pairs if b[0] - a[0] > LATE_GAP]
    late_ours = sum(1 for t, gap in late if ours(t, gap, stalls))
    lost = sum(max(0, ((b[1] - a[1]) & 0xFFFF) - 1) for a, b in pairs)
    short = max(0, math.floor(expected) - 1 - len(inside) - lost)
    server = len(late) - late_ours + lost + short
    return {
        "frames": len(inside),
        "per_second": len(inside) / (t1 - t0),
        "late": len(late),
        "late_ours": late_ours,
        "lost": lost,
        "short": short,
        "gaps_pct": 100 * server / expected if expected else math.inf,
        "max_gap_ms": 1000 * max((b[0] - a[0] for a, b in pairs), default=0.0),
    }


# ------------------------------------------------------------------ one visitor


@dataclass
class Peer:
    label: str
    url: str
    session: aiohttp.ClientSession
    mouth: Mouth
    ws: aiohttp.ClientWebSocketResponse | None = None
    pc: RTCPeerConnection | None = None
    keys: Any = None  # the "keys" RTCDataChannel
    heard: Heard | None = None
    times: dict[str, float] = field(default_factory=dict)
    conversation: str | None = None
    states: list[tuple[float, str]] = field(default_factory=list)
    captions: list[tuple[float, str, str, bool]] = field(default_factory=list)
    ended: str | None = None  # why the call ended (call_state ended, call_error, socket)
    errors: list[str] = field(default_factory=list)
    presses: int = 0
    _answer: asyncio.Future[str] | None = None
    _hello: asyncio.Future[dict[str, Any]] | None = None
    _tasks: set[asyncio.Task[Any]] = field(default_factory=set)

    async def call(self, flow: str) -> None:
        """Place the call and wait until its media is connected (every step bounded)."""
        loop = asyncio.get_running_loop()
        self._hello, self._answer = loop.create_future(), loop.create_future()
        self.ws = await self.session.ws_connect(
            self.url.replace("http", "ws", 1) + "/chat/ws", timeout=aiohttp.ClientWSTimeout(10)
        )
        self._spawn(self._read_socket())
        hello = await asyncio.wait_for(self._hello, TIMEOUT)
        if not hello.get("call"):
            raise CallFailed("the server takes no browser calls (hello: call false)")
        pc = self.pc = RTCPeerConnection()  # no ICE servers: host candidates on loopback
        pc.addTrack(PeerVoice(self.mouth))
        receiver = pc.getTransceivers()[0].receiver
        receiver.bench_rtp = []  # type: ignore[attr-defined]
        self.heard = Heard(receiver.bench_rtp)  # type: ignore[attr-defined]
        self.keys = pc.createDataChannel("keys")
        pc.on("track", lambda track: self._spawn(self.heard.listen(track)))  # type: ignore[union-attr]
        pc.on("connectionstatechange", self._on_connection_state)
        await pc.setLocalDescription(await pc.createOffer())
        self.times["offer"] = time.monotonic()
        await self.ws.send_json({"type": "call", "sdp": pc.localDescription.sdp, "flow": flow})
        answer = await asyncio.wait_for(self._answer, TIMEOUT)
        await pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
        await until(lambda: "connected" in self.times or self.ended is not None, TIMEOUT, "media")
        if self.ended is not None:
            raise CallFailed(self.ended)

    def _on_connection_state(self) -> None:
        state = self.pc.connectionState if self.pc is not None else "closed"
        if state == "connected":
            self.times.setdefault("connected", time.monotonic())
        elif state == "failed" and self.ended is None:
            self.ended = "ICE/DTLS failed"

    async def _read_socket(self) -> None:
        assert self.ws is not None
        async for message in self.ws:
            if message.type != aiohttp.WSMsgType.TEXT:
                break
            self._on_frame(json.loads(message.data), time.monotonic())
        if self.ended is None:
            self.ended = f"socket closed ({self.ws.close_code})"
        for future in (self._hello, self._answer):
            if future is not None and not future.done():
                future.set_exception(CallFailed(self.ended))

    def _on_frame(self, frame: dict[str, Any], now: float) -> None:
        kind = frame.get("type")
        if kind == "hello" and self._hello is not None and not self._hello.done():
            self._hello.set_result(frame)
        elif kind == "call_answer" and self._answer is not None and not self._answer.done():
            self.times["answer"] = now
            self._answer.set_result(str(frame.get("sdp")))
        elif kind == "call_error":
            self.ended = f"call_error: {frame.get('reason')}"
            if self._answer is not None and not self._answer.done():
                self._answer.set_exception(CallFailed(self.ended))
        elif kind == "conversation":
            self.conversation = str(frame.get("id"))
        elif kind == "call_state":
            self.states.append((now, str(frame.get("state"))))
            if frame.get("state") == "ended" and self.ended is None:
                self.ended = f"call ended: {frame.get('reason')}"
        elif kind == "caption":
            who, text = str(frame.get("who")), str(frame.get("text"))
            self.captions.append((now, who, text, bool(frame.get("final"))))
        elif kind == "error":
            self.errors.append(f"error frame: {frame.get('reason')}")

    async def press_keys(self, every: float, first: float) -> None:
        """A menu key ("1", "2", ...) every `every` seconds, as a caller on the keypad."""
        await asyncio.sleep(first)
        for key in itertools.cycle("12"):
            if self.ended is not None:
                return
            if self.keys is not None and self.keys.readyState == "open":
                self.keys.send(key)
                self.presses += 1
            await asyncio.sleep(every)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        """Hang up as a visitor closing the page: the socket closes, the call goes with it."""
        with contextlib.suppress(Exception):
            if self.ws is not None:
                await asyncio.wait_for(self.ws.close(), 5)
        with contextlib.suppress(Exception):
            if self.pc is not None:
                await asyncio.wait_for(self.pc.close(), 5)
        for task in list(self._tasks):
            task.cancel()


# ------------------------------------------------------------------ the load generator's loop


class LoopLag:
    """How late this process's loop wakes for a 20 ms timer: RTP arrivals are stamped on this
    loop, so a late loop would show as late packets that the server sent in time."""

    def __init__(self) -> None:
        self.samples: list[tuple[float, float]] = []
        self.task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        while True:
            before = time.monotonic()
            await asyncio.sleep(FRAME_S)
            now = time.monotonic()
            self.samples.append((now, now - before - FRAME_S))

    def stalls(self) -> list[Stall]:
        return [(t, lag) for t, lag in self.samples if lag > 0.005]

    def figures(self, t0: float, t1: float) -> dict[str, float]:
        lags = sorted(lag for t, lag in self.samples if t0 <= t <= t1) or [0.0]
        return {
            "p99_ms": 1000 * lags[min(len(lags) - 1, int(0.99 * len(lags)))],
            "max_ms": 1000 * lags[-1],
        }


# ------------------------------------------------------------------ scenarios


async def commands() -> tuple[asyncio.Queue[dict[str, Any]], asyncio.Task[None]]:
    """JSON lines from stdin (the bench's commands), and the task reading them; the end of
    stdin (the bench is gone) reads as a `stop`."""
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    reader = asyncio.StreamReader()
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    async def read() -> None:
        while line := await reader.readline():
            with contextlib.suppress(ValueError):
                queue.put_nowait(json.loads(line))
        queue.put_nowait({"op": "stop"})

    return queue, asyncio.ensure_future(read())


def outcome(peer: Peer) -> dict[str, Any]:
    return {
        "label": peer.label,
        "conversation": peer.conversation,
        "connected": "connected" in peer.times,
        "ended": peer.ended,
        "errors": peer.errors,
        "presses": peer.presses,
        "times": peer.times,
    }


async def load(plan: dict[str, Any], session: aiohttp.ClientSession) -> None:
    """`calls` peers at once, each sending looped speech and pressing a menu key every
    `key_every` s, until the bench says stop; then their audio over the bench's window."""
    queue, reading = await commands()
    speech = browser_frames(synthesise(plan["speech"], "flite") + bytes(16000))  # and 0.5 s quiet
    label = plan.get("label", "peer")
    peers = [
        Peer(f"{label}-{i + 1}", plan["url"], session, Mouth(speech)) for i in range(plan["calls"])
    ]
    lag = LoopLag()

    async def start(index: int, peer: Peer) -> None:
        # As visitors arrive, not all in one tick (the bench interleaves its processes' peers).
        await asyncio.sleep(plan.get("offset", 0.0) + index * plan["ramp"])
        try:
            await peer.call(plan["flow"])
        except (CallFailed, TimeoutError, aiohttp.ClientError, OSError) as exc:
            peer.errors.append(f"{type(exc).__name__}: {exc}")

    await asyncio.gather(*(start(i, p) for i, p in enumerate(peers)))
    up = [p for p in peers if "connected" in p.times and p.ended is None]
    emit({"event": "connected", "ok": len(up), "failed": len(peers) - len(up)})
    pressing = [asyncio.ensure_future(p.press_keys(plan["key_every"], 2.0)) for p in up]
    try:
        command = await asyncio.wait_for(queue.get(), plan["max_seconds"])
    except TimeoutError:
        command = {"op": "stop"}
    for task in pressing:
        task.cancel()
    await asyncio.sleep(plan["key_settle"])  # the last key reaches the flow before hanging up
    t0, t1 = command.get("window") or (0.0, time.monotonic())
    results = []
    for peer in peers:
        heard = peer.heard
        figures = audio_figures(heard.rtp, t0, t1, lag.stalls()) if heard is not None else None
        results.append({**outcome(peer), "audio": figures})
    await asyncio.gather(*(p.close() for p in peers))
    lag.task.cancel()
    reading.cancel()
    emit({"event": "result", "peers": results, "loop_lag": lag.figures(t0, t1)})


async def setup(plan: dict[str, Any], session: aiohttp.ClientSession) -> None:
    """Calls one at a time: when the answer came, media connected, and the first loud frame of
    the bot's audio arrived (and was decoded)."""
    results = []
    for index in range(plan["calls"]):
        peer = Peer(f"setup-{index + 1}", plan["url"], session, Mouth([]))
        try:
            await peer.call(plan["flow"])
            heard = peer.heard
            assert heard is not None
            await until(
                lambda h=heard, p=peer: h.first_loud(p.times["offer"]) is not None or bool(p.ended),
                TIMEOUT,
                "first bot audio",
            )
            first = heard.first_loud(peer.times["offer"])
            if first is None:
                raise CallFailed(peer.ended or "no bot audio")
            peer.times["audio"] = heard.arrivals[first]
            peer.times["audio_decoded"] = heard.decoded[first]
        except (CallFailed, TimeoutError, aiohttp.ClientError, OSError) as exc:
            peer.errors.append(f"{type(exc).__name__}: {exc}")
        results.append(outcome(peer))
        await peer.close()
        await asyncio.sleep(plan.get("pause", 0.3))
    emit({"event": "result", "peers": results})


async def answer_turn(peer: Peer, clip: Clip, since: float, quiet: float) -> dict[str, Any]:
    """One turn: wait for the question to be over (the call says "listening" and the audio has
    been quiet `quiet` s), say `clip`, time the reply."""
    heard = peer.heard
    assert heard is not None

    def question_over() -> bool:
        states = [s for t, s in peer.states if t > since]
        return bool(peer.ended) or (
            bool(states)
            and states[-1] == "listening"
            and time.monotonic() - max(heard.last_loud, since) >= quiet
        )

    await until(question_over, TIMEOUT, "the question")
    if peer.ended:
        raise CallFailed(peer.ended)
    spoken = await asyncio.wait_for(peer.mouth.say(clip), len(clip.frames) * FRAME_S + 5)
    await until(
        lambda: heard.first_loud(spoken) is not None or bool(peer.ended), TIMEOUT, "the reply"
    )
    first = heard.first_loud(spoken)
    if first is None:
        raise CallFailed(peer.ended or "no reply")
    caption = next(
        (
            (t, text)
            for t, who, text, final in peer.captions
            if t > spoken and who == "customer" and final
        ),
        (None, None),
    )
    return {
        "spoken": spoken,
        "reply": heard.arrivals[first],
        "reply_decoded": heard.decoded[first],
        "caption": caption[0],
        "text": caption[1],
    }


async def turns(plan: dict[str, Any], session: aiohttp.ClientSession) -> None:
    """One call answering a yes/no question over and over."""
    clip = Clip.of(plan["say"])
    peer = Peer("turns", plan["url"], session, Mouth([]))
    done: list[dict[str, Any]] = []
    try:
        await peer.call(plan["flow"])
        since = peer.times["connected"]
        for _ in range(plan["turns"]):
            turn = await answer_turn(peer, clip, since, plan.get("quiet", 0.4))
            done.append(turn)
            since = turn["reply"]
    except (CallFailed, TimeoutError, aiohttp.ClientError, OSError) as exc:
        peer.errors.append(f"{type(exc).__name__}: {exc}")
    await peer.close()
    emit({"event": "result", "peers": [outcome(peer)], "turns": done})


SCENARIOS = {"load": load, "setup": setup, "turns": turns}


async def main(plan: dict[str, Any]) -> None:
    time_rtp_arrivals()
    use_host_addresses(("127.0.0.1",))  # the server offers loopback only: so do we
    async with aiohttp.ClientSession() as session:
        await SCENARIOS[plan["scenario"]](plan, session)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plan", required=True, help="the scenario and its settings (JSON)")
    asyncio.run(main(json.loads(parser.parse_args().plan)))
