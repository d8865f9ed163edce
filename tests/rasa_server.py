"""Pytest plugin: a real Rasa server for the NLU tests, and the banking catalogue they share.

Fixtures (all session-scoped):

* `banking_catalog` — a realistic IVR catalogue (6 intents × 10 examples, entity
  account_number `\\b\\d{8}\\b`), used by the built-in matcher tests and to train Rasa.
* `rasa_project` — that catalogue exported with `export_rasa` into a temporary directory and
  trained with `rasa train nlu` (≈ 10 s); the trained model is in `<project>/models`.
* `rasa_url` — `rasa run --enable-api` serving that model on 127.0.0.1 and a free port picked at
  run time, polled on /status until it answers (at most `RASA_START_TIMEOUT` s); terminated at
  the end of the session.

Rasa lives in its own Python 3.10 virtual environment, `<repo>/.rasa-venv`
(`scripts/setup-rasa.sh`, `make rasa-venv`). Without it these fixtures skip, except when the
environment variable `CI` or `IVR_REQUIRE_RASA` is set: then they fail, so CI cannot pass
without having run Rasa for real.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from ivr.flow.loader import load
from ivr.speech.nlu.base import IntentCatalog
from ivr.speech.nlu.export import export_rasa

REPO_ROOT = Path(__file__).resolve().parent.parent
RASA_VENV = REPO_ROOT / ".rasa-venv"
RASA_BIN = RASA_VENV / "bin" / "rasa"
RASA_TRAIN_TIMEOUT = 180.0
RASA_START_TIMEOUT = 120.0
RASA_STOP_TIMEOUT = 15.0

DIALOGS = Path(__file__).resolve().parent.parent / "dialogs"

BANKING_CATALOG = IntentCatalog(
    language="en",
    intents={
        "check_balance": (
            "check my balance",
            "what is my balance",
            "how much money do I have",
            "account balance",
            "balance please",
            "I want to know my balance",
            "how much is in my account",
            "tell me my balance",
            "what's left in my checking account",
            "balance inquiry",
            "what is the balance of account 87654321",
        ),
        "report_lost_card": (
            "I lost my card",
            "my card was stolen",
            "report a lost card",
            "I can't find my credit card",
            "block my card",
            "someone stole my wallet",
            "cancel my debit card",
            "my bank card is missing",
            "lost card",
            "freeze my card",
        ),
        "talk_to_agent": (
            "agent",
            "speak to a person",
            "talk to a human",
            "representative",
            "operator",
            "put me through to someone",
            "I want to talk to a real person",
            "customer service",
            "connect me to an agent",
            "can I speak with somebody",
        ),
        "affirm": (
            "yes",
            "yeah",
            "yes please",
            "correct",
            "that's right",
            "sure",
            "okay",
            "yep",
            "absolutely",
            "of course",
        ),
        "deny": (
            "no",
            "nope",
            "no thanks",
            "that's wrong",
            "not really",
            "no it isn't",
            "incorrect",
            "never mind",
            "don't",
            "no way",
        ),
        "pay_bill": (
            "pay my bill",
            "I want to pay a bill",
            "make a payment",
            "pay the electricity bill",
            "I'd like to pay my phone bill",
            "bill payment",
            "pay my credit card bill",
            "settle my invoice",
            "pay the water bill",
            "transfer money to pay a bill",
        ),
    },
    entities={"account_number": r"\b\d{8}\b"},
)

_timings: dict[str, float] = {}


def _rasa_env() -> dict[str, str]:
    return {**os.environ, "RASA_TELEMETRY_ENABLED": "false", "TF_CPP_MIN_LOG_LEVEL": "2"}


def _require_rasa() -> None:
    if RASA_BIN.exists():
        return
    message = f"Rasa is not installed in {RASA_VENV}: run `make rasa-venv`"
    if os.environ.get("CI") or os.environ.get("IVR_REQUIRE_RASA"):
        pytest.fail(message + " (CI / IVR_REQUIRE_RASA is set, so this is not skipped)")
    pytest.skip(message)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _tail(path: Path, chars: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return "(no log)"


@pytest.fixture(scope="session")
def banking_catalog() -> IntentCatalog:
    """The product's own intents (dialogs/intents.yaml), as `ivr nlu export-rasa` exports
    them, plus the test-only examples: one model serves the NLU tests and the flows."""
    flows, problems = load([DIALOGS / "intents.yaml"])
    assert not problems, problems
    product = flows.intents["en"]
    intents = dict(product.intents)
    for name, examples in BANKING_CATALOG.intents.items():
        intents[name] = tuple(dict.fromkeys((*intents.get(name, ()), *examples)))
    entities = {**BANKING_CATALOG.entities, **product.entities}
    return IntentCatalog(language="en", intents=intents, entities=entities)


@pytest.fixture(scope="session")
def rasa_project(tmp_path_factory: pytest.TempPathFactory, banking_catalog: IntentCatalog) -> Path:
    """A Rasa project exported from the banking catalogue, with a trained model in models/."""
    _require_rasa()
    project = tmp_path_factory.mktemp("rasa-project")
    export_rasa(banking_catalog, project)
    log_path = project / "train.log"
    started = time.monotonic()
    with log_path.open("wb") as log:
        try:
            result = subprocess.run(
                [
                    str(RASA_BIN),
                    "train",
                    "nlu",
                    "-c",
                    "config.yml",
                    "-d",
                    "domain.yml",
                    "--nlu",
                    "data/nlu.yml",
                    "--out",
                    "models",
                    "--fixed-model-name",
                    "ivr-test",
                ],
                cwd=project,
                env=_rasa_env(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=RASA_TRAIN_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired:
            pytest.fail(f"rasa train nlu took over {RASA_TRAIN_TIMEOUT:g} s:\n{_tail(log_path)}")
    _timings["rasa train nlu"] = time.monotonic() - started
    if result.returncode != 0 or not (project / "models" / "ivr-test.tar.gz").exists():
        pytest.fail(f"rasa train nlu failed (exit {result.returncode}):\n{_tail(log_path)}")
    return project


@pytest.fixture(scope="session")
def rasa_url(rasa_project: Path) -> Iterator[str]:
    """URL of a running Rasa server with the banking model loaded."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = rasa_project / "run.log"
    log = log_path.open("wb")
    started = time.monotonic()
    process = subprocess.Popen(
        [
            str(RASA_BIN),
            "run",
            "--enable-api",
            "-i",
            "127.0.0.1",
            "-p",
            str(port),
            "-m",
            str(rasa_project / "models"),
        ],
        cwd=rasa_project,
        env=_rasa_env(),
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = started + RASA_START_TIMEOUT
        while True:
            try:
                with urllib.request.urlopen(f"{url}/status", timeout=2) as response:
                    if response.status == 200 and json.load(response).get("model_file"):
                        break
            except (OSError, urllib.error.URLError, ValueError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(
                    f"rasa run did not answer on {url} within {RASA_START_TIMEOUT:g} s:\n"
                    + _tail(log_path)
                )
            try:  # the poll interval; also notices a server that exited
                code = process.wait(timeout=0.25)
            except subprocess.TimeoutExpired:
                continue
            pytest.fail(f"rasa run exited with {code} before answering:\n{_tail(log_path)}")
        _timings["rasa run: start to first /status"] = time.monotonic() - started
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=RASA_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=RASA_STOP_TIMEOUT)
        log.close()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _timings:
        terminalreporter.write_sep("-", "Rasa timings")
        for what, seconds in _timings.items():
            terminalreporter.write_line(f"{what}: {seconds:.1f} s")
