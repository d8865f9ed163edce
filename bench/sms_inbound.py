"""Inbound SMS turns per second through a real Kannel, against the outbox gateway in the same run.

An in-process `ivr serve` application (SQLite, no media workers) whose `[sms] flow` is a tiny
echo flow (written to a scratch dialogs dir): every text a number sends is one flow turn, answered
by one text ("You said: <text>. Say something."). N numbers at once (concurrency 1, 10, 50),
each sending its next text as soon as the reply to its last one arrived:
  kannel:   `[sms] gateway = kannel`, Debian's bearerbox + smsbox; the numbers' texts go in on
            the fake SMS centre (tests/kannel.Phones, fakesmsc's protocol without fakesmsc's
            one-text-a-second pacing), Kannel fetches our get-url, the reply goes out by sendsms
            and a turn ends when the fake SMS centre hands the reply to the phone;
  baseline: the outbox gateway (no Kannel): texts in by `POST /api/sms`, a turn ends when the
            reply is stored in the outbox (stamped in the server; the outbox holds, sends nothing).
A number's first text starts its conversation (that turn included). Prints turns/s and the
turn latency p50/p95, and each Kannel figure's ratio to the baseline at the same concurrency.

    .venv/bin/python bench/sms_inbound.py [--turns 10] [--concurrency 1 10 50]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from ivr.config import SmsSettings  # noqa: E402
from ivr.web.keys import SMS  # noqa: E402
from tests.kannel import served_through_kannel  # noqa: E402
from tests.serve_fixtures import Served, copy_flow_files, start_served  # noqa: E402

ECHO_FLOW = """\
flow: echo
language: en
start: listen
steps:
  listen:
    ask: {prompt: "Say something.", slot: said, type: text}
    next: echo
  echo:
    say: "You said: {{ slots.said }}."
    next: listen
"""
TOKEN = "bench-kannel-token"
MIN_TURNS = 40  # per concurrency level: a single number sends this many

Send = Callable[[str, str], Awaitable[None]]
Inbox = Callable[[str], "asyncio.Queue[tuple[float, str]]"]


class Stamps:
    """In the server, per number and in order: when its texts were received (the get-url or
    `POST /api/sms` handler), the replies stored in the outbox, and the gateway took them."""

    def __init__(self, served: Served) -> None:
        sms = served.app[SMS]
        self.received: dict[str, list[float]] = defaultdict(list)
        self.stored: dict[str, list[float]] = defaultdict(list)
        self.taken: dict[str, list[float]] = defaultdict(list)
        self._inboxes: dict[str, asyncio.Queue[tuple[float, str]]] = {}
        receive, queue, send = sms.threads.receive, sms.outbox.send, sms.gateway.send

        async def stamped_receive(key: str, from_number: str, *args: Any) -> bool:
            self.received[from_number].append(time.time())
            return await receive(key, from_number, *args)

        async def stamped_queue(to_number: str, *args: Any, **kwargs: Any) -> Any:
            stored = await queue(to_number, *args, **kwargs)
            self.stored[to_number].append(time.time())
            self.stored_inbox(to_number).put_nowait((time.time(), stored.text))
            return stored

        async def stamped_send(text: Any) -> None:
            await send(text)
            self.taken[text.to_number].append(time.time())

        sms.threads.receive = stamped_receive  # type: ignore[method-assign]
        sms.outbox.send = stamped_queue  # type: ignore[method-assign]
        sms.gateway.send = stamped_send  # type: ignore[method-assign]

    def stored_inbox(self, number: str) -> asyncio.Queue[tuple[float, str]]:
        """(time stored, text) of the replies to `number`: the outbox gateway's "phone"."""
        return self._inboxes.setdefault(number, asyncio.Queue())


class Level:
    """One concurrency level's turns: (number, its turn, sent at, reply arrived at)."""

    def __init__(self) -> None:
        self.turns: list[tuple[str, int, float, float]] = []
        self.seconds = 0.0

    @property
    def rate(self) -> float:
        return len(self.turns) / self.seconds

    def ms(self, q: float, spans: list[float] | None = None) -> float:
        ordered = sorted(spans if spans is not None else [t[3] - t[2] for t in self.turns])
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] * 1000

    def spans(self, stamps: Stamps) -> dict[str, list[float]]:
        """Where each turn's time went, from the server's stamps."""
        out: dict[str, list[float]] = defaultdict(list)
        for number, k, sent, arrived in self.turns:
            received, stored = stamps.received[number][k], stamps.stored[number][k]
            out["phone -> server received it"].append(received - sent)
            out["received -> reply stored"].append(stored - received)
            if stamps.taken[number]:
                taken = stamps.taken[number][k]
                out["stored -> gateway took it"].append(taken - stored)
                out["gateway took it -> phone"].append(arrived - taken)
        return out


