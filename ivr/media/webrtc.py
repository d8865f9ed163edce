"""A browser call in the media worker: aiortc at the edge, the same voice pipeline as SIP.

The visitor's browser sends an SDP offer over the widget's websocket; the control plane hands it
to a media worker (`offer` command), which answers it here. From then on the browser's audio
arrives as Opus (48 kHz) and is resampled to our 16 kHz frames; the bot's 16 kHz frames go out
paced by the wall clock as Opus's own 48 kHz stereo; key presses arrive on a data
channel labelled "keys" (aiortc has no RFC 4733). Everything between — prompts, barge-in,
speech and key detection — is `VoiceLeg`, shared with phone calls.

Everything here runs on the worker's event loop (aiortc is asyncio); aiortc itself decodes in
a thread per call and encodes in the loop's executor, neither of which touches pjsua2.
"""

from __future__ import annotations

import asyncio
import fractions
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import av
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.jitterbuffer import JitterBuffer
from aiortc.mediastreams import MediaStreamError
from aiortc.sdp import candidate_from_sdp

from ivr.media.audio import FRAME_MS, SAMPLE_RATE, SILENCE
from ivr.media.leg import VoiceLeg
from ivr.media.listening import rms

log = logging.getLogger("ivr.media")

SAMPLES_PER_FRAME = SAMPLE_RATE * FRAME_MS // 1000  # 320
OPUS_RATE = 48000
OPUS_FRAME = OPUS_RATE * FRAME_MS // 1000  # 960
CONNECT_TIMEOUT = 15.0  # seconds from the answer to connected media, else the call ends
MAX_OFFER_BYTES = 64 * 1024  # a browser's offer is 2-6 kB
# A browser trickles a handful (one per interface and protocol); aioice re-sorts its checks at
# each, so thousands would stall the worker's loop, and every call on it, for seconds.
MAX_CANDIDATES = 20
KEYS = frozenset("0123456789*#ABCD")


class BadOffer(ValueError):
    """An SDP offer we cannot answer; the text goes back to the browser."""


