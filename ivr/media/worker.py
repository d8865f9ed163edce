"""The media worker process: pjsua2 calls driven by the control plane, like Asterisk's ARI.

    python -m ivr.media.worker --name media-1 --control CONTROL.sock --options JSON

It connects to the control plane's socket, says hello, and then reports calls (`incoming`,
`input`, `barge_in`, `transfer`, `ended`) and obeys commands (`answer`, `reject`, `play`,
`collect`, `stop`, `music`, `transfer`, `hangup`, and `offer` for a browser's leg). It holds no
business state: when the control plane goes away it hangs up and exits, and the supervisor
starts a fresh one.

`dial` places a call (a customer's callback): `progress` while it rings, `answered` once the
far end took it and its audio is up, else `ended` with the far end's status (503 at once when
the worker's SIP calls are all taken). From `answered` on it is a call like an incoming one.

An `offer` with `bridge: <call>` is an agent's browser leg for a caller on this worker: the two
legs are bridged at once (`ivr.media.bridge`), and the agent's leg ends with the caller's.

One asyncio loop owns every call; a 20 ms ticker moves audio between the calls' ports and their
listeners and players (the clock thread also wakes it when a barge-in or the end of an answer
may be due, see ivr.media.call), and once a second looks at each call's RTP counters.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import itertools
import json
import logging
import re
import signal
import sys
import time
from collections.abc import Coroutine
from dataclasses import asdict, dataclass, field
from email.parser import HeaderParser
from typing import Any
from urllib.parse import unquote

import pjsua2 as pj

from ivr.media.audio import FRAME_MS, SILENCE, BadPromptAudio, PromptFiles
from ivr.media.bridge import Loop, Relay
from ivr.media.call import IvrCall, SipLeg
from ivr.media.endpoint import (
    EndpointOptions,
    ThreadSafeDelete,
    media_transport,
    shutdown_and_exit,
    start_endpoint,
)
from ivr.media.leg import VoiceLeg
from ivr.media.listening import Ear, ListenSpec
from ivr.workers.ipc import Link, ProtocolError

log = logging.getLogger("ivr.media")

# SIP's compact header forms (RFC 3261 §7.3.3) for the headers we read.
_COMPACT = {"f": "From", "t": "To", "i": "Call-ID", "m": "Contact"}
STALE_INVITE_SECONDS = 1.5
# A `dial` command's from_user (a caller id: a number or a name): nothing that could end the
# From URI's user part or start its parameters.
_DIALLABLE_USER = re.compile(r"[A-Za-z0-9+*._~-]{1,64}")
_HEADER_NAME = re.compile(r"[A-Za-z0-9!%*_+`'~.-]+")  # RFC 3261 token
PJ_ETOOMANY = 70010  # pj_status_t of "too many objects" (pjsua2 does not export it)
# Silence played before a hang-up or transfer: the last frames of a prompt are still on their
# way (jitter buffers), and some synthesised prompts end without any silence of their own.
TAIL = [SILENCE] * 10  # Kamailio gave up on us by now and tried another worker
RTP_CHECK_EVERY = 1.0  # seconds between two looks at a call's RTP counters (at most)


@dataclass(frozen=True)
class WorkerOptions:
    endpoint: EndpointOptions = field(default_factory=EndpointOptions)
    asr_sockets: tuple[str, ...] = ()
    max_call_seconds: float = 3600.0  # a lost BYE must not hold one of our 4 slots forever
    rtp_timeout: float = 30.0  # no RTP from the caller this long: hang up (0: never)
    dtmf_methods: tuple[str, ...] = ("rfc4733", "info")  # key presses taken from these
    registrar: str = ""  # sip:pbx.example.com: register there (digest auth below)
    username: str = ""
    password: str = ""
    realm: str = "*"
    register_interval: int = 300
    # host:port for Contact instead of the transport's: behind Kamailio with a public_address,
    # the internal address Kamailio relays in-dialog requests to (it record-routes, so callers
    # still send them to Kamailio). Never Kamailio's own address: it would relay to itself.
    contact_host: str = ""
    # Browser calls (aiortc): how many this worker carries, host candidate addresses (empty:
    # every interface's but loopback), and STUN/TURN servers as RTCIceServer dictionaries.
    webrtc_max_calls: int = 0  # visitors' browser calls (agents' softphones ride with callers)
    webrtc_addresses: tuple[str, ...] = ()
    ice_servers: tuple[dict[str, Any], ...] = ()

    @classmethod
    def from_json(cls, text: str) -> WorkerOptions:
        raw = json.loads(text)
        endpoint = raw.pop("endpoint", {})
        endpoint["codecs"] = tuple(endpoint.get("codecs", EndpointOptions.codecs))
        raw["asr_sockets"] = tuple(raw.get("asr_sockets", ()))
        raw["dtmf_methods"] = tuple(raw.get("dtmf_methods", WorkerOptions.dtmf_methods))
        raw["webrtc_addresses"] = tuple(raw.get("webrtc_addresses", ()))
        raw["ice_servers"] = tuple(raw.get("ice_servers", ()))
        return cls(endpoint=EndpointOptions(**endpoint), **raw)

    def to_json(self) -> str:
        return json.dumps(asdict(self))


class IvrAccount(ThreadSafeDelete, pj.Account):
    def __init__(self, worker: MediaWorker) -> None:
        super().__init__()
        self.worker = worker

    def onIncomingCall(self, prm: pj.OnIncomingCallParam) -> None:
        # The call object must be made here, and the message read here: rdata dies with us.
        try:
            key = f"{self.worker.name}-{next(self.worker.numbers)}"
            call = IvrCall(self, prm.callId, self.worker, key)
            self.worker.pending[key] = call  # a strong reference before anything else
            message = prm.rdata.wholeMsg
            source = prm.rdata.srcAddress
            self.worker.loop.call_soon_threadsafe(self.worker.on_incoming, key, message, source)
        except Exception:
            log.exception("incoming call")

    def onRegState(self, prm: pj.OnRegStateParam) -> None:
        self.worker.loop.call_soon_threadsafe(
            self.worker.on_registration, prm.code, prm.reason, prm.expiration
        )


class MediaWorker:
    def __init__(self, name: str, control: str, options: WorkerOptions) -> None:
        self.name = name
        self.control = control
        self.options = options
        self.numbers = itertools.count(1)
        self.pending: dict[str, IvrCall] = {}  # created on pjsua2's thread, not yet seen
        self.legs: dict[str, VoiceLeg] = {}
        self._has_calls = asyncio.Event()  # wakes the ticker when a call arrives
        self.prompts = PromptFiles()
        self.link: Link | None = None
        self.identity = ""  # our account's URI: the From of the calls we place
        self.loop: asyncio.AbstractEventLoop
        self.stopping = asyncio.Event()
        self._asr_clients: dict[str, asyncio.Task[Any]] = {}  # call -> its ASR connection
        self._asr_turn = itertools.count()
        self._background: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """A background task kept referenced until it ends (asyncio holds only weak ones)."""
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    # ---------------------------------------------------------------- lifecycle

    async def run(self) -> None:
        from pocketsphinx import Vad  # WebRTC's VAD: C, ~2 µs a frame, no model to load

        # One per call (before the first call can arrive): the VAD adapts to the line it hears.
        self.new_vad = functools.partial(Vad, Vad.LOOSE, 16000, FRAME_MS / 1000)
        self.loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            self.loop.add_signal_handler(sig, self.stopping.set)
        # ~0.3 s: now, not at the first browser call or agent's softphone (which every worker
        # may get, [webrtc] enabled or not: it only governs the visitors' calls).
        from ivr.media import webrtc

        webrtc.use_host_addresses(self.options.webrtc_addresses)
        self.endpoint = start_endpoint(self.options.endpoint)
        self.account = IvrAccount(self)
        account_config = self._account_config()
        self.identity = account_config.idUri
        self.account.create(account_config, True)
        self.link = await Link.connect(self.control)
        self.emit(
            {
                "event": "hello",
                "worker": self.name,
                "max_calls": self.options.endpoint.max_calls,
                "max_browser_calls": self.options.webrtc_max_calls,
            }
        )
        ticker = asyncio.create_task(self._ticker())
        commands = asyncio.create_task(self._commands())
        stop = asyncio.create_task(self.stopping.wait())
        await asyncio.wait({commands, stop}, return_when=asyncio.FIRST_COMPLETED)
        for task in (ticker, commands, stop):
            task.cancel()
        await self._hang_up_all()

    def _account_config(self) -> pj.AccountConfig:
        options = self.options
        ep = options.endpoint
        cfg = pj.AccountConfig()
        host = options.contact_host or f"{ep.public_address or ep.host}:{ep.udp_port or 5060}"
        cfg.idUri = f"sip:ivr@{host}"
        if ep.tls_port is not None and not options.contact_host:
            # pjsua answers a sips: call with a Contact of the account's scheme, and a sip:
            # Contact ends it ("480 SIPS Required"). Calls over UDP and TCP still get a sip:
            # Contact; a sip: URI over TLS gets a sips: one (pjsua's choice for a secure hop).
            cfg.idUri = f"sips:ivr@{ep.public_address or ep.host}:{ep.tls_port}"
        cfg.mediaConfig.transportConfig = media_transport(ep)
        if options.contact_host:
            cfg.sipConfig.contactForced = f"<sip:ivr@{options.contact_host}>"
        if options.registrar:
            user_host = options.registrar.split(":", 1)[-1]
            cfg.idUri = f"sip:{options.username}@{user_host}"
            cfg.regConfig.registrarUri = options.registrar
            cfg.regConfig.timeoutSec = options.register_interval
            cfg.regConfig.retryIntervalSec = 30
            cfg.sipConfig.authCreds.append(
                pj.AuthCredInfo("digest", options.realm, options.username, 0, options.password)
            )
        return cfg

    async def _hang_up_all(self) -> None:
        for leg in list(self.legs.values()):
            leg.hangup(503, "Service Unavailable")
        deadline = time.monotonic() + 2.0
        while self.legs and time.monotonic() < deadline:
            await asyncio.sleep(0.05)  # DISCONNECTED callbacks arrive through the loop
        for leg in list(self.legs.values()):
            self._release(leg.key)
        if self._background:  # browser calls closing their peer connections (DTLS alerts)
            await asyncio.wait(list(self._background), timeout=1.0)
        if self.link is not None:
            await self.link.close()

    # ---------------------------------------------------------------- control plane link

    def emit(self, message: dict[str, Any]) -> None:
        if self.link is not None:
            self.link.send(message)

    async def _commands(self) -> None:
        assert self.link is not None
        while True:
            try:
                message = await self.link.receive()
            except (ProtocolError, ConnectionError) as exc:
                log.error("control plane link broken: %s", exc)
                return
            if message is None:
                log.info("control plane went away")
                return
            if isinstance(message, bytes):
                continue
            try:
                self.on_command(message)
            except Exception as exc:  # one bad command must not take the other calls down
                log.exception("command %s failed", message.get("op"))
                self.emit({"event": "error", "call": message.get("call"), "message": str(exc)})

    def on_command(self, message: dict[str, Any]) -> None:
        op = message.get("op")
        if op == "offer":
            bridge = message.get("bridge")
            self._offer(str(message.get("call")), message.get("sdp"), bridge and str(bridge))
            return
        if op == "dial":
            self._dial(str(message.get("call")), message)
            return
        leg = self.legs.get(str(message.get("call")))
        if leg is None or leg.ended:
            self.emit({"event": "error", "call": message.get("call"), "message": "no such call"})
            return
        if op == "answer":
            leg.answer(self.loop.time())
        elif op == "reject":
            leg.hangup(int(message.get("code", 480)), str(message.get("reason", "")))
        elif op == "play":
            leg.playback.enqueue(self._frames(message), bool(message.get("barge_in", False)))
            leg.playback.feed()  # into the port now, not at the next tick: up to 20 ms sooner
        elif op == "collect":
            spec = ListenSpec.from_message(message.get("spec", {}))
            leg.playback.enqueue(self._frames(message), spec.barge_in)
            leg.playback.feed()
            leg.listen(int(message["request"]), spec)
        elif op == "candidate":
            add_candidate = getattr(leg, "add_candidate", None)
            if add_candidate is not None:  # a browser call's trickled ICE candidate
                add_candidate(
                    message.get("candidate"), message.get("sdpMid"), message.get("sdpMLineIndex")
                )
        elif op == "stop":
            leg.stop()
        elif op == "music":  # hold music under the prompts, looped; no files: none
            frames = self._frames(message)
            leg.music = Loop(frames) if frames else None
            if not leg.hears_peer:
                leg.playback.source = leg.music
        elif op == "transfer":
            uri, headers = str(message["uri"]), dict(message.get("headers", {}))
            leg.playback.enqueue(TAIL, barge_in=False)
            leg.after_playback.append(lambda: self._transfer(leg, uri, headers))
        elif op == "hangup":
            if message.get("now"):
                leg.hangup()
            else:
                leg.playback.enqueue(TAIL, barge_in=False)
                leg.after_playback.append(leg.hangup)
        else:
            self.emit({"event": "error", "call": leg.key, "message": f"unknown op {op!r}"})

    def _offer(self, key: str, sdp: object, bridge: str | None = None) -> None:
        """A browser's leg: answer its SDP offer (the `webrtc_answer` event), or end it. With
        `bridge`, an agent's leg for that caller, bridged to it at once."""
        from ivr.media.webrtc import BrowserLeg

        def refuse(code: int, reason: str) -> None:
            self.emit({"event": "ended", "call": key, "code": code, "reason": reason})

        if key in self.legs or key in self.pending:
            refuse(400, f"call {key} exists already")
            return
        if not isinstance(sdp, str) or not sdp.strip():
            refuse(400, "the offer has no SDP")
            return
        caller = self.legs.get(bridge) if bridge else None
        if bridge and (caller is None or caller.ended or caller.hanging_up):
            refuse(404, f"no call {bridge} to bridge to")
            return
        if caller is None:  # agents' legs ride with their callers' (at most one each)
            carried = sum(
                isinstance(leg, BrowserLeg) and leg.serves is None for leg in self.legs.values()
            )
            if carried >= self.options.webrtc_max_calls:
                refuse(486, f"this media worker carries its {carried} browser calls already")
                return
        leg = BrowserLeg(key, self, ear=Ear(self.new_vad()), on_over=self._browser_over)
        self.legs[key] = leg
        self._has_calls.set()
        if caller is not None:
            leg.report_state = False  # the agent's desk has no use for the bot's state
            leg.serves = caller.key
            self._bridge(caller, leg)
        self.spawn(self._answer_offer(leg, sdp))

    def _dial(self, key: str, message: dict[str, Any]) -> None:
        """Place a SIP call: made on the loop thread (registered with pjlib, like every thread
        that calls pjsua2) and kept in `legs` before makeCall, whose callbacks may already
        fire inside it. Released like an incoming call's (`finish`), on this thread too."""
        uri = str(message.get("uri") or "")
        raw = message.get("headers") or {}
        headers = {str(n): str(v) for n, v in raw.items()} if isinstance(raw, dict) else None
        from_user = str(message.get("from_user") or "")
        refusal = self._dial_refusal(key, uri, headers, from_user)
        if refusal is not None or headers is None:
            code, reason = refusal or (400, f"headers {raw!r}: not a mapping")
            self.emit({"event": "ended", "call": key, "code": code, "reason": reason})
            return
        call = IvrCall(self.account, pj.PJSUA_INVALID_ID, self, key)
        leg = SipLeg(key, self, call=call, ear=Ear(self.new_vad()), started_at=self.loop.time())
        leg.wake = functools.partial(self._post_wake, key)
        self.legs[key] = leg
        self._has_calls.set()
        try:
            leg.dial(uri, headers, self._from_uri(from_user))
        except pj.Error as exc:
            # The slot may have gone to an incoming call meanwhile: 503, as when we counted
            # it taken; anything else is pjsip refusing the request itself.
            log.warning("call %s: cannot dial %s: %s", key, uri, exc.reason)
            self.finish(leg, 503 if exc.status == PJ_ETOOMANY else 500, exc.reason)
            return
        log.info("call %s: dialling %s", key, uri)

    def _dial_refusal(
        self, key: str, uri: str, headers: dict[str, str] | None, from_user: str
    ) -> tuple[int, str] | None:
        """Why a `dial` cannot be placed (status, reason), or None."""
        if key in self.legs or key in self.pending:
            return 400, f"call {key} exists already"
        if self.endpoint.utilVerifySipUri(uri) != 0:
            return 400, f"cannot dial {uri!r}: not a SIP URI"
        # A line break in a header would start another header (or the body) of the INVITE.
        for name, value in (headers or {}).items():
            if not _HEADER_NAME.fullmatch(name) or "\r" in value or "\n" in value:
                return 400, f"cannot send the header {name!r}: {value!r}"
        if from_user and not _DIALLABLE_USER.fullmatch(from_user):
            return 400, f"from_user {from_user!r}: not a SIP user"
        # pjsua's own limit (4 in the PyPI build) counts incoming calls not yet seen too.
        sip_calls = len(self.pending) + sum(isinstance(leg, SipLeg) for leg in self.legs.values())
        if sip_calls >= self.options.endpoint.max_calls:
            return 503, f"this media worker carries its {sip_calls} calls already"
        return None

    def _from_uri(self, user: str) -> str:
        """Our identity with `user` in place of its user part ("": the account's own)."""
        if not user:
            return ""
        scheme, _, rest = self.identity.partition(":")
        return f"{scheme}:{user}@{rest.rpartition('@')[2]}"

    def _bridge(self, caller: VoiceLeg, agent: VoiceLeg) -> None:
        """From now on the two legs hear each other, and the bot hears neither."""
        previous = self.legs.get(caller.bridged_to or "")
        if previous is not None:  # the agent's new leg (a desk reload) replaces the old one
            self._unbridge(previous)
            previous.hangup(because="replaced by the agent's new connection")
        if caller.listener is not None:
            caller.listener.cancel()
            caller.listener = None
        for one, other in ((caller, agent), (agent, caller)):
            one.bridged_to = other.key
            one.relay_out = Relay()
        agent.playback.source = caller.relay_out  # the caller keeps the music until `connected`
        log.info("call %s bridged to %s", caller.key, agent.key)

    def agent_connected(self, agent: VoiceLeg) -> None:
        """The agent's leg has media: the caller hears the agent from now on, and an
        announcement still queued is stale."""
        caller = self.legs.get(agent.serves or "")
        if caller is None or caller.bridged_to != agent.key or agent.relay_out is None:
            return
        caller.playback.stop()
        caller.playback.source = agent.relay_out
        caller.hears_peer = True

    def _unbridge(self, leg: VoiceLeg) -> None:
        other = self.legs.get(leg.bridged_to or "")
        for one in (leg, other):
            if one is not None:
                one.bridged_to = None
                one.relay_out = None
                one.hears_peer = False
                one.playback.source = one.music  # a caller left alone hears the music again

    async def _answer_offer(self, leg: Any, sdp: str) -> None:
        from ivr.media.webrtc import BadOffer

        try:
            answer = await leg.accept(sdp, list(self.options.ice_servers))
        except BadOffer as exc:
            if not leg.ended:  # else it was hung up meanwhile and said so already
                log.warning("browser call %s: %s", leg.key, exc)
                self.finish(leg, 488, str(exc))
            return
        if not leg.ended:
            self.emit({"event": "webrtc_answer", "call": leg.key, "sdp": answer})

    def _browser_over(self, leg: VoiceLeg, reason: str) -> None:
        self.finish(leg, 0, reason)

    def _frames(self, message: dict[str, Any]) -> list[bytes]:
        frames: list[bytes] = []
        for path in message.get("files", []):
            try:
                frames.extend(self.prompts.frames(str(path)))
            except (OSError, BadPromptAudio) as exc:
                log.error("cannot play %s: %s", path, exc)
        return frames

    def _transfer(self, leg: VoiceLeg, uri: str, headers: dict[str, str]) -> None:
        try:
            leg.transfer(uri, headers)
        except pj.Error as exc:
            self.emit(
                {
                    "event": "transfer",
                    "call": leg.key,
                    "status": 500,
                    "final": True,
                    "reason": exc.info(),
                }
            )

    # ---------------------------------------------------------------- pjsua2 events (loop)

    def on_incoming(self, key: str, message: str, source: str) -> None:
        call = self.pending.pop(key, None)
        if call is None:
            return
        leg = SipLeg(key, self, call=call, ear=Ear(self.new_vad()))
        leg.wake = functools.partial(self._post_wake, key)
        self.legs[key] = leg
        self._has_calls.set()
        try:
            details = parse_invite(message)
        except Exception:
            log.exception("call %s: unreadable INVITE", key)
            leg.hangup(400, "Bad Request")
            return
        stamp = details["headers"].get("X-LB-Ts")
        if stamp and _stale(stamp):
            log.warning("refusing a stale INVITE (%s): the proxy gave it to another worker", key)
            leg.hangup(480, "Stale Request")
            return
        self.emit({"event": "incoming", "call": key, "source": source, **details})

    def on_call_state(self, key: str, state: int, code: int, reason: str) -> None:
        leg = self.legs.get(key)
        if leg is None:
            return
        dialled = leg if isinstance(leg, SipLeg) and leg.dialled else None
        if state == pj.PJSIP_INV_STATE_CONFIRMED:
            leg.answered = True
            if dialled is not None:
                dialled.started_at = self.loop.time()  # max_call_seconds counts from here
                self._announce(dialled)
        elif state == pj.PJSIP_INV_STATE_DISCONNECTED:
            self.finish(leg, code, reason)
        # pjsua reports each provisional response; the control plane hears each status once.
        elif dialled is not None and code in (180, 183) and code != dialled.progress:
            dialled.progress = code
            self.emit({"event": "progress", "call": key, "status": code})

    def _announce(self, leg: VoiceLeg) -> None:
        """A dialled call is `answered` once both the 200 OK and its audio are in (pjsua
        reports them in either order)."""
        if isinstance(leg, SipLeg) and leg.dialled and leg.up and not leg.announced:
            leg.announced = True
            self.emit({"event": "answered", "call": leg.key})

    def finish(self, leg: VoiceLeg, code: int, reason: str) -> None:
        """The leg is over: tell the control plane why, and drop it."""
        try:
            event: dict[str, Any] = {
                "event": "ended",
                "call": leg.key,
                "code": code,
                "reason": leg.end_reason or reason or "hung up",
            }
            jitter_ms = getattr(leg, "jitter_ms", None)
            if jitter_ms is not None:  # the server's jitter buffer delay, for the bench
                event["jitter_ms"] = jitter_ms
            self.emit(event)
        finally:  # whatever happens, the leg goes now (a SIP slot is reused within seconds)
            self._release(leg.key)

    def on_media_state(self, key: str) -> None:
        leg = self.legs.get(key)
        if isinstance(leg, SipLeg) and not leg.ended:
            try:
                leg.connect_audio(self.loop.time())
            except pj.Error as exc:
                log.error("call %s: cannot connect audio: %s", key, exc.info())
            self._announce(leg)

    def on_digit(self, key: str, digit: str, method: int) -> None:
        via = "info" if method == pj.PJSUA_DTMF_METHOD_SIP_INFO else "rfc4733"
        if via not in self.options.dtmf_methods:
            return
        leg = self.legs.get(key)
        if leg is not None:
            leg.digit(digit, self.loop.time())

    def on_transfer_status(self, key: str, code: int, reason: str, final: bool) -> None:
        leg = self.legs.get(key)
        if leg is None:
            return
        self.emit(
            {"event": "transfer", "call": key, "status": code, "reason": reason, "final": final}
        )
        if final and 200 <= code < 300:
            leg.hangup()  # the transferee has its new call: our part is done

    def on_registration(self, code: int, reason: str, expiration: int) -> None:
        level = logging.INFO if 200 <= code < 300 else logging.WARNING
        log.log(level, "registration: %s %s (expires in %s s)", code, reason, expiration)
        self.emit({"event": "registration", "code": code, "reason": reason})

    def _release(self, key: str) -> None:
        leg = self.legs.pop(key, None)
        if leg is None:
            return
        if leg.bridged_to is not None:
            other = self.legs.get(leg.bridged_to)
            self._unbridge(leg)
            if other is not None and other.serves == key:  # the caller left: so does the agent
                other.hangup(because="the caller hung up")
        leg.release()
        pending = self._asr_clients.pop(key, None)
        if pending is not None:
            self.spawn(_close_when_connected(pending))

    # ---------------------------------------------------------------- audio

    def _post_wake(self, key: str) -> None:
        """From the clock thread: run the call's tick now (see AudioPort's hints)."""
        with contextlib.suppress(RuntimeError):  # the loop has closed: the worker is stopping
            self.loop.call_soon_threadsafe(self._wake, key)

    def _wake(self, key: str) -> None:
        leg = self.legs.get(key)
        if leg is not None and not leg.ended:
            try:
                leg.tick(self.loop.time())
            except Exception:
                log.exception("call %s: tick failed", key)

    async def _ticker(self) -> None:
        period = FRAME_MS / 1000
        next_at = self.loop.time()
        rtp_timeout = self.options.rtp_timeout
        # Often enough that a 2 s timeout is not a 3 s one; never more than once a second.
        rtp_every = min(RTP_CHECK_EVERY, rtp_timeout / 4) if rtp_timeout else RTP_CHECK_EVERY
        while True:
            if not self.legs:  # no call, no tick: an idle worker sleeps (50 wake-ups a second)
                self._has_calls.clear()
                await self._has_calls.wait()
                next_at = self.loop.time()
            next_at += period
            now = self.loop.time()
            for leg in list(self.legs.values()):
                if leg.ended:
                    continue
                try:
                    leg.tick(now)
                    if now >= leg.media_check_at:
                        leg.media_check_at = now + rtp_every
                        leg.watch_media(now, rtp_timeout)
                except Exception:
                    log.exception("call %s: tick failed", leg.key)
                too_long = now - leg.started_at > self.options.max_call_seconds
                if leg.answered and too_long and not leg.hanging_up:
                    log.warning("call %s: longer than the maximum, hanging up", leg.key)
                    leg.hangup(because="longer than the maximum call length")
            delay = next_at - self.loop.time()
            if delay < -0.2:  # the loop was stalled: do not try to catch up in a burst
                next_at = self.loop.time()
                delay = 0
            await asyncio.sleep(max(0.0, delay))

    async def asr_client(self, leg: VoiceLeg) -> Any:
        """The call's connection to a speech worker (made on first use, kept for the call)."""
        pending = self._asr_clients.get(leg.key)
        if pending is not None and pending.done():
            client = None if pending.exception() else pending.result()
            if client is None or client.closed:  # the speech worker was restarted: reconnect
                if client is not None:
                    self.spawn(client.close())
                pending = None
        if pending is None:  # one connection attempt per call at a time
            pending = self.loop.create_task(self._connect_asr())
            self._asr_clients[leg.key] = pending
        client = await asyncio.shield(pending)
        if leg.ended:
            raise RuntimeError("the call ended")
        return client

    async def _connect_asr(self) -> Any:
        from ivr.speech.asr.client import AsrClient

        sockets = self.options.asr_sockets
        if not sockets:
            raise RuntimeError("no speech worker configured")
        return await AsrClient.connect(sockets[next(self._asr_turn) % len(sockets)])


