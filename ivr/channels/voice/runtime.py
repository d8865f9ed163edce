"""Bringing phone calls up inside `ivr serve`: speech workers, then media workers, then calls.

Order matters and is reversed on the way down: the speech workers load their models before a
call can need them; the gateway's socket exists before a media worker dials it; media workers
stop (hanging up their calls) before the speech workers they use.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import socket
import sys
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from ivr.channels.voice.gateway import MediaGateway
from ivr.channels.voice.phone import PhoneService
from ivr.channels.voice.prompts import PromptAudio, VoiceOf
from ivr.config import ConfigError, Settings, parse_pairs, port_range
from ivr.conversation_service import ConversationService
from ivr.media.endpoint import EndpointOptions
from ivr.media.worker import WorkerOptions
from ivr.workers.supervisor import ChildSpec, Supervisor

log = logging.getLogger("ivr.voice")

SPEECH_READY_TIMEOUT = 60.0  # a cold Vosk model takes a few seconds to load
MEDIA_READY_TIMEOUT = 20.0


def socket_accepts(path: str) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        _, writer = await asyncio.open_unix_connection(path)
        writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await writer.wait_closed()
        return True

    return check


def check_sip_port_free(host: str, port: int, transports: set[str]) -> None:
    """Refuse to start with a clear message when another program holds the SIP port (the media
    worker would otherwise fail in a restart loop with pjsip's terse error)."""
    kinds = [(socket.SOCK_DGRAM, "udp")] if "udp" in transports else []
    kinds += [(socket.SOCK_STREAM, "tcp")] if "tcp" in transports else []
    for kind, name in kinds:
        with socket.socket(socket.AF_INET, kind) as probe:
            try:
                probe.bind((host, port))
            except OSError as exc:
                raise ConfigError(
                    f"[sip] cannot listen on {name} {host}:{port}: {exc.strerror or exc} "
                    "(another SIP server? set [sip] port or IVR_SIP_PORT)"
                ) from None


def endpoint_options(settings: Settings) -> EndpointOptions:
    sip = settings.sip
    transports = {t.strip().lower() for t in sip.transports.split(",")}
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


class ReconnectingTts:
    """The TTS worker's client, reconnected after the worker was restarted."""

    def __init__(self, socket_path: str) -> None:
        self.socket_path = socket_path
        self._client: Any = None

    async def _call(self, method: str, *args: str) -> str:
        from ivr.speech.tts.client import TtsClient

        for attempt in (1, 2):
            if self._client is None:
                self._client = await TtsClient.connect(self.socket_path)
            try:
                return str(await getattr(self._client, method)(*args))
            except (ConnectionError, OSError, EOFError) as exc:
                if attempt == 2:
                    raise
                log.warning("TTS worker connection lost (%s): reconnecting", exc)
                with contextlib.suppress(Exception):
                    await self._client.close()
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


@contextlib.asynccontextmanager
async def phone_calls(
    settings: Settings, supervisor: Supervisor, conversations: ConversationService
) -> AsyncIterator[PhoneService]:
    sip, speech = settings.sip, settings.speech
    if sip.media_workers > 1:
        raise ConfigError(
            f"{settings.source}: [sip] media_workers = {sip.media_workers}: several media "
            "workers need Kamailio in front of them, which is not wired in yet; use 1"
        )
    check_sip_port_free(sip.host, sip.port, {t.strip().lower() for t in sip.transports.split(",")})
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
        phone = PhoneService(sip, conversations, prompts, speech.end_silence)
        options = WorkerOptions(
            endpoint=endpoint_options(settings),
            asr_sockets=tuple(asr_sockets),
            max_call_seconds=float(sip.max_call_seconds),
            dtmf_methods=tuple(m.strip().lower() for m in sip.dtmf.split(",") if m.strip()),
            registrar=sip.registrar,
            username=sip.username,
            password=sip.password,
            realm=sip.realm,
            register_interval=sip.register_interval,
        )
        async with MediaGateway(f"{run_dir}/media.sock", phone.on_incoming) as gateway:
            name = "media-1"
            media = await supervisor.start(
                ChildSpec(
                    name=name,
                    argv=[
                        python,
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
                    ready_check=lambda: _ready(gateway, name),
                    ready_timeout=MEDIA_READY_TIMEOUT,
                )
            )
            started.append(name)
            await media.wait_ready(MEDIA_READY_TIMEOUT)
            log.info("answering SIP calls on %s:%s (%s)", sip.host, sip.port, sip.transports)
            yield phone
            await supervisor.stop(name)  # hangs up its calls before the gateway goes
            started.remove(name)
    finally:
        await tts.close()
        for name in reversed(started):
            with contextlib.suppress(Exception):
                await supervisor.stop(name)
        shutil.rmtree(run_dir, ignore_errors=True)


async def _ready(gateway: MediaGateway, name: str) -> bool:
    return gateway.ready(name)