def use_host_addresses(addresses: tuple[str, ...]) -> None:
    """Offer host candidates on these addresses only (aioice offers every interface's, and
    never loopback, which is what a browser on the same machine needs in tests and demos).

    aioice has no setting for it: its module function is replaced, once, process-wide."""
    if not addresses:
        return
    import aioice.ice

    def configured(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return [a for a in addresses if (":" in a and use_ipv6) or (":" not in a and use_ipv4)]

    aioice.ice.get_host_addresses = configured


def listen_sooner(pc: RTCPeerConnection) -> None:
    """aiortc holds 4 audio packets (80 ms) before it decodes the first, a playout cushion a
    server that only listens does not need: 1 keeps packets in order and answers turns 60 ms
    sooner (measured). aiortc has no setting for it: its receiver's private buffer is set."""
    for transceiver in pc.getTransceivers():
        if transceiver.kind != "audio":
            continue
        buffer = getattr(transceiver.receiver, "_RTCRtpReceiver__jitter_buffer", None)
        if isinstance(buffer, JitterBuffer) and getattr(buffer, "_prefetch", 0) > 1:
            buffer._prefetch = 1
        elif not isinstance(buffer, JitterBuffer):
            log.warning("aiortc's receive buffer has moved: browser turns are 60 ms slower")


class Rechunked:
    """PyAV's resampler, cut into fixed frames as soon as each is whole.

    The resampler's own `frame_size` holds every frame back until the next input arrives (its
    filter delay is a few samples short of a frame): 20 ms more on each way of every turn. Here
    that delay is filled with zeros once, at the start, so each input frame gives one output
    frame at once."""

    def __init__(self, layout: str, rate: int, frame_samples: int) -> None:
        self._resampler = av.AudioResampler(format="s16", layout=layout, rate=rate)
        self._rate = rate
        self._sample_bytes = 2 * (2 if layout == "stereo" else 1)
        self._frame_bytes = frame_samples * self._sample_bytes
        self._pending = bytearray()
        self._primed = False

    def feed(self, frame: av.AudioFrame) -> list[bytes]:
        for out in self._resampler.resample(frame):
            self._pending += bytes(out.planes[0])[: out.samples * self._sample_bytes]
        if not self._primed:
            self._primed = True
            expected = round(frame.samples * self._rate / frame.sample_rate) * self._sample_bytes
            self._pending[:0] = bytes(max(0, expected - len(self._pending)))
        chunks = []
        while len(self._pending) >= self._frame_bytes:
            chunks.append(bytes(self._pending[: self._frame_bytes]))
            del self._pending[: self._frame_bytes]
        return chunks


def pcm_frame(data: bytes, layout: str, rate: int, samples: int, pts: int) -> av.AudioFrame:
    frame = av.AudioFrame(format="s16", layout=layout, samples=samples)
    frame.planes[0].update(data)
    frame.sample_rate = rate
    frame.pts = pts
    frame.time_base = fractions.Fraction(1, rate)
    return frame


class PacedTrack(MediaStreamTrack):
    """A live audio track of 20 ms frames of Opus's own 48 kHz stereo, one per `recv`, paced
    by the wall clock as aiortc's senders expect; subclasses say what each frame holds.

    Opus's own format: aiortc's encoder resamples anything else through a resampler that holds
    each frame back until the next (20 ms on every prompt's start and on every barge-in)."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self._start: float | None = None
        self._pts = 0

    def next_frame(self) -> bytes:
        """The next 20 ms: OPUS_FRAME stereo samples (3840 bytes)."""
        raise NotImplementedError

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        now = time.monotonic()
        if self._start is None:
            self._start = now
        else:
            self._pts += OPUS_FRAME
            wait = self._start + self._pts / OPUS_RATE - now
            if wait < -0.2:  # the loop stalled: carry on from now rather than send a burst
                self._start = now - self._pts / OPUS_RATE
            elif wait > 0:
                await asyncio.sleep(wait)
        return pcm_frame(self.next_frame(), "stereo", OPUS_RATE, OPUS_FRAME, self._pts)


class BotVoice(PacedTrack):
    """The bot's audio: a frame popped from `outgoing` (silence when nothing is queued),
    upsampled from our 16 kHz mono."""

    def __init__(self, outgoing: deque[bytes]) -> None:
        super().__init__()
        self.outgoing = outgoing
        self._upsample = Rechunked("stereo", OPUS_RATE, OPUS_FRAME)
        self._ready: deque[bytes] = deque()  # upsampled, not sent yet (one frame in steady state)

    def next_frame(self) -> bytes:
        if not self._ready:
            try:
                data = self.outgoing.popleft()
            except IndexError:
                data = SILENCE
            ours = pcm_frame(data, "mono", SAMPLE_RATE, SAMPLES_PER_FRAME, 0)
            self._ready.extend(self._upsample.feed(ours))
        return self._ready.popleft() if self._ready else bytes(OPUS_FRAME * 4)


@dataclass(eq=False)
class BrowserLeg(VoiceLeg):
    """A browser call: an RTCPeerConnection, its inbound audio track and its "keys" channel."""

    pc: RTCPeerConnection | None = None
    on_over: Callable[[BrowserLeg, str], None] | None = None  # the worker's `finish`
    _tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    connected: bool = False
    candidates: int = 0  # trickled by the browser so far
    reading: bool = False  # the browser's audio track is being read (one only)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.report_state = True

    async def accept(self, offer_sdp: str, ice_servers: list[dict[str, Any]]) -> str:
        """Answer the browser's offer; the answer's SDP (with our candidates) is returned.
        `ice_servers`: as the browser's RTCIceServer dictionaries (urls, username, credential)."""
        if self.ended:  # hung up before we got to it
            raise BadOffer("the call ended before its offer was answered")
        if len(offer_sdp) > MAX_OFFER_BYTES:
            raise BadOffer(f"the offer is larger than {MAX_OFFER_BYTES} bytes")
        if "m=audio" not in offer_sdp:
            raise BadOffer("the offer has no audio (m=audio) section")
        config = RTCConfiguration(
            iceServers=[
                RTCIceServer(
                    urls=list(s["urls"]),
                    username=s.get("username") or None,
                    credential=s.get("credential") or None,
                )
                for s in ice_servers
            ]
        )  # never aiortc's default (a public Google STUN server): on premises, ours or none
        pc = self.pc = RTCPeerConnection(config)
        pc.on("track", self._on_track)
        pc.on("datachannel", self._on_datachannel)
        pc.on("connectionstatechange", lambda: self._on_connection_state(pc))
        pc.addTrack(BotVoice(self.outgoing))
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
            await pc.setLocalDescription(await pc.createAnswer())
        except Exception as exc:  # aiortc raises ValueError, KeyError, ... on bad SDP
            raise BadOffer(f"cannot answer the offer: {exc or type(exc).__name__}") from None
        if self.ended:  # hung up meanwhile: release() has closed the connection
            raise BadOffer("the call ended before its offer was answered")
        listen_sooner(pc)
        self._spawn(self._connect_or_give_up())
        return pc.localDescription.sdp

    def add_candidate(self, line: object, mid: object, index: object) -> None:
        """A candidate the browser trickled after its offer (`candidate:...`). mDNS ones
        (`<uuid>.local`) are skipped: resolving them takes aioice up to a second, and the
        browser's checks reveal that address anyway (a peer-reflexive candidate)."""
        pc = self.pc
        if pc is None or not isinstance(line, str) or ".local " in line:
            return
        self.candidates += 1
        if self.candidates > MAX_CANDIDATES:
            if self.candidates == MAX_CANDIDATES + 1:
                log.warning(
                    "browser call %s: more than %d ICE candidates", self.key, MAX_CANDIDATES
                )
            return
        try:
            candidate = candidate_from_sdp(line.split(":", 1)[1])
        except (IndexError, ValueError, AssertionError) as exc:  # aiortc asserts 8 fields
            log.info("browser call %s: unreadable ICE candidate: %s", self.key, exc)
            return
        candidate.sdpMid = mid if isinstance(mid, str) else None
        candidate.sdpMLineIndex = index if isinstance(index, int) else None
        self._spawn(self._add_candidate(pc, candidate))

    async def _add_candidate(self, pc: RTCPeerConnection, candidate: Any) -> None:
        try:
            await pc.addIceCandidate(candidate)
        except Exception as exc:  # a candidate we cannot use: the others may do
            log.info("browser call %s: ICE candidate refused: %s", self.key, exc)

    # ---------------------------------------------------------------- aiortc events

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind == "audio" and not self.reading:  # one voice: a second track is ignored
            self.reading = True
            self._spawn(self._read(track))

    def _on_datachannel(self, channel: Any) -> None:
        if channel.label != "keys":
            return

        @channel.on("message")
        def on_message(message: object) -> None:
            if not isinstance(message, str) or self.ended:
                return
            now = self.worker.loop.time()
            for key in message[:32]:
                if key in KEYS:
                    self.digit(key, now)

    def _on_connection_state(self, pc: RTCPeerConnection) -> None:
        if self.ended:  # our own close, at release
            return
        state = pc.connectionState
        if state == "connected" and not self.connected:
            self.connected = True
            self.answer(self.worker.loop.time())  # from now [sip] max_call_seconds counts
            if self.serves is not None:
                self.worker.agent_connected(self)
        elif state in ("failed", "closed") and not self.hanging_up:
            self.hangup(because="the browser's connection was lost")

    async def _connect_or_give_up(self) -> None:
        deadline = self.worker.loop.time() + CONNECT_TIMEOUT
        while not self.connected and not self.hanging_up:
            if self.worker.loop.time() >= deadline:
                self.hangup(because=f"the browser's media did not connect in {CONNECT_TIMEOUT:g} s")
                return
            await asyncio.sleep(0.25)

    async def _read(self, track: MediaStreamTrack) -> None:
        """The browser's audio into 20 ms frames of 16 kHz PCM, as SIP's clock thread does."""
        downsample = Rechunked("mono", SAMPLE_RATE, SAMPLES_PER_FRAME)
        loop = self.worker.loop
        while not self.ended:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            try:
                for data in downsample.feed(frame):
                    level = rms(data)
                    self.received.append((data, level))
                    if self.hints.due(level):
                        self.tick(loop.time())
            except Exception:  # one bad frame must not deafen the call for good
                log.exception("browser call %s: a received frame failed", self.key)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ---------------------------------------------------------------- transport

    def transfer(self, uri: str, headers: dict[str, str]) -> None:
        # A browser call has no SIP dialog to REFER; the control plane bridges or queues it.
        self.worker.emit(
            {
                "event": "transfer",
                "call": self.key,
                "status": 488,
                "final": True,
                "reason": "a browser call cannot be transferred to a SIP URI",
            }
        )

    def hangup(self, code: int = 480, reason: str = "", because: str = "") -> None:
        if self.ended or self.hanging_up:
            return
        self.hanging_up = True
        self.end_reason = because or reason
        if self.on_over is not None:
            self.on_over(self, because or reason or "hung up")

    def release(self) -> None:
        super().release()
        for task in list(self._tasks):
            task.cancel()
        pc, self.pc = self.pc, None
        if pc is not None:
            pc.remove_all_listeners()  # nothing of this call runs for its own close
            self.worker.spawn(_close(self.key, pc))


async def _close(key: str, pc: RTCPeerConnection) -> None:
    """Close a call's connection (its ICE sockets, DTLS, SCTP), saying so if it fails: a
    half-closed connection keeps its UDP sockets open for good."""
    try:
        await pc.close()
    except Exception:
        log.exception("browser call %s: closing its connection failed", key)
