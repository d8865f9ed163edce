"""The caller side of bench/voice_calls.py: a pjsua2 phone that logs every audio frame's time.

Not a benchmark of its own: voice_calls.py runs it as a subprocess (so its pjsua2 threads do not
share a GIL with the control plane it measures) with a plan as JSON, and reads its results from
stdout. Unlike the `ivr call` softphone, it timestamps (time.monotonic, comparable across
processes) what the measurements need, on the thread where it happens:

- makeCall (the INVITE leaves inside it), the 200 OK (CONNECTING), the ACK (CONFIRMED);
- every received 20 ms frame as the conference bridge hands it over (after the jitter buffer),
  with its RMS;
- the frames of what it says: the first and last frames above the energy threshold, when the
  bridge takes them to send (RTP leaves in the same clock tick);
- the moment it asks pjsua2 to send a DTMF key.

Scenarios (`--plan '{"scenario": ..., ...}'`): first_audio, turns, barge, load. Threads as in the
softphone: SIP callbacks on pjsua2's worker thread hand over to the loop with
call_soon_threadsafe; frame callbacks only append to deques. The port is connected inside
onCallMediaState itself, so no received frame waits for a loop hop. Audio ports are reused from
call to call and never deleted while pjsua2 runs (see ALL_PORTS).

    .venv/bin/python bench/sip_caller.py --plan '{"scenario": "first_audio",
        "uri": "sip:7001@127.0.0.1:5060", "calls": 3}'
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import ctypes
import json
import logging
import os
import random
import sys
import time
import traceback
from collections import deque
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import pjsua2 as pj  # noqa: E402

from ivr.media.endpoint import (  # noqa: E402
    EndpointOptions,
    ThreadSafeDelete,
    current_endpoint,
    media_transport,
    register_thread,
    shutdown_and_exit,
    start_endpoint,
)
from ivr.media.frames import frame_io  # noqa: E402
from ivr.softphone.audio import (  # noqa: E402
    FRAME_BYTES,
    FRAME_MS,
    SILENCE_FRAME,
    frame_rms,
    split_frames,
    synthesise,
)

log = logging.getLogger("bench.caller")

THRESHOLD = 400.0  # frame RMS counted as speech: the softphone's default (about -38 dBFS)
TICK = FRAME_MS / 1000
RTP_PORT, RTP_PORT_RANGE = 20000, 12000  # as the softphone: below the ephemeral range
STATE_NAMES = {
    pj.PJSIP_INV_STATE_CALLING: "calling",
    pj.PJSIP_INV_STATE_EARLY: "early",
    pj.PJSIP_INV_STATE_CONNECTING: "connecting",
    pj.PJSIP_INV_STATE_CONFIRMED: "confirmed",
    pj.PJSIP_INV_STATE_DISCONNECTED: "disconnected",
}


class CallFailed(Exception):
    pass


# ------------------------------------------------------------------ audio to say


class Clip:
    """Speech to send: 20 ms frames, and which of them are the first and last voiced ones.

    With a narrowband codec (G.711) the clip is first limited to what survives 8 kHz sampling,
    so its marks are what the server can hear: flite's final "s" of "yes" lies above 4 kHz and
    would otherwise count as 150 ms of speech that never reaches the server."""

    def __init__(self, pcm: bytes, narrowband: bool) -> None:
        if narrowband:
            import numpy as np
            import soxr

            samples = np.frombuffer(pcm, "<i2").astype(np.float32)
            band = soxr.resample(soxr.resample(samples, 16000, 8000), 8000, 16000)
            pcm = np.clip(np.rint(band), -32768, 32767).astype("<i2").tobytes()
        frames = split_frames(pcm)
        loud = [i for i, f in enumerate(frames) if frame_rms(f) >= THRESHOLD]
        lead = max(0, loud[0] - 2) if loud else 0  # flite's leading silence, but 40 ms
        self.frames = frames[lead:]
        loud = [i - lead for i in loud]
        self.first_voiced = loud[0] if loud else 0
        self.last_voiced = loud[-1] if loud else len(self.frames) - 1


# ------------------------------------------------------------------ pjsua2 objects


class Port(ThreadSafeDelete, pj.AudioMediaPort):
    """Received frames -> `rx` as (time, rms, is_audio); `outgoing` frames (with an optional
    mark) -> the call, and (mark, time) -> `sent` when a marked frame is taken.

    Ports are never deleted while pjsua2 runs (see `take_port`): they serve one call after the
    other, `attach`ed to each call's deques in turn."""

    def __init__(self) -> None:
        pj.AudioMediaPort.__init__(self)
        self.rx: deque[tuple[float, float, bool]] | None = None
        self.sent: deque[tuple[str, float]] | None = None
        self.outgoing: deque[tuple[bytes, str | None]] = deque()
        self._read, self._write = frame_io()
        fmt = pj.MediaFormatAudio()
        fmt.init(pj.PJMEDIA_FORMAT_PCM, 16000, 1, FRAME_MS * 1000, 16)
        self.createPort("bench", fmt)

    def attach(
        self, rx: deque[tuple[float, float, bool]] | None, sent: deque[tuple[str, float]] | None
    ) -> None:
        self.outgoing = deque()
        self.rx, self.sent = rx, sent

    def onFrameRequested(self, frame: pj.MediaFrame) -> None:
        now = time.monotonic()
        try:
            try:
                data, mark = self.outgoing.popleft()
            except IndexError:
                data, mark = SILENCE_FRAME, None
            frame.type = pj.PJMEDIA_FRAME_TYPE_AUDIO
            self._write(frame.buf, data)  # type: ignore[operator]
            frame.size = len(data)
            sent = self.sent
            if mark is not None and sent is not None:
                sent.append((mark, now))
        except Exception:
            pass

    def onFrameReceived(self, frame: pj.MediaFrame) -> None:
        now = time.monotonic()
        try:
            rx = self.rx
            if rx is None:
                return
            if frame.type == pj.PJMEDIA_FRAME_TYPE_AUDIO:
                data = self._read(frame.buf)  # type: ignore[operator]
                if len(data) == FRAME_BYTES:
                    rx.append((now, frame_rms(data), True))
                    return
            rx.append((now, 0.0, False))
        except Exception:
            pass


