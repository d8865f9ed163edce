"""Several media workers behind Kamailio: real Kamailio, real workers, real callers.

`ivr serve` with `[sip] media_workers = 2` starts two pjsua2 media workers on ports of their
own and Kamailio (dispatcher, round robin, failover on 486) on the public SIP port. A softphone
call goes through Kamailio to a worker and completes a flow; sipp calls spread over the two
workers, and a call sent to a full worker (4 calls, pjsua answers 486) lands on the other one.
Every port is picked at run time; every wait is bounded.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import shutil
import signal
import socket
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from ivr.channels.voice.runtime import worker_options
from ivr.config import (
    ConfigError,
    FlowsSettings,
    HttpSettings,
    Settings,
    SipSettings,
    SpeechSettings,
    StoreSettings,
    load_settings,
)
from ivr.conversation import Role
from ivr.web.app import create_app
from ivr.web.keys import PHONE, STORE, SUPERVISOR
from ivr.workers import kamailio
from ivr.workers.supervisor import Supervisor
from tests.serve_fixtures import REPO, ServeApp, free_port, wait_until
from tests.voice_fixtures import VoiceServer, free_udp_port, free_udp_tcp_port, rtp_range

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(
        shutil.which("kamailio") is None and not os.path.exists("/usr/sbin/kamailio"),
        reason="Kamailio is not installed",
    ),
]

SIPP_DIR = Path(__file__).parent / "sipp"
ACCOUNT = "12345678"


def free_udp_block(count: int) -> int:
    """The first of `count` consecutive loopback UDP ports that are free right now."""
    for _ in range(200):
        first = free_udp_port()
        if first + count > 65535:
            continue
        probes: list[socket.socket] = []
        try:
            for port in range(first, first + count):
                probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                probes.append(probe)
                probe.bind(("127.0.0.1", port))
            return first
        except OSError:
            continue
        finally:
            for probe in probes:
                probe.close()
    raise AssertionError(f"no {count} consecutive free UDP ports found")


async def start_fronted_server(
    serve_app: ServeApp, tmp_path: Path, workers: int = 2, transports: str = "udp"
) -> VoiceServer:
    """`ivr serve` with `workers` media workers behind Kamailio, all on free ports."""
    port = free_udp_tcp_port()
    served = await serve_app(
        sip=SipSettings(
            port=port,
            transports=transports,
            rtp_ports=rtp_range(),
            media_workers=workers,
            worker_base_port=free_udp_block(workers),
        ),
        speech=SpeechSettings(cache_dir=str(tmp_path / "prompt-cache")),
    )
    return VoiceServer(served, port)


# ------------------------------------------------------------------------- the configuration


def test_the_rendered_configuration_is_accepted_by_kamailio(tmp_path: Path) -> None:
    sip = SipSettings(port=15060, transports="udp, tcp", media_workers=3, worker_base_port=15070)
    setup = kamailio.KamailioSetup.from_settings(sip, tmp_path / "kam")
    config = kamailio.write_files(setup)
    ok, output = kamailio.check_config(setup)
    assert ok, output
    text = config.read_text()
    assert "listen=udp:127.0.0.1:15060" in text and "listen=tcp:127.0.0.1:15060" in text
    assert "disable_tcp=no" in text
    assert 'ds_select_dst("1", "4")' in text  # round robin
    assert 'modparam("tm", "fr_timer", 2000)' in text
    assert "X-LB-Ts: $TV(Sn)" in text
    workers = (setup.run_dir / "dispatcher.list").read_text().splitlines()[1:]
    assert workers == [
        f"1 sip:127.0.0.1:{port} 0 0 duid=media-{n};maxload=4"
        for n, port in enumerate((15070, 15071, 15072), 1)
    ]


def test_every_interface_and_a_public_address_are_accepted_too(tmp_path: Path) -> None:
    sip = SipSettings(host="0.0.0.0", port=15060, public_address="203.0.113.7", media_workers=2)
    setup = kamailio.KamailioSetup.from_settings(sip, tmp_path / "kam")
    text = kamailio.write_files(setup).read_text()
    ok, output = kamailio.check_config(setup)
    assert ok, output
    assert "listen=" not in text and "port=15060" in text
    assert 'advertised_address="203.0.113.7"' in text
    assert [w.uri for w in setup.workers] == ["sip:127.0.0.1:15070", "sip:127.0.0.1:15071"]


def test_workers_behind_kamailio_get_their_own_port_rtp_ports_and_reachable_contact() -> None:
    settings = Settings(
        sip=SipSettings(
            port=5060,
            transports="udp, tcp",
            public_address="203.0.113.7",
            rtp_ports="40000-40999",
            media_workers=3,
        )
    )
    options = [worker_options(settings, index, ()) for index in range(3)]
    endpoints = [o.endpoint for o in options]
    assert [e.udp_port for e in endpoints] == [5070, 5071, 5072]
    assert all(e.tcp_port is None and e.tls_port is None for e in endpoints)  # Kamailio: UDP
    slices = [range(e.rtp_port, e.rtp_port + e.rtp_port_range) for e in endpoints]
    assert [(r.start, len(r)) for r in slices] == [(40000, 332), (40332, 332), (40664, 332)]
    assert all(e.public_address == "203.0.113.7" for e in endpoints)  # SDP: callers' RTP
    # ...but in-dialog requests come from Kamailio, to the worker's own address.
    assert [o.contact_host for o in options] == [f"127.0.0.1:{p}" for p in (5070, 5071, 5072)]
    single = worker_options(Settings(sip=SipSettings(port=5060, public_address="x")), 0, ())
    assert single.endpoint.udp_port == 5060 and single.contact_host == ""


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ("media_workers = 2\nworker_base_port = 5059\n", "include 5060, the public SIP port"),
        ("media_workers = 2\nworker_base_port = 65535\n", "run past 65535"),
        ("media_workers = 4\nrtp_ports = 40000-40020\n", "cannot be shared by 4 media workers"),
        ("media_workers = 2\nregistrar = sip:pbx.example.com\n", "needs media_workers = 1"),
    ],
)
def test_settings_several_workers_cannot_use_are_refused_with_their_line(
    tmp_path: Path, lines: str, message: str
) -> None:
    conf = tmp_path / "sip.conf"
    conf.write_text("[sip]\n" + lines)
    with pytest.raises(ConfigError, match=re.escape(message)) as caught:
        load_settings(conf, environ={})
    assert str(caught.value).startswith(f"{conf}:")


async def test_kamailio_runs_under_the_supervisor_answers_rpc_and_drains(tmp_path: Path) -> None:
    """Kamailio alone (its workers need not be up for this): ready once OPTIONS gets a 200;
    after `pv.shvSet draining` it refuses new calls with 503; stopped, nothing of it is left."""
    sip = SipSettings(port=free_udp_port(), media_workers=2, worker_base_port=free_udp_block(2))
    setup = kamailio.KamailioSetup.from_settings(sip, tmp_path / "kam")
    kamailio.write_files(setup)
    async with Supervisor() as supervisor:
        began = time.monotonic()
        proxy = await supervisor.start(kamailio.kamailio_spec(setup))
        await proxy.wait_ready(kamailio.READY_TIMEOUT)
        took = time.monotonic() - began
        pid = proxy.pid
        assert pid is not None
        listed = await kamailio.rpc(setup.run_dir, "dispatcher.list")
        targets = listed["RECORDS"][0]["SET"]["TARGETS"]
        assert sorted(t["DEST"]["ATTRS"]["DUID"] for t in targets) == ["media-1", "media-2"]
        await kamailio.rpc(setup.run_dir, "pv.shvSet", "draining", "int", 1)
        assert await sip_request_status(sip.port, "INVITE") == 503
        assert await sip_request_status(sip.port, "MESSAGE") == 405
        assert await kamailio.options_ping("127.0.0.1", sip.port)  # still alive
        with pytest.raises(RuntimeError, match=r"kamailio no\.such"):
            await kamailio.rpc(setup.run_dir, "no.such")
        await supervisor.stop("kamailio")
    assert took < 5, f"Kamailio took {took:.2f} s to answer"
    assert processes_in_group(pid) == []


async def sip_request_status(port: int, method: str) -> int:
    """Send one out-of-dialog request to 127.0.0.1:port over UDP; the final status code."""
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        local = sock.getsockname()[1]
        sock.sendto(
            (
                f"{method} sip:1000@127.0.0.1:{port} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP 127.0.0.1:{local};branch=z9hG4bK-{method}-{local};rport\r\n"
                "Max-Forwards: 70\r\n"
                f"From: <sip:test@127.0.0.1:{local}>;tag=t{local}\r\n"
                f"To: <sip:1000@127.0.0.1:{port}>\r\n"
                f"Call-ID: {method}-{local}@test\r\n"
                f"CSeq: 1 {method}\r\n"
                f"Contact: <sip:test@127.0.0.1:{local}>\r\n"
                "Content-Length: 0\r\n\r\n"
            ).encode(),
            ("127.0.0.1", port),
        )
        async with asyncio.timeout(5):
            while True:
                reply = (await loop.sock_recv(sock, 65535)).decode(errors="replace")
                code = int(reply.split(None, 2)[1])
                if code >= 200:
                    return code


# ------------------------------------------------------------------------- calls through it


async def test_a_call_through_kamailio_reaches_a_worker_and_completes_a_flow(
    serve_app: ServeApp, tmp_path: Path
) -> None:
    server = await start_fronted_server(serve_app, tmp_path)
    supervisor = server.served.app[SUPERVISOR]
    assert {"kamailio", "media-1", "media-2"} <= set(supervisor.children)
    assert supervisor.children["kamailio"].state == "ready"
    result = await server.call(
        "1000",
        "wait-prompt",  # welcome + account number question
        f"dtmf {ACCOUNT}",  # as SIP INFO: an in-dialog request through Kamailio
        "wait-prompt",  # PIN question
        "hangup",  # BYE through Kamailio too
        extra=["--dtmf-method", "info"],
    )
    assert result.ok, (result.outcome, result.stderr[-3000:])
    assert result.outcome["connected"]
    conv = await server.last_conversation()
    assert conv.slots.get("account_number") == ACCOUNT
    assert [t.text for t in conv.timeline if t.role is Role.CUSTOMER] == [ACCOUNT]
    assert "customer left the sip channel" in [
        t.text for t in conv.timeline if t.role is Role.SYSTEM
    ]


class Sipp:
    """One sipp run placing `calls` calls (each held `hold_ms`) from a scenario in tests/sipp."""

    def __init__(self, workdir: Path, proc: asyncio.subprocess.Process, argv: list[str]) -> None:
        self.workdir = workdir
        self.proc = proc
        self.argv = argv

    @classmethod
    async def start(
        cls,
        target: str,
        scenario: str,
        workdir: Path,
        *,
        calls: int,
        hold_ms: int = 0,
        rate: int = 10,
        transport: str = "u1",  # sipp's -t: u1 one UDP socket, t1 one TCP connection
    ) -> Sipp:
        workdir.mkdir(parents=True, exist_ok=True)  # sipp writes its trace files here
        argv = [
            shutil.which("sipp") or "sipp",
            target,
            "-sf", str(SIPP_DIR / scenario),
            "-t", transport,
            "-s", "1000",  # the number dialled: the bank flow's
            "-i", "127.0.0.1",
            "-p", str(free_udp_port()),
            "-mi", "127.0.0.1",
            "-mp", str(free_udp_block(4)),  # never sipp's default 6000
            "-m", str(calls), "-l", str(calls), "-r", str(rate),
            "-d", str(hold_ms),
            "-recv_timeout", "10000",  # ms: no answer by then fails the call
            "-timeout", "60", "-timeout_error",  # s: the whole run
            "-aa", "-nostdin", "-trace_screen", "-trace_err",
        ]  # fmt: skip
        proc = await asyncio.create_subprocess_exec(
            *argv,
            cwd=workdir,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        return cls(workdir, proc, argv)

    @property
    def call_id_mark(self) -> str:
        """sipp's Call-IDs are `<call number>-<sipp pid>@<local ip>`."""
        return f"-{self.proc.pid}@"

    async def finish(self, timeout: float = 70.0) -> int:
        try:
            _, err = await asyncio.wait_for(self.proc.communicate(), timeout)
        except TimeoutError:
            self.kill()
            await self.proc.wait()
            pytest.fail(f"sipp did not finish within {timeout} s: {self.report()}")
        self.stderr = err.decode(errors="replace")
        return self.proc.returncode or 0

    def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()

    async def stop(self) -> None:
        self.kill()
        await asyncio.wait_for(self.proc.wait(), 10)

    def successful_calls(self) -> int:
        found = re.findall(r"Successful call\s*\|\s*\d+\s*\|\s*(\d+)", self.screen())
        return int(found[-1]) if found else -1

    def screen(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in self.workdir.glob("*_screen.log"))

    def report(self) -> str:
        errors = "\n".join(p.read_text(errors="replace") for p in self.workdir.glob("*errors.log"))
        return f"{' '.join(self.argv)}\n{self.screen()[-3000:]}\n{errors[-3000:]}"


