"""Escalation to SMS through a real Kannel, and the continue link it carries, end to end.

An in-process `ivr serve` application (SQLite, no media workers) with `[sms] gateway = kannel`:
Debian's bearerbox + smsbox with its fake SMS centre, the customers' phones on it speaking
fakesmsc's protocol (tests/kannel.Phones: fakesmsc itself reads what is delivered to it only once
a second when idle, which would be most of what is measured).
Each sample is a scripted phone call on the bank flow (tests/test_continue_links.Phone: account,
PIN, lost card, "yes" to the offer of a text) from a number of its own, then:
  a. the customer's "yes" -> (1) the text with the link queued in the outbox, (2) Kannel's
     sendsms answered 202 (the gateway took it), (3) the phone got it;
  b. the link opened: a /chat/ws websocket sends {"type": "continue", "token": ...} -> the first
     `bot` frame (the conversation goes on at its resume step). Baseline, in the same run and
     interleaved: a fresh chat's {"type": "start"} -> its first `bot` frame.
Kannel hands a text to the SMS centre before it answers sendsms, so (3) may come before (2).
Times are wall clock (time.time()) on this machine: the "yes" as the flow reads it, the outbox
and the gateway stamped in the server, the phone when the fake SMS centre's line is read.

    .venv/bin/python bench/sms_escalation.py              # 20 samples
    .venv/bin/python bench/sms_escalation.py --samples 50
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from ivr.conversation import Status  # noqa: E402
from ivr.web.keys import CONVERSATIONS, SMS  # noqa: E402
from tests.kannel import served_through_kannel  # noqa: E402
from tests.serve_fixtures import ALICE, Served, copy_flow_files  # noqa: E402
from tests.test_continue_links import Phone  # noqa: E402

TOKEN = "bench-kannel-token"


class StampedPhone(Phone):
    """The scripted call, noting when the flow reads the customer's "yes"."""

    yes_at = 0.0

    async def _next_line(self) -> str | None:
        line = await super()._next_line()
        if line == "yes":
            self.yes_at = time.time()
        return line


def stamp_server(served: Served) -> tuple[dict[str, float], dict[str, float]]:
    """When each number's text was queued in the outbox, and when the gateway took it."""
    sms = served.app[SMS]
    queued: dict[str, float] = {}
    taken: dict[str, float] = {}
    queue, send = sms.outbox.send, sms.gateway.send

    async def stamped_queue(to_number: str, *args: Any, **kwargs: Any) -> Any:
        stored = await queue(to_number, *args, **kwargs)
        queued.setdefault(to_number, time.time())
        return stored

    async def stamped_send(text: Any) -> None:
        await send(text)  # returns on Kannel's 202
        taken.setdefault(text.to_number, time.time())

    sms.outbox.send = stamped_queue  # type: ignore[method-assign]
    sms.gateway.send = stamped_send  # type: ignore[method-assign]
    return queued, taken


async def escalate(served: Served, number: str) -> float:
    """A call that ends with the link texted to `number`; when the "yes" was read."""
    phone = StampedPhone(f"dtmf:{ALICE['account']}#", f"dtmf:{ALICE['pin']}#", "dtmf:2", "yes")
    live = await served.app[CONVERSATIONS].start(phone, "bank", contact={"phone": number})
    stop = await asyncio.wait_for(live.task, 10)
    if stop.status is not Status.ESCALATED:
        raise RuntimeError(f"the call was not escalated: {phone.heard}")
    return phone.yes_at


async def first_bot_frame(served: Served, frame: dict[str, Any]) -> float:
    """A new chat sends `frame`; milliseconds until its first bot frame."""
    chat = await served.chat()
    await chat.expect("hello")
    started = time.perf_counter()
    await chat.send(frame)
    await chat.expect("bot", timeout=10)
    elapsed = (time.perf_counter() - started) * 1000
    await chat.close()
    return elapsed


async def run(samples: int, tmp: Path) -> dict[str, list[float]]:
    dialogs, prompts = copy_flow_files(tmp)
    rows: dict[str, list[float]] = {
        '"yes" -> text queued in the outbox': [],
        '"yes" -> Kannel 202 (gateway took it)': [],
        '"yes" -> on the phone': [],
        "Kannel 202 -> on the phone": [],
        "link: continue -> first bot frame": [],
        "baseline: start -> first bot frame": [],
    }
    store = f"sqlite:///{tmp}/bench.db"
    async with served_through_kannel(tmp, store, dialogs, prompts, TOKEN) as (kannel, served):
        queued, taken = stamp_server(served)
        phones = await kannel.phones()
        for index in range(samples + 1):  # the first is a warm-up, not counted
            number = f"+1555030{index:04d}"
            yes_at = await escalate(served, number)
            printed_at, text = await asyncio.wait_for(phones.inbox(number).get(), 15)
            link = text.rsplit(" ", 1)[1]
            continued = await first_bot_frame(
                served, {"type": "continue", "token": link.rsplit("/c/", 1)[1]}
            )
            fresh = await first_bot_frame(served, {"type": "start", "flow": "bank"})
            if index == 0:
                continue
            values = (
                queued[number] - yes_at,
                taken[number] - yes_at,
                printed_at - yes_at,
                printed_at - taken[number],
            )
            for name, value in zip(rows, values, strict=False):
                rows[name].append(value * 1000)
            rows["link: continue -> first bot frame"].append(continued)
            rows["baseline: start -> first bot frame"].append(fresh)
    return rows


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="ivr-bench-sms-esc-") as scratch:
        rows = await run(args.samples, Path(scratch))
    print(
        f"escalation to SMS through Kannel and its fake SMS centre: {args.samples} samples, SQLite"
    )
    print(f"{'ms':40} {'p50':>7} {'p95':>7} {'max':>7}")
    for name, values in rows.items():
        print(
            f"{name:40} {statistics.median(values):7.1f} {percentile(values, 0.95):7.1f}"
            f" {max(values):7.1f}"
        )
    link = statistics.median(rows["link: continue -> first bot frame"])
    base = statistics.median(rows["baseline: start -> first bot frame"])
    print(f"continue link vs fresh chat, first bot frame: p50 ratio {link / base:.2f}x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=20)
    asyncio.run(main(parser.parse_args()))
