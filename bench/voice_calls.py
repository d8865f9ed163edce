"""Phone calls end to end: how fast a caller hears the bot, and what a call costs.

Starts the server in this process as `ivr serve` would (create_app + an aiohttp AppRunner on a
free port, SIP on a free UDP port, its TTS, ASR and media workers, a temporary SQLite store and
prompt cache, the repository's dialogs/ and prompts/ plus a few benchmark flows), then dials it
from bench/sip_caller.py (a pjsua2 caller in another process that timestamps every frame) and
prints:

  1. INVITE -> first prompt audio heard (first frame with RMS >= 400): the very first call after
     start with nothing cached, cached prompts (after `ivr prompts render`), and a prompt with
     a template (rendered by the TTS worker during every call);
  2. turn latency: end of the caller's speech ("yes", flite) -> first audio of the bot's reply,
     to a yes/no question (a closed grammar: complete_silence ends it) and to an open question
     (free speech: end_silence), with the default settings (and, in the full run, the yes/no
     question as it was before complete_silence, and end_silence 0.2 s), and where the time goes;
  3. barge-in: the caller's first voiced frame (or key press) -> the prompt's audio stops;
  4. CPU (% of one core) of the media worker, speech workers and control plane at 1 and 4
     concurrent calls (a DTMF menu loop, and a spoken yes/no loop), per call, and memory.

Control-plane events (INVITE arrived, answer/play commands, transcripts) are timed by wrapping
`CallHandle` methods in this process; all clocks are CLOCK_MONOTONIC, shared by the processes.
Figures are printed with their sample counts and ratios to a baseline of the same run; nothing
is asserted.

    .venv/bin/python bench/voice_calls.py            # a few minutes
    .venv/bin/python bench/voice_calls.py --quick    # under a minute or so
    .venv/bin/python bench/voice_calls.py --quick --sections turns,barge --samples 10
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import logging
import math
import os
import platform
import random
import shutil
import socket
import statistics
import sys
import tempfile
import time
import wave
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from aiohttp import web  # noqa: E402

from ivr.channels.voice import gateway  # noqa: E402
from ivr.config import (  # noqa: E402
    ApiSettings,
    FlowsSettings,
    HttpSettings,
    LogSettings,
    Settings,
    SipSettings,
    SpeechSettings,
    StoreSettings,
)
from ivr.speech.tts.cache import cache_path  # noqa: E402
from ivr.web.app import create_app  # noqa: E402
from ivr.web.keys import SUPERVISOR  # noqa: E402

CALLER = Path(__file__).resolve().parent / "sip_caller.py"
THRESHOLD = 400.0  # the caller's "speech" RMS (bench/sip_caller.py)
FRAME_S = 0.02
FRAME_BYTES = 640
END_SILENCE = 0.3  # the server's default, set explicitly
SECTIONS = ("first", "turns", "barge", "load")
CLK_TCK = os.sysconf("SC_CLK_TCK")

PROMPTS = {
    "bench_welcome": "Welcome to the benchmark line.",
    "bench_yes_no": "Yes or no?",
    "bench_ok": "Okay.",
    # Long and without punctuation: few pauses, so "the audio went quiet" means "it was cut".
    "bench_long": (
        "Please listen carefully because our menu options have recently changed and we want "
        "to make sure that you reach the right person as quickly as possible without waiting "
        "on the line for any longer than you really need to"
    ),
    "bench_menu": (
        "Press one or two at any time while I keep talking about the many services our "
        "company offers to customers like you on every single day of the week and all "
        "through the night"
    ),
    "bench_pressed": "You pressed a key.",
    "bench_keys": "Press one or two.",
}
DYNAMIC_TEXT = "Welcome, caller {{ conversation.id[-6:] }}."

FLOWS = {
    "bench_first": """
flow: bench_first
numbers: ["7001"]
start: hello
steps:
  hello:
    end: bench_welcome
""",
    "bench_dynamic": f"""
flow: bench_dynamic
numbers: ["7002"]
start: hello
steps:
  hello:
    end: "{DYNAMIC_TEXT}"
""",
    # The server's defaults: a yes/no question has a closed grammar (complete_silence ends it).
    "bench_turn30": """
flow: bench_turn30
numbers: ["7010"]
start: question
steps:
  question:
    ask: {prompt: bench_yes_no, slot: answer, type: yes_no, retries: 10, timeout: 10}
    next: reply
  reply:
    say: bench_ok
    next: question
""",
    # Free speech (no grammar: end_silence ends it), with end_silence 0.2 s.
    "bench_turn20": """
flow: bench_turn20
numbers: ["7011"]
start: question
steps:
  question:
    ask: {prompt: bench_yes_no, slot: answer, type: text, retries: 10, timeout: 10,
          end_silence: 0.2}
    next: reply
  reply:
    say: bench_ok
    next: question
""",
    # Free speech with the default end_silence.
    "bench_turn_free": """
flow: bench_turn_free
numbers: ["7012"]
start: question
steps:
  question:
    ask: {prompt: bench_yes_no, slot: answer, type: text, retries: 10, timeout: 10}
    next: reply
  reply:
    say: bench_ok
    next: question
""",
    # The yes/no question as before complete_silence: end_silence (0.3 s) always.
    "bench_turn_old": """
flow: bench_turn_old
numbers: ["7013"]
start: question
steps:
  question:
    ask: {prompt: bench_yes_no, slot: answer, type: yes_no, retries: 10, timeout: 10,
          complete_silence: 0.3}
    next: reply
  reply:
    say: bench_ok
    next: question
""",
    "bench_barge": """
flow: bench_barge
numbers: ["7020"]
start: question
steps:
  question:
    ask: {prompt: bench_long, slot: answer, type: yes_no, retries: 10, timeout: 10,
          barge_in: true}
    next: reply
  reply:
    say: bench_ok
    next: question
""",
    # The reply to a key follows the cut within a frame or two; a slow lookup (400 ms) before
    # it leaves the silence that shows where the prompt stopped.
    "bench_menu": """