async def exchange(send: Send, inbox: Inbox, number: str, turns: int, level: Level) -> None:
    replies = inbox(number)
    for turn in range(turns):
        said = f"hello {turn}"
        sent = time.time()
        await send(number, said)
        arrived, text = await asyncio.wait_for(replies.get(), 30)
        if f"You said: {said}." not in text:
            raise RuntimeError(f"{number} said {said!r} and got {text!r}")
        level.turns.append((number, turn, sent, arrived))


async def levels(
    send: Send, inbox: Inbox, prefix: str, concurrency: list[int], turns: int
) -> dict[int, Level]:
    await exchange(send, inbox, f"+1555{prefix}99999", 3, Level())  # warm-up
    results = {}
    for count in concurrency:
        level = Level()
        each = max(turns, math.ceil(MIN_TURNS / count))
        numbers = [f"+1555{prefix}{count:03d}{i:03d}" for i in range(count)]
        started = time.perf_counter()
        await asyncio.gather(*(exchange(send, inbox, n, each, level) for n in numbers))
        level.seconds = time.perf_counter() - started
        results[count] = level
    return results


def flows(tmp: Path) -> tuple[Path, Path]:
    dialogs, prompts = copy_flow_files(tmp)
    (dialogs / "echo.yaml").write_text(ECHO_FLOW)
    return dialogs, prompts


Run = tuple[dict[int, Level], Stamps]


async def through_kannel(tmp: Path, concurrency: list[int], turns: int) -> Run:
    dialogs, prompts = flows(tmp / "kannel")
    store = f"sqlite:///{tmp}/kannel.db"
    async with served_through_kannel(tmp, store, dialogs, prompts, TOKEN, flow="echo") as (
        kannel,
        served,
    ):
        stamps = Stamps(served)
        phones = await kannel.phones()
        return await levels(phones.send, phones.inbox, "1", concurrency, turns), stamps


async def through_api(tmp: Path, concurrency: list[int], turns: int) -> Run:
    dialogs, prompts = flows(tmp / "api")
    served = await start_served(
        f"sqlite:///{tmp}/api.db",
        "bench-token",
        dialogs,
        prompts,
        reload=False,
        sms=SmsSettings(flow="echo"),
    )

    async def send(number: str, text: str) -> None:
        async with served.session.post(
            served.url + "/api/sms", json={"from": number, "text": text}, headers=served.headers()
        ) as resp:
            if resp.status != 202:
                raise RuntimeError(f"POST /api/sms: {resp.status} {await resp.text()}")

    try:
        stamps = Stamps(served)
        return await levels(send, stamps.stored_inbox, "2", concurrency, turns), stamps
    finally:
        await served.session.close()
        await served.stop()


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="ivr-bench-sms-in-") as scratch:
        tmp = Path(scratch)
        base, base_stamps = await through_api(tmp, args.concurrency, args.turns)
        kannel, kannel_stamps = await through_kannel(tmp, args.concurrency, args.turns)
    print("inbound SMS turns (text in -> the bot's reply), echo flow, SQLite")
    print(f"{'case':<36} {'turns':>6} {'turns/s':>8} {'p50 ms':>8} {'p95 ms':>8} {'ratio':>6}")
    for count in args.concurrency:
        for name, level in ((f"baseline POST /api/sms, {count} numbers", base[count]),
                            (f"Kannel, {count} numbers", kannel[count])):  # fmt: skip
            print(
                f"{name:<36} {len(level.turns):>6} {level.rate:>8.1f} {level.ms(0.5):>8.1f}"
                f" {level.ms(0.95):>8.1f} {level.rate / base[count].rate:>5.2f}x"
            )
    head = "where a turn's time goes: p50 ms, at"
    print(f"{head:<41}" + "".join(f"{c:>8}" for c in args.concurrency) + " numbers")
    for name, runs, stamps in (("baseline", base, base_stamps), ("Kannel", kannel, kannel_stamps)):
        spans = {count: level.spans(stamps) for count, level in runs.items()}
        for span in spans[args.concurrency[0]]:
            row = "".join(f"{runs[c].ms(0.5, spans[c][span]):>8.1f}" for c in args.concurrency)
            print(f"  {name + ': ' + span:<39}{row}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--turns", type=int, default=10, help="texts per number (at least 40 in all)"
    )
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 10, 50])
    asyncio.run(main(parser.parse_args()))
