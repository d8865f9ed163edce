"""Concurrent phone calls through Kamailio: how many calls this machine holds with clean audio.

Runs the product as ops would (`ivr prompts render`, then `ivr serve --config` in its own
process, Kamailio in front of `media_workers` pjsua2 workers) with a DTMF/prompt flow: a menu
("press one ..."), a short reply to the key, back to the menu. sipp (sip-tester) places the
calls through Kamailio, each sending a whole call's RTP from a pcap written here (PCMA at 50
packets/s, a key press as RFC 4733 events every few seconds), and holds them. Two pjsua2 probe
calls (bench/sip_caller.py, the same flow) run beside sipp's and report what their jitter buffer
saw: frames the server's audio did not arrive in time for (empty), late and lost packets.

For each level (a number of concurrent calls) it prints whether the level was HELD (every call
answered and up at once, the flows took every key sipp's callers pressed, the probes heard at
most 0.5 % of their frames late or lost) or why not, then:
  - calls answered / failed (sipp), keys the flow received per call (from the stored
    conversations: the flow really ran, the keys really arrived);
  - CPU in % of one core over a window when every call is up: control plane, media workers
    (sum, per call, per worker), Kamailio, speech workers, and the load generator (sipp, probes);
  - memory (PSS) per media worker and of the others;
  - the probes' jitter-buffer counters (empty = an underrun a caller would hear as a gap).

Idle figures (the server with no call) come first; the per-call figures subtract them. One
server serves every level, sized for the largest (4 calls per worker); Kamailio spreads calls
round robin, so at lower levels workers hold fewer calls each and a call costs more. The load
generator shares the 2 cores with the server: its CPU is printed too. Nothing is asserted.

    .venv/bin/python bench/concurrent_calls.py                      # 50, 100, 150, 200 calls
    .venv/bin/python bench/concurrent_calls.py --levels 8,40 --window 10   # a quick look
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import random
import re
import shutil
import socket
import sqlite3
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
SCENARIO = Path(__file__).resolve().parent / "sipp" / "uac_pcap_through_proxy.xml"
CALLER = Path(__file__).resolve().parent / "sip_caller.py"
CLK_TCK = os.sysconf("SC_CLK_TCK")
NUMBER = "7100"
PROBES = 2

FLOW = f"""
flow: bench_load
numbers: ["{NUMBER}"]
start: menu
steps:
  menu:
    menu:
      prompt: load_menu
      input: [dtmf]
      retries: 10
      timeout: 10
      options:
        - {{key: "1", next: pressed}}
        - {{key: "2", next: pressed}}
  pressed:
    say: load_pressed
    barge_in: true  # a key during the reply is the next answer: every key the caller sends counts
    next: menu
"""
PROMPTS = {
    "load_menu": "Press one for your balance, or two for your last payment.",
    "load_pressed": "Thank you.",
}


# ------------------------------------------------------------------ the caller's audio

PCMA_QUIET = bytes([0xD5, 0x55]) * 80  # +-8 of 32768: a quiet line (-72 dBFS), 20 ms at 8 kHz
EVENT_PT, AUDIO_PT, SSRC = 101, 8, 0x1B2C3D4E


def rtp(seq: int, timestamp: int, payload_type: int, payload: bytes, marker: bool) -> bytes:
    return (
        struct.pack(
            "!BBHII", 0x80, payload_type | (0x80 if marker else 0), seq & 0xFFFF, timestamp, SSRC
        )
        + payload
    )


def udp_in_ethernet(payload: bytes) -> bytes:
    """Ethernet + IPv4 + UDP around an RTP packet: sipp reads the UDP payload of each record
    (and sends it from its own media socket to the call's address), so only the framing counts."""
    udp = struct.pack("!HHHH", 6000, 6000, 8 + len(payload), 0) + payload  # checksum 0: none
    header = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0, bytes(4), bytes(4)
    )
    checksum = sum(struct.unpack("!10H", header))
    checksum = ~((checksum & 0xFFFF) + (checksum >> 16)) & 0xFFFF
    header = header[:10] + struct.pack("!H", checksum) + header[12:]
    return bytes(12) + b"\x08\x00" + header + udp