class CallWatch:
    """Which media worker holds which sipp call, read from the control plane's live calls."""

    def __init__(self, server: VoiceServer) -> None:
        self.phone = server.served.app[PHONE]
        self.worker_of: dict[str, str] = {}  # Call-ID -> media worker name, for every call seen

    def live(self) -> Counter[str]:
        counts: Counter[str] = Counter()
        for handle in list(self.phone.active):  # type: ignore[attr-defined]
            self.worker_of[str(handle.details.get("call_id"))] = handle.worker.name
            counts[handle.worker.name] += 1
        return counts

    async def wait_for(self, expected: dict[str, int], timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while (live := self.live()) != Counter(expected):
            if time.monotonic() > deadline:
                pytest.fail(f"calls per worker {dict(live)}, not {expected} within {timeout} s")
            await asyncio.sleep(0.05)

    def workers_of(self, sipp: Sipp) -> list[str]:
        return [w for call_id, w in self.worker_of.items() if sipp.call_id_mark in call_id]


@pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp (sip-tester) is not installed")
async def test_sipp_calls_spread_over_the_workers_and_a_full_worker_passes_calls_on(
    serve_app: ServeApp, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="ivr.workers.kamailio")
    server = await start_fronted_server(serve_app, tmp_path, transports="udp, tcp")
    sip = server.served.settings.sip
    through_kamailio = f"127.0.0.1:{server.sip_port}"
    straight_to_media_1 = f"127.0.0.1:{sip.worker_ports()[0]}"
    watch = CallWatch(server)
    runs: list[Sipp] = []
    try:
        # 1. Two calls through Kamailio on idle workers: round robin gives each worker one.
        # Over TCP: Kamailio talks UDP to the workers, so it record-routes twice (one entry per
        # side), and the callers' ACK and BYE find their way back over TCP.
        first = await Sipp.start(
            through_kamailio, "uac_through_proxy.xml", tmp_path / "first", calls=2,
            hold_ms=6000, transport="t1",
        )  # fmt: skip
        runs.append(first)
        await watch.wait_for({"media-1": 1, "media-2": 1})
        # 2. Fill media-1 to its 4 calls by calling it directly, past Kamailio.
        direct = await Sipp.start(
            straight_to_media_1, "uac_through_proxy.xml", tmp_path / "direct", calls=3,
            hold_ms=5000,
        )  # fmt: skip
        runs.append(direct)
        await watch.wait_for({"media-1": 4, "media-2": 1})
        # 3. Three more through Kamailio: round robin offers some to media-1, which answers 486,
        # and Kamailio passes them on: all three land on media-2.
        more = await Sipp.start(
            through_kamailio, "uac_through_proxy.xml", tmp_path / "more", calls=3, hold_ms=3000
        )
        runs.append(more)
        await watch.wait_for({"media-1": 4, "media-2": 4})
        # 4. Every worker full: the caller hears 486 from Kamailio once both refused.
        busy = await Sipp.start(through_kamailio, "uac_expect_busy.xml", tmp_path / "busy", calls=1)
        runs.append(busy)
        for run, calls in ((busy, 1), (more, 3), (direct, 3), (first, 2)):
            code = await run.finish()
            assert code == 0, run.report()
            assert run.successful_calls() == calls, run.report()
    finally:
        for run in runs:
            await run.stop()
    assert sorted(watch.workers_of(first)) == ["media-1", "media-2"]
    assert watch.workers_of(direct) == ["media-1"] * 3
    assert watch.workers_of(more) == ["media-2"] * 3
    failovers = [r.getMessage() for r in caplog.records if "failover of call" in r.getMessage()]
    assert any(more.call_id_mark in line and "after 486" in line for line in failovers), failovers
    await watch.wait_for({})  # every call hung up and gone from the workers


@pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp (sip-tester) is not installed")
async def test_a_hung_worker_is_passed_over_and_refuses_the_stale_invite_when_it_wakes(
    serve_app: ServeApp, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A worker that stops answering (its Python blocked, here SIGSTOP) costs a call fr_timer
    (2 s), then Kamailio gives it to the other worker. When the hung one wakes up, the INVITE
    it finds is stamped too long ago (X-LB-Ts), so it refuses it instead of answering a call
    the other worker already has (the caller would get a second 200: a ghost call)."""
    caplog.set_level(logging.INFO, logger="ivr.workers")
    server = await start_fronted_server(serve_app, tmp_path)
    media_1 = server.served.app[SUPERVISOR].children["media-1"]
    assert media_1.pid is not None
    watch = CallWatch(server)
    runs: list[Sipp] = []
    try:
        os.kill(media_1.pid, signal.SIGSTOP)
        try:
            # Round robin: one of the two calls is offered to the hung worker first.
            calls = await Sipp.start(
                f"127.0.0.1:{server.sip_port}", "uac_through_proxy.xml", tmp_path / "calls",
                calls=2, hold_ms=3000,
            )  # fmt: skip
            runs.append(calls)
            await watch.wait_for({"media-2": 2})
        finally:
            os.kill(media_1.pid, signal.SIGCONT)

        async def refused_the_stale_invite() -> bool:
            return "refusing a stale INVITE" in caplog.text  # media-1's log, once awake

        await wait_until(refused_the_stale_invite, timeout=10)
        assert watch.live()["media-1"] == 0  # no ghost call on the worker that woke up
        assert await calls.finish() == 0, calls.report()
        assert calls.successful_calls() == 2, calls.report()
    finally:
        for run in runs:
            await run.stop()
    assert watch.workers_of(calls) == ["media-2", "media-2"]
    assert re.search(r"failover of call \S+ after 408", caplog.text)


def processes_in_group(pgid: int) -> list[int]:
    """Pids of live processes in process group `pgid` (Kamailio's main process and its
    children share the group the supervisor gave it)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # gone meanwhile
        fields = stat.rsplit(")", 1)[1].split()  # after "pid (comm)": state ppid pgrp ...
        if int(fields[2]) == pgid and fields[0] != "Z":
            found.append(int(entry.name))
    return found


# A call that stays up until the caller or the server ends it (short prompts: quick tests).
HOLD_FLOW = """
flow: hold
language: en
numbers: ["4000"]
start: key
steps:
  key:
    ask: {prompt: "Key?", slot: key, type: digits, length: 1, input: [dtmf]}
    next: hold
  hold:
    ask: {prompt: "Hold.", slot: nothing, input: [dtmf], timeout: 60}
    next: done
  done:
    end: "Bye."
"""


async def test_stopping_the_server_hangs_up_through_kamailio_then_stops_it(
    tmp_path: Path, flow_files: tuple[Path, Path]
) -> None:
    (flow_files[0] / "hold.yaml").write_text(HOLD_FLOW)
    port = free_udp_port()
    settings = Settings(
        http=HttpSettings(host="127.0.0.1", port=free_port()),
        store=StoreSettings(url=f"sqlite:///{tmp_path}/ivr.db"),
        flows=FlowsSettings(dialogs=str(flow_files[0]), prompts=str(flow_files[1])),
        sip=SipSettings(
            port=port, rtp_ports=rtp_range(), media_workers=2, worker_base_port=free_udp_block(2)
        ),
        speech=SpeechSettings(cache_dir=str(tmp_path / "prompt-cache")),
    )
    runner = web.AppRunner(create_app(settings))
    await runner.setup()  # runs `ivr serve`'s start-up: workers, then Kamailio
    stopped = False
    try:
        app = runner.app
        proxy = app[SUPERVISOR].children["kamailio"]
        pid = proxy.pid
        assert pid is not None and processes_in_group(pid)  # main process and its children
        caller = asyncio.ensure_future(
            softphone(
                f"sip:4000@127.0.0.1:{port}", "wait-prompt", "dtmf 7", "silence 30", timeout=40
            )
        )

        async def key_arrived() -> bool:  # so the call is surely up, both ways
            recent = await app[STORE].list_recent(1)
            return bool(recent) and recent[0].slots.get("key") == "7"

        await wait_until(key_arrived, timeout=20)
        began = time.monotonic()
        await asyncio.wait_for(runner.cleanup(), 30)
        stopped = True
        outcome = await asyncio.wait_for(caller, 20)
    finally:
        if not stopped:
            await runner.cleanup()
    # The worker's BYE reached the caller through Kamailio (it stopped taking calls first, and
    # stopped itself only after the workers), long before the caller's own 30 s were up.
    assert outcome["connected"] and outcome["hung_up_by"] == "remote", outcome
    assert time.monotonic() - began < 10
    assert proxy.state == "stopped"
    assert processes_in_group(pid) == []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", port))  # the public SIP port is free again


async def softphone(uri: str, *actions: str, timeout: float) -> dict[str, Any]:
    """`ivr call URI --do ACTION...`: its outcome JSON."""
    argv = [sys.executable, "-m", "ivr.softphone", uri, "--timeout", str(timeout)]
    for action in actions:
        argv += ["--do", action]
    proc = await asyncio.create_subprocess_exec(
        *argv, cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout + 20)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    lines = out.decode(errors="replace").strip().splitlines()
    assert lines, err.decode(errors="replace")[-3000:]
    return dict(json.loads(lines[-1]))
