"""The pjsua2 side of the test softphone: one endpoint, one account, its calls and their audio.

Threads (see the pjsua2 research notes):
- pjsua2 runs in `worker` mode: SIP callbacks come from its worker thread, frame callbacks from
  the conference bridge's clock thread. Neither ever touches `Phone`'s state: SIP callbacks copy
  what they need (the SIP message text is only valid inside the callback) and hand it to the
  event loop with `call_soon_threadsafe`; frame callbacks only move bytes through deques.
- Everything else (dialling, answering, DTMF, hanging up, the registry of calls) happens on the
  loop's thread, which is the thread that created the library, hence registered with pjlib.
- pjsua2 swallows exceptions raised in callbacks, so every callback catches and logs its own.

Lifetime: a `Leg` (loop-owned) holds the only strong references to its `Call` and its audio port
and drops both once the call is DISCONNECTED. Drop them promptly: pjsua2's `~Call` hangs up
whatever call then has the old call id, and pjsua reuses ids (round-robin over 4 slots).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import ssl
import traceback
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import pjsua2 as pj

from ivr.media.endpoint import (
    EndpointOptions,
    ThreadSafeDelete,
    media_transport,
    register_thread,
    start_endpoint,
)
from ivr.media.frames import frame_io
from ivr.softphone.audio import (
    FRAME_BYTES,
    FRAME_MS,
    SILENCE_FRAME,
    SpeechDetector,
    WavRecorder,
    frame_rms,
    split_frames,
)

log = logging.getLogger(__name__)

# Our RTP ports: below Linux's ephemeral range (32768+, where OS-chosen ports such as a test's
# sipp media port land) and below the server's default 40000+, picked at random inside the range
# so several softphones on one machine rarely even collide (pjsua retries on a busy port).
RTP_PORT, RTP_PORT_RANGE = 20000, 12000
RX_QUEUE_FRAMES = 50 * 60 * 5  # 5 minutes: only reached if the loop stopped draining
PUMP_SECONDS = FRAME_MS / 1000


@dataclass(frozen=True)
class PhoneConfig:
    host: str = "127.0.0.1"
    port: int = 0  # local SIP UDP port; 0: any free port
    identity: str = ""  # our From URI; default sip:softphone@host:port
    codecs: tuple[str, ...] = ("PCMU",)
    sip_log: int = 1
    energy_threshold: float = 400.0
    follow_transfer: bool = False
    decline_transfer_code: int = 603  # the REFER's answer when not following it
    tls: bool = False  # also a TLS transport, for sips: and ;transport=tls targets
    sips: bool = False  # dialling a sips: URI, which needs a sips: Contact
    tls_ca: str = ""  # PEM CAs the far end's certificate must chain to (default: the system's)
    tls_verify: bool = True  # False: accept any certificate (encrypted, but not authenticated)


# ------------------------------------------------------------------ SIP message text


def parse_headers(message: str) -> tuple[str, list[tuple[str, str]]]:
    """(start line, [(name, value), ...]) of a SIP message's text; folded lines unfolded."""
    head = message.replace("\r\n", "\n").split("\n\n", 1)[0]
    lines = head.split("\n")
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        if line[:1] in (" ", "\t") and headers:
            name, value = headers[-1]
            headers[-1] = (name, f"{value} {line.strip()}")
        elif ":" in line:
            name, value = line.split(":", 1)
            headers.append((name.strip(), value.strip()))
    return lines[0].strip(), headers