flow: bench_menu
numbers: ["7030"]
start: menu
steps:
  menu:
    menu:
      prompt: bench_menu
      retries: 10
      timeout: 10
      options:
        - {key: "1", next: lookup}
        - {key: "2", next: lookup}
  lookup:
    http: {url: "http://127.0.0.1:HTTP_PORT/bench/slow", as: slow}
    next: pressed
    on_error: pressed
  pressed:
    say: bench_pressed
    next: menu
""",
    "bench_keys": """
flow: bench_keys
numbers: ["7031"]
start: menu
steps:
  menu:
    menu:
      prompt: bench_keys
      retries: 10
      timeout: 10
      options:
        - {key: "1", next: pressed}
        - {key: "2", next: pressed}
  pressed:
    say: bench_pressed
    next: menu
""",
}


# ------------------------------------------------------------------ figures


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile (no interpolation: with 20 samples p95 is the 19th)."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, math.ceil(q / 100 * len(ordered)) - 1))]


def ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.0f}"


def dist(values: list[float]) -> str:
    if not values:
        return f"{'n=0':>5} {'-':>6} {'-':>6} {'-':>6}"
    return (
        f"{'n=' + str(len(values)):>5} {ms(pct(values, 50)):>6} {ms(pct(values, 95)):>6} "
        f"{ms(max(values)):>6}"
    )


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


# ------------------------------------------------------------------ control-plane events


@dataclass
class CpEvent:
    t: float
    label: str
    kind: str  # incoming, cmd:<op>, ev:<event>
    info: dict[str, Any]


CP_EVENTS: list[CpEvent] = []
ANOMALIES: list[str] = []  # things that went wrong outside the figures (caller crashes...)


def instrument_call_handles() -> None:
    """Time what the control plane sees of each call, keyed by the caller's X-Bench-Call."""
    handle = gateway.CallHandle
    init, send, deliver = handle.__init__, handle.send, handle.deliver

    def timed_init(self: Any, key: str, worker: Any, details: dict[str, Any]) -> None:
        init(self, key, worker, details)
        self.bench_label = details.get("headers", {}).get("X-Bench-Call", key)
        CP_EVENTS.append(CpEvent(time.monotonic(), self.bench_label, "incoming", {}))

    def timed_send(self: Any, op: str, **fields: Any) -> None:
        info = {"request": fields.get("request"), "files": fields.get("files")}
        CP_EVENTS.append(CpEvent(time.monotonic(), self.bench_label, f"cmd:{op}", info))
        send(self, op, **fields)

    def timed_deliver(self: Any, event: dict[str, Any]) -> None:
        keys = ("kind", "text", "digits", "request", "reason", "at", "ended_at", "jitter_ms")
        info = {k: event.get(k) for k in keys}
        CP_EVENTS.append(
            CpEvent(time.monotonic(), self.bench_label, f"ev:{event.get('event')}", info)
        )
        deliver(self, event)

    handle.__init__ = timed_init  # type: ignore[method-assign]
    handle.send = timed_send  # type: ignore[method-assign]
    handle.deliver = timed_deliver  # type: ignore[method-assign]


def cp_first(label: str, kind: str, after: float, before: float = math.inf) -> CpEvent | None:
    return next(
        (e for e in CP_EVENTS if e.label == label and e.kind == kind and after <= e.t < before),
        None,
    )


