"""Rasa over HTTP against a real Rasa 3.6 server (fixture `rasa_url` from the
`tests.rasa_server` plugin), the training-data export it was trained from, and the fallback to
the built-in matcher when Rasa is down, slow or broken."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from ruamel.yaml import YAML

from ivr.speech.nlu.base import IntentCatalog, NluResult
from ivr.speech.nlu.builtin import BuiltinMatcher
from ivr.speech.nlu.fallback import FallbackClassifier
from ivr.speech.nlu.rasa import NluUnavailable, RasaClassifier, rasa_status

FALLBACK_LOGGER = "ivr.speech.nlu.fallback"
SLOW_SERVER_HOLD = 10.0  # the slow server answers after this at the latest (bounded)


@pytest.fixture
def closed_url() -> Iterator[str]:
    """A URL on which connecting is refused: the port is bound but never listens."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


@pytest.fixture
async def broken_rasa() -> AsyncIterator[str]:
    """A stand-in for a misbehaving Rasa on a free port; the path prefix picks the failure:
    /slow (answers only after the test), /error (HTTP 500), /garbage (200, not JSON),
    /wrong-shape (200, JSON that is not a parse result)."""
    release = asyncio.Event()

    async def slow(request: web.Request) -> web.Response:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(release.wait(), SLOW_SERVER_HOLD)
        return web.json_response({"intent": {"name": "affirm", "confidence": 1.0}})

    async def error(request: web.Request) -> web.Response:
        return web.Response(status=500, text="internal error")

    async def garbage(request: web.Request) -> web.Response:
        return web.Response(text="<html>not json</html>", content_type="text/html")

    async def wrong_shape(request: web.Request) -> web.Response:
        return web.json_response(["not", "a", "parse", "result"])

    app = web.Application()
    app.router.add_post("/slow/model/parse", slow)
    app.router.add_post("/error/model/parse", error)
    app.router.add_get("/error/status", error)
    app.router.add_post("/garbage/model/parse", garbage)
    app.router.add_post("/wrong-shape/model/parse", wrong_shape)
    runner = web.AppRunner(app, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        release.set()
        await runner.cleanup()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == FALLBACK_LOGGER and r.levelno == logging.WARNING
    ]


# --- the export, proven by Rasa training on it --------------------------------------------------


@pytest.mark.rasa
def test_export_rasa_writes_training_data_rasa_accepts(
    rasa_project: Path, banking_catalog: IntentCatalog
) -> None:
    # rasa_project exported the catalogue and `rasa train nlu` succeeded on it
    assert (rasa_project / "models" / "ivr-test.tar.gz").stat().st_size > 0
    yaml = YAML(typ="safe")
    nlu = yaml.load((rasa_project / "data" / "nlu.yml").read_text())
    domain = yaml.load((rasa_project / "domain.yml").read_text())
    config = yaml.load((rasa_project / "config.yml").read_text())

    assert nlu["version"] == "3.1"
    intents = {e["intent"]: e["examples"] for e in nlu["nlu"] if "intent" in e}
    assert list(intents) == list(banking_catalog.intents)
    assert "- check my balance\n" in intents["check_balance"]
    annotated = "- what is the balance of account [87654321](account_number)\n"
    assert annotated in intents["check_balance"]
    assert [e for e in nlu["nlu"] if "regex" in e] == [
        {"regex": "account_number", "examples": "- \\b\\d{8}\\b\n"}
    ]
    assert domain["intents"] == list(banking_catalog.intents)
    assert domain["entities"] == ["account_number"]
    assert config["language"] == "en"
    assert config["assistant_id"].startswith("ivr-")
    assert [c["name"] for c in config["pipeline"]] == [
        "WhitespaceTokenizer",
        "RegexFeaturizer",
        "RegexEntityExtractor",
        "CountVectorsFeaturizer",
        "CountVectorsFeaturizer",
        "LogisticRegressionClassifier",
    ]
    assert config["pipeline"][2]["use_regexes"] is True
    assert config["pipeline"][4] == {
        "name": "CountVectorsFeaturizer",
        "analyzer": "char_wb",
        "min_ngram": 1,
        "max_ngram": 4,
    }
    assert config["pipeline"][5]["max_iter"] == 1000