def write_caller_pcap(path: Path, seconds: float, key_every: float, first_key: float) -> int:
    """A call's RTP as a pcap: 20 ms PCMA frames of a quiet line, and key "1" every
    `key_every` s as RFC 4733 events (5 packets of a 100 ms tone, then 3 end packets); returns
    the number of key presses."""
    records: list[tuple[float, bytes]] = []
    slots = int(seconds / 0.02)
    key_slots = {round((first_key + n * key_every) / 0.02) for n in range(int(seconds / key_every))}
    seq, slot, presses = 0, 0, 0
    while slot < slots:
        at = slot * 0.02
        if slot in key_slots and slot + 8 <= slots:
            start_ts = slot * 160
            for step in range(8):  # 100 ms of tone, then the end packet three times
                end = step >= 5
                duration = 160 * min(step + 1, 5) + (160 if end else 0)
                flags = 0x80 | 10 if end else 10  # E bit, volume -10 dBm0
                event = struct.pack("!BBH", 1, flags, duration)
                records.append((at + step * 0.02, rtp(seq, start_ts, EVENT_PT, event, step == 0)))
                seq += 1
            slot += 8
            presses += 1
            continue
        records.append((at, rtp(seq, slot * 160, AUDIO_PT, PCMA_QUIET, slot == 0)))
        seq += 1
        slot += 1
    with path.open("wb") as out:
        out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for at, packet in records:
            frame = udp_in_ethernet(packet)
            sec, usec = int(at), round((at - int(at)) * 1e6)
            out.write(struct.pack("<IIII", 1_700_000_000 + sec, usec, len(frame), len(frame)))
            out.write(frame)
    return presses


# ------------------------------------------------------------------ processes and their cost


def free_port(kind: int = socket.SOCK_DGRAM) -> int:
    with socket.socket(socket.AF_INET, kind) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def free_udp_block(count: int) -> int:
    for _ in range(200):
        first = random.randrange(30000, 60000 - count)
        sockets: list[socket.socket] = []
        try:
            for port in range(first, first + count):
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                sockets.append(sock)
                sock.bind(("127.0.0.1", port))
            return first
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
    raise RuntimeError(f"no {count} consecutive free UDP ports")


def descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        for task in Path(f"/proc/{current}/task").glob("*"):
            with contextlib.suppress(OSError):
                todo += [int(c) for c in (task / "children").read_text().split()]
    return out


def cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / CLK_TCK
    return total


def pss_mb(pid: int) -> float:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) / 1024
    return 0.0


@dataclass
class Groups:
    """The processes to measure, by role: role -> pids (each with its descendants)."""

    pids: dict[str, list[int]] = field(default_factory=dict)

    def add(self, role: str, pid: int | None) -> None:
        if pid is not None:
            self.pids.setdefault(role, []).extend(descendants(pid))

    def cpu(self) -> dict[str, float]:
        return {role: cpu_seconds(pids) for role, pids in self.pids.items()}


async def cpu_over(groups: Groups, window: float) -> dict[str, float]:
    """% of one core per role over `window` seconds."""
    before, began = groups.cpu(), time.monotonic()
    await asyncio.sleep(window)
    after, took = groups.cpu(), time.monotonic() - began
    return {role: 100 * (after[role] - before[role]) / took for role in before}


# ------------------------------------------------------------------ the server