class WarningLog(logging.Handler):
    """Warnings and errors of the server and its workers, counted for the report."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.seen: Counter[str] = Counter()

    def emit(self, record: logging.LogRecord) -> None:
        self.seen[f"{record.name}: {record.getMessage()}"[:200]] += 1


# ------------------------------------------------------------------ prompt audio


@dataclass
class PromptAudio:
    rms: np.ndarray  # per 20 ms frame, as the media worker cuts the file

    @classmethod
    def load(cls, path: Path) -> PromptAudio:
        with wave.open(str(path), "rb") as wav:
            pcm = np.frombuffer(wav.readframes(wav.getnframes()), "<i2").astype(np.float32)
        frames = len(pcm) // 320 + (1 if len(pcm) % 320 else 0)
        pcm = np.pad(pcm, (0, frames * 320 - len(pcm)))
        return cls(np.sqrt((pcm.reshape(frames, 320) ** 2).mean(axis=1)))

    @property
    def loud(self) -> np.ndarray:
        return np.flatnonzero(self.rms >= THRESHOLD)

    @property
    def lead(self) -> float:
        """Seconds of quiet before the first loud frame."""
        loud = self.loud
        return float(loud[0]) * FRAME_S if len(loud) else 0.0

    @property
    def seconds(self) -> float:
        return len(self.rms) * FRAME_S

    @property
    def longest_pause(self) -> float:
        """Longest quiet run between the first and the last loud frame."""
        loud = self.loud
        if len(loud) < 2:
            return 0.0
        return float(np.max(np.diff(loud)) - 1) * FRAME_S


def align(expected: np.ndarray, received: np.ndarray, near: int | None = None) -> tuple[int, float]:
    """Shift d (received frame k is expected frame k - d) that correlates the log envelopes
    best over `received` (within 5 frames of `near` if given), and that correlation."""
    e, r = np.log1p(expected), np.log1p(received)
    n, m = len(e), len(r)
    best, score = 0, -1.0
    shifts = range(-n + 10, m - 9) if near is None else range(near - 5, near + 6)
    for d in shifts:
        lo, hi = max(0, d), min(m, n + d)
        seg, ref = r[lo:hi], e[lo - d : hi - d]
        if hi - lo < 10 or seg.std() == 0 or ref.std() == 0:
            continue
        c = float(np.corrcoef(seg, ref)[0, 1])
        if c > score:
            best, score = d, c
    return best, score


def compare(expected: PromptAudio, received: list[float]) -> dict[str, Any] | None:
    """Align the received frames' RMS with the prompt file's (the media worker sends the file's
    own 20 ms frames, so they line up frame for frame, give or take the resampler's fraction
    of a frame) and count the prompt's loud frames that arrived quiet (lost, cut), whether the
    two halves align differently (a gap or a dropped frame), and how late its first loud
    frame arrived against the alignment (a clipped first syllable)."""
    e = expected.rms
    r = np.asarray(received, dtype=np.float32)
    loud = expected.loud
    if len(loud) < 10 or len(r) < len(e) // 2:
        return None
    d, score = align(e, r[: len(e) + 25])
    lost = 0
    steady = 0
    for i in range(1, len(e) - 1):
        k = i + d
        if 0 <= k < len(r) and e[i - 1 : i + 2].min() >= 2 * THRESHOLD:
            steady += 1
            lost += int(r[k] < 0.25 * e[i - 1 : i + 2].min())
    middle = int(loud[len(loud) // 2])
    window = r[: len(e) + 25]
    head, _ = align(e[:middle], window, near=d)
    tail, _ = align(e[middle:], window, near=d + middle)
    tail -= middle
    heard = np.flatnonzero(r >= THRESHOLD)
    late = int(heard[heard >= loud[0] + d - 1][0] - (loud[0] + d)) if len(heard) else 0
    return {
        "score": score,
        "unheard_end": max(0, d + len(e) - len(r)),  # frames never played (the call ended)
        "shift": tail - head,
        "lost": lost,
        "steady": steady,
        "late": max(0, late),
    }


# ------------------------------------------------------------------ processes


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def memory_mb(pid: int) -> tuple[float, float]:
    """(RSS, PSS) in MB."""
    rss = pss = 0.0
    with contextlib.suppress(OSError), open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) / 1024
    with contextlib.suppress(OSError), open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Pss:"):
                pss = int(line.split()[1]) / 1024
    return rss, pss


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def machine() -> str:
    model = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        model = next((line.split(":", 1)[1].strip() for line in f if "model name" in line), "")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{cores} cores ({model or platform.machine()}), Linux {platform.release()}"


# ------------------------------------------------------------------ the server


@dataclass
class Server:
    settings: Settings
    app: web.Application
    runner: web.AppRunner
    sip_port: int
    tmp: Path
    started_in: float
    warnings: WarningLog

    def pids(self) -> dict[str, int]:
        children = self.app[SUPERVISOR].children
        out = {"control plane": os.getpid()}
        for name in ("media-1", "asr-1", "tts"):
            child = children.get(name)
            if child is not None and child.pid is not None:
                out[name] = child.pid
        return out

    def prompt(self, prompt_id: str) -> PromptAudio:
        return self.text_audio(PROMPTS[prompt_id])

    def text_audio(self, text: str) -> PromptAudio:
        speech = self.settings.speech
        return PromptAudio.load(cache_path(speech.cache_dir, text, "en", "en", speech.tts_rate))


async def start_server(tmp: Path, warnings: WarningLog) -> Server:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    http_port = sock.getsockname()[1]
    dialogs = Path(shutil.copytree(ROOT / "dialogs", tmp / "dialogs"))
    prompts = Path(shutil.copytree(ROOT / "prompts", tmp / "prompts"))
    from ivr.flow.model import Listening

    for name, text in FLOWS.items():
        if "complete_silence" in text and "complete_silence" not in Listening.model_fields:
            continue  # a server from before complete_silence (measuring "before")
        (dialogs / f"{name}.yaml").write_text(text.replace("HTTP_PORT", str(http_port)))
    catalogue = "language: en\nprompts:\n" + "".join(
        f"  {key}: {json.dumps(text)}\n" for key, text in PROMPTS.items()
    )
    (prompts / "bench.yaml").write_text(catalogue)
    sip_port = free_udp_port()
    rtp_first = random.randrange(40000, 49000, 200)
    settings = Settings(
        http=HttpSettings(host="127.0.0.1", port=http_port),
        store=StoreSettings(url=f"sqlite:///{tmp}/bench.sqlite3"),
        api=ApiSettings(token="bench"),
        flows=FlowsSettings(dialogs=str(dialogs), prompts=str(prompts), reload=False),
        sip=SipSettings(port=sip_port, rtp_ports=f"{rtp_first}-{rtp_first + 199}"),
        speech=SpeechSettings(cache_dir=str(tmp / "prompt-cache"), end_silence=END_SILENCE),
        log=LogSettings(level="warning"),
    )
    started = time.monotonic()
    app = create_app(settings)

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(0.4)
        return web.json_response({})

    app.router.add_get("/bench/slow", slow)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=5)
    await runner.setup()
    await web.SockSite(runner, sock).start()
    return Server(settings, app, runner, sip_port, tmp, time.monotonic() - started, warnings)


async def prerender(server: Server) -> tuple[float, str]:
    """`ivr prompts render` for the served flows, in its own process (as ops would run it)."""
    env = {
        **os.environ,
        "IVR_FLOWS_DIALOGS": server.settings.flows.dialogs,
        "IVR_FLOWS_PROMPTS": server.settings.flows.prompts,
        "IVR_SPEECH_CACHE_DIR": server.settings.speech.cache_dir,
    }
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "import sys; from ivr.cli import main; sys.exit(main(sys.argv[1:]))",
        "prompts",
        "render",
        env=env,
        cwd=str(server.tmp),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    lines = out.decode(errors="replace").strip().splitlines()
    return time.monotonic() - started, (lines[-1] if lines else f"exit {proc.returncode}")


# ------------------------------------------------------------------ the caller


@dataclass
class CallerRun:
    legs: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    stderr: str = ""
    returncode: int | None = None


async def run_caller(
    server: Server,
    plan: dict[str, Any],
    on_event: Callable[[dict[str, Any], int], Awaitable[None]] | None = None,
    timeout: float = 300.0,
) -> CallerRun:
    plan = {"uri": f"sip:NUMBER@127.0.0.1:{server.sip_port}", **plan}
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(CALLER),
        "--plan",
        json.dumps(plan),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    run = CallerRun()
    assert proc.stdout is not None and proc.stderr is not None
    errors = asyncio.ensure_future(proc.stderr.read())
    tasks = []
    try:
        async with asyncio.timeout(timeout):
            while line := await proc.stdout.readline():
                with contextlib.suppress(ValueError):
                    message = json.loads(line)
                    run.events.append(message)
                    if message.get("event") == "result":
                        run.legs = message["legs"]
                    elif on_event is not None:
                        tasks.append(asyncio.ensure_future(on_event(message, proc.pid)))
            for task in tasks:
                await task
            await proc.wait()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        run.stderr = "caller timed out\n"
    run.stderr += (await errors).decode(errors="replace")
    run.returncode = proc.returncode
    if proc.returncode:
        last = [line for line in run.stderr.strip().splitlines() if line.strip()][-1:]
        ANOMALIES.append(
            f"the caller ({plan['scenario']} {plan.get('label', '')}) exited with "
            f"{proc.returncode}: {last[0][:160] if last else ''}"
        )
    await calls_ended(started)
    return run


async def calls_ended(since: float, timeout: float = 5.0) -> None:
    """Wait (bounded) until every call the control plane saw since `since` has ended; a call
    left up holds one of the media worker's 4 slots (the server never hangs up on a caller who
    vanished without a BYE)."""
    deadline = time.monotonic() + timeout
    while True:
        seen = {e.label for e in CP_EVENTS if e.kind == "incoming" and e.t >= since}
        ended = {e.label for e in CP_EVENTS if e.kind == "ev:ended" and e.t >= since}
        if seen <= ended:
            return
        if time.monotonic() > deadline:
            ANOMALIES.append(
                f"calls still up on the server after their caller ended: {sorted(seen - ended)}"
            )
            return
        await asyncio.sleep(0.1)


# ------------------------------------------------------------------ 1. first audio


@dataclass
class FirstAudio:
    total: list[float] = field(default_factory=list)  # INVITE -> first loud frame
    to_incoming: list[float] = field(default_factory=list)
    to_answer: list[float] = field(default_factory=list)  # incoming -> answer command
    answer_to_200: list[float] = field(default_factory=list)
    to_play: list[float] = field(default_factory=list)  # incoming -> play command
    play_to_audio: list[float] = field(default_factory=list)
    lead: float = 0.0
    jbuf: list[float] = field(default_factory=list)
    checks: list[dict[str, Any]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


def first_audio_figures(legs: list[dict[str, Any]], audio: Callable[[str], PromptAudio | None]):
    fig = FirstAudio()
    for leg in legs:
        if leg["errors"] or not leg.get("rx_t"):
            fig.failures.append(f"{leg['label']}: {leg['errors'] or leg['reason']}")
            continue
        times = leg["times"]
        invite = times["dial"]  # makeCall: the INVITE leaves within it (~0.3 ms)
        loud = next(
            (i for i, r in enumerate(leg["rx_rms"]) if r >= THRESHOLD and leg["rx_t"][i] > invite),
            None,
        )
        if loud is None:
            fig.failures.append(f"{leg['label']}: heard nothing")
            continue
        first = leg["rx_t"][loud]
        fig.total.append(first - invite)
        incoming = cp_first(leg["label"], "incoming", 0)
        answer = cp_first(leg["label"], "cmd:answer", 0)
        play = cp_first(leg["label"], "cmd:play", 0)
        if incoming:
            fig.to_incoming.append(incoming.t - invite)
        if incoming and answer:
            fig.to_answer.append(answer.t - incoming.t)
            if "connecting" in times:
                fig.answer_to_200.append(times["connecting"] - answer.t)
        if incoming and play:
            fig.to_play.append(play.t - incoming.t)
            fig.play_to_audio.append(first - max(play.t, times.get("connecting", play.t)))
        if leg["jbuf"]:
            fig.jbuf.append(leg["jbuf"]["avg_delay_ms"] / 1000)
        prompt = audio(play.info["files"][0]) if play and play.info.get("files") else None
        if prompt is not None:
            fig.lead = prompt.lead
            # From the first frame after the 200 OK: what was sent before it cannot be heard.
            start = next(
                (i for i, t in enumerate(leg["rx_t"]) if t >= times.get("connecting", invite)), 0
            )
            check = compare(prompt, leg["rx_rms"][start:])
            if check is not None:
                check["jbuf"] = leg["jbuf"]
                loud_at = [i for i, r in enumerate(leg["rx_rms"]) if r >= THRESHOLD]
                check["empty"] = sum(1 for i in leg["rx_empty"] if loud_at[0] < i < loud_at[-1])
                unheard = check["unheard_end"]
                check["end_silent"] = not unheard or bool(prompt.rms[-unheard:].max() < THRESHOLD)
                fig.checks.append(check)
    return fig


def print_first_audio(cases: list[tuple[str, FirstAudio]]) -> None:
    print("\n1. INVITE -> first prompt audio at the caller (goal <= 150 ms with a cached prompt)")
    print(f"   {'case':<46} {'n':>5} {'p50':>6} {'p95':>6} {'max':>6}  ms   ratio(p50)")
    base = median(cases[1][1].total) if len(cases) > 1 else None
    for name, fig in cases:
        ratio = (
            f"{median(fig.total) / base:.2f}" if base and fig.total else "-"  # type: ignore[operator]
        )
        print(f"   {name:<46} {dist(fig.total)}       {ratio:>5}")
    for name, fig in cases:
        if not fig.total:
            continue
        print(
            f"   {name}, p50 breakdown: INVITE->control plane {ms(median(fig.to_incoming))}; "
            f"-> answer command {ms(median(fig.to_answer))}; answer -> 200 OK at caller "
            f"{ms(median(fig.answer_to_200))}; INVITE seen -> play command "
            f"{ms(median(fig.to_play))}; max(play, 200 OK) -> first loud frame "
            f"{ms(median(fig.play_to_audio))} (includes the prompt's own leading silence "
            f"{ms(fig.lead)} and the caller's jitter buffer, avg {ms(median(fig.jbuf))})"
        )
    for name, fig in cases:
        for failure in fig.failures:
            print(f"   ! {name}: {failure}")


# ------------------------------------------------------------------ 2. turns


@dataclass
class Turns:
    total: list[float] = field(default_factory=list)  # last voiced frame sent -> reply heard
    to_input: list[float] = field(default_factory=list)  # -> transcript at the control plane
    to_endpoint: list[float] = field(default_factory=list)  # -> the media worker ended it
    endpoint_to_input: list[float] = field(default_factory=list)  # -> transcript at the cp
    partial_at: list[float] = field(default_factory=list)  # end of speech -> partial = answer
    to_play: list[float] = field(default_factory=list)  # transcript -> play command
    play_to_audio: list[float] = field(default_factory=list)
    texts: Counter[str] = field(default_factory=Counter)
    jbuf: list[float] = field(default_factory=list)
    server_jbuf: list[float] = field(default_factory=list)  # the media worker's, per call
    failures: list[str] = field(default_factory=list)
    checks: list[dict[str, Any]] = field(default_factory=list)


def server_jitter(label: str) -> float | None:
    """The media worker's jitter buffer delay for the call (its `ended` event), in seconds."""
    ended = cp_first(label, "ev:ended", 0)
    value = ended.info.get("jitter_ms") if ended is not None else None
    return None if value is None else value / 1000


