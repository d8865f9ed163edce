"""Kamailio in front of several media workers: its configuration, its process, its readiness.

A pjsua2 media worker holds at most 4 calls, so with `[sip] media_workers` > 1 `ivr serve`
puts Kamailio (the Debian package, dispatcher module, no database) at the public SIP address
and the workers behind it on ports of their own. This module writes Kamailio's configuration
and worker list from the settings into `ivr serve`'s private run directory, says how to run it
(a `ChildSpec` for the supervisor: foreground, logging to stderr, which the supervisor forwards
to the log) and how to know it is ready (an OPTIONS request answered 200). `rpc()` talks to the
running Kamailio over its JSON-RPC FIFO (to drain it before the workers stop, and for tests).

What the configuration does, and why, is commented in `kamailio.cfg.j2`; the measurements and
pitfalls behind it are in the research note on the Kamailio dispatcher.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

from ivr.config import ConfigError, SipSettings
from ivr.workers.supervisor import ChildSpec

TEMPLATE = "kamailio.cfg.j2"
CONFIG_NAME = "kamailio.cfg"
LIST_NAME = "dispatcher.list"
RPC_FIFO = "kamailio_rpc.fifo"
READY_TIMEOUT = 10.0  # measured: about 60 ms from launch to the first 200 on this machine
PROBE_TIMEOUT = 0.5  # one OPTIONS round trip on the same host takes well under 10 ms
DISPATCHER_SET = 1
WORKER_MAX_CALLS = 4  # the pjsua2 wheel's PJSUA_MAX_CALLS


@dataclass(frozen=True)
class WorkerAddress:
    """Where Kamailio reaches one media worker."""

    name: str  # the supervisor's child name, media-1...
    host: str
    port: int

    @property
    def uri(self) -> str:
        return f"sip:{self.host}:{self.port}"


def local_host(host: str) -> str:
    """An address of this machine to send to when `host` is a wildcard bind address."""
    return "127.0.0.1" if host in ("", "0.0.0.0") else host


@dataclass(frozen=True)
class KamailioSetup:
    """Everything the configuration is made of (from `[sip]` and the run directory)."""

    host: str  # bind address of the public SIP port; 0.0.0.0: every interface
    port: int
    transports: tuple[str, ...]  # udp and/or tcp
    workers: tuple[WorkerAddress, ...]
    run_dir: Path  # Kamailio's own: config, worker list, pid file, control sockets
    public_address: str = ""  # advertised in Record-Route/Via when behind NAT
    children: int = 4  # UDP receiver processes (and TCP workers when tcp is on)
    debug: int = 1  # notice (Kamailio: 1): failovers, warnings, errors; not its start-up chatter
    fr_timer_ms: int = 2000  # silence from a worker this long: it is hung, fail over

    @classmethod
    def from_settings(cls, sip: SipSettings, run_dir: str | Path) -> KamailioSetup:
        transports = tuple(t.strip().lower() for t in sip.transports.split(",") if t.strip())
        if "tls" in transports:  # also refused by the config check, with the line
            raise ConfigError("[sip] transports: tls is not supported with several media workers")
        workers = tuple(
            WorkerAddress(f"media-{index}", local_host(sip.host), port)
            for index, port in enumerate(sip.worker_ports(), 1)
        )
        return cls(
            host=sip.host,
            port=sip.port,
            transports=transports,
            workers=workers,
            run_dir=Path(run_dir),
            public_address=sip.public_address,
        )

    @property
    def config_path(self) -> Path:
        return self.run_dir / CONFIG_NAME

    @property
    def pid_file(self) -> Path:
        return self.run_dir / "kamailio.pid"

    @property
    def probe_host(self) -> str:
        return local_host(self.host)

    def listen(self) -> list[str]:
        """`listen=` values; none for a wildcard host (Kamailio then opens one socket per
        interface, so each Record-Route names the address the caller actually used)."""
        if self.host in ("", "0.0.0.0"):
            return []
        advertise = f" advertise {self.public_address}:{self.port}" if self.public_address else ""
        return [f"{proto}:{self.host}:{self.port}{advertise}" for proto in self.transports]


def render_config(setup: KamailioSetup) -> str:
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("ivr.workers", "."),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,  # a Kamailio script, not HTML
    )
    return environment.get_template(TEMPLATE).render(
        listen=setup.listen(),
        port=setup.port,
        listen_summary=f"{'/'.join(setup.transports)} {setup.host}:{setup.port}",
        tcp="tcp" in setup.transports,
        public_address=setup.public_address,
        workers=setup.workers,
        run_dir=str(setup.run_dir),
        children=setup.children,
        debug=setup.debug,
        fr_timer_ms=setup.fr_timer_ms,
        ping_host=setup.probe_host,
    )


def render_dispatcher_list(setup: KamailioSetup) -> str:
    lines = [
        "# Written by ivr serve: one line per media worker (setid destination flags priority "
        "attrs)."
    ]
    lines += [
        f"{DISPATCHER_SET} {w.uri} 0 0 duid={w.name};maxload={WORKER_MAX_CALLS}"
        for w in setup.workers
    ]
    return "\n".join(lines) + "\n"


def write_files(setup: KamailioSetup) -> Path:
    """Write the configuration and the worker list into the run directory; return the config."""
    setup.run_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    (setup.run_dir / LIST_NAME).write_text(render_dispatcher_list(setup), encoding="utf-8")
    setup.config_path.write_text(render_config(setup), encoding="utf-8")
    return setup.config_path


def kamailio_binary() -> str:
    found = shutil.which("kamailio") or next(
        (p for p in ("/usr/sbin/kamailio", "/usr/local/sbin/kamailio") if os.access(p, os.X_OK)),
        None,
    )
    if found is None:
        raise ConfigError(
            "[sip] media_workers > 1 puts Kamailio in front of the workers, but it is not "
            "installed (apt-get install kamailio), or use media_workers = 1"
        )
    return found


def kamailio_argv(setup: KamailioSetup, binary: str | None = None) -> list[str]:
    run_dir = str(setup.run_dir)
    return [
        binary or kamailio_binary(),
        "-f",
        str(setup.config_path),
        "-DD",  # stay in the foreground: the supervisor is our init
        "-E",  # log to stderr, which the supervisor forwards to the log
        "-Y",
        run_dir,
        "-P",
        str(setup.pid_file),
        "-w",
        run_dir,
        "-m",
        "256",  # shm: 36.5 MB were measured at 200 calls/s; untouched pages cost nothing
        "-M",
        "8",
    ]


def check_config(setup: KamailioSetup, binary: str | None = None) -> tuple[bool, str]:
    """`kamailio -c`: does Kamailio accept the written configuration? (ok, its output)"""
    done = subprocess.run(
        [binary or kamailio_binary(), "-c", "-f", str(setup.config_path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return done.returncode == 0, done.stdout + done.stderr


def kamailio_spec(setup: KamailioSetup, binary: str | None = None) -> ChildSpec:
    """How the supervisor runs Kamailio: always restarted (it is the only way calls come in),
    ready once it answers an OPTIONS request on the public port."""
    return ChildSpec(
        name="kamailio",
        argv=kamailio_argv(setup, binary),
        restart="always",
        ready_check=lambda: options_ping(setup.probe_host, setup.port),
        ready_interval=0.05,
        ready_timeout=READY_TIMEOUT,
        stop_timeout=5.0,
    )


class _OptionsProbe(asyncio.DatagramProtocol):
    def __init__(self, call_id: str) -> None:
        self.call_id = call_id
        self.answer: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        text = data.decode(errors="replace")
        status, _, rest = text.partition("\r\n")
        if self.call_id not in rest or not status.startswith("SIP/2.0 "):
            return  # a stray datagram, or the reply to an earlier probe
        with contextlib.suppress(ValueError, IndexError):
            code = int(status.split()[1])
            if code >= 200 and not self.answer.done():
                self.answer.set_result(code)

    def error_received(self, exc: Exception) -> None:  # ICMP port unreachable: not up yet
        if not self.answer.done():
            self.answer.set_exception(exc)


async def options_ping(host: str, port: int, timeout: float = PROBE_TIMEOUT) -> bool:
    """Send one SIP OPTIONS over UDP to host:port; True if a 200 comes back within `timeout`."""
    loop = asyncio.get_running_loop()
    call_id = f"ivr-probe-{secrets.token_hex(8)}"
    transport, probe = await loop.create_datagram_endpoint(
        lambda: _OptionsProbe(call_id), remote_addr=(host, port)
    )
    try:
        local_ip, local_port = transport.get_extra_info("sockname")[:2]
        branch = f"z9hG4bK-{secrets.token_hex(8)}"
        request = (
            f"OPTIONS sip:{host}:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {local_ip}:{local_port};branch={branch};rport\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:ivr-probe@{local_ip}>;tag={secrets.token_hex(4)}\r\n"
            f"To: <sip:{host}:{port}>\r\n"
            f"Call-ID: {call_id}\r\n"
            "CSeq: 1 OPTIONS\r\n"
            "Content-Length: 0\r\n\r\n"
        )
        transport.sendto(request.encode())
        async with asyncio.timeout(timeout):
            return await probe.answer == 200
    finally:
        transport.close()


async def rpc(run_dir: str | Path, method: str, *params: Any, timeout: float = 2.0) -> Any:
    """Call a Kamailio RPC command (`dispatcher.list`, `pv.shvSet`, ...) over its JSON-RPC FIFO
    and return the result; RuntimeError with Kamailio's message when it answers an error."""
    run_dir = Path(run_dir)
    reply_name = f"ivr_reply_{secrets.token_hex(4)}"  # no ".": jsonrpcs refuses such names
    reply_path = run_dir / reply_name
    os.mkfifo(reply_path, 0o600)
    try:
        # Opened read-write, the reply FIFO always has a writer (us), so reading waits for
        # Kamailio's answer instead of seeing end-of-file before Kamailio opened it.
        reply_fd = os.open(reply_path, os.O_RDWR | os.O_NONBLOCK)
        try:
            request = {
                "jsonrpc": "2.0",
                "method": method,
                "params": list(params),
                "reply_name": reply_name,
                "id": 1,
            }
            # Non-blocking: with no Kamailio reading the FIFO this fails (ENXIO) at once.
            fifo_fd = os.open(run_dir / RPC_FIFO, os.O_WRONLY | os.O_NONBLOCK)
            try:
                os.write(fifo_fd, (json.dumps(request) + "\n").encode())
            finally:
                os.close(fifo_fd)
            text = await _read_json(reply_fd, timeout)
        finally:
            os.close(reply_fd)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(reply_path)
    answer = json.loads(text)
    if "error" in answer:
        raise RuntimeError(f"kamailio {method}: {answer['error'].get('message', answer['error'])}")
    return answer.get("result")


async def _read_json(fd: int, timeout: float) -> str:
    """Read from `fd` until the bytes so far parse as one JSON document (bounded)."""
    loop = asyncio.get_running_loop()
    buffer = b""
    readable = asyncio.Event()
    loop.add_reader(fd, readable.set)
    try:
        async with asyncio.timeout(timeout):
            while True:
                await readable.wait()
                readable.clear()
                with contextlib.suppress(BlockingIOError):
                    buffer += os.read(fd, 65536)
                with contextlib.suppress(ValueError):
                    json.loads(buffer)
                    return buffer.decode()
    finally:
        loop.remove_reader(fd)
