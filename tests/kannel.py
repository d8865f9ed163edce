"""Kannel (Debian's bearerbox + smsbox) with its own fake SMS centre, as a real SMS gateway.

`Kannel(workdir, get_url)` writes a kannel.conf with free loopback ports, whose sms-service
fetches `get_url` for every text a handset sends; `start()` runs bearerbox then smsbox (which
panics when bearerbox is not listening yet) and waits for their ports; `stop()` asks bearerbox
to shut both down. `handset(number)` runs kannel-extras' `fakesmsc` in interactive mode: a
line on its stdin is a text to us, and every text Kannel delivers to the fake SMS centre is
printed back ("Got message N: <from to type data>"), which `Handset.next_text()` reads,
reassembling concatenated parts.

`phones()` is for benches: many numbers on one connection to the fake SMS centre, speaking
fakesmsc's line protocol itself. fakesmsc's interactive mode suits a test, not a timing: it sends
at most one text a second (`-i`), waits up to a second in select() on its stdin before it reads
what bearerbox delivered, and lines written to it together stay in its stdio buffer, unsent,
until the next write.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus, unquote_to_bytes

import aiohttp
import pytest

from ivr.config import HttpSettings, SmsSettings
from tests.serve_fixtures import Served, free_port, start_served

BEARERBOX = shutil.which("bearerbox") or "/usr/sbin/bearerbox"
SMSBOX = shutil.which("smsbox") or "/usr/sbin/smsbox"
FAKESMSC = "/usr/lib/kannel/test/fakesmsc"
OUR_NUMBER = "5550000"
_GOT = re.compile(r"Got message \d+: <(.*)>$")

CONFIG = """\
group = core
admin-port = {admin}
admin-interface = 127.0.0.1
admin-password = {password}
admin-allow-ip = "127.0.0.1"
smsbox-port = {box}
smsbox-interface = 127.0.0.1
box-allow-ip = "127.0.0.1"
log-file = "{workdir}/bearerbox.log"
log-level = 1
dlr-storage = internal

group = smsc
smsc = fake
smsc-id = FAKE
port = {smsc}
connect-allow-ip = "127.0.0.1"

group = smsbox
bearerbox-host = 127.0.0.1
bearerbox-port = {box}
sendsms-port = {sendsms}
sendsms-interface = 127.0.0.1
global-sender = {number}
http-request-retry = 10
http-queue-delay = 1
log-file = "{workdir}/smsbox.log"
log-level = 1

group = sendsms-user
username = ivr
password = {password}
max-messages = 4
concatenation = true

group = sms-service
keyword = default
catch-all = true
max-messages = 0
get-url = "{get_url}?from=%p&to=%P&text=%b&coding=%c&charset=%C&id=%I&token={token}"
"""


def _unquote(data: str) -> bytes:
    """fakesmsc's url-coding: %XX, and + for a space."""
    return unquote_to_bytes(data.replace("+", " "))