def turn_figures(legs: list[dict[str, Any]], reply: PromptAudio, skip: int = 1) -> Turns:
    """Per answer after the first `skip` of each call (a fresh recogniser's first utterance and
    the first reading of each prompt file are warm-up, not turns)."""
    fig = Turns()
    for leg in legs:
        fig.failures += [f"{leg['label']}: {e}" for e in leg["errors"]]
        ends = [t for name, t in leg["marks"] if name.startswith("clip") and "last" in name]
        rx_t, rx_rms = leg.get("rx_t", []), leg.get("rx_rms", [])
        if leg["jbuf"]:
            fig.jbuf.append(leg["jbuf"]["avg_delay_ms"] / 1000)
        if (jitter := server_jitter(leg["label"])) is not None:
            fig.server_jbuf.append(jitter)
        for index, end in enumerate(ends):
            if index < skip:
                continue
            until = ends[index + 1] if index + 1 < len(ends) else math.inf
            heard = next(
                (i for i, t in enumerate(rx_t) if t > end and rx_rms[i] >= THRESHOLD), None
            )
            if heard is None or rx_t[heard] >= until:
                fig.failures.append(f"{leg['label']}: no reply to answer {index + 1}")
                continue
            fig.total.append(rx_t[heard] - end)
            event = cp_first(leg["label"], "ev:input", end, until)
            if event is None:
                continue
            fig.texts[f"{event.info.get('kind')}:{event.info.get('text') or ''}"] += 1
            fig.to_input.append(event.t - end)
            if event.info.get("ended_at"):  # a media worker that says when it ended the answer
                fig.to_endpoint.append(event.info["ended_at"] - end)
                fig.endpoint_to_input.append(event.t - event.info["ended_at"])
            # The first partial transcript that already was the final answer (the earliest
            # moment a complete answer could be known), relative to the end of speech.
            matching = next(
                (
                    e
                    for e in CP_EVENTS
                    if e.label == leg["label"]
                    and e.kind == "ev:heard"
                    and end - 2 <= e.t <= event.t
                    and e.info.get("text") == event.info.get("text")
                ),
                None,
            )
            if matching is not None:
                fig.partial_at.append(matching.t - end)
            play = cp_first(leg["label"], "cmd:play", event.t, until)
            if play is not None:
                fig.to_play.append(play.t - event.t)
                fig.play_to_audio.append(rx_t[heard] - play.t)
                start = max(0, heard - 10)
                check = compare(reply, rx_rms[start : start + len(reply.rms) + 25])
                if check is not None:
                    check["jbuf"] = leg["jbuf"] if index == len(ends) - 1 else {}
                    fig.checks.append(check)
    return fig