@dataclass
class Server:
    proc: asyncio.subprocess.Process
    http: int
    sip: int
    workers: int
    tmp: Path
    started_in: float

    def health(self) -> dict[str, Any]:
        # Generous: a control plane at the machine's limit answers late, and that is a figure
        # of the run, not a reason to stop it.
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http}/healthz", timeout=30) as r:
            return json.loads(r.read())

    def children(self) -> dict[str, dict[str, Any]]:
        return self.health()["workers"]

    def groups(self) -> Groups:
        groups = Groups({"control plane": [self.proc.pid]})  # its children count by role
        for name, child in self.children().items():
            role = name.split("-")[0]
            role = {"media": "media workers", "asr": "speech (asr)", "tts": "speech (tts)"}.get(
                role, role
            )
            groups.add(role, child["pid"])
        return groups

    def live_calls(self) -> int:
        """Calls in the control plane now (-1 if it did not answer in time)."""
        try:
            return int(self.health()["conversations"]["live"])
        except (OSError, ValueError):
            return -1


def write_config(tmp: Path, workers: int, codecs: str) -> tuple[Path, int, int]:
    dialogs = Path(shutil.copytree(ROOT / "dialogs", tmp / "dialogs"))
    prompts = Path(shutil.copytree(ROOT / "prompts", tmp / "prompts"))
    (dialogs / "bench_load.yaml").write_text(FLOW)
    (prompts / "bench_load.yaml").write_text(
        "language: en\nprompts:\n"
        + "".join(f"  {k}: {json.dumps(v)}\n" for k, v in PROMPTS.items())
    )
    http, sip = free_port(socket.SOCK_STREAM), free_port()
    rtp_count = max(200, workers * 12)
    rtp_first = random.randrange(20000, 60000 - rtp_count, 2)
    conf = tmp / "sip.conf"
    conf.write_text(
        f"""[http]
port = {http}
[store]
url = sqlite:///{tmp}/bench.sqlite3
[api]
token = bench
[flows]
dialogs = {dialogs}
prompts = {prompts}
reload = no
[sip]
port = {sip}
codecs = {codecs}
rtp_ports = {rtp_first}-{rtp_first + rtp_count - 1}
media_workers = {workers}
worker_base_port = {free_udp_block(workers)}
default_flow = bench_load
[speech]
cache_dir = {tmp}/prompt-cache
[log]
level = warning
"""
    )
    return conf, http, sip


async def start_server(tmp: Path, workers: int, codecs: str) -> Server:
    conf, http, sip = write_config(tmp, workers, codecs)
    render = subprocess.run(
        [str(BIN / "ivr"), "prompts", "render", "--config", str(conf)],
        capture_output=True,
        text=True,
        cwd=tmp,
    )
    if render.returncode != 0:
        sys.exit(f"ivr prompts render failed:\n{render.stdout}{render.stderr}")
    began = time.monotonic()
    log = (tmp / "serve.log").open("wb")
    proc = await asyncio.create_subprocess_exec(
        str(BIN / "ivr"), "serve", "--config", str(conf), cwd=tmp, stdout=log, stderr=log
    )
    server = Server(proc, http, sip, workers, tmp, 0.0)
    deadline = time.monotonic() + 60 + workers
    while time.monotonic() < deadline:
        if proc.returncode is not None:
            sys.exit(f"ivr serve exited {proc.returncode}:\n{(tmp / 'serve.log').read_text()}")
        with contextlib.suppress(OSError, ValueError):
            children = server.children()
            ready = [c for n, c in children.items() if c["state"] in ("ready", "running")]
            if "kamailio" in children and len(ready) == len(children):
                server.started_in = time.monotonic() - began
                return server
        await asyncio.sleep(0.2)
    proc.kill()
    sys.exit(f"ivr serve not ready in time:\n{(tmp / 'serve.log').read_text()[-3000:]}")


async def stop_server(server: Server) -> None:
    if server.proc.returncode is None:
        server.proc.terminate()
        try:
            await asyncio.wait_for(server.proc.wait(), 60)
        except TimeoutError:
            server.proc.kill()
            await server.proc.wait()


