"""Outbound calls (customer callbacks): `ivr serve` dials real SIP peers.

The callee is the `ivr call answer` softphone (pjsua2, another process), which reports the
INVITE it got and how much speech it heard; sipp plays a busy phone; an unused UDP port plays
a phone nobody answers.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from ivr.channels.voice.channel import VoiceChannel
from ivr.channels.voice.gateway import DialFailed, MediaGateway
from ivr.channels.voice.phone import PhoneService
from ivr.config import ConfigError, SipSettings, load_settings
from ivr.flow.channel import Prompt
from ivr.web.keys import PHONE
from tests.serve_fixtures import ServeApp, wait_until
from tests.test_softphone import BUSY
from tests.test_voice_calls import loudness_by_frame
from tests.voice_fixtures import (
    VoiceServer,
    answering_softphone,
    free_udp_port,
    start_voice_server,
)

pytestmark = pytest.mark.timeout(120)

NUMBER = "+15550100"
GREETING = "Hello, this is Northwind Bank calling you back."


async def callback_server(serve_app: ServeApp, tmp_path: Path, port: int) -> VoiceServer:
    return await start_voice_server(
        serve_app, tmp_path, callback_uri=f"sip:{{number}}@127.0.0.1:{port}"
    )


def phone_of(server: VoiceServer) -> PhoneService:
    phone = server.served.app[PHONE]
    assert isinstance(phone, PhoneService)
    return phone


def gateway_of(server: VoiceServer) -> MediaGateway:
    gateway = phone_of(server).gateway
    assert gateway is not None
    return gateway


class Callee:
    """`ivr call answer` on a port: it answers one call, listens, and reports."""

    def __init__(self, process: asyncio.subprocess.Process, recording: Path) -> None:
        self.process = process
        self.recording = recording

    async def report(self) -> dict[str, Any]:
        out, err = await asyncio.wait_for(self.process.communicate(), 40)
        assert self.process.returncode == 0, err.decode()[-2000:]
        return dict(json.loads(out.decode().strip().splitlines()[-1]))


@pytest.fixture
async def callee(tmp_path: Path) -> AsyncIterator[tuple[int, Callee]]:
    """A softphone answering on a free port: waits for speech, then for its end, then for the
    far end's hang-up, recording what it hears."""
    port = free_udp_port()
    recording = tmp_path / "callee.wav"
    options = ("--record", str(recording), "--timeout", "30",
               "--do", "wait-speech", "--do", "wait-prompt", "--hold", "15")  # fmt: skip
    async with answering_softphone(tmp_path, port, *options) as process:
        yield port, Callee(process, recording)


def _udp_taken(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


# A phone that rings until the caller gives up: 180, then the CANCEL's 200 and the INVITE's
# 487 (whose CSeq is the INVITE's, not the CANCEL's: taken from the INVITE).
RINGING = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="ringing">
  <recv request="INVITE">
    <action>
      <ereg regexp="([0-9]+) INVITE" search_in="hdr" header="CSeq:" assign_to="all,cseq"/>
    </action>
  </recv>
  <Reference variables="all"/>
  <send>
    <![CDATA[
      SIP/2.0 180 Ringing
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

    ]]>
  </send>
  <recv request="CANCEL"/>
  <send>
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

    ]]>
  </send>
  <send>
    <![CDATA[
      SIP/2.0 487 Request Terminated
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      CSeq: [$cseq] INVITE
      Content-Length: 0

    ]]>
  </send>
  <recv request="ACK"/>
</scenario>
"""


class Sipp:
    """sipp as a UAS playing one call of a scenario."""

    def __init__(self, process: asyncio.subprocess.Process, port: int, log: Path) -> None:
        self.process = process
        self.port = port
        self.log = log

    async def finished(self, timeout: float = 10.0) -> int:
        """sipp's exit status once its call is over: 0 when the scenario ran to its end."""
        return await asyncio.wait_for(self.process.wait(), timeout)


@pytest.fixture
async def sipp(tmp_path: Path) -> AsyncIterator[Callable[[str], Awaitable[Sipp]]]:
    """Start sipp with a scenario (XML text); returns it once its SIP port is bound."""
    if shutil.which("sipp") is None:
        pytest.skip("sipp (sip-tester) missing")
    started: list[Sipp] = []

    async def start(scenario: str) -> Sipp:
        port, media = free_udp_port(), free_udp_port()
        path = tmp_path / f"scenario-{len(started)}.xml"
        path.write_text(scenario)
        log = path.with_suffix(".log")
        with log.open("w") as out:
            process = await asyncio.create_subprocess_exec(
                "sipp", "-sf", str(path), "-i", "127.0.0.1", "-mi", "127.0.0.1",
                "-p", str(port), "-mp", str(media), "-m", "1", "-nostdin", "-timeout", "40s",
                cwd=tmp_path, stdout=out, stderr=out,
            )  # fmt: skip
        started.append(Sipp(process, port, log))

        async def bound() -> bool:
            assert process.returncode is None, log.read_text()
            return _udp_taken(port)

        await wait_until(bound, timeout=10)
        return started[-1]

    yield start
    for one in started:
        if one.process.returncode is None:
            one.process.kill()
        await one.process.wait()