# Every port ever made, kept to the end: deleting an AudioMediaPort (a SWIG director) that the
# conference bridge may still call crashes the process. The bridge calls a port every 20 ms
# until its queued removal is applied; a call landing while Python deallocates the object runs
# Python code on a dying object (seen: AttributeError on a half-cleared instance, then
# SIGSEGV or a corrupted heap). So ports are reused, never freed; the process ends with
# os._exit after libDestroy (shutdown_and_exit), which runs no destructor.
ALL_PORTS: list[Port] = []
FREE_PORTS: deque[Port] = deque()


def take_port() -> Port:
    """A free port, or a new one (called on pjsua2's thread; deque pops are atomic)."""
    try:
        return FREE_PORTS.popleft()
    except IndexError:
        port = Port()
        ALL_PORTS.append(port)
        return port


def give_back(port: Port) -> None:
    port.attach(None, None)
    FREE_PORTS.append(port)


class BenchCall(ThreadSafeDelete, pj.Call):
    def __init__(self, account: pj.Account, leg: Leg) -> None:
        pj.Call.__init__(self, account)
        self.leg = leg

    def onCallState(self, prm: pj.OnCallStateParam) -> None:
        now = time.monotonic()
        try:
            info = self.getInfo()
            name = STATE_NAMES.get(info.state)
            if name:
                self.leg.times.setdefault(name, now)
            snap = (info.state, int(info.lastStatusCode), info.lastReason)
            self.leg.caller.post(self.leg.on_state, snap)
        except Exception:
            log.error("onCallState: %s", traceback.format_exc())

    def onCallMediaState(self, prm: pj.OnCallMediaStateParam) -> None:
        now = time.monotonic()
        try:
            info = self.getInfo()
            for media in info.media:
                if (
                    media.type != pj.PJMEDIA_TYPE_AUDIO
                    or media.status != pj.PJSUA_CALL_MEDIA_ACTIVE
                ):
                    continue
                audio = self.getAudioMedia(media.index)
                if self.leg.port is None:
                    port = take_port()
                    port.attach(self.leg.rx_queue, self.leg.sent)
                    self.leg.port = port
                audio.startTransmit(self.leg.port)
                self.leg.port.startTransmit(audio)
                self.leg.times.setdefault("media", now)
            self.leg.caller.post(self.leg.caller.wake)
        except Exception:
            log.error("onCallMediaState: %s", traceback.format_exc())


class Account(ThreadSafeDelete, pj.Account):
    def onIncomingCall(self, prm: pj.OnIncomingCallParam) -> None:
        pass  # never called: we only dial (an unanswered incoming call gets 500)


# ------------------------------------------------------------------ a call, loop side