def print_turns(cases: list[tuple[str, Turns]], reply: PromptAudio) -> None:
    print(
        "\n2. Turn latency: the caller's last voiced frame sent -> first frame of the bot's "
        "reply heard (goal p50 <= 300 ms)"
    )
    print(f"   {'case':<46} {'n':>5} {'p50':>6} {'p95':>6} {'max':>6}  ms   ratio(p50)")
    base = median(cases[0][1].total) if cases else None
    for name, fig in cases:
        ratio = f"{median(fig.total) / base:.2f}" if base and fig.total else "-"  # type: ignore[operator]
        print(f"   {name:<46} {dist(fig.total)}       {ratio:>5}")
    for name, fig in cases:
        if not fig.total:
            continue
        print(
            f"   {name}, p50 breakdown: end of speech -> transcript at the control plane "
            f"{ms(median(fig.to_input))} [= end of speech -> the media worker ends the answer "
            f"{ms(median(fig.to_endpoint))} (server jitter buffer avg "
            f"{ms(median(fig.server_jbuf))}, trailing-silence wait); -> transcript at the "
            f"control plane {ms(median(fig.endpoint_to_input))} (recogniser's final result, "
            f"IPC)]; the partial transcript was the answer already at "
            f"{ms(median(fig.partial_at))} (n={len(fig.partial_at)}); "
            f"transcript -> play command {ms(median(fig.to_play))} "
            f"(flow engine, SQLite writes); play command -> first loud frame "
            f"{ms(median(fig.play_to_audio))} (reply's leading silence {ms(reply.lead)}, caller "
            f"jitter buffer avg {ms(median(fig.jbuf))})"
        )
        print(f"     answers understood as: {dict(fig.texts)}")
        for failure in fig.failures:
            print(f"   ! {name}: {failure}")


# ------------------------------------------------------------------ 3. barge-in


@dataclass
class Barge:
    total: list[float] = field(default_factory=list)  # first voiced frame/key -> prompt cut
    to_event: list[float] = field(default_factory=list)  # -> barge_in event at control plane
    to_cut: list[float] = field(default_factory=list)  # -> the media worker cut the prompt
    server_jbuf: list[float] = field(default_factory=list)
    adjusted: list[bool] = field(default_factory=list)  # counted to the end of a pause
    in_pause: int = 0
    unaligned: int = 0
    unknown: int = 0  # already quiet when the caller started: left out
    failures: list[str] = field(default_factory=list)


