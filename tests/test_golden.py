"""Golden conversations (tests/golden/*.yaml) run as part of the suite, and the runner itself
catches a flow that changed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ivr.config import load_settings
from ivr.golden import load_golden, run_golden
from ivr.simulate import Simulation, load_flows, simulation

GOLDEN_DIR = Path(__file__).parent / "golden"
REPO = Path(__file__).parent.parent


@pytest.fixture
async def sim(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Simulation]:
    monkeypatch.chdir(REPO)
    settings = load_settings(None, {})
    async with simulation(settings, load_flows(settings)) as running:
        yield running


@pytest.mark.parametrize("path", sorted(GOLDEN_DIR.glob("*.yaml")), ids=lambda p: p.stem)
async def test_golden_conversation(path: Path, sim: Simulation) -> None:
    golden, problems = load_golden(path)
    assert golden is not None and not problems, problems
    result = await run_golden(golden, sim)
    assert result.passed, (
        "\n".join(map(str, result.failures)) + "\n\n" + "\n".join(result.transcript)
    )


async def test_a_golden_that_no_longer_matches_fails_at_its_line(
    sim: Simulation, tmp_path: Path
) -> None:
    golden_file = tmp_path / "changed.yaml"
    golden_file.write_text(
        "flow: bank\n"
        "conversation:\n"
        "  - bot: welcome to northwind bank\n"
        "  - caller: '12345678'\n"
        "  - bot: say your mother's maiden name\n"
        "expect:\n"
        "  status: ended\n"
    )
    golden, _ = load_golden(golden_file)
    assert golden is not None
    result = await run_golden(golden, sim)
    messages = [str(p) for p in result.failures]
    assert any(":5:1: bot did not say /say your mother's maiden name/" in m for m in messages)
    assert any("status is" in m and "expected ended" in m for m in messages)


async def test_caller_lines_the_flow_never_asked_for_fail(sim: Simulation, tmp_path: Path) -> None:
    golden_file = tmp_path / "too_long.yaml"
    golden_file.write_text(
        "flow: bank\n"
        "conversation:\n"
        "  - caller: '12345678'\n"
        "  - caller: 'dtmf:2580#'\n"
        "  - caller: 'dtmf:0'\n"
        "  - caller: 'one more thing'\n"
    )
    golden, _ = load_golden(golden_file)
    assert golden is not None
    result = await run_golden(golden, sim)
    assert [p.line for p in result.failures] == [6]
    assert "before the caller said 'one more thing'" in result.failures[0].message


async def test_a_secret_in_the_stored_conversation_fails_never_said(
    sim: Simulation, tmp_path: Path
) -> None:
    golden_file = tmp_path / "leak.yaml"
    golden_file.write_text(
        "flow: bank\n"
        "conversation:\n"
        "  - caller: '12345678'\n"
        "  - caller: 'dtmf:2580#'\n"
        "  - caller: 'dtmf:0'\n"
        "expect:\n"
        "  never_said: ['Alice']\n"
    )
    golden, _ = load_golden(golden_file)
    assert golden is not None
    result = await run_golden(golden, sim)
    assert any("'Alice' appears in the stored conversation" in str(p) for p in result.failures)