class Leg:
    def __init__(self, caller: Caller, label: str) -> None:
        self.caller = caller
        self.label = label
        self.times: dict[str, float] = {}  # SIP milestones (set on pjsua2's thread)
        self.rx_queue: deque[tuple[float, float, bool]] = deque()
        self.sent: deque[tuple[str, float]] = deque()
        self.rx_t: list[float] = []
        self.rx_rms: list[float] = []
        self.rx_empty: list[int] = []  # indices of frames that carried no audio
        self.marks: list[tuple[str, float]] = []
        self.port: Port | None = None
        self.call: BenchCall | None = None
        self.status: int | None = None
        self.reason = ""
        self.disconnected = False
        self.hung_up_by = ""
        self.jbuf: dict[str, Any] = {}
        self.errors: list[str] = []
        self._clips = 0

    # loop side ------------------------------------------------------------

    def on_state(self, snap: tuple[int, int, str]) -> None:
        state, status, reason = snap
        if state in (pj.PJSIP_INV_STATE_CONNECTING, pj.PJSIP_INV_STATE_CONFIRMED):
            self.status = self.status or status
        if state == pj.PJSIP_INV_STATE_DISCONNECTED and not self.disconnected:
            self.status = self.status or status
            self.reason = reason
            self.disconnected = True
            self.hung_up_by = self.hung_up_by or "remote"
            self.drain()
            if self.port is not None:
                give_back(self.port)
            self.port = None
            self.call = None  # pjsua2 reuses call slots: drop it now (see the softphone)
        self.caller.wake()

    def drain(self) -> None:
        while True:
            try:
                t, rms, audio = self.rx_queue.popleft()
            except IndexError:
                break
            if not audio:
                self.rx_empty.append(len(self.rx_t))
            self.rx_t.append(t)
            self.rx_rms.append(rms)
        while True:
            try:
                self.marks.append(self.sent.popleft())
            except IndexError:
                break

    def mark(self, name: str) -> float:
        now = time.monotonic()
        self.marks.append((name, now))
        return now

    def last_mark(self, name: str) -> float | None:
        return next((t for n, t in reversed(self.marks) if n == name), None)

    # audio analysis (on what has been drained) -----------------------------

    def onset_after(self, since: float, frames: int = 2) -> float | None:
        """Time of the first received frame at/after `since` that starts `frames` loud ones."""
        run = 0
        start = None
        first = bisect.bisect_left(self.rx_t, since)
        for t, rms in zip(self.rx_t[first:], self.rx_rms[first:], strict=True):
            if rms >= THRESHOLD:
                run += 1
                if run == 1:
                    start = t
                if run >= frames:
                    return start
            else:
                run = 0
        return None

    def quiet_for(self, since: float, seconds: float) -> bool:
        """Loud audio was heard after `since`, then at least `seconds` of quiet until now."""
        need = round(seconds / TICK)
        quiet = 0
        heard = False
        for rms in self.rx_rms[bisect.bisect_left(self.rx_t, since) :]:
            if rms >= THRESHOLD:
                heard = True
                quiet = 0
            else:
                quiet += 1
        return heard and quiet >= need

    def quiet_run_end(self, since: float, seconds: float) -> float | None:
        """When the first run of `seconds` of quiet after `since` was complete (None: not yet)."""
        need = round(seconds / TICK)
        quiet = 0
        first = bisect.bisect_left(self.rx_t, since)
        for t, rms in zip(self.rx_t[first:], self.rx_rms[first:], strict=True):
            quiet = quiet + 1 if rms < THRESHOLD else 0
            if quiet >= need:
                return t
        return None

    @property
    def loud_now(self) -> bool:
        return bool(self.rx_rms) and self.rx_rms[-1] >= THRESHOLD

    # actions ---------------------------------------------------------------

    def send(self, clip: Clip) -> str:
        """Queue `clip`; returns its id. Its first and last voiced frames and its last frame
        are marked `<id>:first`, `<id>:last`, `<id>:done` (joined by + on one frame)."""
        if self.port is None:
            raise CallFailed("no audio")
        self._clips += 1
        cid = f"clip{self._clips}"
        last = len(clip.frames) - 1
        for index, frame in enumerate(clip.frames):
            tags = [
                tag
                for tag, at in (("first", clip.first_voiced), ("last", clip.last_voiced))
                if index == at
            ]
            if index == last:
                tags.append("done")
            self.port.outgoing.append((frame, f"{cid}:{'+'.join(tags)}" if tags else None))
        return cid

    def sent_time(self, cid: str, which: str) -> float | None:
        for name, t in self.marks:
            if name.startswith(cid + ":") and which in name.split(":", 1)[1].split("+"):
                return t
        return None

    def dtmf(self, digits: str) -> float:
        if self.call is None:
            raise CallFailed("the call has ended")
        now = self.mark(f"dtmf:{digits}")
        self.call.dialDtmf(digits)
        return now

    def snapshot_jbuf(self) -> None:
        """The jitter buffer's view of what we received (only while the stream exists)."""
        if self.call is None or self.disconnected or self.port is None:
            return
        with contextlib.suppress(Exception):
            stat = self.call.getStreamStat(0)
            jb = stat.jbuf
            self.jbuf = {
                "avg_delay_ms": jb.avgDelayMsec,
                "min_delay_ms": jb.minDelayMsec,
                "max_delay_ms": jb.maxDelayMsec,
                "prefetch": jb.prefetch,
                "lost": jb.lost,
                "discard": jb.discard,
                "empty": jb.empty,
                "rx_loss": stat.rtcp.rxStat.loss,
            }

    def hangup(self) -> None:
        if self.call is not None and not self.disconnected:
            self.snapshot_jbuf()
            self.hung_up_by = "local"
            with contextlib.suppress(pj.Error):
                self.call.hangup(pj.CallOpParam(True))

    def result(self, keep_rx: bool) -> dict[str, Any]:
        out: dict[str, Any] = {
            "label": self.label,
            "times": self.times,
            "status": self.status,
            "reason": self.reason,
            "hung_up_by": self.hung_up_by,
            "marks": self.marks,
            "jbuf": self.jbuf,
            "errors": self.errors,
            "rx_frames": len(self.rx_t),
            "rx_empty_frames": len(self.rx_empty),
        }
        if keep_rx:
            out["rx_t"] = [round(t, 5) for t in self.rx_t]
            out["rx_rms"] = [round(r) for r in self.rx_rms]
            out["rx_empty"] = self.rx_empty
        return out