def custom_headers(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    """The application's headers: X-* and User-to-User (repeated ones joined with ", ")."""
    found: dict[str, str] = {}
    for name, value in headers:
        if name.lower().startswith("x-") or name.lower() == "user-to-user":
            found[name] = f"{found[name]}, {value}" if name in found else value
    return found


def header_value(headers: Iterable[tuple[str, str]], *names: str) -> str | None:
    wanted = {n.lower() for n in names}
    return next((value for name, value in headers if name.lower() in wanted), None)


def via_transport(headers: Iterable[tuple[str, str]]) -> str:
    """The transport of the top Via ("SIP/2.0/TCP host:port;branch=..." -> "tcp"): the one the
    request went over, echoed back in its responses."""
    via = header_value(headers, "Via", "v") or ""
    protocol = via.split(None, 1)[0] if via.strip() else ""
    return protocol.rsplit("/", 1)[-1].lower() if protocol.count("/") == 2 else ""


def _without_tag(value: str) -> str:
    """A From/To value without its dialog tag (it changes on every call)."""
    return re.sub(r";\s*tag=[^;>]*", "", value).strip()


def split_refer_to(refer_to: str) -> tuple[str, dict[str, str]]:
    """`<sip:agent@host?X-Id=1&User-to-User=04%3Bencoding%3Dhex>` -> the URI without its
    headers, and the headers decoded (pjsip copies them into the INVITE to the target)."""
    uri = refer_to.strip()
    if "<" in uri and ">" in uri:
        uri = uri[uri.index("<") + 1 : uri.rindex(">")]
    target, _, query = uri.partition("?")
    headers: dict[str, str] = {}
    for part in query.split("&") if query else []:
        name, _, value = part.partition("=")
        headers[unquote(name)] = unquote(value)
    return target, headers


def system_ca_file() -> str:
    """The system's CA bundle, which pjsip (unlike most TLS clients) does not load by itself:
    without a CA list every certificate fails verification."""
    paths = ssl.get_default_verify_paths()
    for candidate in (paths.cafile, paths.openssl_cafile):
        if candidate and os.path.isfile(candidate):
            return candidate
    return ""


# ------------------------------------------------------------------ loop-side state


@dataclass
class Transfer:
    refer_to: str  # the Refer-To value as received
    target: str  # its URI without the header part
    headers: dict[str, str]  # headers carried in the Refer-To URI
    refer_headers: dict[str, str]  # X-* headers of the REFER request itself
    followed: bool
    leg: Leg | None = None  # the new call, when followed


@dataclass
class Leg:
    """One call as the event loop sees it. Only the loop thread reads or writes it."""

    direction: str  # "out" or "in"
    call: _Call | None = None
    port: _AudioPort | None = None
    started_at: float = 0.0  # loop time
    confirmed_at: float | None = None
    ended_at: float | None = None
    status: int | None = None  # final status of the INVITE
    status_reason: str = ""
    end_reason: str = ""
    disconnected: bool = False
    local_hangup: bool = False
    media_ready: bool = False
    remote_headers: dict[str, str] = field(default_factory=dict)  # of the 200 OK (outgoing)
    invite_headers: dict[str, str] = field(default_factory=dict)  # of the INVITE (incoming)
    from_uri: str = ""
    request_uri: str = ""
    transport: str = ""  # udp, tcp or tls: what the INVITE went over
    digits: list[str] = field(default_factory=list)  # DTMF received
    info_replies: list[int] = field(default_factory=list)  # statuses of our DTMF INFOs
    refer_headers: dict[str, str] = field(default_factory=dict)

    @property
    def connected(self) -> bool:
        return self.confirmed_at is not None

    @property
    def hung_up_by(self) -> str:
        return "local" if self.local_hangup else "remote"


@dataclass(frozen=True)
class _CallSnapshot:
    """What onCallState copies out of pjsua2 for the loop."""

    state: int
    status: int
    reason: str
    message: str | None  # text of the SIP message that caused the change, if one was received


# ------------------------------------------------------------------ pjsua2 subclasses


def _guarded(name: str, body: Callable[[], None]) -> None:
    """Run a callback body; pjsua2 would print and swallow an exception, we log it once."""
    try:
        body()
    except Exception:
        log.error("pjsua2 callback %s failed:\n%s", name, traceback.format_exc())


class _AudioPort(ThreadSafeDelete, pj.AudioMediaPort):
    """The call's only audio port: what it hears goes to `received`, what it says comes from
    `outgoing`. Both callbacks run on the bridge's clock thread every 20 ms, so they do nothing
    but move bytes: deque append/popleft are atomic in CPython, so no lock is needed."""

    def __init__(self) -> None:
        pj.AudioMediaPort.__init__(self)
        self._read, self._write = frame_io()
        self.received: deque[tuple[bytes | None, float]] = deque(maxlen=RX_QUEUE_FRAMES)
        self.outgoing: deque[tuple[bytes, int]] = deque()  # (frame, clip id on a clip's last)
        self.sent_clip = 0  # id of the last clip whose final frame was handed to pjsua2
        fmt = pj.MediaFormatAudio()
        fmt.init(pj.PJMEDIA_FORMAT_PCM, 16000, 1, FRAME_MS * 1000, 16)
        self.createPort("softphone", fmt)

    def onFrameRequested(self, frame: pj.MediaFrame) -> None:
        try:
            try:
                data, clip = self.outgoing.popleft()
            except IndexError:
                data, clip = SILENCE_FRAME, 0
            frame.type = pj.PJMEDIA_FRAME_TYPE_AUDIO
            self._write(frame.buf, data)
            if clip:
                self.sent_clip = clip
        except Exception:
            log.error("onFrameRequested failed:\n%s", traceback.format_exc())

    def onFrameReceived(self, frame: pj.MediaFrame) -> None:
        try:
            if frame.type == pj.PJMEDIA_FRAME_TYPE_AUDIO:
                data = self._read(frame.buf)
                if len(data) == FRAME_BYTES:
                    self.received.append((data, frame_rms(data)))
                    return
            self.received.append((None, 0.0))  # no audio this tick: counts as silence
        except Exception:
            log.error("onFrameReceived failed:\n%s", traceback.format_exc())


class _Call(ThreadSafeDelete, pj.Call):
    def __init__(self, account: _Account, phone: Phone, call_id: int = pj.PJSUA_INVALID_ID):
        pj.Call.__init__(self, account, call_id)
        self.account = account
        self.phone = phone
        self.leg: Leg | None = None  # set on the loop thread before any event reaches it

    def onCallState(self, prm: pj.OnCallStateParam) -> None:
        def body() -> None:
            info = self.getInfo()
            message = None
            event = prm.e
            if (
                event.type == pj.PJSIP_EVENT_TSX_STATE
                and event.body.tsxState.type == pj.PJSIP_EVENT_RX_MSG
            ):
                message = event.body.tsxState.src.rdata.wholeMsg
            snap = _CallSnapshot(info.state, int(info.lastStatusCode), info.lastReason, message)
            self.phone.post(self.phone._on_call_state, self, snap)

        _guarded("onCallState", body)

    def onCallMediaState(self, prm: pj.OnCallMediaStateParam) -> None:
        _guarded("onCallMediaState", lambda: self.phone.post(self.phone._on_media_state, self))

    def onDtmfDigit(self, prm: pj.OnDtmfDigitParam) -> None:
        # RFC 4733 digits and SIP INFO (application/dtmf-relay) digits both arrive here:
        # pjsua answers the INFO itself and reports it with method PJSUA_DTMF_METHOD_SIP_INFO.
        _guarded("onDtmfDigit", lambda: self.phone.post(self.phone._on_dtmf, self, prm.digit))

    def onCallTsxState(self, prm: pj.OnCallTsxStateParam) -> None:
        def body() -> None:
            event = prm.e
            if event.type != pj.PJSIP_EVENT_TSX_STATE:
                return
            tsx_event = event.body.tsxState
            tsx = tsx_event.tsx
            if tsx.method == "INFO" and tsx.role == pj.PJSIP_ROLE_UAC:
                # Final answer to one of our DTMF INFOs: COMPLETED on a response, or straight
                # to TERMINATED on a timeout or transport error.
                done = tsx.state == pj.PJSIP_TSX_STATE_COMPLETED or (
                    tsx.state == pj.PJSIP_TSX_STATE_TERMINATED
                    and tsx_event.prevState != pj.PJSIP_TSX_STATE_COMPLETED
                )
                if done:
                    self.phone.post(self.phone._on_info_reply, self, int(tsx.statusCode))
            elif (
                tsx.method == "REFER"
                and tsx.role == pj.PJSIP_ROLE_UAS
                and tsx.state == pj.PJSIP_TSX_STATE_TRYING
                and tsx_event.type == pj.PJSIP_EVENT_RX_MSG
            ):
                # Called before onCallTransferRequest, and the only place the REFER's own
                # headers can be read (the transfer callback only gets the Refer-To value).
                _, headers = parse_headers(tsx_event.src.rdata.wholeMsg)
                self.phone.post(self.phone._on_refer_headers, self, custom_headers(headers))

        _guarded("onCallTsxState", body)

    def onCallTransferRequest(self, prm: pj.OnCallTransferRequestParam) -> None:
        def body() -> None:
            new_call = None
            if self.phone.config.follow_transfer:
                # Without a new Call object pjsua2 would re-point *this* one at the new call.
                new_call = _Call(self.account, self.phone)
            # The posted event is what keeps the new object alive until the loop registers it;
            # if the loop is gone, decline rather than hand pjsua2 an object about to die.
            if self.phone.post(self.phone._on_transfer, self, prm.dstUri, new_call) and new_call:
                prm.newCall = new_call
            else:
                prm.statusCode = self.phone.config.decline_transfer_code

        _guarded("onCallTransferRequest", body)


class _Account(ThreadSafeDelete, pj.Account):
    def __init__(self, phone: Phone) -> None:
        pj.Account.__init__(self)
        self.phone = phone

    def onIncomingCall(self, prm: pj.OnIncomingCallParam) -> None:
        def body() -> None:
            # The Call object must exist before this returns (else pjsua answers 500), and the
            # INVITE's text is only readable here.
            call = _Call(self, self.phone, prm.callId)
            self.phone.post(self.phone._on_incoming, call, prm.rdata.wholeMsg)

        _guarded("onIncomingCall", body)


# ------------------------------------------------------------------ the phone


class CallEnded(Exception):
    """The call ended while an action waited for something."""


class PhoneError(Exception):
    """pjsua2 refused an action; the message says why in a caller's terms."""


class Phone:
    """The softphone as the event loop sees it: dial or answer, move audio, send DTMF, wait.

    Create it on the loop's thread; `start()` brings pjsua2 up; `close()` drops every pjsua2
    reference so that `shutdown_and_exit` can destroy the library."""

    def __init__(self, config: PhoneConfig, loop: asyncio.AbstractEventLoop) -> None:
        self.config = config
        self.loop = loop
        self.endpoint: pj.Endpoint | None = None
        self.account: _Account | None = None
        self.uri = ""  # our own SIP URI
        self.legs: list[Leg] = []
        self.current: Leg | None = None  # the call actions talk to
        self.incoming: deque[Leg] = deque()
        self.transfer: Transfer | None = None
        self.detector = SpeechDetector(threshold=config.energy_threshold)
        self.recorder: WavRecorder | None = None
        self._clip = 0
        self._changed = asyncio.Event()
        self._pump: asyncio.Task[None] | None = None

    # ---------------------------------------------------------------- setup and teardown

    def start(self) -> None:
        config = self.config
        options = EndpointOptions(
            host=config.host,
            udp_port=config.port,
            # TCP always: cheap, and a `;transport=tcp` URI needs it. pjsip's TCP and TLS
            # transports are listeners too, on any free port; the far end's requests in the call
            # still come back over our connection (pjsip marks its Via with `alias`).
            tcp_port=0,
            tls_port=0 if config.tls else None,
            tls_ca=(config.tls_ca or system_ca_file()) if config.tls else "",
            tls_verify_server=config.tls and config.tls_verify,
            codecs=config.codecs,
            user_agent="ivr-softphone",
            log_level=config.sip_log,
            rtp_port=RTP_PORT,
            rtp_port_range=RTP_PORT_RANGE,
        )
        self.endpoint = ep = start_endpoint(options)
        register_thread("loop")
        local = ep.transportGetInfo(ep.transportEnum()[0]).localName  # "127.0.0.1:41234"
        port = int(local.rsplit(":", 1)[1])
        acfg = pj.AccountConfig()
        # In a sips: call our Contact must be a sips: URI (RFC 5630; pjsip answers "480 SIPS
        # Required" otherwise), and pjsua writes sips: in a Contact only for a sips: account.
        scheme = "sips" if config.sips else "sip"
        acfg.idUri = config.identity or f"{scheme}:softphone@{config.host}:{port}"
        transport = media_transport(options)
        transport.randomizePort = True
        acfg.mediaConfig.transportConfig = transport
        self.account = _Account(self)
        self.account.create(acfg, True)
        self.uri = f"sip:{self.config.host}:{port}"
        self._pump = self.loop.create_task(self._pump_audio(), name="softphone-audio")

    @property
    def local_port(self) -> int:
        return int(self.uri.rsplit(":", 1)[1])

    def close(self) -> None:
        """Stop the audio pump and drop every pjsua2 object (call before libDestroy)."""
        if self._pump is not None:
            self._pump.cancel()
            self._pump = None
        self._drain()
        if self.recorder is not None:
            self.recorder.close()
        for leg in self.legs:
            leg.call = None
            leg.port = None
        self.incoming.clear()
        self.account = None

    def record_to(self, recorder: WavRecorder) -> None:
        recorder.open()
        self.recorder = recorder

    # ---------------------------------------------------------------- from pjsua2's threads

    def post(self, handler: Callable[..., None], *args: Any) -> bool:
        """Run `handler(*args)` on the loop (from any thread); False (dropped) once the loop
        has closed, i.e. the program is finishing."""
        try:
            self.loop.call_soon_threadsafe(self._run_handler, handler, args)
        except RuntimeError:
            return False
        return True

    def _run_handler(self, handler: Callable[..., None], args: tuple[Any, ...]) -> None:
        try:
            handler(*args)
        except Exception:
            log.error("softphone event %s failed:\n%s", handler.__name__, traceback.format_exc())
        self._notify()

    def _notify(self) -> None:
        """Wake every waiter: each re-checks its own condition."""
        self._changed.set()
        self._changed = asyncio.Event()

    def _on_incoming(self, call: _Call, message: str) -> None:
        start, headers = parse_headers(message)
        leg = Leg(direction="in", call=call, started_at=self.loop.time())
        leg.request_uri = start.split(" ")[1] if start.count(" ") >= 2 else start
        leg.from_uri = _without_tag(header_value(headers, "From", "f") or "")
        leg.invite_headers = custom_headers(headers)
        leg.transport = via_transport(headers)
        call.leg = leg
        self.legs.append(leg)
        if self.current is not None or self.incoming:
            # One call at a time: the tests expect exactly one.
            self._hangup(leg, 486)
            return
        self.incoming.append(leg)

    def _on_call_state(self, call: _Call, snap: _CallSnapshot) -> None:
        leg = call.leg
        if leg is None:
            return
        now = self.loop.time()
        connecting = snap.state in (pj.PJSIP_INV_STATE_CONNECTING, pj.PJSIP_INV_STATE_CONFIRMED)
        if connecting and leg.status is None:
            leg.status, leg.status_reason = snap.status, snap.reason
        if connecting and leg.direction == "out" and snap.message:
            start, headers = parse_headers(snap.message)
            cseq = header_value(headers, "CSeq") or ""
            if start.startswith("SIP/2.0 2") and cseq.upper().endswith("INVITE"):
                leg.remote_headers = custom_headers(headers)
                leg.transport = via_transport(headers)
        if snap.state == pj.PJSIP_INV_STATE_CONFIRMED and leg.confirmed_at is None:
            leg.confirmed_at = now
        if snap.state == pj.PJSIP_INV_STATE_DISCONNECTED and not leg.disconnected:
            if leg.status is None:
                leg.status, leg.status_reason = snap.status, snap.reason
            leg.end_reason = snap.reason
            leg.disconnected = True
            leg.ended_at = now
            self._release(leg)

    def _on_media_state(self, call: _Call) -> None:
        leg = call.leg
        if leg is None or leg.disconnected or leg.call is None:
            return
        try:
            info = call.getInfo()
        except pj.Error:  # already gone: its DISCONNECTED event is queued behind this one
            return
        for media in info.media:
            if media.type != pj.PJMEDIA_TYPE_AUDIO or media.status not in (
                pj.PJSUA_CALL_MEDIA_ACTIVE,
                pj.PJSUA_CALL_MEDIA_REMOTE_HOLD,
            ):
                continue
            audio = call.getAudioMedia(media.index)
            if leg.port is None:
                leg.port = _AudioPort()
            # Both directions through our port; reconnecting after a re-INVITE is harmless.
            audio.startTransmit(leg.port)
            leg.port.startTransmit(audio)
            leg.media_ready = True

    def _on_dtmf(self, call: _Call, digit: str) -> None:
        if call.leg is not None:
            call.leg.digits.append(digit)

    def _on_info_reply(self, call: _Call, status: int) -> None:
        if call.leg is not None:
            call.leg.info_replies.append(status)

    def _on_refer_headers(self, call: _Call, headers: dict[str, str]) -> None:
        if call.leg is not None:
            call.leg.refer_headers = headers

    def _on_transfer(self, call: _Call, refer_to: str, new_call: _Call | None) -> None:
        old = call.leg
        target, headers = split_refer_to(refer_to)
        transfer = Transfer(
            refer_to=refer_to,
            target=target,
            headers=headers,
            refer_headers=old.refer_headers if old else {},
            followed=new_call is not None,
        )
        if self.transfer is None:  # the first REFER is the one reported
            self.transfer = transfer
        if new_call is not None:
            leg = Leg(direction="out", call=new_call, started_at=self.loop.time())
            new_call.leg = leg
            transfer.leg = leg
            self.legs.append(leg)
            self.current = leg  # the script continues with whoever answers the transfer

    # ---------------------------------------------------------------- audio

    async def _pump_audio(self) -> None:
        """Every 20 ms: move what the current call heard into the detector and the recording,
        then wake waiters (some wait on audio: prompts, speech, clips sent)."""
        while True:
            await asyncio.sleep(PUMP_SECONDS)
            self._drain()
            self._notify()

    def _drain(self, leg: Leg | None = None) -> None:
        leg = leg or self.current
        port = leg.port if leg is not None else None
        if port is None or leg is not self.current:
            return
        while True:
            try:
                data, rms = port.received.popleft()
            except IndexError:
                return
            self.detector.feed(rms)
            if self.recorder is not None:
                self.recorder.write(data or SILENCE_FRAME)

    def send_audio(self, pcm: bytes) -> int:
        """Queue audio on the current call; returns a clip id for `clip_sent`."""
        port = self._port()
        frames = split_frames(pcm) or [SILENCE_FRAME]
        self._clip += 1
        port.outgoing.extend((frame, 0) for frame in frames[:-1])
        port.outgoing.append((frames[-1], self._clip))
        return self._clip

    def clip_sent(self, clip: int) -> bool:
        leg = self.current
        return leg is not None and leg.port is not None and leg.port.sent_clip >= clip

    def _port(self) -> _AudioPort:
        leg = self._connected_leg()
        if leg.port is None:
            raise CallEnded("the call has no audio")
        return leg.port

    # ---------------------------------------------------------------- SIP actions

    def dial(self, uri: str, headers: Iterable[tuple[str, str]] = ()) -> Leg:
        assert self.account is not None, "start() first"
        call = _Call(self.account, self)
        leg = Leg(direction="out", call=call, started_at=self.loop.time())
        call.leg = leg
        self.legs.append(leg)
        self.current = leg
        prm = pj.CallOpParam(True)
        prm.opt.audioCount = 1
        prm.opt.videoCount = 0
        for name, value in headers:
            header = pj.SipHeader()
            header.hName = name
            header.hValue = value
            prm.txOption.headers.append(header)
        try:
            call.makeCall(uri, prm)
        except pj.Error as exc:  # refused before anything was sent (no route, bad URI...)
            leg.status, leg.status_reason = 0, exc.info()
            leg.disconnected, leg.local_hangup, leg.call = True, True, None
            raise PhoneError(f"cannot place the call: {exc.info()}") from None
        return leg

    def answer(self, leg: Leg, status: int = 200) -> None:
        if leg.call is None:
            raise CallEnded("the caller hung up before the answer")
        prm = pj.CallOpParam()
        prm.statusCode = status
        try:
            leg.call.answer(prm)
        except pj.Error as exc:
            raise PhoneError(f"cannot answer: {exc.info()}") from None
        self.current = leg

    def hangup(self, leg: Leg | None = None) -> None:
        leg = leg or self.current
        if leg is not None and not leg.disconnected:
            self._hangup(leg)

    def _hangup(self, leg: Leg, status: int | None = None) -> None:
        if leg.call is None:
            return
        leg.local_hangup = True
        prm = pj.CallOpParam()
        if status is not None:
            prm.statusCode = status
        try:
            leg.call.hangup(prm)
        except pj.Error as exc:  # already ending
            log.debug("hangup: %s", exc.info())

    def dial_dtmf(self, digits: str) -> None:
        """RFC 4733 events, queued in pjmedia's stream (returns at once)."""
        call = self._connected_call()
        try:
            call.dialDtmf(digits)
        except pj.Error as exc:
            if "EREMNORFC2833" in exc.info():
                raise PhoneError(
                    "the far end offered no telephone-event in its SDP, so RFC 4733 digits "
                    "cannot be sent (try --dtmf-method info)"
                ) from None
            raise

    def send_info_digit(self, digit: str, duration_ms: int = 160) -> None:
        """One SIP INFO (application/dtmf-relay); its answer lands in `leg.info_replies`."""
        call = self._connected_call()
        prm = pj.CallSendDtmfParam()
        prm.method = pj.PJSUA_DTMF_METHOD_SIP_INFO
        prm.digits = digit
        prm.duration = duration_ms
        call.sendDtmf(prm)

    def _connected_leg(self) -> Leg:
        leg = self.current
        if leg is None or leg.disconnected or leg.call is None:
            raise CallEnded("the call has ended")
        return leg

    def _connected_call(self) -> _Call:
        call = self._connected_leg().call
        assert call is not None
        return call

    def _release(self, leg: Leg) -> None:
        """After DISCONNECTED: keep the facts, drop the pjsua2 objects (see module docstring)."""
        if leg is self.current:
            self._drain(leg)
        leg.port = None
        leg.call = None
        if leg is self.current and self.transfer and self.transfer.leg is leg:
            # The transfer target did not take the call: back to the original call if it is up.
            original = next((x for x in self.legs if x.connected and not x.disconnected), None)
            if original is not None:
                self.current = original

    # ---------------------------------------------------------------- waiting

    async def wait_for(self, condition: Callable[[], bool], timeout: float) -> bool:
        """Wait until `condition()` holds (re-checked on every SIP event and every 20 ms of
        audio); False when `timeout` seconds pass first."""
        deadline = self.loop.time() + timeout
        while not condition():
            remaining = deadline - self.loop.time()
            if remaining <= 0:
                return False
            event = self._changed
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), remaining)
        return True
