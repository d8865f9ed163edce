"""Phone calls end to end: a pjsua2 softphone in another process dials `ivr serve`.

The server runs its real speech workers (PocketSphinx, pyttsx3) and a real media worker
(pjsua2); the caller speaks flite-generated English and presses keys, and the tests check what a
caller and the bank would notice: the path the flow took, the identity it verified, the
transcript it stored, and that the PIN is nowhere.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import wave
from pathlib import Path

import numpy as np
import pytest

from ivr.conversation import Role, Status
from ivr.web.keys import STORE, SUPERVISOR
from tests.serve_fixtures import ServeApp, wait_until
from tests.voice_fixtures import (
    VoiceServer,
    answering_softphone,
    free_udp_port,
    start_voice_server,
)

pytestmark = pytest.mark.timeout(120)

ACCOUNT, PIN = "12345678", "2580"
# The caller's part up to the bank's main menu: account number and PIN by keys.
VERIFIED = ("wait-prompt", f"dtmf {ACCOUNT}", "wait-prompt", f"dtmf {PIN}", "wait-prompt")


def texts(conv, role: Role) -> list[str]:  # type: ignore[no-untyped-def]
    return [t.text for t in conv.timeline if t.role is role]


async def test_keys_verify_the_caller_and_the_pin_is_never_logged_or_stored(
    voice_server: VoiceServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    result = await voice_server.call(
        "1000",
        "wait-prompt",  # welcome + account number question
        f"dtmf {ACCOUNT}#",  # the # after a complete entry is not taken as the (empty) PIN
        "wait-prompt",  # PIN question
        f"dtmf {PIN}",
        "wait-prompt",  # thank you + menu
        "dtmf 1",
        "wait-prompt",  # balance + anything else?
        "dtmf 2",
    )
    assert result.ok, result.outcome
    assert result.outcome["connected"] and result.outcome["hung_up_by"] == "remote"
    conv = await voice_server.last_conversation()
    assert conv.status is Status.ENDED
    assert conv.identity.verified and conv.identity.method == "pin"
    assert conv.identity.customer_id
    bot = texts(conv, Role.BOT)
    assert bot[0] == "Welcome to Northwind Bank."
    assert any(t.startswith("Your balance is") for t in bot)
    assert bot[-1] == "Thank you for calling. Goodbye."
    said = texts(conv, Role.CUSTOMER)
    assert said[0] == ACCOUNT and PIN not in said
    stored = repr(conv.to_dict()) + repr(conv.timeline)
    assert PIN not in stored
    assert PIN not in caplog.text  # neither the control plane nor the workers logged it
    assert all(t.channel == "sip" for t in conv.timeline)
    assert conv.contact.get("phone")  # the caller's number, for a later SMS


async def test_a_spoken_request_is_recognised_and_takes_the_flow_to_the_balance(
    voice_server: VoiceServer,
) -> None:
    result = await voice_server.call(
        "1000",
        *VERIFIED,
        'say "I want to check my account balance"',
        "wait-prompt",
        "hangup",
    )
    assert result.ok, result.outcome
    conv = await voice_server.last_conversation()
    menu_answer = [
        t for t in conv.timeline if t.role is Role.CUSTOMER and t.meta.get("kind") == "speech"
    ]
    assert menu_answer, conv.timeline
    assert "balance" in menu_answer[0].text
    assert conv.last_intent == "check_balance"
    assert any(t.text.startswith("Your balance is") for t in conv.timeline if t.role is Role.BOT)
    assert "customer left the sip channel" in texts(conv, Role.SYSTEM)


async def test_keys_sent_as_sip_info_work_too(voice_server: VoiceServer) -> None:
    result = await voice_server.call("1000", *VERIFIED, "hangup", extra=["--dtmf-method", "info"])
    assert result.ok, result.outcome
    conv = await voice_server.last_conversation()
    assert conv.identity.verified


async def test_a_caller_who_says_nothing_hears_the_no_input_prompt(
    voice_server: VoiceServer,
) -> None:
    result = await voice_server.call("1000", "wait-prompt", "wait-prompt", "hangup")
    assert result.ok, result.outcome
    conv = await voice_server.last_conversation()
    assert "no input" in texts(conv, Role.SYSTEM)


async def test_a_crashed_media_worker_ends_its_calls_in_the_record_and_is_replaced(
    voice_server: VoiceServer,
) -> None:
    supervisor = voice_server.served.app[SUPERVISOR]
    media = supervisor.children["media-1"]
    first_pid = media.pid
    assert first_pid is not None
    # The caller is never told (a killed worker sends no BYE): it hears silence, and gives up
    # after its own timeout.
    call = voice_server.call("1000", "wait-prompt", f"dtmf {ACCOUNT}", "wait-prompt", timeout=6)

    calling = asyncio.ensure_future(call)

    async def asked_for_pin() -> bool:
        recent = await voice_server.served.app[STORE].list_recent(1)
        return bool(recent) and recent[0].position.step == "verify"

    await wait_until(asked_for_pin, timeout=20)
    os.kill(first_pid, signal.SIGKILL)
    result = await calling
    assert not result.ok or result.outcome["hung_up_by"] == "remote"
    conv = await voice_server.last_conversation()
    left = [
        t for t in conv.timeline if t.role is Role.SYSTEM and t.text.startswith("customer left")
    ]
    assert left and left[-1].meta.get("reason") == "media worker lost"
    assert conv.slots.get("account_number") == ACCOUNT  # nothing said before is lost

    async def replaced() -> bool:
        return media.pid not in (None, first_pid) and media.state == "ready"

    await wait_until(replaced, timeout=20)
    again = await voice_server.call("1000", "wait-prompt", "hangup")
    assert again.ok, again.outcome


async def test_a_number_without_a_flow_is_refused_when_there_is_no_default(
    serve_app: ServeApp, tmp_path: Path
) -> None:
    server = await start_voice_server(serve_app, tmp_path, default_flow="")
    result = await server.call("4242", timeout=5)
    assert not result.outcome["connected"]
    assert result.outcome["sip_status"] == 404
    ok = await server.call("parcel", "wait-prompt", "hangup")  # listed by the parcel flow
    assert ok.ok, ok.outcome
    conv = await server.last_conversation()
    assert conv.position.flow == "parcel"


HANDOVER_FLOW = """
flow: handover
language: en
numbers: ["3000"]
start: hello
steps:
  hello:
    say: "Connecting you to a colleague."
    next: out
  out:
    transfer:
      sip: "sip:agent@127.0.0.1:{port}"
    on_failure: busy
  busy:
    end: "Sorry, nobody can take your call. Goodbye."
