"""The test softphone (`python -m ivr.softphone`) against real peers: sipp as a UAS (echoing our
audio, refusing, transferring with REFER) and a second softphone in answer mode.

Ports are picked free at run time; every wait is bounded and waits for an event (a ready file,
a process exit, a bound port), never a fixed sleep.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
import wave
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ivr.softphone.audio import SpeechDetector, frame_rms, read_wav, split_frames
from ivr.softphone.script import ScriptError, load_script, parse_action

ROOT = Path(__file__).resolve().parent.parent
PROCESS_SECONDS = 60  # hard bound on any one child process

needs_sipp = pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp (sip-tester) missing")
needs_flite = pytest.mark.skipif(shutil.which("flite") is None, reason="flite missing")


# ------------------------------------------------------------------ helpers


def free_udp_port(span: int = 1) -> int:
    """A UDP port on 127.0.0.1 that is free, as are the `span - 1` ports after it."""
    for _ in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        if port + span > 65535:
            continue
        if all(_udp_free(port + i) for i in range(span)):
            return port
    raise RuntimeError("no free UDP port range")


def _udp_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def wait_until(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)  # polling a condition, not waiting for one to probably hold


def softphone(*args: str) -> list[str]:
    return [sys.executable, "-m", "ivr.softphone", *args]


@dataclass
class Result:
    code: int
    outcome: dict[str, Any]
    stderr: str
    seconds: float


def call(*args: str) -> Result:
    started = time.monotonic()
    done = subprocess.run(
        softphone(*args), cwd=ROOT, capture_output=True, text=True, timeout=PROCESS_SECONDS
    )
    outcome = json.loads(done.stdout) if done.stdout.strip() else {}
    return Result(done.returncode, outcome, done.stderr, time.monotonic() - started)


class Background:
    """A child process we started, its output going to files (a pipe nobody reads until the
    end could fill up and stall it: sipp redraws its screen every second)."""

    def __init__(self, command: list[str], cwd: Path, logs: Path) -> None:
        self.out, self.err = logs.with_suffix(".out"), logs.with_suffix(".err")
        with self.out.open("w") as out, self.err.open("w") as err:
            self.process = subprocess.Popen(command, cwd=cwd, stdout=out, stderr=err, text=True)

    def finish(self, timeout: float = PROCESS_SECONDS) -> tuple[int, str, str]:
        code = self.process.wait(timeout=timeout)
        return code, self.out.read_text(), self.err.read_text()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


@pytest.fixture
def background(tmp_path: Path) -> Iterator[Any]:
    started: list[Background] = []

    def start(command: list[str], cwd: Path = ROOT) -> Background:
        child = Background(command, cwd, tmp_path / f"child-{len(started)}")
        started.append(child)
        return child

    yield start
    for child in started:
        child.kill()


@pytest.fixture
def answerer(background: Any, tmp_path: Path) -> Any:
    """Start a softphone in answer mode; returns (process, its SIP URI) once it listens."""

    def start(*args: str) -> tuple[Background, str]:
        ready = tmp_path / f"answer-{len(list(tmp_path.glob('answer-*')))}.ready"
        child = background(softphone("answer", "--ready-file", str(ready), *args))
        wait_until(lambda: ready.exists() or child.process.poll() is not None, 30, "the answerer")
        assert ready.exists(), child.finish()
        return child, json.loads(ready.read_text())["uri"]

    return start


@pytest.fixture
def sipp(background: Any, tmp_path: Path) -> Any:
    """Start sipp as a UAS (built-in scenario name or scenario XML text); returns (process,
    port) once its SIP port is bound."""

    def start(scenario: str, *extra: str) -> tuple[Background, int]:
        port, media = free_udp_port(), free_udp_port(span=4)  # sipp's echo uses mp and mp+2
        if scenario.lstrip().startswith("<"):
            path = tmp_path / "scenario.xml"
            path.write_text(scenario)
            chosen = ["-sf", str(path)]
        else:
            chosen = ["-sn", scenario]
        command = ["sipp", *chosen, "-i", "127.0.0.1", "-mi", "127.0.0.1", "-p", str(port),
                   "-mp", str(media), "-m", "1", "-nostdin", "-timeout", "40s", *extra]  # fmt: skip
        child = background(command, cwd=tmp_path)
        wait_until(
            lambda: not _udp_free(port) or child.process.poll() is not None, 10, "sipp to listen"
        )
        assert child.process.poll() is None, child.finish()
        return child, port

    return start


def assert_all_ok(result: Result) -> None:
    failed = [a for a in result.outcome.get("actions", []) if not a["ok"]]
    assert result.code == 0 and not failed, (result.outcome, result.stderr[-2000:])


# ------------------------------------------------------------------ the script


def test_unknown_action_suggests_the_closest_one(tmp_path: Path) -> None:
    script = tmp_path / "script.txt"
    script.write_text("wait-prompt\n# the account number\ndtfm 12345678#\n")
    with pytest.raises(ScriptError, match=r"script.txt:3: unknown action 'dtfm' \(did you mean"):
        load_script(script)


def test_pound_is_a_digit_not_a_comment() -> None:
    action = parse_action("dtmf 1234#", "--do 1")
    assert (action.name, action.arg) == ("dtmf", "1234#")
    assert parse_action("dtmf #", "--do 1").arg == "#"


def test_say_takes_quoted_or_plain_text() -> None:
    assert parse_action('say "I want my balance"', "x").arg == "I want my balance"
    assert parse_action("say I'm calling about my card", "x").arg == "I'm calling about my card"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("dtmf 12x", "dtmf digits must be"),
        ("silence", "silence needs seconds"),
        ("silence 0", "silence must be between 0 and 600 s"),
        ("hangup now", "hangup takes no argument"),
        ('say "unclosed', "bad quoting"),
    ],
)
def test_bad_actions_are_refused_with_their_place(line: str, message: str) -> None:
    with pytest.raises(ScriptError, match=f"^--do 2: {message}"):
        parse_action(line, "--do 2")


def test_bad_script_file_exits_2_naming_file_and_line(tmp_path: Path) -> None:
    script = tmp_path / "script.txt"
    script.write_text("# greet\nwait-prompt\ndtfm 1234\nhangup\n")
    result = call("sip:bank@127.0.0.1:5080", "--script", str(script))
    assert result.code == 2
    assert f"{script}:3: unknown action 'dtfm' (did you mean 'dtmf'?)" in result.stderr
    assert result.outcome == {}  # nothing dialled, nothing reported


def test_missing_wav_is_a_usage_error(tmp_path: Path) -> None:
    result = call("sip:bank@127.0.0.1:5080", "--do", "wait-prompt", "--do", "play nothere.wav")
    assert result.code == 2
    assert "--do 2: nothere.wav: no such file" in result.stderr


# ------------------------------------------------------------------ audio


def write_wav(path: Path, pcm: bytes, rate: int = 16000, channels: int = 1) -> None:
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(channels)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(pcm)


def test_wav_of_another_rate_and_layout_becomes_16k_mono(tmp_path: Path) -> None:
    path = tmp_path / "stereo8k.wav"
    write_wav(path, np.full(8000 * 2, 1000, dtype="<i2").tobytes(), rate=8000, channels=2)
    pcm = read_wav(path)
    assert len(pcm) == 16000 * 2  # one second at 16 kHz, 2 bytes a sample
    assert abs(frame_rms(pcm[6400:7040]) - 1000) < 20


def test_split_frames_pads_the_last_frame() -> None:
    frames = split_frames(bytes(1000))
    assert [len(f) for f in frames] == [640, 640]


def test_prompt_ends_after_700_ms_of_quiet_and_noise_is_not_speech() -> None:
    detector = SpeechDetector(threshold=400)
    for _ in range(100):
        detector.feed(90.0)  # line noise: never speech
    assert (detector.onsets, detector.loud_frames) == (0, 0)
    for rms in [3000.0] * 50 + [0.0] * 20 + [2500.0] * 10:  # a pause of 400 ms inside a prompt
        detector.feed(rms)
    assert (detector.onsets, detector.prompts, detector.speaking) == (1, 0, True)
    for _ in range(34):
        detector.feed(0.0)
    assert detector.prompts == 0  # 680 ms
    detector.feed(0.0)
    assert (detector.prompts, detector.speaking) == (1, False)
    assert detector.heard_seconds == 1.2


# ------------------------------------------------------------------ against sipp


@needs_sipp
@needs_flite
def test_sipp_echo_is_heard_and_the_prompt_end_detected(sipp: Any, tmp_path: Path) -> None:
    server, port = sipp("uas", "-rtp_echo")
    recording = tmp_path / "heard.wav"
    result = call(
        f"sip:bank@127.0.0.1:{port}",
        "--do", 'say "I want to check my account balance"',
        "--do", "wait-prompt",  # our own words, echoed back, then quiet
        "--do", "hangup",
        "--record", str(recording),
        "--timeout", "10",
    )  # fmt: skip
    assert_all_ok(result)
    outcome = result.outcome
    assert outcome["connected"] is True and outcome["sip_status"] == 200
    assert outcome["hung_up_by"] == "local"
    assert [a["do"] for a in outcome["actions"]] == [
        'say "I want to check my account balance"',
        "wait-prompt",
        "hangup",
    ]
    assert 1.0 < outcome["heard_seconds"] < 4.0, outcome
    with wave.open(str(recording)) as wav:
        assert (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) == (16000, 1, 2)
        assert wav.getnframes() / 16000 >= outcome["heard_seconds"]
    code, _, err = server.finish(timeout=20)
    assert code == 0, err  # sipp counted one successful call


@needs_sipp
def test_waiting_for_a_prompt_that_never_comes_fails_clearly(sipp: Any) -> None:
    server, port = sipp("uas")  # answers, then stays silent (no echo)
    result = call(
        f"sip:bank@127.0.0.1:{port}",
        "--do", "wait-prompt", "--do", "dtmf 1", "--do", "hangup", "--timeout", "1.5",
    )  # fmt: skip
    assert result.code == 1
    wait, dtmf, hangup = result.outcome["actions"]
    assert wait["ok"] is False and wait["error"] == "the far end said nothing within 1.5 s"
    assert 1.4 < wait["took"] < 3
    assert dtmf == {"do": "dtmf 1", "ok": False, "at": None, "took": 0.0,
                    "error": "not run: an earlier one failed"}  # fmt: skip
    assert hangup["ok"] is False
    assert result.outcome["hung_up_by"] == "local"  # we still end the call properly
    assert server.finish(timeout=20)[0] == 0


BUSY = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="busy">
  <recv request="INVITE"/>
  <send>
    <![CDATA[
      SIP/2.0 486 Busy Here
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

    ]]>
  </send>
  <recv request="ACK"/>
</scenario>
"""


