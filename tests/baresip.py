"""baresip, a third-party softphone, as a headless caller driven over its ctrl_tcp socket.

No sound card: audio comes from a WAV file (aufile) and goes to ALSA's null device. In baresip
1.0 the end of the source file ends the call, so the file is long silence. Commands and events
are netstring-framed JSON (`len:{...},`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import socket
import wave
from pathlib import Path
from typing import Any

CONNECT_TIMEOUT = 10.0


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def available() -> bool:
    return shutil.which("baresip") is not None and Path("/usr/lib/baresip/modules").is_dir()


def write_config(directory: Path, sip_port: int, ctrl_port: int, rtp_first: int) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    silence = directory / "silence.wav"
    with wave.open(str(silence), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(8000)
        wav.writeframes(bytes(2 * 8000 * 60))  # a minute: the call outlives the test
    (directory / "config").write_text(
        f"""poll_method epoll
sip_listen 127.0.0.1:{sip_port}
net_interface 127.0.0.1
call_local_timeout 120
call_max_calls 4
audio_player alsa,null
audio_source aufile,{silence}
audio_alert alsa,null
audio_level no
ausrc_srate 8000
auplay_srate 8000
ausrc_channels 1
auplay_channels 1
rtp_ports {rtp_first}-{rtp_first + 20}
rtcp_mux no
jitter_buffer_delay 5-10
module_path /usr/lib/baresip/modules
module g711.so
module aufile.so
module alsa.so
module_tmp uuid.so
module_tmp account.so
module_app menu.so
module_app ctrl_tcp.so
ctrl_tcp_listen 127.0.0.1:{ctrl_port}
"""
    )
    (directory / "accounts").write_text(
        "<sip:tester@127.0.0.1>;regint=0;audio_codecs=pcmu;answermode=manual\n"
    )


class Baresip:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.sip_port = free_port(socket.SOCK_DGRAM)
        self.ctrl_port = free_port()
        self.proc: asyncio.subprocess.Process | None = None
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._pump: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Baresip:
        write_config(self.directory, self.sip_port, self.ctrl_port, free_port(socket.SOCK_DGRAM))
        self.proc = await asyncio.create_subprocess_exec(
            "baresip",
            "-f",
            str(self.directory),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        async with asyncio.timeout(CONNECT_TIMEOUT):
            while True:
                try:
                    self.reader, self.writer = await asyncio.open_connection(
                        "127.0.0.1", self.ctrl_port
                    )
                    break
                except OSError:
                    if self.proc.returncode is not None:
                        raise RuntimeError("baresip exited at start") from None
                    await asyncio.sleep(0.05)  # polling a port that is not open yet
        self._pump = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *exc: object) -> None:
        with contextlib.suppress(Exception):
            self.command("quit")
        if self._pump is not None:
            self._pump.cancel()
        if self.writer is not None:
            self.writer.close()
        if self.proc is not None and self.proc.returncode is None:
            try:
                await asyncio.wait_for(self.proc.wait(), 5)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()

    def command(self, name: str, params: str = "") -> None:
        assert self.writer is not None
        body = json.dumps({"command": name, "params": params, "token": name}).encode()
        self.writer.write(str(len(body)).encode() + b":" + body + b",")

    async def event(self, kind: str, timeout: float = 20.0) -> dict[str, Any]:
        """The next event of `kind` (CALL_ESTABLISHED, CALL_CLOSED, ...)."""
        async with asyncio.timeout(timeout):
            while True:
                event = await self.events.get()
                if event.get("type") == kind:
                    return event

    async def _read(self) -> None:
        assert self.reader is not None
        while True:
            length = await self.reader.readuntil(b":")
            body = await self.reader.readexactly(int(length[:-1]))
            await self.reader.readexactly(1)  # the trailing comma
            message = json.loads(body)
            if message.get("event"):
                self.events.put_nowait(message)