"""


async def test_a_transfer_hands_the_call_to_a_sip_uri_with_the_conversation_id(
    serve_app: ServeApp, flow_files: tuple[Path, Path], tmp_path: Path
) -> None:
    agent_port = free_udp_port()
    (flow_files[0] / "handover.yaml").write_text(HANDOVER_FLOW.format(port=agent_port))
    server = await start_voice_server(serve_app, tmp_path)
    async with answering_softphone(
        tmp_path, agent_port, "--hold", "0.5", "--timeout", "30"
    ) as agent:
        result = await server.call("3000", "expect-transfer", extra=["--follow-transfer"])
        out, _ = await asyncio.wait_for(agent.communicate(), 30)
    assert result.outcome["transfer_target"] == f"sip:agent@127.0.0.1:{agent_port}"
    answered = json.loads(out.decode().strip().splitlines()[-1])
    conv = await server.last_conversation()
    assert conv.status is Status.TRANSFERRED
    headers = answered["headers"]
    assert headers["X-Conversation-Id"] == conv.id
    payload, _, params = headers["User-to-User"].partition(";")
    assert params == "encoding=hex"
    assert json.loads(bytes.fromhex(payload))["id"] == conv.id


BARGE_FLOW = """
flow: barge
language: en
numbers: ["5000"]
start: question
steps:
  question:
    menu:
      prompt: >-
        You can say check balance, or agent. This prompt goes on for a long time, so that a
        caller who already knows what they want can interrupt it at any moment and does not
        have to wait until the very end of all these words.
      options:
        - {intent: check_balance, key: "1", next: done}
        - {intent: talk_to_agent, key: "0", next: done}
  done:
    end: "Thank you."
