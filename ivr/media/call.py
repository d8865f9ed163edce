"""One SIP call in the media worker: pjsua2 objects on one side, the voice pipeline on the other.

Threads: pjsua2 calls `IvrCall`'s callbacks on its own worker thread and `AudioPort`'s on the
conference clock thread. Those callbacks only copy what they need and hand it to the event loop
(`call_soon_threadsafe`), or move bytes through deques (atomic appends and pops). Everything
else — playback, listening, commands — happens in the leg (`ivr.media.leg.VoiceLeg`) on the
loop thread.

The clock thread measures each received frame's level (~3 µs) and posts a wake-up to the loop
when the leg's `WakeHints` say a decision may be due (speech starting, the answer over). That is
a post or two per decision, not one per frame (a post costs ~0.15 % of a core per call at 50 a
second); the decisions themselves stay on the loop, in `Listener`.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import pjsua2 as pj

from ivr.media.audio import FRAME_BYTES, SILENCE
from ivr.media.endpoint import ThreadSafeDelete
from ivr.media.frames import frame_io
from ivr.media.leg import Received, VoiceLeg, WakeHints
from ivr.media.listening import rms

if TYPE_CHECKING:
    from ivr.media.worker import MediaWorker

log = logging.getLogger(__name__)


class AudioPort(ThreadSafeDelete, pj.AudioMediaPort):
    """A call's audio as 20 ms frames: received ones appended to `received` with their level,
    outgoing ones popped from `outgoing` (silence when there is nothing to say); the leg's
    `hints` say which received frame should wake the loop at once.

    Ports are never deleted, only lent to one call after another (`borrow_port`): pjmedia's
    bridge removes a port at its next tick, and a Python port freed before that is called
    half-destroyed (a crash in ~1 of 500 hung-up calls, measured)."""

    def __init__(self) -> None:
        super().__init__()
        self.received: deque[Received] = deque(maxlen=1)
        self.outgoing: deque[bytes] = deque()
        self.hints = WakeHints()
        self._read, self._write = frame_io()
        self.wake: Callable[[], None] | None = None

    def lend(
        self,
        received: deque[Received],
        outgoing: deque[bytes],
        hints: WakeHints,
        wake: Callable[[], None] | None = None,
    ) -> None:
        self.wake = None  # first: no hint for the old call fires on the new one's loop
        # attribute swaps: atomic
        self.received, self.outgoing, self.hints = received, outgoing, hints
        self.wake = wake

    def give_back(self) -> None:
        self.lend(deque(maxlen=1), deque(), WakeHints())
        _spare_ports.append(self)

    def onFrameReceived(self, frame: pj.MediaFrame) -> None:
        try:
            data = self._read(frame.buf) if frame.type == pj.PJMEDIA_FRAME_TYPE_AUDIO else b""
            if len(data) != FRAME_BYTES:
                data = SILENCE
            level = rms(data)
            self.received.append((data, level))
            wake = self.wake
            if wake is not None and self.hints.due(level):
                wake()
        except Exception:  # pjsua2 would print and swallow it, per frame
            pass

    def onFrameRequested(self, frame: pj.MediaFrame) -> None:
        try:
            try:
                data = self.outgoing.popleft()
            except IndexError:
                data = SILENCE
            frame.type = pj.PJMEDIA_FRAME_TYPE_AUDIO
            self._write(frame.buf, data)
            frame.size = len(data)
        except Exception:
            pass


_spare_ports: list[AudioPort] = []  # at most the calls a worker ever held at once
_port_numbers = itertools.count(1)


def borrow_port() -> AudioPort:
    if _spare_ports:
        return _spare_ports.pop()
    port = AudioPort()
    fmt = pj.MediaFormatAudio()
    fmt.init(pj.PJMEDIA_FORMAT_PCM, 16000, 1, 20000, 16)
    port.createPort(f"port-{next(_port_numbers)}", fmt)
    return port


class IvrCall(ThreadSafeDelete, pj.Call):
    """pjsua2's call object: its callbacks run on pjsua2's thread and only hand over."""

    def __init__(self, account: pj.Account, call_id: int, worker: MediaWorker, key: str) -> None:
        super().__init__(account, call_id)
        self.worker = worker
        self.key = key

    def _post(self, method: Callable[..., None], *args: Any) -> None:
        self.worker.loop.call_soon_threadsafe(method, self.key, *args)

    def onCallState(self, prm: pj.OnCallStateParam) -> None:
        try:
            info = self.getInfo()
            self._post(self.worker.on_call_state, info.state, info.lastStatusCode, info.lastReason)
        except Exception:
            log.exception("call state callback")

    def onCallMediaState(self, prm: pj.OnCallMediaStateParam) -> None:
        self._post(self.worker.on_media_state)

    def onDtmfDigit(self, prm: pj.OnDtmfDigitParam) -> None:
        self._post(self.worker.on_digit, prm.digit, prm.method)

    def onCallTransferStatus(self, prm: pj.OnCallTransferStatusParam) -> None:
        self._post(self.worker.on_transfer_status, prm.statusCode, prm.reason, prm.finalNotify)


@dataclass(eq=False)
class SipLeg(VoiceLeg):
    """A phone call: its audio through an `AudioPort` on pjsua2's bridge."""

    call: IvrCall | None = None
    port: AudioPort | None = None
    wake: Callable[[], None] | None = None  # the clock thread's way to get `tick` run now
    # RTP inactivity: the stream we expect the caller's RTP on (None: on hold, or media not
    # up yet, or a recvonly caller), its packet count at the last look, and when it last grew.
    audio_index: int | None = None
    rtp_seen: int = 0
    rtp_heard_at: float = 0.0
    jitter_ms: int | None = None  # the server's jitter buffer delay at the last look
    # A call we placed (`dial`): the far end answers it, and the control plane hears
    # `progress` while it rings and `answered` once it is up with audio (`announced`).
    dialled: bool = False
    progress: int = 0  # the last provisional status reported (180, 183)
    announced: bool = False

    def dial(self, uri: str, headers: dict[str, str], from_uri: str = "") -> None:
        """Send the INVITE, with `headers` in it and `from_uri` as its From (else the
        account's identity). How it goes comes back through `IvrCall`'s callbacks."""
        assert self.call is not None
        prm = pj.CallOpParam(True)
        for name, value in headers.items():
            header = pj.SipHeader()
            header.hName = name
            header.hValue = value
            prm.txOption.headers.append(header)
        if from_uri:
            prm.txOption.localUri = from_uri
        self.dialled = True
        self.call.makeCall(uri, prm)

    @property
    def up(self) -> bool:
        """A dialled call the far end answered, with our port on its audio."""
        return self.answered and self.port is not None and not (self.ended or self.hanging_up)

    def answer(self, now: float) -> None:
        assert self.call is not None
        prm = pj.CallOpParam(True)
        prm.statusCode = 200
        self.call.answer(prm)
        super().answer(now)

    def connect_audio(self, now: float) -> None:
        """Wire our port to the call's audio once media is active (again after re-INVITEs)."""
        assert self.call is not None
        info = self.call.getInfo()
        self.audio_index = None
        for index, media in enumerate(info.media):
            if media.type != pj.PJMEDIA_TYPE_AUDIO or media.status != pj.PJSUA_CALL_MEDIA_ACTIVE:
                continue  # on hold (sendonly/inactive): no RTP to expect either
            call_audio = self.call.getAudioMedia(index)
            if self.port is None:
                self.port = borrow_port()
                self.port.lend(self.received, self.outgoing, self.hints, self.wake)
            call_audio.startTransmit(self.port)
            self.port.startTransmit(call_audio)
            if media.dir & pj.PJMEDIA_DIR_DECODING:  # the caller sends (not recvonly)
                self.audio_index = index
                self.rtp_seen = 0  # a new stream counts from 0; an old one has grown anyway
                self.rtp_heard_at = now
            return

    def watch_media(self, now: float, timeout: float) -> None:
        """Asterisk's rtptimeout: hang up when the caller has sent no RTP (nor RTCP) for
        `timeout` seconds: a dead phone, a lost NAT binding or a lost BYE. Calls on hold and
        callers that only listen are exempt (`audio_index` is None)."""
        if self.audio_index is None or not self.answered or self.hanging_up or self.ended:
            return
        assert self.call is not None
        try:
            stat = self.call.getStreamStat(self.audio_index)
        except pj.Error:
            return  # the stream is being replaced (re-INVITE): look again next time
        self.jitter_ms = int(stat.jbuf.avgDelayMsec)
        # RTCP reports count too: a caller with silence suppression sends no RTP while quiet.
        seen = int(stat.rtcp.rxStat.pkt) + int(stat.rtcp.txStat.updateCount)
        if seen != self.rtp_seen:
            self.rtp_seen = seen
            self.rtp_heard_at = now
        elif timeout and now - self.rtp_heard_at >= timeout:
            log.warning("call %s: no RTP from the caller for %.0f s, hanging up", self.key, timeout)
            self.hangup(because=f"no RTP from the caller for {timeout:g} s")

    def transfer(self, uri: str, headers: dict[str, str]) -> None:
        """Blind transfer: REFER with the context in the Refer-To URI's headers (pjsip copies
        those into the INVITE the transferee sends; headers of the REFER itself go nowhere)."""
        assert self.call is not None
        target = refer_to(uri, headers)
        self.call.xfer(target, pj.CallOpParam(True))

    def hangup(self, code: int = 480, reason: str = "", because: str = "") -> None:
        """BYE for an answered call, CANCEL for a dialled one still ringing, and `code` as
        the final response to an incoming one not answered yet.
        `because`: why, for the conversation's record (the `ended` event's reason)."""
        if self.ended or self.hanging_up or self.call is None:
            return
        self.hanging_up = True
        self.end_reason = because
        prm = pj.CallOpParam(True)
        if not self.answered and not self.dialled:  # a dialled one is CANCELled: no code
            prm.statusCode = code
            if reason:
                prm.reason = reason
        with contextlib.suppress(pj.Error):
            self.call.hangup(prm)

    def release(self) -> None:
        """Drop the pjsua2 objects (on the loop thread, which is registered)."""
        super().release()
        if self.port is not None:
            self.port.give_back()
            self.port = None
        # The Call object must go now: its destructor hangs up whatever call holds its slot,
        # and pjsua2 reuses slots within seconds.
        self.call = None


def refer_to(uri: str, headers: dict[str, str]) -> str:
    """`<sip:agent@pbx?X-Conversation-Id=abc&User-to-User=...>` with the values escaped."""
    bare = uri.strip()
    if bare.startswith("<") and bare.endswith(">"):
        bare = bare[1:-1]
    if not headers:
        return f"<{bare}>"
    joined = "&".join(
        f"{quote(name, safe='-')}={quote(value, safe='')}" for name, value in headers.items()
    )
    separator = "&" if "?" in bare else "?"
    return f"<{bare}{separator}{joined}>"