def barge_figures(legs: list[dict[str, Any]], prompt: PromptAudio) -> Barge:
    """The prompt stops at the first received frame after the caller started that begins a
    quiet run longer than any pause inside the prompt. When the prompt happened to be in one of
    its own pauses there (the received envelope is aligned with the prompt file over the second
    before), the stop counts from where the prompt would have been loud again: an upper bound."""
    fig = Barge()
    e = prompt.rms
    quiet = max(8, round(prompt.longest_pause / FRAME_S) + 4)
    for leg in legs:
        if (jitter := server_jitter(leg["label"])) is not None:
            fig.server_jbuf.append(jitter)
        fig.failures += [f"{leg['label']}: {e}" for e in leg["errors"]]
        rx_t = leg.get("rx_t", [])
        r = np.asarray(leg.get("rx_rms", []), dtype=np.float32)
        for start in (t for name, t in leg["marks"] if name == "barge"):
            k0 = next((i for i, t in enumerate(rx_t) if t >= start), None)
            if k0 is None or k0 < 20:
                continue
            stop = next(
                (k for k in range(k0, len(r) - quiet) if (r[k : k + quiet] < THRESHOLD).all()),
                None,
            )
            if stop is None:
                fig.failures.append(f"{leg['label']}: the prompt did not stop")
                continue
            w = min(50, k0)
            d, score = align(e, r[k0 - w : k0])
            d += k0 - w
            paused = False
            if score < 0.8:
                fig.unaligned += 1
            else:
                loud_again = next(
                    (
                        k
                        for k in range(stop, stop + quiet)
                        if not 0 <= k - d < len(e)
                        or e[max(0, k - d - 1) : k - d + 2].min() >= THRESHOLD
                    ),
                    stop,
                )
                if loud_again > stop:
                    paused, stop = True, loud_again
                    fig.in_pause += 1
            if stop == k0 and not paused:
                # Quiet from the very first frame after the caller started, yet not a pause of
                # the prompt as aligned: when it was cut cannot be told from the audio.
                fig.unknown += 1
                continue
            fig.total.append(rx_t[stop] - start)
            fig.adjusted.append(paused)
            event = cp_first(leg["label"], "ev:barge_in", start - 0.05, start + 5)
            if event is not None:
                fig.to_event.append(event.t - start)
                if event.info.get("at"):  # a media worker that says when it cut
                    fig.to_cut.append(event.info["at"] - start)
    return fig


def print_barge(cases: list[tuple[str, Barge]]) -> None:
    print(
        "\n3. Barge-in: the caller's first voiced frame sent (or its key press) -> the prompt's "
        "audio stops at the caller (goal <= 100 ms)"
    )
    print(f"   {'case':<46} {'n':>5} {'p50':>6} {'p95':>6} {'max':>6}  ms   ratio(p50)")
    base = median(cases[0][1].total) if cases else None
    for name, fig in cases:
        ratio = f"{median(fig.total) / base:.2f}" if base and fig.total else "-"  # type: ignore[operator]
        print(f"   {name:<46} {dist(fig.total)}       {ratio:>5}")
        # A cut inside one of the prompt's own pauses is counted to the pause's end: an upper
        # bound. The others are exact.
        exact = [v for v, paused in zip(fig.total, fig.adjusted, strict=True) if not paused]
        if len(exact) < len(fig.total):
            print(f"   {'  the exact ones (not cut in a pause)':<46} {dist(exact)}")
    for name, fig in cases:
        print(
            f"   {name}, p50 breakdown: first voiced frame/key sent -> the media worker silenced "
            f"the prompt (held or cut) {ms(median(fig.to_cut))} (RTP, server jitter buffer avg "
            f"{ms(median(fig.server_jbuf))}, the bridge's next tick, the speech decision); "
            f"-> the prompt's audio stops at the caller: the rest (the bridge's next tick, "
            f"the caller's jitter buffer)"
        )
        print(
            f"   {name}: the media worker's barge_in event reached the control plane after p50 "
            f"{ms(median(fig.to_event))} ms (n={len(fig.to_event)}); cut inside a pause of the "
            f"prompt (counted to its end): {fig.in_pause}; prompt not aligned: {fig.unaligned}; "
            f"left out (already quiet when the caller started): {fig.unknown}"
        )
        values = sorted(zip(fig.total, fig.adjusted, strict=True))
        print(
            "     each (ms; * = cut in a pause): "
            + " ".join(f"{ms(v)}{'*' * a}" for v, a in values)
        )
        for failure in fig.failures:
            print(f"   ! {name}: {failure}")


# ------------------------------------------------------------------ 4. load


@dataclass
class Load:
    name: str
    calls: int
    window: float
    cpu: dict[str, float]  # % of one core
    memory: dict[str, tuple[float, float]]
    answered: int = 0
    failures: list[str] = field(default_factory=list)
    empty_frames: int = 0
    rx_frames: int = 0
    jbuf_empty: int = 0


async def measure_cpu(pids: dict[str, int], window: float) -> dict[str, float]:
    def sample() -> dict[str, float]:
        out = {}
        for name, pid in pids.items():
            with contextlib.suppress(OSError):
                out[name] = cpu_seconds(pid)
        return out

    before, started = sample(), time.monotonic()
    await asyncio.sleep(window)
    after, elapsed = sample(), time.monotonic() - started
    return {name: 100 * (after[name] - before[name]) / elapsed for name in before if name in after}


async def load_level(
    server: Server, name: str, number: str, mode: str, calls: int, window: float
) -> Load:
    warmup = min(1.5, window / 2)
    result: dict[str, Any] = {}

    async def on_event(message: dict[str, Any], caller_pid: int) -> None:
        if message.get("event") != "connected":
            return
        await asyncio.sleep(warmup)
        pids = {**server.pids(), "caller (not server)": caller_pid}
        result["cpu"] = await measure_cpu(pids, window)
        result["memory"] = {n: memory_mb(p) for n, p in pids.items()}

    plan = {
        "scenario": "load",
        "number": number,
        "calls": calls,
        "mode": mode,
        "seconds": warmup + window + 1.0,
        "label": f"load-{mode}{calls}",
        "say": "yes",
    }
    run = await run_caller(server, plan, on_event)
    load = Load(name, calls, window, result.get("cpu", {}), result.get("memory", {}))
    for event in run.events:
        if event.get("event") == "answered":
            load.answered = sum(event["counts"].values())
        if event.get("event") == "error":
            load.failures.append(event["error"].strip().splitlines()[-1])
    for leg in run.legs:
        load.failures += leg["errors"]
        load.rx_frames += leg["rx_frames"]
        load.empty_frames += leg["rx_empty_frames"]
        load.jbuf_empty += int(leg["jbuf"].get("empty", 0)) if leg["jbuf"] else 0
    if not load.cpu:
        load.failures.append(f"no CPU sample (caller exit {run.returncode}): {run.stderr[-300:]}")
    return load


