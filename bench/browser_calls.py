"""Browser calls (WebRTC, aiortc in the media worker): how many one media worker carries in real
time, how fast a call sets up, and how fast the bot answers.

Runs the product as ops would (`ivr prompts render`, then `ivr serve --config` in its own
process) with ONE media worker taking up to the largest level of browser calls ([webrtc]
max_calls_per_worker, addresses = 127.0.0.1). The callers are aiortc peers on the widget's
socket in a separate load-generator process (bench/browser_peers.py), so their CPU is measured
apart. It prints:

  1. per level (concurrent calls): HELD, or why not: every call connected and up, every key
     the peers pressed taken by the flow, at most 0.5 % of the server's 20 ms audio frames
     late (> 60 ms after the previous one, unless the load generator's own loop stalls
     explain it) or missing at any peer. Then calls connected / failed, keys taken per call
     (from the stored conversations), CPU in % of one core over the window (media worker and
     per call above idle, control plane, speech workers, load generator), the media worker's
     memory and threads, and the audio the peers received. The flow is
     bench/concurrent_calls.py's: a menu ("press one ... or two ..."), a short reply to the
     key, back to the menu; each peer sends looped speech (flite: Opus costs more on speech
     than on digital silence) and presses a key every few seconds on the "keys" data channel.
     Then the SIP figure of the same worker for comparison (2 sipp calls + 2 pjsua2 probes,
     bench/concurrent_calls.py's machinery), or with --no-sip or --quick an earlier one.
  2. call set-up, one call at a time: offer sent -> call_answer -> connected (ICE + DTLS) ->
     first bot audio at the peer (p50/p95);
  3. turn latency: end of the visitor's "yes" (flite) -> first reply audio at the peer, to a
     yes/no question asked over and over (p50/p95), beside the SIP figure.

Audio is timed when its RTP packet reached the peer (what the server sent, and when); "decoded"
adds aiortc's receive buffer (4 packets, 80 ms), as a browser's jitter buffer adds its own.
Nothing is asserted. The load generator shares the machine's cores with the server.

    .venv/bin/python bench/browser_calls.py                  # 2, 4, 8, 16 calls, 20 s each
    .venv/bin/python bench/browser_calls.py --quick          # under a minute
    .venv/bin/python bench/browser_calls.py --levels 8,24 --window 10 --turns 30
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import shutil
import signal
import sqlite3
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/: concurrent_calls

from concurrent_calls import (
    BIN,
    PROMPTS,
    ROOT,
    Server,
    cpu_over,
    machine,
    pss_mb,
    run_level,
    stop_server,
    write_config,
)
from concurrent_calls import verdict as sip_verdict

sys.path.insert(0, str(ROOT))
from ivr.config import SpeechSettings
from ivr.softphone.audio import frame_rms, read_wav, split_frames
from ivr.speech.tts.cache import cache_path

PEERS = Path(__file__).resolve().parent / "browser_peers.py"
LOAD_FLOW = "bench_load"  # bench/concurrent_calls.py's menu flow (written by write_config)
TURN_FLOW = "bench_browser_turns"
TURN_FLOW_YAML = f"""
flow: {TURN_FLOW}
start: question
steps:
  question:
    ask: {{prompt: browser_yes_no, slot: answer, type: yes_no, retries: 10, timeout: 10}}
    next: reply
  reply:
    say: browser_ok
    next: question