def test_export_rasa_warns_about_entities_no_example_shows(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from ivr.speech.nlu.export import export_rasa

    catalog = IntentCatalog(
        language="en", intents={"affirm": ("yes",)}, entities={"pin": r"\b\d{4}\b"}
    )
    with caplog.at_level(logging.WARNING):
        paths = export_rasa(catalog, tmp_path)
    assert sorted(p.relative_to(tmp_path).as_posix() for p in paths) == [
        "config.yml",
        "data/nlu.yml",
        "domain.yml",
    ]
    assert any("'pin'" in r.getMessage() for r in caplog.records)
    with pytest.raises(ValueError):
        export_rasa(IntentCatalog(language="en", intents={"empty": ()}), tmp_path)


# --- the real Rasa server ---------------------------------------------------------------------


@pytest.mark.rasa
@pytest.mark.parametrize(
    ("text", "intent"),
    [
        ("what's my balance", "check_balance"),
        ("I lost my credit card", "report_lost_card"),
        ("put me through to a human", "talk_to_agent"),
        ("yes please", "affirm"),
        ("no", "deny"),
        ("I want to pay my phone bill", "pay_bill"),
    ],
)
async def test_rasa_recognises_intents_with_confidence(
    rasa_url: str, session: aiohttp.ClientSession, text: str, intent: str
) -> None:
    result = await RasaClassifier(rasa_url, session).parse(text)
    assert result.intent == intent, result
    assert 0.5 < result.confidence <= 1.0
    assert result.source == "rasa"


@pytest.mark.rasa
async def test_rasa_candidates_pick_the_best_ranked_expected_intent(
    rasa_url: str, session: aiohttp.ClientSession
) -> None:
    rasa = RasaClassifier(rasa_url, session)
    async with session.post(f"{rasa_url}/model/parse", json={"text": "yes please"}) as response:
        ranking = [r["name"] for r in (await response.json())["intent_ranking"]]
    assert ranking[0] == "affirm"
    expected = ["deny", "talk_to_agent", "pay_bill"]
    best_expected = next(name for name in ranking if name in expected)

    restricted = await rasa.parse("yes please", candidates=expected)
    assert restricted.intent == best_expected
    assert 0.0 < restricted.confidence < (await rasa.parse("yes please")).confidence
    assert (await rasa.parse("yes please", candidates=["affirm", "deny"])).intent == "affirm"
    assert (await rasa.parse("yes please", candidates=["no_such_intent"])).intent is None


@pytest.mark.rasa
async def test_rasa_extracts_entities(rasa_url: str, session: aiohttp.ClientSession) -> None:
    result = await RasaClassifier(rasa_url, session).parse("check balance for account 12345678")
    assert result.intent == "check_balance"
    assert result.entities == {"account_number": "12345678"}


@pytest.mark.rasa
async def test_rasa_status_reports_the_loaded_model(rasa_url: str) -> None:
    status = await rasa_status(rasa_url)
    assert status["model_file"].endswith("ivr-test.tar.gz")


@pytest.mark.rasa
async def test_rasa_classifier_owns_its_session_when_given_none(rasa_url: str) -> None:
    async with RasaClassifier(rasa_url, timeout=5.0) as rasa:
        assert (await rasa.parse("agent")).intent == "talk_to_agent"


# --- failures become NluUnavailable -----------------------------------------------------------


async def test_unreachable_rasa_raises_nlu_unavailable(
    closed_url: str, session: aiohttp.ClientSession
) -> None:
    with pytest.raises(NluUnavailable, match="unreachable"):
        await RasaClassifier(closed_url, session).parse("yes")
    with pytest.raises(NluUnavailable, match="unreachable"):
        await rasa_status(closed_url)


async def test_broken_rasa_raises_nlu_unavailable(
    broken_rasa: str, session: aiohttp.ClientSession
) -> None:
    with pytest.raises(NluUnavailable, match=r"did not answer within 0\.2 s"):
        await RasaClassifier(f"{broken_rasa}/slow", session, timeout=0.2).parse("yes")
    with pytest.raises(NluUnavailable, match="HTTP 500") as error:
        await RasaClassifier(f"{broken_rasa}/error", session).parse("yes")
    assert error.value.status == 500
    with pytest.raises(NluUnavailable, match="invalid JSON"):
        await RasaClassifier(f"{broken_rasa}/garbage", session).parse("yes")
    with pytest.raises(NluUnavailable, match="unexpected body"):
        await RasaClassifier(f"{broken_rasa}/wrong-shape", session).parse("yes")
    with pytest.raises(NluUnavailable, match="HTTP 404"):  # /error/status 500 -> /version 404
        await rasa_status(f"{broken_rasa}/error")


# --- the fallback ------------------------------------------------------------------------------


async def test_fallback_answers_when_rasa_is_down(
    closed_url: str,
    session: aiohttp.ClientSession,
    banking_catalog: IntentCatalog,
    caplog: pytest.LogCaptureFixture,
) -> None:
    nlu = FallbackClassifier(
        RasaClassifier(closed_url, session), BuiltinMatcher(banking_catalog), threshold=0.6
    )
    with caplog.at_level(logging.WARNING, logger=FALLBACK_LOGGER):
        results = [
            await nlu.parse("I lost my card"),
            await nlu.parse("agent"),
            await nlu.parse("yes", candidates=["affirm", "deny"]),
            await nlu.parse("uh maybe tomorrow"),
        ]
    assert [r.intent for r in results] == ["report_lost_card", "talk_to_agent", "affirm", None]
    assert {r.source for r in results} == {"builtin"}
    assert len(_warnings(caplog)) == 1, caplog.text
    assert "unreachable" in _warnings(caplog)[0]
    assert (nlu.fallbacks_unavailable, nlu.outages, nlu.primary_answers) == (4, 1, 0)
    assert nlu.primary_available is False


async def test_fallback_answers_when_rasa_is_slow(
    broken_rasa: str,
    session: aiohttp.ClientSession,
    banking_catalog: IntentCatalog,
    caplog: pytest.LogCaptureFixture,
) -> None:
    rasa = RasaClassifier(f"{broken_rasa}/slow", session, timeout=0.3)
    nlu = FallbackClassifier(rasa, BuiltinMatcher(banking_catalog), threshold=0.6)
    loop = asyncio.get_running_loop()
    with caplog.at_level(logging.WARNING, logger=FALLBACK_LOGGER):
        started = loop.time()
        first = await nlu.parse("check my balance please")
        elapsed = loop.time() - started
        second = await nlu.parse("pay my bill")
    assert (first.intent, first.source) == ("check_balance", "builtin")
    assert (second.intent, second.source) == ("pay_bill", "builtin")
    assert elapsed < 2.0  # the turn waited for the timeout, not for the slow server
    assert len(_warnings(caplog)) == 1
    assert "did not answer within 0.3 s" in _warnings(caplog)[0]
    assert nlu.fallbacks_unavailable == 2


@pytest.mark.rasa
async def test_fallback_uses_rasa_and_logs_its_recovery(
    rasa_url: str,
    closed_url: str,
    session: aiohttp.ClientSession,
    banking_catalog: IntentCatalog,
    caplog: pytest.LogCaptureFixture,
) -> None:
    rasa = RasaClassifier(closed_url, session)
    nlu = FallbackClassifier(rasa, BuiltinMatcher(banking_catalog), threshold=0.6)
    with caplog.at_level(logging.WARNING, logger=FALLBACK_LOGGER):
        assert (await nlu.parse("agent")).source == "builtin"
        assert (await nlu.parse("agent")).source == "builtin"
        rasa.url = rasa_url  # Rasa is back
        back = await nlu.parse("I want to pay my phone bill")
        again = await nlu.parse("what's my balance")
    assert (back.intent, back.source) == ("pay_bill", "rasa")
    assert (again.intent, again.source) == ("check_balance", "rasa")
    warnings = _warnings(caplog)
    assert len(warnings) == 2, warnings
    assert "unavailable" in warnings[0]
    assert "recovered" in warnings[1] and "2 turn(s)" in warnings[1]
    assert (nlu.outages, nlu.fallbacks_unavailable, nlu.primary_answers) == (1, 2, 2)
    assert nlu.primary_available is True


@pytest.mark.rasa
async def test_fallback_rejects_out_of_scope_input_rasa_is_unsure_about(
    rasa_url: str, session: aiohttp.ClientSession, banking_catalog: IntentCatalog
) -> None:
    nlu = FallbackClassifier(
        RasaClassifier(rasa_url, session), BuiltinMatcher(banking_catalog), threshold=0.6
    )
    for text in ("uh maybe tomorrow", "what's the weather"):
        raw = await nlu.primary.parse(text)
        assert raw.intent is not None and raw.confidence < 0.6  # Rasa always names an intent
        result = await nlu.parse(text)
        assert result.intent is None
        assert (result.source, result.confidence) == ("rasa", raw.confidence)
    assert (nlu.low_confidence, nlu.fallbacks_low_confidence) == (2, 0)


class _Scripted:
    """A primary classifier that answers what it is told to."""

    def __init__(self, answer: NluResult) -> None:
        self.answer = answer

    async def parse(self, text: str, candidates: Sequence[str] | None = None) -> NluResult:
        return self.answer


async def test_fallback_prefers_a_confident_builtin_answer_to_an_unsure_primary(
    banking_catalog: IntentCatalog,
) -> None:
    unsure = NluResult("deny", 0.4, {"account_number": "12345678"}, source="rasa")
    nlu = FallbackClassifier(_Scripted(unsure), BuiltinMatcher(banking_catalog), threshold=0.6)
    helped = await nlu.parse("agent")
    assert (helped.intent, helped.source) == ("talk_to_agent", "builtin")
    assert helped.entities == {"account_number": "12345678"}
    nobody = await nlu.parse("uh maybe tomorrow")
    assert nobody == NluResult(None, 0.4, {"account_number": "12345678"}, source="rasa")
    assert (nlu.low_confidence, nlu.fallbacks_low_confidence, nlu.fallbacks) == (2, 1, 1)


async def test_fallback_survives_a_primary_that_crashes(
    banking_catalog: IntentCatalog, caplog: pytest.LogCaptureFixture
) -> None:
    class Crashing:
        async def parse(self, text: str, candidates: Sequence[str] | None = None) -> NluResult:
            raise RuntimeError("bug")

    nlu = FallbackClassifier(Crashing(), BuiltinMatcher(banking_catalog), threshold=0.6)
    with caplog.at_level(logging.WARNING, logger=FALLBACK_LOGGER):
        assert (await nlu.parse("yes")).intent == "affirm"
        assert (await nlu.parse("no")).intent == "deny"
    assert len(_warnings(caplog)) == 1
    assert "RuntimeError: bug" in _warnings(caplog)[0]


async def test_fallback_bounds_a_primary_without_a_timeout_of_its_own(
    banking_catalog: IntentCatalog, caplog: pytest.LogCaptureFixture
) -> None:
    never = asyncio.Event()

    class Hanging:
        async def parse(self, text: str, candidates: Sequence[str] | None = None) -> NluResult:
            await never.wait()
            raise AssertionError("unreachable")

    nlu = FallbackClassifier(
        Hanging(), BuiltinMatcher(banking_catalog), threshold=0.6, timeout=0.05
    )
    with caplog.at_level(logging.WARNING, logger=FALLBACK_LOGGER):
        assert (await nlu.parse("operator")).intent == "talk_to_agent"
    assert "no answer within 0.05 s" in _warnings(caplog)[0]
    assert nlu.fallbacks_unavailable == 1