@needs_sipp
def test_a_refused_call_reports_the_status(sipp: Any) -> None:
    server, port = sipp(BUSY)
    result = call(f"sip:bank@127.0.0.1:{port}", "--do", "hangup", "--timeout", "5")
    assert result.code == 1
    outcome = result.outcome
    assert (outcome["connected"], outcome["sip_status"], outcome["reason"]) == (
        False,
        486,
        "Busy Here",
    )
    assert outcome["hung_up_by"] == "remote" and outcome["actions"] == []
    assert server.finish(timeout=20)[0] == 0


# sipp answers (with an X- header in its 200 OK), then transfers the caller with a REFER whose
# Refer-To carries headers, accepts 202 or 603, and hangs up its own leg.
REFER = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="answer then REFER">
  <recv request="INVITE">
    <action>
      <ereg regexp="sip:[^>;]*" search_in="hdr" header="Contact:" check_it="true"
            assign_to="contact"/>
      <ereg regexp=".*" search_in="hdr" header="From:" check_it="true" assign_to="caller"/>
    </action>
  </recv>
  <send>
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:bot@[local_ip]:[local_port];transport=[transport]>
      X-Bot-Session: s-42
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=bot 53655765 2353687637 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 0 101
      a=rtpmap:0 PCMU/8000
      a=rtpmap:101 telephone-event/8000
      a=fmtp:101 0-15
    ]]>
  </send>
  <recv request="ACK"/>
  <send retrans="500">
    <![CDATA[
      REFER [$contact] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:bot@[local_ip]:[local_port]>;tag=[pid]SIPpTag01[call_number]
      To: [$caller]
      [last_Call-ID:]
      CSeq: 1 REFER
      Contact: <sip:bot@[local_ip]:[local_port];transport=[transport]>
      Refer-To: <TARGET?X-Context-Id=ctx-1&User-to-User=0455534552%3Bencoding%3Dhex>
      Referred-By: <sip:bot@[local_ip]:[local_port]>
      Refer-Sub: false
      X-Transfer-Reason: agent
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <recv response="202" optional="true" next="bye"/>
  <recv response="603"/>
  <label id="bye"/>
  <send retrans="500">
    <![CDATA[
      BYE [$contact] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:bot@[local_ip]:[local_port]>;tag=[pid]SIPpTag01[call_number]
      To: [$caller]
      [last_Call-ID:]
      CSeq: 2 BYE
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <recv response="200"/>
</scenario>
"""


@needs_sipp
def test_transfer_is_recorded_and_declined_by_default(sipp: Any) -> None:
    server, port = sipp(REFER.replace("TARGET", "sip:agent@127.0.0.1:5999"))
    result = call(f"sip:bot@127.0.0.1:{port}", "--do", "expect-transfer", "--timeout", "10")
    assert_all_ok(result)  # then sipp hung up, as a script without `hangup` expects
    outcome = result.outcome
    assert outcome["transfer_target"] == "sip:agent@127.0.0.1:5999"
    assert outcome["transfer_headers"] == {
        "X-Context-Id": "ctx-1",
        "User-to-User": "0455534552;encoding=hex",
    }
    assert outcome["refer_headers"] == {"X-Transfer-Reason": "agent"}
    assert outcome["transfer_status"] is None  # not followed
    assert outcome["remote_headers"] == {"X-Bot-Session": "s-42"}
    assert outcome["hung_up_by"] == "remote"
    assert server.finish(timeout=20)[0] == 0  # it got the 603 it allows


@needs_sipp
def test_followed_transfer_reaches_the_target_with_the_refer_to_headers(
    sipp: Any, answerer: Any
) -> None:
    agent, agent_uri = answerer("--timeout", "20", "--hold", "0.3")
    server, port = sipp(REFER.replace("TARGET", agent_uri.replace("sip:", "sip:agent@")))
    result = call(
        f"sip:bot@127.0.0.1:{port}", "--do", "expect-transfer", "--follow-transfer",
        "--timeout", "10",
    )  # fmt: skip
    assert_all_ok(result)
    assert result.outcome["transfer_status"] == 200
    assert result.outcome["hung_up_by"] == "remote"  # the agent ended the new call
    code, out, err = agent.finish()
    assert code == 0, err
    answered = json.loads(out)
    assert answered["request_uri"] == agent_uri.replace("sip:", "sip:agent@")
    assert answered["headers"] == {
        "X-Context-Id": "ctx-1",
        "User-to-User": "0455534552;encoding=hex",
    }
    assert server.finish(timeout=20)[0] == 0


# ------------------------------------------------------------------ softphone to softphone


def test_answer_mode_reports_the_invite_headers(answerer: Any) -> None:
    agent, uri = answerer("--timeout", "20", "--hold", "0.2")
    result = call(
        uri, "--header", "X-Conversation-Id: abc", "--header", "User-to-User: 04;encoding=hex",
        "--from", "sip:alice@example.com", "--timeout", "10",
    )  # fmt: skip
    assert_all_ok(result)
    assert result.outcome["hung_up_by"] == "remote"
    code, out, err = agent.finish()
    assert code == 0, err
    answered = json.loads(out)
    assert answered["answered"] is True
    assert answered["headers"] == {"X-Conversation-Id": "abc", "User-to-User": "04;encoding=hex"}
    assert answered["from"] == "sip:alice@example.com"
    assert answered["request_uri"] == uri
    assert answered["hung_up_by"] == "local"


@pytest.mark.parametrize("method", ["rfc4733", "info"])
def test_dtmf_reaches_the_far_end(answerer: Any, method: str, tmp_path: Path) -> None:
    agent, uri = answerer("--timeout", "20", "--collect-digits", "6", "--hold", "5")
    script = tmp_path / "keys.txt"
    script.write_text("# the PIN, then pound\ndtmf 1234*#\n\nhangup\n")
    result = call(uri, "--dtmf-method", method, "--script", str(script), "--timeout", "10")
    assert_all_ok(result)
    assert result.outcome["digits_sent"] == "1234*#"
    code, out, err = agent.finish()
    assert code == 0, err
    assert json.loads(out)["digits"] == "1234*#"


@needs_flite
def test_g722_speech_and_a_converted_wav_are_heard_by_an_answering_softphone(
    answerer: Any, tmp_path: Path
) -> None:
    tone = tmp_path / "tone.wav"  # 8 kHz stereo: `play` must convert it
    samples = np.sin(2 * np.pi * 440 * np.arange(4000) / 8000) * 8000
    write_wav(tone, np.repeat(samples, 2).astype("<i2").tobytes(), rate=8000, channels=2)
    agent, uri = answerer(
        "--timeout", "20", "--do", "wait-speech", "--do", "wait-prompt", "--hold", "0.5"
    )  # fmt: skip
    result = call(
        uri, "--codec", "G722", "--do", f"play {tone}", "--do", "silence 0.3",
        "--do", 'say "Hello, I would like to pay my bill"', "--timeout", "10",
    )  # fmt: skip
    assert_all_ok(result)  # and the answerer hung up once we were quiet
    code, out, err = agent.finish()
    assert code == 0, err
    heard = json.loads(out)
    assert [a["ok"] for a in heard["actions"]] == [True, True]
    # The whole turn (0.5 s tone, 0.3 s pause shorter than a prompt's end, the sentence) is one
    # prompt: wait-prompt ends only after the sentence.
    assert heard["actions"][1]["at"] + heard["actions"][1]["took"] > 2.5
    assert heard["heard_seconds"] > 1.5


def test_nobody_listening_fails_within_the_timeout() -> None:
    result = call(f"sip:bank@127.0.0.1:{free_udp_port()}", "--do", "hangup", "--timeout", "2")
    assert result.code == 1
    assert result.outcome["connected"] is False
    assert result.outcome["reason"] == "no answer within 2 s"
    assert result.seconds < 12, result.seconds  # 2 s, the CANCEL/cleanup, pjsua2 shutdown
