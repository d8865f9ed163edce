"""How long `ivr validate` takes for 100 flows, against 1 flow as the baseline (same run).

Each generated flow is a copy of dialogs/bank.yaml under another name (17 steps, templates,
lookups, menus), validated together with the example intents and prompts.

    .venv/bin/python bench/validate_flows.py [--flows 100] [--repeat 5]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from ivr.flow.validator import validate

REPO = Path(__file__).resolve().parent.parent


def make_flows(directory: Path, count: int) -> None:
    source = (REPO / "dialogs" / "bank.yaml").read_text()
    for i in range(count):
        text = source.replace("flow: bank", f"flow: bank_{i}").replace(
            'numbers: ["1000", "bank"]', f'numbers: ["{10000 + i}"]'
        )
        (directory / f"bank_{i}.yaml").write_text(text)


def timed(paths: list[Path], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        _, problems = validate(paths, env_keys=["CRM_URL"])
        times.append(time.perf_counter() - started)
        assert not problems, problems[:3]
    return statistics.median(times)


def main(count: int, repeat: int) -> None:
    shared = [REPO / "dialogs" / "intents.yaml", REPO / "prompts"]
    with tempfile.TemporaryDirectory() as tmp:
        one, many = Path(tmp) / "one", Path(tmp) / "many"
        one.mkdir()
        many.mkdir()
        make_flows(one, 1)
        make_flows(many, count)
        base = timed([one, *shared], repeat)
        full = timed([many, *shared], repeat)
    print(f"{'case':<28} {'median s':>9} {'per flow ms':>12} {'ratio':>7}")
    print(f"{'1 flow (baseline)':<28} {base:>9.3f} {base * 1000:>12.1f} {1:>7.2f}")
    print(f"{f'{count} flows':<28} {full:>9.3f} {full * 1000 / count:>12.1f} {full / base:>7.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flows", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    main(args.flows, args.repeat)