def print_load(idle: Load, levels: list[Load]) -> None:
    print(
        "\n4. CPU (% of one core, user+system) and memory with concurrent calls on one media "
        "worker (pjsua2 wheel: at most 4 calls per worker)"
    )
    names = ["media-1", "asr-1", "tts", "control plane", "caller (not server)"]
    header = f"   {'process':<20} {'idle':>6}"
    for level in levels:
        header += f" {level.name:>16}"
    print(header + "   per call: (level - idle) / calls")
    for proc in names:
        line = f"   {proc:<20} {idle.cpu.get(proc, 0):>6.1f}"
        for level in levels:
            line += f" {level.cpu.get(proc, float('nan')):>16.1f}"
        per = []
        for level in levels:
            if proc in level.cpu:
                cost = (level.cpu[proc] - idle.cpu.get(proc, 0)) / level.calls
                per.append(f"{level.calls}x{level.name.split()[-1]} {cost:.2f}")
        print(line + "   " + ", ".join(per))
    total = (
        f"   {'server total':<20} {sum(v for k, v in idle.cpu.items() if 'caller' not in k):>6.1f}"
    )
    for level in levels:
        total += f" {sum(v for k, v in level.cpu.items() if 'caller' not in k):>16.1f}"
    print(total)
    print(
        "   window per level: "
        + ", ".join(f"{lv.name} {lv.window:g} s ({lv.answered} prompts answered)" for lv in levels)
    )
    for level in levels:
        if level.rx_frames:
            print(
                f"   {level.name}: frames heard without audio {level.empty_frames} of "
                f"{level.rx_frames}; caller jitter-buffer underruns {level.jbuf_empty}"
            )
    print(
        f"\n   memory (MB)          {'RSS idle':>9} {'PSS idle':>9} {'RSS max':>9} {'PSS max':>9}"
    )
    for proc in names:
        if proc not in idle.memory and not any(proc in lv.memory for lv in levels):
            continue
        rss0, pss0 = idle.memory.get(proc, (0.0, 0.0))
        rss1 = max([lv.memory.get(proc, (0.0, 0.0))[0] for lv in levels] or [0.0])
        pss1 = max([lv.memory.get(proc, (0.0, 0.0))[1] for lv in levels] or [0.0])
        print(f"   {proc:<20} {rss0:>9.1f} {pss0:>9.1f} {rss1:>9.1f} {pss1:>9.1f}")
    for level in [idle, *levels]:
        for failure in level.failures:
            print(f"   ! {level.name}: {failure}")


# ------------------------------------------------------------------ integrity


def print_integrity(groups: list[tuple[str, list[dict[str, Any]]]]) -> None:
    print(
        "\n5. Prompt integrity: the received RMS envelope aligned with the prompt file frame by "
        "frame (r = correlation of the log envelopes)"
    )
    for name, checks in groups:
        if not checks:
            continue
        lost = sum(c["lost"] for c in checks)
        steady = sum(c["steady"] for c in checks)
        shifted = sum(1 for c in checks if c["shift"] != 0)
        late = [c["late"] for c in checks if c["late"] > 0]
        empty = sum(c.get("empty", 0) for c in checks)
        score = min(c["score"] for c in checks)
        silent_end = all(c.get("end_silent", True) for c in checks)
        jb = Counter()
        for c in checks:
            jb.update({k: c.get("jbuf", {}).get(k, 0) for k in ("empty", "discard", "lost")})
        print(
            f"   {name:<40} {len(checks):>3} prompts, min r {score:.2f}: steady loud frames that "
            f"arrived quiet {lost} of {steady}; halves aligned differently (gap/drop) in "
            f"{shifted}; first loud frame late (clipped onset) in {len(late)}"
            + (f" (by {max(late) * 20} ms max)" if late else "")
            + (f"; frames without audio inside them {empty}" if "empty" in checks[0] else "")
            + (
                f"; last frames of the file not played before the BYE: max "
                f"{max(c['unheard_end'] for c in checks)} (all silence: {silent_end})"
                if "empty" in checks[0]
                else ""
            )
            + f"; caller jitter buffer over those calls: {jb['empty']} underruns, "
            f"{jb['discard']} discards, {jb['lost']} lost"
        )


# ------------------------------------------------------------------ main


@dataclass(frozen=True)
class Sizes:
    first: int  # calls with a cached prompt
    dynamic: int  # calls with a prompt rendered during the call
    turns: int  # answers per case (plus one warm-up answer)
    barge: int  # tries per mode
    window: float  # seconds of CPU measurement per load level
    turn_cases: tuple[tuple[str, str], ...]  # (number, what)
    speech_load: bool


FLOW_OF = {"7010": "bench_turn30", "7011": "bench_turn20", "7012": "bench_turn_free"}
FLOW_OF["7013"] = "bench_turn_old"
YES_NO = ("7010", "yes/no question, defaults")
FREE = ("7012", "open question (free speech), defaults")
QUICK = Sizes(3, 2, 3, 3, 2.0, (YES_NO, FREE), False)
FULL = Sizes(
    20,
    6,
    20,
    12,
    10.0,
    (
        YES_NO,
        ("7013", "yes/no, complete_silence 0.3 (as before)"),
        FREE,
        ("7011", "open question, end_silence 0.2"),
    ),
    True,
)


async def main(quick: bool, sections: set[str], samples: int | None) -> None:
    if shutil.which("flite") is None:
        sys.exit("voice_calls: the caller speaks with flite: apt-get install flite")
    warnings = WarningLog()
    logging.basicConfig(level=logging.WARNING, handlers=[warnings])
    instrument_call_handles()
    tmp = Path(tempfile.mkdtemp(prefix="ivr-bench-voice-"))
    started = time.monotonic()
    server = await start_server(tmp, warnings)
    try:
        sizes = QUICK if quick else FULL
        if samples:
            sizes = dataclasses.replace(sizes, turns=samples, barge=samples)
        await run_all(server, sizes, quick, sections)
    finally:
        await server.runner.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\n(whole run {time.monotonic() - started:.0f} s)")


def audio_of(path: str) -> PromptAudio | None:
    try:
        return PromptAudio.load(Path(path))
    except (OSError, wave.Error, EOFError):
        return None