"""


async def test_speaking_during_a_question_stops_the_prompt_at_once(
    serve_app: ServeApp, flow_files: tuple[Path, Path], tmp_path: Path
) -> None:
    (flow_files[0] / "barge.yaml").write_text(BARGE_FLOW)
    server = await start_voice_server(serve_app, tmp_path)
    recording = tmp_path / "heard.wav"
    result = await server.call(
        "5000",
        "wait-speech",  # the long question has started
        'say "check my balance"',
        "wait-prompt",  # "Thank you." and the hang-up
        # Wideband: PocketSphinx's 16 kHz model misses this short phrase in G.711's 8 kHz.
        extra=["--record", str(recording), "--codec", "G722"],
    )
    assert result.ok, result.outcome
    said_at = next(a["at"] for a in result.outcome["actions"] if a["do"].startswith("say"))
    heard = loudness_by_frame(recording)
    # flite starts speaking ~0.22 s into its file. From 0.25 s after that until the caller
    # stops talking the bot is silent: the prompt (~10 s to go) was cut at once, and the
    # answer comes only after the caller's last word.
    window = heard[int((said_at + 0.47) / 0.02) : int((said_at + 1.1) / 0.02)]
    assert window.size and window.max() < 300, window.max()
    conv = await server.last_conversation()
    assert conv.last_intent == "check_balance"
    assert [t.text for t in conv.timeline if t.role is Role.BOT][-1] == "Thank you."


def loudness_by_frame(path: Path) -> np.ndarray:
    """RMS of each 20 ms frame of a 16 kHz mono recording."""
    with wave.open(str(path), "rb") as wav:
        samples = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2").astype(float)
    frames = samples[: samples.size // 320 * 320].reshape(-1, 320)
    return np.sqrt((frames**2).mean(axis=1))


async def test_a_refused_transfer_takes_the_flow_to_its_failure_step(
    serve_app: ServeApp, flow_files: tuple[Path, Path], tmp_path: Path
) -> None:
    (flow_files[0] / "handover.yaml").write_text(HANDOVER_FLOW.format(port=free_udp_port()))
    server = await start_voice_server(serve_app, tmp_path)
    # Without --follow-transfer the softphone declines the REFER (603): the caller stays.
    result = await server.call("3000", "expect-transfer", "wait-prompt")
    assert result.ok, result.outcome
    assert result.outcome["hung_up_by"] == "remote"
    conv = await server.last_conversation()
    assert conv.status is Status.ENDED and conv.handoff is None
    assert any(t.text.startswith("transfer to sip:agent@") and t.text.endswith("failed")
               for t in conv.timeline if t.role is Role.SYSTEM)  # fmt: skip
    assert texts(conv, Role.BOT)[-1] == "Sorry, nobody can take your call. Goodbye."


async def test_without_a_speech_recogniser_a_spoken_answer_does_not_hang_the_question(
    serve_app: ServeApp, flow_files: tuple[Path, Path], tmp_path: Path
) -> None:
    (flow_files[0] / "barge.yaml").write_text(BARGE_FLOW)
    server = await start_voice_server(serve_app, tmp_path)
    await server.served.app[SUPERVISOR].stop("asr-1")  # and it stays down
    result = await server.call(
        "5000",
        "wait-speech",
        'say "check my balance"',
        "wait-prompt",  # nothing understood: after the no-input time, the bot asks again
        "dtmf 1",  # keys still work
        "wait-prompt",
        extra=["--codec", "G722"],
        timeout=30,
    )
    assert result.ok, result.outcome
    conv = await server.last_conversation()
    assert "no input" in texts(conv, Role.SYSTEM)
    assert texts(conv, Role.CUSTOMER) == ["1"]
    assert texts(conv, Role.BOT)[-1] == "Thank you."
