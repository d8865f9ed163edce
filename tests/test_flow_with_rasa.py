"""The example flows understood by a real Rasa server trained from dialogs/intents.yaml."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ivr.config import load_settings
from ivr.golden import load_golden, run_golden
from ivr.simulate import Simulation, load_flows, simulation
from ivr.speech.nlu.fallback import FallbackClassifier

REPO = Path(__file__).parent.parent


@pytest.fixture
async def rasa_sim(rasa_url: str, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Simulation]:
    monkeypatch.chdir(REPO)
    settings = load_settings(None, {"IVR_NLU_ENGINE": "rasa", "IVR_NLU_RASA_URL": rasa_url})
    async with simulation(settings, load_flows(settings)) as sim:
        yield sim


@pytest.mark.parametrize("golden", ["bank_balance_by_voice.yaml", "bank_vip_agent_priority.yaml"])
async def test_golden_conversations_pass_with_rasa(rasa_sim: Simulation, golden: str) -> None:
    loaded, problems = load_golden(REPO / "tests" / "golden" / golden)
    assert loaded is not None and not problems
    result = await run_golden(loaded, rasa_sim)
    assert result.passed, "\n".join(map(str, result.failures))
    classifier = rasa_sim.services.nlu("en")
    assert isinstance(classifier, FallbackClassifier)
    assert classifier.primary_answers >= 1, "Rasa was never asked"
    assert classifier.fallbacks_unavailable == 0, "Rasa was unavailable"


async def test_the_intent_on_the_timeline_says_rasa_answered(rasa_sim: Simulation) -> None:
    lines = iter(["12345678", "dtmf:2580#", "I have lost my debit card", "no"])

    async def read() -> str | None:
        return next(lines, None)

    from ivr.channels.simulator import SimulatorChannel

    outcome = await rasa_sim.run("bank", SimulatorChannel(read, lambda text: None))
    chosen = [t.meta for t in outcome.conversation.timeline if "intent" in t.meta]
    assert chosen and chosen[0]["intent"] == "report_lost_card"
    assert chosen[0]["nlu"] == "rasa"