class Phase:
    """Seconds a part of the run took, for the section headings."""

    def __init__(self) -> None:
        self.started = time.monotonic()

    def __str__(self) -> str:
        took = time.monotonic() - self.started
        self.started = time.monotonic()
        return f"   [{took:.0f} s of calls]"


async def run_all(server: Server, n: Sizes, quick: bool, sections: set[str]) -> None:
    speech = server.settings.speech
    phase = Phase()
    print(f"voice_calls{' --quick' if quick else ''}: phone calls against one in-process server")
    print(
        f"machine: {machine()}, Python {platform.python_version()}, pjsua2-python "
        f"{metadata.version('pjsua2-python')}"
    )
    print(
        f"server: ready in {server.started_in:.1f} s; processes {server.pids()}; SQLite store; "
        f"ASR {speech.asr} x{speech.asr_workers} worker(s); TTS pyttsx3/espeak-ng at "
        f"{speech.tts_rate} wpm; default end_silence {speech.end_silence} s, complete_silence "
        f"{getattr(speech, 'complete_silence', '-')} s"
    )
    print(
        "caller: bench/sip_caller.py (pjsua2, another process on the same machine), PCMU only, "
        f"pjsua's default jitter buffer; 'loud' = frame RMS >= {THRESHOLD:g} (about -38 dBFS); "
        "answers are flite (voice slt) limited to the telephone band; percentiles nearest-rank"
    )
    sys.stdout.flush()

    # 1. first audio: the very first call (nothing rendered yet), then prerender, then cached.
    first_cases: list[tuple[str, FirstAudio]] = []
    if "first" in sections:
        cold = await run_caller(
            server, {"scenario": "first_audio", "number": "7001", "calls": 1, "label": "cold"}
        )
    seconds, summary = await prerender(server)  # the other sections measure cached prompts
    print(f"prerender (`ivr prompts render`, own process): {seconds:.1f} s: {summary}")
    if "first" in sections:
        plan = {"scenario": "first_audio", "number": "7001", "calls": n.first, "label": "cached"}
        cached = await run_caller(server, plan)
        dynamic = await run_caller(
            server,
            {"scenario": "first_audio", "number": "7002", "calls": n.dynamic, "label": "dynamic"},
        )
        first_cases = [
            ("first call after start, prompt not cached", first_audio_figures(cold.legs, audio_of)),
            ("cached prompt (baseline)", first_audio_figures(cached.legs, audio_of)),
            (
                "prompt with a template, TTS during the call",
                first_audio_figures(dynamic.legs, audio_of),
            ),
        ]
        print_first_audio(first_cases)
        print(phase)
        sys.stdout.flush()

    # 2. turns.
    reply = server.prompt("bench_ok")
    turn_cases: list[tuple[str, Turns]] = []
    if "turns" in sections:
        for number, what in n.turn_cases:
            if not (Path(server.settings.flows.dialogs) / f"{FLOW_OF[number]}.yaml").exists():
                continue  # a server from before complete_silence
            plan = {"scenario": "turns", "number": number, "turns": n.turns + 1, "say": "yes"}
            run = await run_caller(server, {**plan, "label": f"turns-{number}"})
            note = " (baseline)" if not turn_cases else ""
            turn_cases.append((f"{what}{note}", turn_figures(run.legs, reply)))
        print_turns(turn_cases, reply)
        print(phase)
        sys.stdout.flush()

    # 3. barge-in.
    if "barge" in sections:
        barge_cases = []
        for mode, number, prompt_id in (
            ("speech", "7020", "bench_long"),
            ("dtmf", "7030", "bench_menu"),
        ):
            plan = {"scenario": "barge", "number": number, "tries": n.barge, "mode": mode}
            if quick:  # cut earlier into the prompt, at less varied points
                plan.update(min_delay=1.0, spread=0.5)
            run = await run_caller(server, {**plan, "say": "yes", "label": f"barge-{mode}"})
            what = 'speech ("yes") (baseline)' if mode == "speech" else "DTMF key (RFC 4733)"
            barge_cases.append((what, barge_figures(run.legs, server.prompt(prompt_id))))
        print_barge(barge_cases)
        print(phase)
        sys.stdout.flush()

    # 4. CPU and memory.
    if "load" in sections:
        pids = server.pids()
        idle = Load("idle", 0, n.window, await measure_cpu(pids, n.window), {})
        idle.memory = {name: memory_mb(pid) for name, pid in pids.items()}
        levels = [
            await load_level(server, "1 call dtmf", "7031", "dtmf", 1, n.window),
            await load_level(server, "4 calls dtmf", "7031", "dtmf", 4, n.window),
        ]
        if n.speech_load:
            levels += [
                await load_level(server, "1 call speech", "7010", "speech", 1, n.window),
                await load_level(server, "4 calls speech", "7010", "speech", 4, n.window),
            ]
        print_load(idle, levels)
        print(phase)

    print_integrity(
        [
            *[(f"first prompts ({name})", fig.checks) for name, fig in first_cases[1:]],
            *[(f"replies, {name}", fig.checks) for name, fig in turn_cases],
        ]
    )
    restarts = {
        name: child["restarts"]
        for name, child in server.app[SUPERVISOR].snapshot().items()
        if child["restarts"]
    }
    if restarts:
        ANOMALIES.append(f"worker restarts during the run: {restarts}")
    if server.warnings.seen:
        print("\nwarnings and errors logged by the server and its workers:")
        for message, count in server.warnings.seen.most_common(15):
            print(f"   {count:>4} x {message}")
    if ANOMALIES:
        print("\nanomalies:")
        for anomaly in ANOMALIES:
            print(f"   {anomaly}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples (under a minute)")
    parser.add_argument(
        "--sections",
        default=",".join(SECTIONS),
        help=f"comma list of {', '.join(SECTIONS)} (default: all)",
    )
    parser.add_argument("--samples", type=int, help="answers per turn case and barge-ins per mode")
    args = parser.parse_args()
    chosen = {s.strip() for s in args.sections.split(",") if s.strip()}
    if not chosen <= set(SECTIONS):
        parser.error(f"unknown section(s) {', '.join(sorted(chosen - set(SECTIONS)))}")
    asyncio.run(main(args.quick, chosen, args.samples))