async def port_open(port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


async def wait_for_port(port: int, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not await port_open(port):
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not listen on {port} within {timeout} s")
        await asyncio.sleep(0.05)


def decode_delivered(line: str, pending: dict[str, dict[int, bytes]]) -> str | None:
    """`from to type data`, a text to a phone; concatenated parts (type udh) come back whole,
    once complete (`pending` keeps the parts seen so far)."""
    _sender, _receiver, kind, data = line.split(" ", 3)
    if kind == "text":
        return data
    if kind == "ucs-2":
        return _unquote(data).decode("utf-16-be")
    if kind == "data":
        return _unquote(data).decode("utf-8", "replace")
    if kind == "udh":  # "udh <05 00 03 ref total seq> data <part>", each url-coded
        udh_raw, part_raw = data.split(" ", 1)
        udh, part = _unquote(udh_raw), _unquote(part_raw.removeprefix("data "))
        ref, total, seq = str(udh[3]), udh[4], udh[5]
        parts = pending.setdefault(ref, {})
        parts[seq] = part
        if len(parts) < total:
            return None
        whole = b"".join(parts[i] for i in sorted(parts))
        del pending[ref]
        return whole.decode("utf-8", "replace")
    raise AssertionError(f"fakesmsc printed a message of unknown type: {line!r}")


class Phones:
    """Any number of phones on one connection to the fake SMS centre (what fakesmsc does, without
    its pacing): `send(number, text)`; `inbox(number)` has (time.time() when read, text) of every
    text Kannel delivers to `number`."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writer = writer
        self._pending: dict[str, dict[int, bytes]] = {}
        self._inboxes: dict[str, asyncio.Queue[tuple[float, str]]] = {}
        self._reader = asyncio.create_task(self._read(reader))

    def inbox(self, number: str) -> asyncio.Queue[tuple[float, str]]:
        return self._inboxes.setdefault(number, asyncio.Queue())

    async def _read(self, reader: asyncio.StreamReader) -> None:
        async for raw in reader:
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            text = decode_delivered(line, self._pending)
            if text is not None:
                self.inbox(line.split(" ", 2)[1]).put_nowait((time.time(), text))

    async def send(self, number: str, text: str) -> None:
        self._writer.write(f"{number} {OUR_NUMBER} data {quote_plus(text.encode())}\n".encode())
        await self._writer.drain()

    async def close(self) -> None:
        self._reader.cancel()
        self._writer.close()
        with contextlib.suppress(OSError):
            await self._writer.wait_closed()


@dataclass
class Handset:
    """A phone on the fake SMS centre (one fakesmsc process)."""

    number: str
    process: asyncio.subprocess.Process
    texts: asyncio.Queue[str] = field(default_factory=asyncio.Queue)
    received: list[str] = field(default_factory=list)
    _parts: dict[str, dict[int, bytes]] = field(default_factory=dict)
    _reader: asyncio.Task[None] | None = None
    transcript: Path | None = None  # fakesmsc's output, kept for a failing test's reader

    def start_reading(self) -> None:
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.process.stderr is not None
        async for raw in self.process.stderr:
            if self.transcript is not None:
                with self.transcript.open("ab") as out:
                    out.write(raw)
            match = _GOT.search(raw.decode("utf-8", "replace").rstrip())
            if match:
                text = self._decode(match.group(1))
                if text is not None:
                    self.received.append(text)
                    self.texts.put_nowait(text)

    def _decode(self, line: str) -> str | None:
        return decode_delivered(line, self._parts)

    async def send(self, text: str) -> None:
        assert self.process.stdin is not None
        line = f"{self.number} {OUR_NUMBER} data {quote_plus(text.encode())}\n"
        assert len(line) < 250, "fakesmsc reads at most 255 bytes a line"
        self.process.stdin.write(line.encode())
        await self.process.stdin.drain()

    async def next_text(self, timeout: float = 15.0) -> str:
        try:
            return await asyncio.wait_for(self.texts.get(), timeout)
        except TimeoutError:
            pytest.fail(f"no text reached {self.number} in {timeout} s; got {self.received}")

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
        if self.process.returncode is None:
            self.process.kill()
        await self.process.wait()


class Kannel:
    def __init__(self, workdir: Path, get_url: str, token: str) -> None:
        self.workdir = workdir
        self.password = "kannel-test"
        self.ports = {name: free_port() for name in ("admin", "box", "smsc", "sendsms")}
        self.config = workdir / "kannel.conf"
        self.config.write_text(
            CONFIG.format(
                workdir=workdir,
                password=self.password,
                number=OUR_NUMBER,
                get_url=get_url,
                token=token,
                **self.ports,
            )
        )
        self.processes: list[asyncio.subprocess.Process] = []
        self.handsets: list[Handset | Phones] = []

    @property
    def sendsms_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['sendsms']}/cgi-bin/sendsms"

    async def _spawn(self, program: str, log_name: str) -> asyncio.subprocess.Process:
        log = (self.workdir / log_name).open("ab")
        process = await asyncio.create_subprocess_exec(
            program, str(self.config), stdout=log, stderr=log, stdin=asyncio.subprocess.DEVNULL
        )
        log.close()
        self.processes.append(process)
        return process

    async def start(self) -> None:
        await self._spawn(BEARERBOX, "bearerbox.out")
        await wait_for_port(self.ports["box"], "bearerbox")
        await wait_for_port(self.ports["smsc"], "bearerbox's fake SMS centre")
        await self._spawn(SMSBOX, "smsbox.out")
        await wait_for_port(self.ports["sendsms"], "smsbox")
        # Taking texts before smsbox is connected to bearerbox loses or repeats them.
        await self._wait_for_status("smsbox:", "smsbox connected to bearerbox")

    async def _admin(self, command: str) -> str:
        """bearerbox's admin interface: status.txt, shutdown."""
        url = f"http://127.0.0.1:{self.ports['admin']}/{command}?password={self.password}"
        timeout = aiohttp.ClientTimeout(total=5)
        async with aiohttp.ClientSession(timeout=timeout) as session, session.get(url) as resp:
            return await resp.text()

    async def _status(self) -> str:
        return await self._admin("status.txt")

    async def _wait_for_status(self, needle: str, what: str, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while needle not in await self._status():
            if time.monotonic() > deadline:
                pytest.fail(f"Kannel: no {what} within {timeout} s")
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        """Both boxes down (as an outage would have it); the handsets lose their SMS centre."""
        if any(p.returncode is None for p in self.processes):
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                await self._admin("shutdown")
        for process in self.processes:
            try:
                await asyncio.wait_for(process.wait(), 15)
            except TimeoutError:
                process.kill()
                await process.wait()
        self.processes.clear()
        for handset in self.handsets:
            await handset.close()
        self.handsets.clear()

    async def handset(self, number: str) -> Handset:
        process = await asyncio.create_subprocess_exec(
            FAKESMSC, "-H", "127.0.0.1", "-r", str(self.ports["smsc"]), "-v", "0",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        handset = Handset(
            number, process, transcript=self.workdir / f"fakesmsc-{len(self.handsets)}.log"
        )
        handset.start_reading()
        self.handsets.append(handset)
        await self._wait_for_status("(online", "fake SMS centre on-line")
        return handset

    async def phones(self) -> Phones:
        """A connection to the fake SMS centre for many numbers (instead of handsets: the fake
        SMS centre serves one client at a time)."""
        reader, writer = await asyncio.open_connection("127.0.0.1", self.ports["smsc"])
        phones = Phones(reader, writer)
        self.handsets.append(phones)
        await self._wait_for_status("(online", "fake SMS centre on-line")
        return phones

    def log(self, name: str) -> str:
        path = self.workdir / name
        return path.read_text(errors="replace") if path.exists() else ""


@contextlib.asynccontextmanager
async def running_kannel(workdir: Path, token: str) -> AsyncIterator[tuple[Kannel, int]]:
    """Kannel, started, set to fetch texts from a server that is to listen on the port given
    with it (chosen now, so the server can start after Kannel, or again after a stop)."""
    port = free_port()
    kannel = Kannel(workdir, f"http://127.0.0.1:{port}/sms/kannel/mo", token)
    await kannel.start()
    try:
        yield kannel, port
    finally:
        await kannel.stop()


def through(kannel: Kannel, token: str, **changes: Any) -> SmsSettings:
    """`[sms]` settings for a server whose texts go through `kannel`."""
    return SmsSettings(
        gateway="kannel",
        kannel_url=kannel.sendsms_url,
        kannel_username="ivr",
        kannel_password=kannel.password,
        inbound_token=token,
        **changes,
    )


@contextlib.asynccontextmanager
async def served_through_kannel(
    workdir: Path, store_url: str, dialogs: Path, prompts: Path, token: str, **sms: Any
) -> AsyncIterator[tuple[Kannel, Served]]:
    """Kannel and the application (outside pytest: the benches), the server's texts going
    through Kannel; both stopped at the end."""
    async with running_kannel(workdir, token) as (kannel, port):
        served = await start_served(
            store_url,
            "bench-token",
            dialogs,
            prompts,
            reload=False,
            http=HttpSettings(host="127.0.0.1", port=port),
            sms=through(kannel, token, **sms),
        )
        try:
            yield kannel, served
        finally:
            await served.session.close()
            await served.stop()