def keys_per_call(store: Path, since: float, flow: str = "bench_load") -> list[int]:
    """Customer turns (keys the menu took) per call of the load flow started after `since`."""
    with contextlib.closing(sqlite3.connect(store)) as db:
        rows = db.execute(
            "SELECT c.id, count(t.seq) FROM conversations c LEFT JOIN turns t "
            "ON t.conversation_id = c.id AND t.role = 'customer' "
            "WHERE c.flow = ? AND c.created_at >= ? GROUP BY c.id",
            (flow, since),
        ).fetchall()
    return [count for _, count in rows]


# ------------------------------------------------------------------ the load


@dataclass
class Level:
    calls: int
    answered: int = 0
    failed: int = 0
    up: int = 0
    cpu: dict[str, float] = field(default_factory=dict)
    keys: list[int] = field(default_factory=list)
    presses: int = 0
    probes: list[dict[str, Any]] = field(default_factory=list)
    memory: dict[str, float] = field(default_factory=dict)
    worker_pss: list[float] = field(default_factory=list)
    sipp_errors: str = ""


async def start_sipp(
    server: Server, workdir: Path, calls: int, rate: int, hold_ms: int
) -> asyncio.subprocess.Process:
    workdir.mkdir(parents=True, exist_ok=True)
    argv = [
        shutil.which("sipp") or "sipp",
        f"127.0.0.1:{server.sip}",
        "-sf", str(SCENARIO),
        "-s", NUMBER,
        "-i", "127.0.0.1",
        "-p", str(free_port()),
        "-mi", "127.0.0.1",
        "-mp", str(free_udp_block(4)),
        "-m", str(calls), "-l", str(calls), "-r", str(rate),
        "-d", str(hold_ms),
        "-recv_timeout", "20000",
        "-aa", "-nostdin", "-trace_screen", "-trace_err",
        "-max_socket", "10000",
    ]  # fmt: skip
    return await asyncio.create_subprocess_exec(
        *argv,
        cwd=workdir,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )


async def start_probes(server: Server, seconds: float) -> asyncio.subprocess.Process:
    plan = {
        "scenario": "load",
        "uri": f"sip:NUMBER@127.0.0.1:{server.sip}",
        "number": NUMBER,
        "calls": PROBES,
        "seconds": seconds,
        "mode": "dtmf",
        "codec": "PCMA",
        "label": "probe",
    }
    return await asyncio.create_subprocess_exec(
        sys.executable,
        str(CALLER),
        "--plan",
        json.dumps(plan),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


def sipp_counts(workdir: Path) -> tuple[int, int]:
    screens = "\n".join(p.read_text(errors="replace") for p in workdir.glob("*_screen.log"))
    ok = re.findall(r"Successful call\s*\|\s*\d+\s*\|\s*(\d+)", screens)
    failed = re.findall(r"Failed call\s*\|\s*\d+\s*\|\s*(\d+)", screens)
    return (int(ok[-1]) if ok else -1, int(failed[-1]) if failed else -1)


async def run_level(
    server: Server, calls: int, rate: int, window: float, key_every: float, base: Path
) -> Level:
    level = Level(calls)
    ramp = calls / rate
    settle = 3.0
    hold = ramp + settle + window + 8.0
    workdir = base / f"sipp-{calls}"
    workdir.mkdir(parents=True, exist_ok=True)
    level.presses = write_caller_pcap(workdir / "caller.pcap", hold, key_every, 2.0)
    since = time.time()
    sipp = await start_sipp(server, workdir, calls, rate, int(hold * 1000))
    probes = await start_probes(server, ramp + settle + window)
    # Every call up (sipp's and the probes'), then a moment for the flows to settle.
    deadline = time.monotonic() + ramp + 30
    while time.monotonic() < deadline and server.live_calls() < calls + PROBES:
        if sipp.returncode is not None:
            break
        await asyncio.sleep(0.5)
    level.up = server.live_calls()
    await asyncio.sleep(settle)
    groups = server.groups()
    groups.add("sipp", sipp.pid)
    groups.add("probes", probes.pid)
    level.cpu = await cpu_over(groups, window)
    children = server.children()
    level.worker_pss = [pss_mb(c["pid"]) for n, c in children.items() if n.startswith("media-")]
    level.memory = {n: pss_mb(c["pid"]) for n, c in children.items() if not n.startswith("media-")}
    level.memory["control plane"] = pss_mb(server.proc.pid)
    out, _ = await asyncio.wait_for(probes.communicate(), 120)
    for line in out.decode(errors="replace").splitlines():
        with contextlib.suppress(ValueError):
            event = json.loads(line)
            if event.get("event") == "result":
                level.probes = event["legs"]
    _, err = await asyncio.wait_for(sipp.communicate(), hold + 120)
    level.sipp_errors = err.decode(errors="replace")[-2000:]
    level.answered, level.failed = sipp_counts(workdir)
    # Calls end a moment after sipp's BYEs: wait for the records to be complete.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and server.live_calls() > 0:
        await asyncio.sleep(0.5)
    level.keys = keys_per_call(server.tmp / "bench.sqlite3", since)
    return level


# ------------------------------------------------------------------ printing


def fmt(value: float) -> str:
    return f"{value:5.1f}"


UNDERRUN_LIMIT = 0.5  # % of a probe's frames late or lost: above it, callers hear gaps


def verdict(level: Level) -> str:
    """Was the level held cleanly: every call answered and up at once, every key the callers
    pressed taken by the flow, the probes' audio without audible gaps?"""
    problems = []
    if level.failed or level.answered != level.calls:
        problems.append(f"{level.failed} calls failed")
    if level.up < level.calls + PROBES:
        problems.append(f"only {level.up} up at once")
    sipp_keys = sorted(level.keys)[PROBES:]  # the probes press fewer: leave the lowest out
    if sipp_keys and sipp_keys[len(sipp_keys) // 2] < level.presses:
        problems.append("keys lost (the flows fall behind)")
    worst = max((underruns(p) for p in level.probes), default=None)
    if worst is None:
        problems.append("no probe result")
    elif worst > UNDERRUN_LIMIT:
        problems.append(f"probe audio {worst:.2f} % late or lost")
    return "HELD" if not problems else "NOT HELD: " + ", ".join(problems)


def underruns(probe: dict[str, Any]) -> float:
    jb = probe.get("jbuf") or {}
    frames = probe.get("rx_frames") or 0
    gaps = (jb.get("empty", 0) or 0) + (jb.get("lost", 0) or 0)
    return 100 * gaps / frames if frames else math.inf


def print_level(idle: dict[str, float], level: Level, workers: int, base: Level | None) -> None:
    cpu = level.cpu
    server_roles = ["control plane", "media workers", "kamailio", "speech (asr)", "speech (tts)"]
    server_total = sum(cpu.get(r, 0.0) for r in server_roles)
    idle_total = sum(idle.get(r, 0.0) for r in server_roles)
    load_total = cpu.get("sipp", 0.0) + cpu.get("probes", 0.0)
    n = level.calls + PROBES
    print(
        f"\n{level.calls} sipp calls + {PROBES} probes: {verdict(level)}\n"
        f"   {level.up} up at once, sipp {level.answered} successful / {level.failed} failed"
    )
    keys = sorted(level.keys)
    if keys:
        print(
            f"   keys taken by the flow per call: median {keys[len(keys) // 2]}, min {keys[0]} "
            f"(the caller pressed {level.presses} in sipp's calls), {len(keys)} conversations"
        )
    for role in [*server_roles, "sipp", "probes"]:
        if role not in cpu:
            continue
        extra = ""
        if role in server_roles:
            per_call = (cpu[role] - idle.get(role, 0.0)) / n
            extra = f"   {per_call:5.2f} per call above idle"
        if role == "media workers":
            extra += f", {cpu[role] / workers:4.1f} per worker"
        print(f"   CPU {role:<14} {fmt(cpu[role])} % of a core{extra}")
    ratio = ""
    if base is not None and base.cpu:
        base_total = sum(base.cpu.get(r, 0.0) for r in server_roles)
        ratio = f"; {server_total / base_total:.2f}x the {base.calls}-call level"
    per_call = (server_total - idle_total) / n
    print(
        f"   CPU server total {fmt(server_total)} % ({per_call:.2f} per call above idle "
        f"{idle_total:.1f} %{ratio}); load generator {fmt(load_total)} %; machine "
        f"{fmt(server_total + load_total)} % of {(os.cpu_count() or 1) * 100} %"
    )
    if level.worker_pss:
        pss = sorted(level.worker_pss)
        print(
            f"   memory (PSS): media worker median {pss[len(pss) // 2]:.0f} MB (max {pss[-1]:.0f}, "
            f"{sum(pss):.0f} MB for {len(pss)}); "
            + ", ".join(f"{k} {v:.0f} MB" for k, v in level.memory.items())
        )
    for probe in level.probes:
        print(f"   probe {probe['label']}: {probe_figures(probe)}")
    if level.failed:
        print(f"   sipp: {level.sipp_errors.strip()[-600:]}")


def probe_figures(probe: dict[str, Any]) -> str:
    """What a probe call's jitter buffer saw: `empty` is a 20 ms frame the server's audio did
    not arrive in time for (a gap the caller hears), `lost` a packet that never came in time."""
    jb = probe.get("jbuf") or {}
    frames = probe.get("rx_frames") or 0
    share = f"{underruns(probe):.2f} %" if frames else "?"
    text = (
        f"{probe.get('status')}, {frames} frames received, underruns {share} (jitter buffer "
        f"empty {jb.get('empty', '?')}, lost {jb.get('lost', '?')}, discarded "
        f"{jb.get('discard', '?')}, delay avg {jb.get('avg_delay_ms', '?')} ms max "
        f"{jb.get('max_delay_ms', '?')} ms), RTP loss {jb.get('rx_loss', '?')}"
    )
    if probe.get("errors"):
        text += "; errors: " + "; ".join(probe["errors"])
    return text


def machine() -> str:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{os.cpu_count()} cores ({model}), {platform.system()} {platform.release()}"


async def main(args: argparse.Namespace) -> None:
    if shutil.which("sipp") is None:
        sys.exit("concurrent_calls: needs sipp (apt-get install sip-tester)")
    levels = [int(x) for x in args.levels.split(",")]
    workers = args.workers or math.ceil(max(levels) / 4) + 2
    tmp = Path(tempfile.mkdtemp(prefix="ivr-bench-calls-"))
    print(
        f"concurrent_calls: {machine()}, Python {platform.python_version()}; "
        f"{workers} media workers behind Kamailio, codecs {args.codecs}"
    )
    server = await start_server(tmp, workers, args.codecs)
    try:
        print(f"server ready in {server.started_in:.1f} s ({len(server.children())} children)")
        idle_groups = server.groups()
        idle = await cpu_over(idle_groups, args.window)
        pss = [pss_mb(c["pid"]) for n, c in server.children().items() if n.startswith("media-")]
        print(
            "idle: "
            + ", ".join(f"{role} {value:.1f} %" for role, value in idle.items())
            + f"; media worker PSS median {sorted(pss)[len(pss) // 2]:.0f} MB"
        )
        sys.stdout.flush()
        base: Level | None = None
        for calls in levels:
            level = await run_level(server, calls, args.rate, args.window, args.key_every, tmp)
            print_level(idle, level, workers, base)
            sys.stdout.flush()
            base = base or level
    finally:
        await stop_server(server)
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", default="50,100,150,200", help="concurrent calls per level")
    parser.add_argument("--workers", type=int, default=0, help="media workers (default: enough)")
    parser.add_argument("--rate", type=int, default=10, help="new calls per second")
    parser.add_argument("--window", type=float, default=20.0, help="seconds CPU is measured")
    parser.add_argument("--key-every", type=float, default=4.0, help="seconds between keys")
    parser.add_argument("--codecs", default="PCMA, PCMU", help="[sip] codecs of the server")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    asyncio.run(main(parser.parse_args()))