# ------------------------------------------------------------------ the caller


class Caller:
    def __init__(self, plan: dict[str, Any], out: Any) -> None:
        self.plan = plan
        self.out = out
        self.loop = asyncio.get_running_loop()
        self.legs: list[Leg] = []
        self._changed = asyncio.Event()
        self.endpoint: pj.Endpoint | None = None
        self.account: Account | None = None

    # plumbing -------------------------------------------------------------

    def post(self, handler: Any, *args: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the loop has closed: the run is over
            self.loop.call_soon_threadsafe(handler, *args)

    def wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def emit(self, message: dict[str, Any]) -> None:
        self.out.write(json.dumps(message) + "\n")
        self.out.flush()

    async def _pump(self) -> None:
        ticks = 0
        while True:
            await asyncio.sleep(TICK)
            ticks += 1
            for leg in self.legs:
                leg.drain()
                if ticks % 25 == 0:  # the stream's counters vanish with the call: keep the last
                    leg.snapshot_jbuf()
            self.wake()

    async def until(self, condition: Any, timeout: float) -> bool:
        deadline = self.loop.time() + timeout
        while not condition():
            left = deadline - self.loop.time()
            if left <= 0:
                return False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), left)
        return True

    def start(self) -> None:
        options = EndpointOptions(
            host="127.0.0.1",
            udp_port=0,
            codecs=(self.plan.get("codec", "PCMU"),),
            user_agent="ivr-bench-caller",
            log_level=1,
            rtp_port=RTP_PORT,
            rtp_port_range=RTP_PORT_RANGE,
        )
        self.endpoint = ep = start_endpoint(options)
        register_thread("loop")
        local = ep.transportGetInfo(ep.transportEnum()[0]).localName
        cfg = pj.AccountConfig()
        cfg.idUri = f"sip:bench@{local}"
        transport = media_transport(options)
        transport.randomizePort = True
        cfg.mediaConfig.transportConfig = transport
        self.account = Account()
        self.account.create(cfg, True)
        self.loop.create_task(self._pump())

    def close(self) -> None:
        for leg in self.legs:
            leg.port = None
            leg.call = None
        self.account = None

    # calls ------------------------------------------------------------------

    async def dial(self, number: str, label: str) -> Leg:
        assert self.account is not None
        leg = Leg(self, label)
        self.legs.append(leg)
        call = BenchCall(self.account, leg)
        leg.call = call
        prm = pj.CallOpParam(True)
        prm.opt.audioCount = 1
        prm.opt.videoCount = 0
        header = pj.SipHeader()
        header.hName = "X-Bench-Call"
        header.hValue = label
        prm.txOption.headers.append(header)
        leg.times["dial"] = time.monotonic()
        call.makeCall(self.plan["uri"].replace("NUMBER", number), prm)
        ok = await self.until(lambda: leg.port is not None or leg.disconnected, 10.0)
        if not ok or leg.disconnected:
            raise CallFailed(f"{label}: not connected ({leg.status} {leg.reason})")
        return leg

    async def wait_onset(self, leg: Leg, since: float, timeout: float = 15.0) -> float:
        found: list[float] = []

        def heard() -> bool:
            t = leg.onset_after(since)
            if t is not None:
                found.append(t)
                return True
            return leg.disconnected

        await self.until(heard, timeout)
        if not found:
            raise CallFailed(f"{leg.label}: nothing heard within {timeout} s")
        return found[0]

    async def wait_quiet(self, leg: Leg, since: float, seconds: float, timeout: float = 30.0):
        ok = await self.until(lambda: leg.quiet_for(since, seconds) or leg.disconnected, timeout)
        if not ok:
            raise CallFailed(f"{leg.label}: the far end kept talking for {timeout} s")

    async def say(self, leg: Leg, clip: Clip) -> str:
        cid = leg.send(clip)
        seconds = len(clip.frames) * TICK
        ok = await self.until(
            lambda: leg.sent_time(cid, "done") is not None or leg.disconnected, seconds + 5
        )
        if not ok or leg.disconnected:
            raise CallFailed(f"{leg.label}: could not send {seconds:.1f} s of audio")
        return cid

    async def hangup(self, leg: Leg) -> None:
        leg.hangup()
        await self.until(lambda: leg.disconnected, 5.0)