"""
TURN_PROMPTS = {"browser_yes_no": "Yes or no?", "browser_ok": "Okay."}
SPEECH = (
    "Hello, I would like to know the balance of my current account, and whether my last "
    "payment to the electricity company has gone through. Thank you very much."
)
GAPS_LIMIT = 0.5  # % of a peer's frames late or missing: above it, visitors hear gaps
SIP_EARLIER = (
    "SIP, from an earlier run of bench/concurrent_calls.py on this machine: ≈0.45 % of a core "
    "per call + 1.5 % per busy media worker"
)
SIP_TURNS_EARLIER = (
    "SIP, from an earlier run of bench/voice_calls.py on this machine: 200-220 ms p50 for "
    "yes/no turns (measured after pjsua's jitter buffer)"
)
THRESHOLD = 400.0  # frame RMS counted as audible, as bench/browser_peers.py
SERVER_ROLES = ("media workers", "control plane", "speech (asr)", "speech (tts)")
STARTED: list[asyncio.subprocess.Process] = []  # process groups to stop, whatever happens


# ------------------------------------------------------------------ the server


def write_browser_config(tmp: Path, max_calls: int) -> tuple[Path, int, int]:
    """bench/concurrent_calls.py's config and menu flow for one media worker, plus browser
    calls on loopback and the yes/no flow for the turns."""
    conf, http, sip = write_config(tmp, 1, "PCMA, PCMU")
    (tmp / "dialogs" / f"{TURN_FLOW}.yaml").write_text(TURN_FLOW_YAML)
    (tmp / "prompts" / "bench_browser.yaml").write_text(
        "language: en\nprompts:\n"
        + "".join(f"  {k}: {json.dumps(v)}\n" for k, v in TURN_PROMPTS.items())
    )
    text = conf.read_text().replace(
        "[flows]\n", f"[flows]\nchat_flow = {LOAD_FLOW}\nchat_flows = {TURN_FLOW}\n", 1
    )
    conf.write_text(
        text + f"[webrtc]\nenabled = yes\nmax_calls_per_worker = {max_calls}\n"
        "addresses = 127.0.0.1\n"
    )
    return conf, http, sip


async def start_server(tmp: Path, max_calls: int) -> Server:
    conf, http, sip = write_browser_config(tmp, max_calls)
    render = await asyncio.create_subprocess_exec(
        str(BIN / "ivr"), "prompts", "render", "--config", str(conf), cwd=tmp,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    STARTED.append(render)
    out, _ = await asyncio.wait_for(render.communicate(), 300)
    if render.returncode != 0:
        sys.exit(f"ivr prompts render failed:\n{out.decode(errors='replace')}")
    began = time.monotonic()
    with (tmp / "serve.log").open("wb") as log:
        # Its own session: Ctrl-C here must not reach it before we stop it in order.
        proc = await asyncio.create_subprocess_exec(
            str(BIN / "ivr"), "serve", "--config", str(conf), cwd=tmp, stdout=log, stderr=log,
            start_new_session=True,
        )  # fmt: skip
    STARTED.append(proc)
    server = Server(proc, http, sip, 1, tmp, 0.0)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.returncode is not None:
            sys.exit(f"ivr serve exited {proc.returncode}:\n{(tmp / 'serve.log').read_text()}")
        with contextlib.suppress(OSError, ValueError, KeyError):
            children = server.children()
            if children and all(c["state"] in ("ready", "running") for c in children.values()):
                server.started_in = time.monotonic() - began
                return server
        await asyncio.sleep(0.2)
    sys.exit(f"ivr serve not ready in 90 s:\n{(tmp / 'serve.log').read_text()[-3000:]}")


def media_pid(server: Server) -> int:
    return next(c["pid"] for n, c in server.children().items() if n.startswith("media"))


def status_field(pid: int, name: str) -> int:
    """A number from /proc/<pid>/status (Threads, VmRSS in kB), 0 if gone."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{name}:"):
                return int(line.split()[1])
    return 0


def threads(pid: int) -> int:
    return status_field(pid, "Threads")


def rss_mb(pid: int) -> float:
    return status_field(pid, "VmRSS") / 1024


def group_members(pgid: int) -> list[int]:
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[2]) == pgid:
                members.append(int(stat.parent.name))
    return members


def kill_group(proc: asyncio.subprocess.Process) -> None:
    """SIGKILL what is left of a process group we started (its leader's pid is the group's).
    Once the leader is reaped, only while members remain: they keep the number from being
    reused, so the signal cannot reach a stranger's group."""
    if proc.returncode is not None and not group_members(proc.pid):
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