async def _close_when_connected(pending: asyncio.Task[Any]) -> None:
    with contextlib.suppress(Exception):
        client = await pending
        await client.close()


def parse_invite(message: str) -> dict[str, Any]:
    """What the control plane needs from an INVITE: who calls, which number, context headers."""
    head = message.replace("\r\n", "\n").split("\n\n", 1)[0]
    request_line, _, header_text = head.partition("\n")
    parsed = HeaderParser().parsestr(header_text)
    by_name: dict[str, str] = {}  # header names are case-insensitive; first occurrence wins
    context: dict[str, str] = {}  # X-* and User-to-User, as the caller spelled them
    for name, value in parsed.items():
        text = " ".join(str(value).split())  # unfold continuation lines
        key = _COMPACT.get(name.lower(), name).lower()
        by_name.setdefault(key, text)
        if key.startswith("x-") or key == "user-to-user":
            context.setdefault(name, text)
    parts = request_line.split()
    request_uri = parts[1] if len(parts) >= 2 else ""
    return {
        "request_uri": request_uri,
        "request_user": _user_of(request_uri),
        "from": by_name.get("from", ""),
        "from_user": _user_of(by_name.get("from", "")),
        "to_user": _user_of(by_name.get("to", "")),
        "call_id": by_name.get("call-id", ""),
        "headers": context,
    }