# ------------------------------------------------------------------ scenarios


async def first_audio(caller: Caller, plan: dict[str, Any]) -> None:
    """Calls one after the other to a flow that says one prompt and hangs up."""

    async def one(label: str) -> None:
        leg = await caller.dial(plan["number"], label)
        try:
            onset = await caller.wait_onset(leg, leg.times["dial"])
            leg.snapshot_jbuf()  # the server hangs up right after the prompt: take it now
            await caller.until(lambda: leg.quiet_for(onset, 0.3) or leg.disconnected, 15)
            leg.snapshot_jbuf()
            await caller.until(lambda: leg.disconnected, 15)
        except CallFailed as exc:
            leg.errors.append(str(exc))
        await caller.hangup(leg)

    for index in range(plan["calls"]):
        try:
            await one(f"{plan.get('label', 'first')}-{index + 1}")
        except CallFailed as exc:
            caller.legs[-1].errors.append(str(exc))
        await asyncio.sleep(plan.get("pause", 0.2))


async def turns(caller: Caller, plan: dict[str, Any], clip: Clip) -> None:
    """One call: answer each question with `clip`, wait for the reply and the next question."""
    leg = await caller.dial(plan["number"], plan.get("label", "turns"))
    quiet = plan.get("quiet", 0.5)
    try:
        onset = await caller.wait_onset(leg, leg.times["dial"])
        await caller.wait_quiet(leg, onset, quiet)
        for _ in range(plan["turns"]):
            cid = await caller.say(leg, clip)
            last = leg.sent_time(cid, "last")
            assert last is not None
            reply = await caller.wait_onset(leg, last)
            await caller.wait_quiet(leg, reply, quiet)
        leg.snapshot_jbuf()
    except CallFailed as exc:
        leg.errors.append(str(exc))
    await caller.hangup(leg)