async def wait_calls_over(server: Server, timeout: float = 30.0) -> None:
    """The control plane's conversations end a moment after the peers hang up (bounded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and server.live_calls() != 0:
        await asyncio.sleep(0.3)


def keys_taken(store: Path, conversations: list[str]) -> dict[str, int]:
    """Customer turns (keys the menu took) per conversation, from the SQLite store."""
    if not conversations:
        return {}
    marks = ",".join("?" * len(conversations))
    with contextlib.closing(sqlite3.connect(store)) as db:
        rows = db.execute(
            "SELECT c.id, count(t.seq) FROM conversations c LEFT JOIN turns t "
            f"ON t.conversation_id = c.id AND t.role = 'customer' WHERE c.id IN ({marks}) "
            "GROUP BY c.id",
            conversations,
        ).fetchall()
    return {str(conv): int(count) for conv, count in rows}


# ------------------------------------------------------------------ the load generator


class Peers:
    """bench/browser_peers.py in its own process group: its JSON lines, our commands."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def start(cls, plan: dict[str, Any], log: Path) -> Peers:
        with log.open("ab") as err:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, str(PEERS), "--plan", json.dumps(plan),
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=err,
                start_new_session=True, limit=64 * 1024 * 1024,
            )  # fmt: skip
        STARTED.append(proc)
        return cls(proc)

    @property
    def pid(self) -> int:
        return self.proc.pid

    async def expect(self, event: str, timeout: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        async with asyncio.timeout(timeout):
            while line := await self.proc.stdout.readline():
                with contextlib.suppress(ValueError):
                    message = json.loads(line)
                    if message.get("event") == event:
                        return message
        raise RuntimeError(f"the load generator exited (code {await self.proc.wait()})")

    def command(self, message: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        with contextlib.suppress(ConnectionError):
            self.proc.stdin.write((json.dumps(message) + "\n").encode())

    async def stop(self) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.proc.wait(), 10)
        kill_group(self.proc)


async def run_peers(
    server: Server, plan: dict[str, Any], timeout: float
) -> tuple[dict[str, Any] | None, str]:
    """A scenario from start to result (bounded); (its result, or None and why)."""
    peers = await Peers.start(
        {"url": f"http://127.0.0.1:{server.http}", **plan}, server.tmp / "peers.log"
    )
    try:
        return await peers.expect("result", timeout), ""
    except (TimeoutError, RuntimeError) as exc:
        return None, f"{type(exc).__name__}: {exc}"
    finally:
        await peers.stop()


# ------------------------------------------------------------------ 1. concurrent calls


@dataclass
class Level:
    calls: int
    connected: int = 0
    failed: int = 0
    up: int = 0
    cpu: dict[str, float] = field(default_factory=dict)
    media_pss: float = 0.0
    media_rss: float = 0.0
    media_threads: int = 0
    generator_threads: int = 0
    peers: list[dict[str, Any]] = field(default_factory=list)
    keys: dict[str, int] = field(default_factory=dict)
    lags: list[dict[str, float]] = field(default_factory=list)  # per load-generator process
    problem: str = ""  # the run itself went wrong (no result)


def shares(calls: int, per_process: int) -> list[int]:
    """Peers per load-generator process: a loop with many peers stamps their packets late."""
    processes = max(1, math.ceil(calls / per_process))
    return [calls // processes + (i < calls % processes) for i in range(processes)]


def load_plan(
    server: Server, args: argparse.Namespace, calls: int, index: int, of: int
) -> dict[str, Any]:
    ramp = 0.2  # seconds between two visitors arriving, over all the processes
    return {
        "scenario": "load", "url": f"http://127.0.0.1:{server.http}", "flow": LOAD_FLOW,
        "label": f"g{index + 1}", "calls": calls, "offset": index * ramp, "ramp": of * ramp,
        "key_every": args.key_every, "key_settle": 2.0, "speech": SPEECH,
        "max_seconds": 60 + 2 * args.window + calls * of,
    }  # fmt: skip


async def run_browser_level(server: Server, calls: int, args: argparse.Namespace) -> Level:
    level = Level(calls)
    counts = shares(calls, args.peers_per_process)
    generators: list[Peers] = []
    try:
        for index, count in enumerate(counts):
            plan = load_plan(server, args, count, index, len(counts))
            generators.append(await Peers.start(plan, server.tmp / "peers.log"))
        for generator in generators:
            connected = await generator.expect("connected", 30 + calls * 2.5)
            level.connected += connected["ok"]
            level.failed += connected["failed"]
        level.up = server.live_calls()
        await asyncio.sleep(args.settle)
        await measure(server, generators, level, args.window)
        for generator in generators:
            result = await generator.expect("result", 60 + calls)
            level.peers += result["peers"]
            level.lags.append(result["loop_lag"])
    except (TimeoutError, RuntimeError) as exc:
        level.problem = f"{type(exc).__name__}: {exc}"
    finally:
        for generator in generators:
            await generator.stop()
    await wait_calls_over(server)
    ids = [p["conversation"] for p in level.peers if p.get("conversation")]
    level.keys = keys_taken(server.tmp / "bench.sqlite3", ids)
    return level


async def measure(server: Server, generators: list[Peers], level: Level, window: float) -> None:
    """CPU of every role over the window, then tell the peers which window to report on."""
    groups = server.groups()
    for generator in generators:
        groups.add("load generator", generator.pid)
    media = media_pid(server)
    t0 = time.monotonic()
    level.cpu = await cpu_over(groups, window)
    t1 = time.monotonic()
    level.media_pss, level.media_rss = pss_mb(media), rss_mb(media)
    level.media_threads = threads(media)
    level.generator_threads = sum(threads(g.pid) for g in generators)
    for generator in generators:
        generator.command({"op": "stop", "window": [t0, t1]})


def level_verdict(level: Level) -> str:
    problems = []
    if level.problem:
        problems.append(level.problem)
    if level.failed or level.connected != level.calls:
        problems.append(f"{level.calls - level.connected} calls failed")
    if level.up < level.calls:
        problems.append(f"only {level.up} up at once")
    dropped = [p for p in level.peers if p["connected"] and p["ended"]]
    if dropped:
        problems.append(f"{len(dropped)} dropped ({dropped[0]['ended']})")
    lost_keys = sum(
        max(0, p["presses"] - level.keys.get(p["conversation"], 0))
        for p in level.peers
        if p["connected"]
    )
    if lost_keys:
        problems.append(f"{lost_keys} keys not taken")
    worst = max((p["audio"]["gaps_pct"] for p in level.peers if p.get("audio")), default=None)
    if worst is None:
        problems.append("no audio figures")
    elif worst > GAPS_LIMIT:
        problems.append(f"audio {worst:.2f} % late or missing at the worst peer")
    return "HELD" if not problems else "NOT HELD: " + ", ".join(problems)


def print_level(level: Level, idle: dict[str, float], idle_rss: float) -> None:
    n = max(1, level.calls)
    print(f"\n{level.calls} browser calls: {level_verdict(level)}")
    print(
        f"   {level.connected} connected / {level.failed} failed, {level.up} conversations "
        "up at once on the server"
    )
    print_keys(level)
    cpu = level.cpu
    for role in (*SERVER_ROLES, "load generator"):
        if role not in cpu:
            continue
        extra = ""
        if role in SERVER_ROLES:
            extra = f"   {(cpu[role] - idle.get(role, 0.0)) / n:5.2f} per call above idle"
        if role == "load generator":
            extra = f"   {cpu[role] / n:5.2f} per peer"
        name = "media worker" if role == "media workers" else role
        print(f"   CPU {name:<15} {cpu[role]:5.1f} % of a core{extra}")
    server_total = sum(cpu.get(r, 0.0) for r in SERVER_ROLES)
    machine_total = server_total + cpu.get("load generator", 0.0)
    print(
        f"   CPU server total {server_total:5.1f} %, machine {machine_total:5.1f} % of "
        f"{(os.cpu_count() or 1) * 100} %"
    )
    print(
        f"   media worker: PSS {level.media_pss:.0f} MB, RSS {level.media_rss:.0f} MB "
        f"({(level.media_rss - idle_rss) / n:+.1f} MB per call over idle), "
        f"{level.media_threads} threads; load generator {level.generator_threads} threads"
    )
    print_audio(level)


def print_keys(level: Level) -> None:
    pairs = [
        (level.keys.get(p["conversation"], 0), p["presses"]) for p in level.peers if p["connected"]
    ]
    if not pairs:
        return
    taken = sorted(t for t, _ in pairs)
    pressed = sorted(k for _, k in pairs)
    print(
        f"   keys taken by the flow per call: median {taken[len(taken) // 2]}, min {taken[0]} "
        f"(pressed: median {pressed[len(pressed) // 2]}, min {pressed[0]}); "
        f"{sum(t for t, _ in pairs)} of {sum(k for _, k in pairs)} taken"
    )


def print_audio(level: Level) -> None:
    audio = [p["audio"] for p in level.peers if p.get("audio") and p["audio"]["frames"]]
    if not audio:
        return
    fps = sorted(a["per_second"] for a in audio)
    frames = sum(a["frames"] for a in audio)
    late, ours, lost, short = (
        sum(a[k] for a in audio) for k in ("late", "late_ours", "lost", "short")
    )
    worst = max(audio, key=lambda a: a["gaps_pct"])
    print(
        f"   audio at the peers: {fps[len(fps) // 2]:.1f} frames/s per call (min {fps[0]:.1f}); "
        f"of {frames} frames {late} late (> 60 ms; {ours} of them while the load generator "
        f"itself stalled, not counted), {lost} lost, {short} never sent; worst call "
        f"{worst['gaps_pct']:.2f} % (longest gap {worst['max_gap_ms']:.0f} ms)"
    )
    if level.lags:
        p99 = max(lag["p99_ms"] for lag in level.lags)
        longest = max(lag["max_ms"] for lag in level.lags)
        processes = f"{len(level.lags)} process" + ("es" if len(level.lags) > 1 else "")
        # Stalls it can see are left out above; a machine this busy may hide others.
        late = ": it is late itself, the audio figures are uncertain" if p99 > 20 else ""
        print(
            f"   load generator ({processes}): loop lag p99 {p99:.0f} ms, max {longest:.0f} ms "
            f"(its loop stamps the arrivals{late})"
        )


async def sip_comparison(server: Server, args: argparse.Namespace, idle: dict[str, float]) -> None:
    """The same media worker with SIP calls: 2 sipp calls + 2 pjsua2 probes (its 4 slots)."""
    if args.no_sip or args.quick or shutil.which("sipp") is None:
        print(f"\n{SIP_EARLIER}")
        return
    level = await run_level(server, 2, 10, args.window, args.key_every, server.tmp)
    n = level.calls + 2
    media = level.cpu.get("media workers", 0.0)
    per_call = (media - idle.get("media workers", 0.0)) / n
    print(
        f"\nSIP on the same worker, 2 sipp + 2 probe calls (PCMA, a quiet line; "
        f"{sip_verdict(level)}): media worker {media:.1f} % of a core, {per_call:.2f} per call "
        f"above idle\n   ({SIP_EARLIER})"
    )


# ------------------------------------------------------------------ 2. set-up, 3. turns


def prompt_lead(server: Server, text: str) -> str:
    """The rendered prompt's quiet before its first audible frame: part of every figure that
    ends at the bot's first audio."""
    rate = SpeechSettings().tts_rate
    try:
        frames = split_frames(
            read_wav(cache_path(server.tmp / "prompt-cache", text, "en", "en", rate))
        )
    except Exception as exc:  # a figure to print, not a reason to stop the run
        return f"? ({exc})"
    first = next((i for i, f in enumerate(frames) if frame_rms(f) >= THRESHOLD), None)
    return "?" if first is None else f"{first * 20} ms"


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile (no interpolation: with 20 samples p95 is the 19th)."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, math.ceil(q / 100 * len(ordered)) - 1))]


def row(name: str, values: list[float]) -> str:
    if not values:
        return f"   {name:<52} n=0"
    figures = (pct(values, 50), pct(values, 95), max(values))
    return f"   {name:<52} n={len(values):<3} " + " ".join(f"{1000 * v:6.0f}" for v in figures)


def spans(records: list[dict[str, Any]], start: str, end: str) -> list[float]:
    return [r[end] - r[start] for r in records if r.get(end) is not None and r.get(start)]


async def call_setup(server: Server, calls: int) -> None:
    plan = {"scenario": "setup", "flow": LOAD_FLOW, "calls": calls}
    result, problem = await run_peers(server, plan, 30 + 20 * calls)
    print(f"\n2. Call set-up, {calls} calls one at a time (ms){' ' * 14} p50    p95    max")
    if result is None:
        print(f"   no result: {problem}")
        return
    times = [p["times"] for p in result["peers"] if not p["errors"]]
    print(row("offer sent -> call_answer received", spans(times, "offer", "answer")))
    print(row("call_answer -> connected (ICE + DTLS)", spans(times, "answer", "connected")))
    print(row("connected -> first bot audio at the peer", spans(times, "connected", "audio")))
    print(row("offer sent -> first bot audio (total)", spans(times, "offer", "audio")))
    print(row("  ... decoded (+ aiortc's receive buffer)", spans(times, "offer", "audio_decoded")))
    lead = prompt_lead(server, PROMPTS["load_menu"])
    print(f"   (the menu prompt's own quiet start, in the bot audio figures: {lead})")
    for peer in result["peers"]:
        if peer["errors"]:
            print(f"   {peer['label']} failed: {'; '.join(peer['errors'])}")


async def turn_latency(server: Server, turns: int) -> None:
    plan = {"scenario": "turns", "flow": TURN_FLOW, "turns": turns + 1, "say": "yes"}
    result, problem = await run_peers(server, plan, 60 + 10 * turns)
    print(
        f'\n3. Turn latency, yes/no question: end of the visitor\'s "yes" -> first reply '
        f"audio (ms)\n{' ' * 58}p50    p95    max"
    )
    if result is None:
        print(f"   no result: {problem}")
        return
    done = result["turns"][1:]  # the first turn warms up (first ASR stream, prompt files)
    print(row("at the peer (RTP arrival)", spans(done, "spoken", "reply")))
    print(row("decoded (+ aiortc's receive buffer)", spans(done, "spoken", "reply_decoded")))
    print(
        row("end of speech -> the answer's caption on the socket", spans(done, "spoken", "caption"))
    )
    understood = sum(1 for t in done if str(t.get("text")).lower() == "yes")
    lead = prompt_lead(server, TURN_PROMPTS["browser_ok"])
    print(
        f'   understood as "yes": {understood} of {len(done)} turns; the reply\'s quiet start '
        f"(included): {lead}\n   {SIP_TURNS_EARLIER}"
    )
    for peer in result["peers"]:
        if peer["errors"]:
            errors = "; ".join(peer["errors"])
            print(f"   the call failed after {len(result['turns'])} turns: {errors}")


# ------------------------------------------------------------------ main


async def idle_figures(server: Server, window: float) -> tuple[dict[str, float], float]:
    idle = await cpu_over(server.groups(), window)
    media = media_pid(server)
    rss = rss_mb(media)
    print(
        "idle: "
        + ", ".join(f"{role} {value:.1f} %" for role, value in idle.items())
        + f"; media worker PSS {pss_mb(media):.0f} MB, RSS {rss:.0f} MB, {threads(media)} threads"
    )
    return idle, rss


async def main(args: argparse.Namespace) -> None:
    levels = [int(x) for x in args.levels.split(",")]
    tmp = Path(tempfile.mkdtemp(prefix="ivr-bench-browser-"))
    print(
        f"browser_calls: {machine()}, Python {platform.python_version()}; one media worker, "
        f"[webrtc] max_calls_per_worker = {max(levels)}; levels {levels}, window {args.window:g} s"
    )
    server: Server | None = None
    try:
        server = await start_server(tmp, max(levels))
        print(f"server ready in {server.started_in:.1f} s ({', '.join(server.children())})")
        idle, idle_rss = await idle_figures(server, min(args.window, 10.0))
        print("\n1. Concurrent browser calls on one media worker")
        for calls in levels:
            print_level(await run_browser_level(server, calls, args), idle, idle_rss)
            sys.stdout.flush()
        await sip_comparison(server, args, idle)
        await call_setup(server, args.setup_calls)
        await turn_latency(server, args.turns)
    finally:
        if server is not None:  # in order: the control plane stops its workers (bounded)
            with contextlib.suppress(Exception):
                await stop_server(server)
        for proc in STARTED:
            kill_group(proc)
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", default="2,4,8,16", help="concurrent browser calls per level")
    parser.add_argument("--window", type=float, default=20.0, help="seconds each level is measured")
    parser.add_argument("--turns", type=int, default=20, help="yes/no turns timed")
    parser.add_argument("--setup-calls", type=int, default=10, help="calls timed one at a time")
    parser.add_argument("--key-every", type=float, default=4.0, help="seconds between keys")
    parser.add_argument(
        "--peers-per-process", type=int, default=8, help="browser peers per load generator"
    )
    parser.add_argument("--no-sip", action="store_true", help="skip the SIP comparison run")
    parser.add_argument("--quick", action="store_true", help="small everything (< 1 min)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()
    args.settle = 3.0
    if args.quick:
        args.levels, args.window, args.turns, args.setup_calls = "2,4", 4.0, 5, 3
        args.settle = 1.0
    return args


if __name__ == "__main__":
    try:
        asyncio.run(main(arguments()))
    except KeyboardInterrupt:  # everything started was stopped on the way out
        sys.exit(130)