async def test_a_callback_reaches_the_customer_with_the_context_and_is_heard(
    serve_app: ServeApp, tmp_path: Path, callee: tuple[int, Callee]
) -> None:
    port, phone = callee
    server = await callback_server(serve_app, tmp_path, port)
    channel = await phone_of(server).dial(NUMBER, {"X-Conversation-Id": "abc"})
    await channel.say(Prompt(GREETING))
    await channel.end("done")
    assert channel.call.ended is not None  # hung up after the prompt, not cut by a timeout
    report = await phone.report()
    assert report["request_uri"] == f"sip:{NUMBER}@127.0.0.1:{port}"
    assert report["headers"] == {"X-Conversation-Id": "abc"}
    assert report["hung_up_by"] == "remote"
    assert all(action["ok"] for action in report["actions"]), report
    assert report["heard_seconds"] > 1.5, report
    heard = loudness_by_frame(phone.recording)
    assert (heard > 1000).sum() > 50  # a second of loud 20 ms frames: speech, not line noise
    assert gateway_of(server).call_count == 0


async def test_a_busy_customer_fails_the_dial_with_486(
    serve_app: ServeApp, tmp_path: Path, sipp: Callable[[str], Awaitable[Sipp]]
) -> None:
    busy = await sipp(BUSY)
    server = await callback_server(serve_app, tmp_path, busy.port)
    with pytest.raises(DialFailed) as failed:
        await phone_of(server).dial(NUMBER, {"X-Conversation-Id": "abc"})
    assert (failed.value.status, failed.value.reason) == (486, "Busy Here")
    assert gateway_of(server).call_count == 0
    assert await busy.finished() == 0, busy.log.read_text()[-2000:]


async def test_a_ringing_phone_nobody_picks_up_is_cancelled(
    serve_app: ServeApp, tmp_path: Path, sipp: Callable[[str], Awaitable[Sipp]]
) -> None:
    ringing = await sipp(RINGING)
    server = await callback_server(serve_app, tmp_path, ringing.port)
    gateway = gateway_of(server)
    started = time.monotonic()
    with pytest.raises(DialFailed) as failed:
        await gateway.dial(f"sip:{NUMBER}@127.0.0.1:{ringing.port}", {}, timeout=2.0)
    assert (failed.value.status, failed.value.reason) == (408, "no answer")
    assert time.monotonic() - started < 4.0
    assert gateway.call_count == 0
    # sipp got the CANCEL and ACKed the 487: the scenario ran to its end.
    assert await ringing.finished() == 0, ringing.log.read_text()[-2000:]


async def test_an_unanswered_callback_is_cancelled_and_its_line_freed(
    serve_app: ServeApp, tmp_path: Path, callee: tuple[int, Callee]
) -> None:
    port, phone = callee
    server = await callback_server(serve_app, tmp_path, port)
    gateway = gateway_of(server)
    nobody = f"sip:{NUMBER}@127.0.0.1:{free_udp_port()}"  # no one listens: not even a 100
    started = time.monotonic()
    with pytest.raises(DialFailed) as failed:
        await gateway.dial(nobody, {"X-Conversation-Id": "late"}, timeout=2.0)
    assert (failed.value.status, failed.value.reason) == (408, "no answer")
    assert time.monotonic() - started < 4.0  # 2 s, and a loaded machine's slack
    assert gateway.call_count == 0
    channel = await phone_of(server).dial(NUMBER, {"X-Conversation-Id": "next"})
    await channel.say(Prompt(GREETING))
    await channel.end("done")
    report = await phone.report()
    assert report["headers"] == {"X-Conversation-Id": "next"}
    assert report["heard_seconds"] > 1.5, report


async def test_a_dial_shows_the_caller_id_it_is_given(
    serve_app: ServeApp, tmp_path: Path, callee: tuple[int, Callee]
) -> None:
    port, phone = callee
    server = await callback_server(serve_app, tmp_path, port)
    uri = f"sip:{NUMBER}@127.0.0.1:{port}"
    call = await gateway_of(server).dial(uri, {}, from_user="+442079460000")
    channel = VoiceChannel(call, phone_of(server).prompts)
    await channel.say(Prompt(GREETING))
    await channel.end("done")
    report = await phone.report()
    assert report["from"].startswith("sip:+442079460000@"), report["from"]


async def test_without_a_callback_uri_there_are_no_outbound_calls() -> None:
    phone = PhoneService(SipSettings(), None, None, 0.3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"\[sip\] callback_uri is not set"):
        await phone.dial(NUMBER, {})


@pytest.mark.parametrize("number", ["", "1000@evil.example.com", "+1 555", "1;transport=tcp"])
async def test_a_number_that_would_change_the_uri_is_refused(number: str) -> None:
    sip = SipSettings(callback_uri="sip:{number}@trunk.example.com")
    phone = PhoneService(sip, None, None, 0.3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="cannot call"):
        await phone.dial(number, {})


@pytest.mark.parametrize("uri", ["{number}@trunk.example.com", "sip:1000@trunk.example.com"])
def test_a_callback_uri_without_scheme_or_number_is_a_config_error(
    tmp_path: Path, uri: str
) -> None:
    conf = tmp_path / "ivr.conf"
    conf.write_text(f"[sip]\ncallback_uri = {uri}\n")
    with pytest.raises(ConfigError, match=r"\[sip\] callback_uri: expected a sip: or sips: URI"):
        load_settings(conf, environ={})
