"""Bringing phone calls up inside `ivr serve`: speech workers, then media workers, then calls.

Order matters and is reversed on the way down: the speech workers load their models before a
call can need them; the gateway's socket exists before a media worker dials it; media workers
stop (hanging up their calls) before the speech workers they use.

With one media worker, it binds the public SIP port itself. With several (`[sip] media_workers`,
4 calls each), each binds a port of its own (`worker_base_port`...) and Kamailio, started once
every worker said hello, is the single SIP address in front of them (`ivr.workers.kamailio`).
On the way down Kamailio first stops taking calls (it answers new INVITEs 503), then the workers
hang up theirs (the BYEs still pass through Kamailio, which record-routes), then Kamailio stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import shutil
import socket
import ssl
import sys
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from ivr.channels.voice.browser import BrowserCalls
from ivr.channels.voice.gateway import MediaGateway
from ivr.channels.voice.phone import PhoneService
from ivr.channels.voice.prompts import PromptAudio, VoiceOf
from ivr.config import (
    ConfigError,
    Settings,
    SipSettings,
    check_workers_behind_kamailio,
    parse_pairs,
    port_range,
)
from ivr.conversation_service import ConversationService
from ivr.media.endpoint import EndpointOptions
from ivr.media.worker import WorkerOptions
from ivr.workers import kamailio
from ivr.workers.supervisor import Child, ChildSpec, Supervisor

log = logging.getLogger("ivr.voice")

SPEECH_READY_TIMEOUT = 60.0  # a cold Vosk model takes a few seconds to load
MEDIA_READY_TIMEOUT = 20.0
KAMAILIO_READY_TIMEOUT = 15.0  # it answers within 0.2 s; this covers a restart after a crash


def socket_accepts(path: str) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        _, writer = await asyncio.open_unix_connection(path)
        writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await writer.wait_closed()
        return True

    return check


def check_sip_port_free(host: str, port: int, transports: set[str], key: str = "port") -> None:
    """Refuse to start with a clear message when another program holds the SIP port (the media
    worker would otherwise fail in a restart loop with pjsip's terse error)."""
    kinds = [(socket.SOCK_DGRAM, "udp")] if "udp" in transports else []
    kinds += [(socket.SOCK_STREAM, "tcp")] if "tcp" in transports else []
    kinds += [(socket.SOCK_STREAM, "tls")] if "tls" in transports else []  # TLS runs on TCP
    for kind, name in kinds:
        with socket.socket(socket.AF_INET, kind) as probe:
            try:
                probe.bind((host, port))
            except OSError as exc:
                raise ConfigError(
                    f"[sip] cannot listen on {name} {host}:{port}: {exc.strerror or exc} "
                    f"(another SIP server? set [sip] {key} or IVR_SIP_{key.upper()})"
                ) from None


def check_tls_files(sip: SipSettings) -> None:
    """Refuse to start with TLS files pjsip could not use, naming the setting. pjsip itself
    reads them only when a caller connects, then fails that handshake (and every later one)
    with nothing in the log a caller or an operator would connect to the setting."""
    if "tls" not in sip_transports(sip):
        return
    texts: dict[str, str] = {}
    for key in ("tls_certificate", "tls_private_key", "tls_ca"):
        path = getattr(sip, key)
        if not path and key == "tls_ca":
            continue  # optional
        if not path:
            raise ConfigError(f"[sip] {key}: tls is among the transports and needs a PEM file")
        try:
            texts[key] = Path(path).read_text(encoding="ascii", errors="replace")
        except OSError as exc:
            raise ConfigError(f"[sip] {key}: {path}: {exc.strerror or exc}") from None
    for key in ("tls_certificate", "tls_ca"):
        if key in texts and "-----BEGIN CERTIFICATE-----" not in texts[key]:
            raise ConfigError(f"[sip] {key}: {getattr(sip, key)}: no PEM certificate in it")
        if key in texts:
            try:  # every certificate in the file must parse, not only the first
                ssl.create_default_context(cafile=getattr(sip, key))
            except ssl.SSLError as exc:
                raise ConfigError(
                    f"[sip] {key}: {getattr(sip, key)}: not a valid certificate "
                    f"({exc.reason or exc})"
                ) from None
    key_text = texts["tls_private_key"]
    if "PRIVATE KEY-----" not in key_text:
        raise ConfigError(f"[sip] tls_private_key: {sip.tls_private_key}: no PEM private key in it")
    if "ENCRYPTED" in key_text:
        raise ConfigError(
            f"[sip] tls_private_key: {sip.tls_private_key}: the key is protected by a "
            "passphrase; store it unencrypted (readable by this service only)"
        )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        # A password callback, so that a key OpenSSL still thinks encrypted cannot prompt.
        context.load_cert_chain(sip.tls_certificate, sip.tls_private_key, password=lambda: b"")
    except ssl.SSLError as exc:
        why = (
            "it does not match"
            if "MISMATCH" in str(exc)
            else f"unusable ({exc.reason or exc}) with"
        )
        raise ConfigError(
            f"[sip] tls_private_key: {sip.tls_private_key}: {why} the certificate "
            f"{sip.tls_certificate} ([sip] tls_certificate)"
        ) from None


def sip_transports(sip: SipSettings) -> set[str]:
    return {t.strip().lower() for t in sip.transports.split(",") if t.strip()}


def endpoint_options(settings: Settings) -> EndpointOptions:
    """The endpoint of the single media worker: it binds the public SIP port itself."""
    sip = settings.sip
    transports = sip_transports(sip)
    rtp_first, rtp_count = port_range(sip.rtp_ports)
    return EndpointOptions(
        host=sip.host,
        udp_port=sip.port if "udp" in transports else None,
        tcp_port=sip.port if "tcp" in transports else None,
        tls_port=sip.tls_port if "tls" in transports else None,
        tls_certificate=sip.tls_certificate,
        tls_private_key=sip.tls_private_key,
        tls_ca=sip.tls_ca,
        public_address=sip.public_address,
        rtp_port=rtp_first,
        rtp_port_range=rtp_count,
        codecs=tuple(c.strip().upper() for c in sip.codecs.split(",") if c.strip()),
    )


def fronted_endpoint_options(settings: Settings, index: int) -> EndpointOptions:
    """The endpoint of media worker `index` (0-based) behind Kamailio: UDP on a port of its own
    (Kamailio speaks UDP to the workers whatever the callers use) and its own slice of the RTP
    ports, so two workers never race for a port and a firewall rule can name each one."""
    sip = settings.sip
    rtp_first, rtp_count = port_range(sip.rtp_ports)
    share = (rtp_count // sip.media_workers) & ~1  # even: pjsua takes RTP + RTCP pairs
    return dataclasses.replace(
        endpoint_options(settings),
        udp_port=sip.worker_ports()[index],
        tcp_port=None,
        tls_port=None,
        rtp_port=rtp_first + index * share,
        rtp_port_range=share,
    )


class ReconnectingTts:
    """The TTS worker's client, reconnected after the worker was restarted."""

    def __init__(self, socket_path: str) -> None:
        self.socket_path = socket_path
        self._client: Any = None
        self._connecting = asyncio.Lock()  # one connection, however many calls ask at once

    async def _connected(self) -> Any:
        from ivr.speech.tts.client import TtsClient

        async with self._connecting:
            if self._client is None or self._client.closed:
                self._client = await TtsClient.connect(self.socket_path)
            return self._client

    async def _call(self, method: str, *args: str) -> str:
        for attempt in (1, 2):
            client = await self._connected()
            try:
                return str(await getattr(client, method)(*args))
            except (ConnectionError, OSError, EOFError) as exc:
                if attempt == 2:
                    raise
                log.warning("TTS worker connection lost (%s): reconnecting", exc)
                async with self._connecting:
                    if self._client is client:
                        with contextlib.suppress(Exception):
                            await client.close()
                        self._client = None
        raise AssertionError("unreachable")

    async def render(self, text: str, language: str) -> str:
        return await self._call("render", text, language)

    async def convert(self, source: str) -> str:
        return await self._call("convert", source)

    async def close(self) -> None:
        if self._client is not None:
            with contextlib.suppress(Exception):
                await self._client.close()
            self._client = None


@dataclasses.dataclass(frozen=True)
class Voice:
    """The voice side of the control plane: phone calls and the widget's browser calls."""

    phone: PhoneService
    browser: BrowserCalls


@contextlib.asynccontextmanager
async def voice_calls(
    settings: Settings, supervisor: Supervisor, conversations: ConversationService
) -> AsyncIterator[Voice]:
    sip, speech = settings.sip, settings.speech
    fronted = sip.media_workers > 1  # Kamailio in front of the workers
    check_sip_port_free(sip.host, sip.port, sip_transports(sip) - {"tls"})
    if "tls" in sip_transports(sip):
        check_tls_files(sip)
        check_sip_port_free(sip.host, sip.tls_port, {"tls"}, key="tls_port")
    kamailio_binary = ""
    if fronted:
        check_workers_behind_kamailio(sip)
        kamailio_binary = kamailio.kamailio_binary()  # not installed: say so before starting
        for port in sip.worker_ports():
            check_sip_port_free(sip.host, port, {"udp"}, key="worker_base_port")
    run_dir = tempfile.mkdtemp(prefix="ivr-")  # short: Unix socket paths max out at 107 bytes
    python = sys.executable
    started: list[str] = []
    tts = ReconnectingTts(f"{run_dir}/tts.sock")
    try:
        cache_dir = str(Path(speech.cache_dir).resolve())
        specs = [
            ChildSpec(
                name="tts",
                argv=[
                    python,
                    "-m",
                    "ivr.speech.worker",
                    "--socket",
                    f"{run_dir}/tts.sock",
                    "--role",
                    "tts",
                    "--cache",
                    cache_dir,
                    "--voices",
                    speech.tts_voices,
                    "--rate",
                    str(speech.tts_rate),
                ],
                restart="always",
                ready_check=socket_accepts(f"{run_dir}/tts.sock"),
                ready_timeout=SPEECH_READY_TIMEOUT,
            )
        ]
        asr_sockets = [f"{run_dir}/asr-{i + 1}.sock" for i in range(speech.asr_workers)]
        for index, path in enumerate(asr_sockets):
            specs.append(
                ChildSpec(
                    name=f"asr-{index + 1}",
                    argv=[
                        python,
                        "-m",
                        "ivr.speech.worker",
                        "--socket",
                        path,
                        "--role",
                        "asr",
                        "--asr",
                        speech.asr,
                    ],
                    restart="always",
                    ready_check=socket_accepts(path),
                    ready_timeout=SPEECH_READY_TIMEOUT,
                )
            )
        children = [await supervisor.start(spec) for spec in specs]
        started += [spec.name for spec in specs]
        for child in children:
            await child.wait_ready(SPEECH_READY_TIMEOUT)

        voices = parse_pairs(speech.tts_voices)
        prompts = PromptAudio(
            Path(settings.flows.prompts), Path(cache_dir), VoiceOf(voices, speech.tts_rate), tts
        )
        phone = PhoneService(
            sip, conversations, prompts, speech.end_silence, speech.complete_silence
        )
        async with MediaGateway(f"{run_dir}/media.sock", phone.on_incoming) as gateway:
            phone.gateway = gateway  # for the calls it places (`PhoneService.dial`)
            names = [f"media-{index + 1}" for index in range(sip.media_workers)]
            media: list[Child] = []
            for index, name in enumerate(names):
                options = worker_options(settings, index, tuple(asr_sockets))
                media.append(await supervisor.start(media_spec(name, options, run_dir, gateway)))
                started.append(name)
            for child in media:  # they start side by side; all must have said hello
                await child.wait_ready(MEDIA_READY_TIMEOUT)
            setup = None
            if fronted:
                setup = kamailio.KamailioSetup.from_settings(sip, f"{run_dir}/kamailio")
                kamailio.write_files(setup)
                proxy = await supervisor.start(kamailio.kamailio_spec(setup, kamailio_binary))
                started.append("kamailio")
                await wait_for_kamailio(proxy, setup)
                log.info(
                    "answering SIP calls on %s:%s (%s) through Kamailio, %d media workers on "
                    "UDP ports %s",
                    sip.host,
                    sip.port,
                    sip.transports,
                    len(names),
                    ", ".join(map(str, sip.worker_ports())),
                )
            else:
                log.info("answering SIP calls on %s:%s (%s)", sip.host, sip.port, sip.transports)
            browser = BrowserCalls(
                gateway,
                prompts,
                speech.end_silence,
                speech.complete_silence,
                settings.webrtc.ice_server_list(),
            )
            yield Voice(phone, browser)
            if setup is not None:
                await drain(setup)
            # Each hangs up its calls before the gateway goes. Side by side: pjsua's shutdown
            # takes about a second per worker.
            stops = await asyncio.gather(
                *(supervisor.stop(name) for name in names), return_exceptions=True
            )
            for name, outcome in zip(names, stops, strict=True):
                if isinstance(outcome, BaseException):  # tried again below
                    log.error("stopping %s failed: %r", name, outcome)
                else:
                    started.remove(name)
            if setup is not None:
                await supervisor.stop("kamailio")
                started.remove("kamailio")
    finally:
        await tts.close()
        for name in reversed(started):
            with contextlib.suppress(Exception):
                await supervisor.stop(name)
        shutil.rmtree(run_dir, ignore_errors=True)


def worker_options(settings: Settings, index: int, asr_sockets: tuple[str, ...]) -> WorkerOptions:
    """What media worker `index` (0-based) is told at start."""
    sip = settings.sip
    fronted = sip.media_workers > 1
    contact_host = ""
    if fronted and sip.public_address:
        # The transport advertises the public address, but in-dialog requests reach a worker
        # behind Kamailio at its internal address (the Contact is Kamailio's next hop: it
        # record-routes, so callers still send everything to Kamailio).
        contact_host = f"{kamailio.local_host(sip.host)}:{sip.worker_ports()[index]}"
    return WorkerOptions(
        endpoint=fronted_endpoint_options(settings, index)
        if fronted
        else endpoint_options(settings),
        asr_sockets=asr_sockets,
        max_call_seconds=float(sip.max_call_seconds),
        rtp_timeout=float(sip.rtp_timeout),
        dtmf_methods=tuple(m.strip().lower() for m in sip.dtmf.split(",") if m.strip()),
        registrar=sip.registrar,  # refused with several workers (see check_workers_...)
        username=sip.username,
        password=sip.password,
        realm=sip.realm,
        register_interval=sip.register_interval,
        contact_host=contact_host,
        webrtc_max_calls=settings.webrtc.max_calls_per_worker if settings.webrtc.enabled else 0,
        webrtc_addresses=settings.webrtc.address_list(),
        ice_servers=tuple(settings.webrtc.ice_server_list()),
    )


def media_spec(name: str, options: WorkerOptions, run_dir: str, gateway: MediaGateway) -> ChildSpec:
    async def said_hello() -> bool:
        return gateway.ready(name)

    return ChildSpec(
        name=name,
        argv=[
            sys.executable,
            "-m",
            "ivr.media.worker",
            "--name",
            name,
            "--control",
            f"{run_dir}/media.sock",
            "--options",
            options.to_json(),
        ],
        restart="always",
        ready_check=said_hello,
        ready_timeout=MEDIA_READY_TIMEOUT,
    )


async def wait_for_kamailio(child: Child, setup: kamailio.KamailioSetup) -> None:
    try:
        await child.wait_ready(KAMAILIO_READY_TIMEOUT)
    except TimeoutError:
        raise RuntimeError(
            f"Kamailio did not answer on {setup.probe_host}:{setup.port} within "
            f"{KAMAILIO_READY_TIMEOUT:.0f} s; its own messages are in the log "
            f"(ivr.workers.kamailio), its configuration in {setup.config_path}"
        ) from None


async def drain(setup: kamailio.KamailioSetup) -> None:
    """Have Kamailio answer new INVITEs 503 while the workers hang up (best effort: a Kamailio
    that is down takes no calls anyway)."""
    try:
        await kamailio.rpc(setup.run_dir, "pv.shvSet", "draining", "int", 1)
    except (OSError, RuntimeError, TimeoutError, ValueError) as exc:
        log.warning("could not tell Kamailio to stop taking calls: %s", exc)
