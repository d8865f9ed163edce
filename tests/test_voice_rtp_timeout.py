"""RTP inactivity (Asterisk's rtptimeout): a caller that stops sending audio is hung up.

`ivr serve` with `[sip] rtp_timeout = 2`; the callers are real peers. sipp sends no RTP at all
(a dead phone, a lost NAT binding): the media worker hangs up with a BYE and the conversation
records why. A softphone sends audio the whole time and is never cut, and a call that sipp puts
on hold (a re-INVITE with a=sendonly) is exempt however long the hold lasts.
Every port is picked at run time; every wait is bounded and waits for an event.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from ivr.conversation import Conversation, Role
from ivr.web.keys import CONVERSATIONS, STORE
from tests.serve_fixtures import ServeApp, wait_until
from tests.voice_fixtures import VoiceServer, free_udp_port, start_voice_server

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp (sip-tester) is not installed"),
]

SIPP_DIR = Path(__file__).parent / "sipp"
RTP_TIMEOUT = 2
NO_RTP = f"no RTP from the caller for {RTP_TIMEOUT} s"
SIPP_HOLD_MS = 30_000  # sipp's own BYE comes this long after the call is up (or on hold)


async def run_sipp(server: VoiceServer, scenario: str, workdir: Path, hold_ms: int) -> int:
    """One sipp call to the bank flow's number from a scenario in tests/sipp; its exit code
    (1 when the far end hung up first: sipp counts that call as failed)."""
    workdir.mkdir(parents=True, exist_ok=True)  # sipp writes its trace files here
    argv = [
        shutil.which("sipp") or "sipp",
        f"127.0.0.1:{server.sip_port}",
        "-sf", str(SIPP_DIR / scenario),
        "-s", "1000",
        "-i", "127.0.0.1",
        "-p", str(free_udp_port()),
        "-mi", "127.0.0.1",
        "-mp", str(free_udp_port()),  # never sipp's default 6000 (nothing is sent there)
        "-m", "1", "-l", "1",
        "-d", str(hold_ms),
        "-recv_timeout", "10000",
        "-timeout", "60", "-timeout_error",
        "-nostdin", "-trace_err",
    ]  # fmt: skip
    proc = await asyncio.create_subprocess_exec(
        *argv,
        cwd=workdir,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        return await asyncio.wait_for(proc.wait(), hold_ms / 1000 + 30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def ended_conversation(server: VoiceServer, timeout: float) -> Conversation:
    """The call's conversation once its run is over (the call ended), within `timeout`."""

    async def finished() -> Conversation | None:
        recent = await server.served.app[STORE].list_recent(1)
        if recent and server.served.app[CONVERSATIONS].live(recent[0].id) is None:
            return recent[0]
        return None

    return await wait_until(finished, timeout=timeout)


def why_it_ended(conv: Conversation) -> str | None:
    left = [
        t for t in conv.timeline if t.role is Role.SYSTEM and t.text.startswith("customer left")
    ]
    return str(left[-1].meta.get("reason")) if left else None


@pytest.fixture
async def server(serve_app: ServeApp, tmp_path: Path) -> VoiceServer:
    return await start_voice_server(serve_app, tmp_path, rtp_timeout=RTP_TIMEOUT)


async def test_a_caller_who_sends_no_audio_is_hung_up_and_the_record_says_why(
    server: VoiceServer, tmp_path: Path
) -> None:
    sipp = asyncio.ensure_future(
        run_sipp(server, "uac_through_proxy.xml", tmp_path / "dead", SIPP_HOLD_MS)
    )
    try:
        # Well before sipp's own BYE: the server hung up.
        conv = await ended_conversation(server, timeout=SIPP_HOLD_MS / 1000 / 2)
        assert why_it_ended(conv) == NO_RTP
        assert await sipp == 1  # sipp got a BYE it did not expect: its call "failed"
    finally:
        sipp.cancel()


async def test_a_caller_who_keeps_sending_audio_is_not_cut(server: VoiceServer) -> None:
    # The softphone sends RTP all along (silence too); it is the one that hangs up, well after
    # the timeout.
    result = await server.call("1000", "wait-prompt", f"silence {RTP_TIMEOUT * 2}", "hangup")
    assert result.ok, result.outcome
    assert result.outcome["hung_up_by"] == "local"
    conv = await server.last_conversation()
    assert why_it_ended(conv) != NO_RTP


async def test_a_call_on_hold_is_not_cut_however_long_the_hold(
    server: VoiceServer, tmp_path: Path
) -> None:
    hold_ms = RTP_TIMEOUT * 3 * 1000
    code = await run_sipp(server, "uac_hold.xml", tmp_path / "hold", hold_ms)
    assert code == 0  # sipp held the call, then hung up itself: a successful call for it
    conv = await ended_conversation(server, timeout=10)
    assert why_it_ended(conv) != NO_RTP