async def barge(caller: Caller, plan: dict[str, Any], clip: Clip) -> None:
    """One call: cut a long bargeable prompt at a random point, by speech or by a key."""
    rng = random.Random(plan.get("seed", 1))
    leg = await caller.dial(plan["number"], plan.get("label", "barge"))
    try:
        await caller.wait_onset(leg, leg.times["dial"])
        for _ in range(plan["tries"]):
            # From the onset of the reply ("Okay.", which may not be cut) into the long prompt
            # behind it, at a random point, and while it is audibly speaking.
            await asyncio.sleep(plan.get("min_delay", 1.2) + rng.uniform(0, plan.get("spread", 1)))
            await caller.until(lambda: leg.loud_now or leg.disconnected, 1.0)
            if plan["mode"] == "dtmf":
                started = leg.dtmf("1")
            else:
                cid = await caller.say(leg, clip)
                started = leg.sent_time(cid, "first") or time.monotonic()
            leg.marks.append(("barge", started))
            silent: list[float] = []

            def gone_quiet(since: float = started, found: list[float] = silent) -> bool:
                t = leg.quiet_run_end(since, 0.25)
                if t is not None:
                    found.append(t)
                return t is not None or leg.disconnected

            await caller.until(gone_quiet, 10)
            if not silent:
                raise CallFailed(f"{leg.label}: the prompt did not stop")
            await caller.wait_onset(leg, silent[0])
        leg.snapshot_jbuf()
    except CallFailed as exc:
        leg.errors.append(str(exc))
    await caller.hangup(leg)


async def load(caller: Caller, plan: dict[str, Any], clip: Clip) -> None:
    """`calls` calls at once, each answering every prompt (a key or `clip`) until the end."""
    legs: list[Leg] = []
    for index in range(plan["calls"]):
        legs.append(await caller.dial(plan["number"], f"{plan.get('label', 'load')}-{index + 1}"))
    caller.emit({"event": "connected", "t": time.monotonic()})
    deadline = time.monotonic() + plan["seconds"]
    answered = {leg.label: 0 for leg in legs}

    async def run(leg: Leg) -> None:
        since = leg.times["dial"]
        try:
            while time.monotonic() < deadline:
                onset = await caller.wait_onset(leg, since)
                await caller.wait_quiet(leg, onset, plan.get("quiet", 0.4))
                if time.monotonic() >= deadline:
                    break
                if plan["mode"] == "dtmf":
                    since = leg.dtmf("1")
                    await asyncio.sleep(0.3)
                else:
                    cid = await caller.say(leg, clip)
                    since = leg.sent_time(cid, "last") or time.monotonic()
                answered[leg.label] += 1
            leg.snapshot_jbuf()
        except CallFailed as exc:
            leg.errors.append(str(exc))

    await asyncio.gather(*(run(leg) for leg in legs))
    for leg in legs:
        await caller.hangup(leg)
    caller.emit({"event": "answered", "counts": answered})


async def session(plan: dict[str, Any], out: Any, holder: dict[str, Any]) -> None:
    clip = None
    if plan.get("say"):
        narrowband = plan.get("codec", "PCMU") in ("PCMU", "PCMA")
        clip = Clip(synthesise(plan["say"], "flite", plan.get("voice", "slt")), narrowband)
    caller = Caller(plan, out)
    try:
        caller.start()
    finally:
        holder["endpoint"] = caller.endpoint
    holder["caller"] = caller
    scenario = plan["scenario"]
    try:
        if scenario == "first_audio":
            await first_audio(caller, plan)
        elif scenario == "turns":
            await turns(caller, plan, clip)  # type: ignore[arg-type]
        elif scenario == "barge":
            await barge(caller, plan, clip)  # type: ignore[arg-type]
        elif scenario == "load":
            await load(caller, plan, clip)  # type: ignore[arg-type]
        else:
            raise ValueError(f"unknown scenario {scenario!r}")
    finally:
        for leg in caller.legs:
            leg.drain()
        keep_rx = scenario != "load"
        caller.emit({"event": "result", "legs": [leg.result(keep_rx) for leg in caller.legs]})
        caller.close()


def claim_stdout() -> Any:
    """Keep fd 1 for our JSON lines; pjlib printf()s its banner there, so point it at stderr."""
    sys.stdout.flush()
    saved = os.dup(1)
    with contextlib.suppress(Exception):
        ctypes.CDLL(None).fflush(None)
    os.dup2(2, 1)
    return os.fdopen(saved, "w", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plan", required=True, help="the scenario, as JSON")
    args = parser.parse_args()
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="caller: %(message)s")
    plan = json.loads(args.plan)
    out = claim_stdout()
    holder: dict[str, Any] = {}
    code = 0
    try:
        asyncio.run(session(plan, out, holder))
    except BaseException:
        traceback.print_exc()
        out.write(json.dumps({"event": "error", "error": traceback.format_exc()}) + "\n")
        code = 1
    out.flush()
    holder.pop("caller", None)
    endpoint = holder.pop("endpoint", None)
    if endpoint is None and current_endpoint() is None:  # pjsua2 never started
        sys.exit(code)
    shutdown_and_exit(endpoint, code)


if __name__ == "__main__":
    main()