def _user_of(uri: str) -> str:
    """`"Alice" <sip:+4412345@host;user=phone>;tag=1` -> `+4412345`; `tel:+44-20-7946`
    -> `+44207946` (visual separators dropped, %-escapes decoded)."""
    text = uri
    if "<" in text:
        text = text.split("<", 1)[1].split(">", 1)[0]
    scheme, colon, rest = text.strip().partition(":")
    scheme = scheme.lower()
    if not colon or scheme not in ("sip", "sips", "tel"):
        return ""
    if scheme == "tel":
        user = rest.split(";", 1)[0]
        return re.sub(r"[-.() ]", "", unquote(user))
    user = rest.split("@", 1)[0] if "@" in rest else ""
    return unquote(user.split(";", 1)[0])


def _stale(stamp: str) -> bool:
    try:
        return time.time() - float(stamp) > STALE_INVITE_SECONDS
    except ValueError:
        return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ivr-media-worker")
    parser.add_argument("--name", required=True)
    parser.add_argument("--control", required=True, help="the control plane's Unix socket")
    parser.add_argument("--options", default="{}", help="WorkerOptions as JSON")
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        stream=sys.stderr,
        format="%(levelname)s %(name)s: %(message)s",
    )
    options = WorkerOptions.from_json(args.options)
    worker = MediaWorker(args.name, args.control, options)
    status = 0
    try:
        asyncio.run(worker.run())
    except Exception:
        log.exception("media worker %s failed", args.name)
        status = 1
    worker.account = None  # type: ignore[assignment]
    worker.legs.clear()
    worker.pending.clear()
    shutdown_and_exit(status=status)  # also when start_endpoint failed half way
    return status


if __name__ == "__main__":
    sys.exit(main())
