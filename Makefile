# The two commands: `make serve` runs the product, `make test` runs the whole suite.
# Both install what is missing first (Debian packages, the venv, the Rasa sidecar's venv) and
# are quick when everything is already there.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
CONFIG ?=

.PHONY: serve test bench lint format rasa-venv system-packages system-packages-test clean

serve: system-packages $(INSTALLED)
	$(BIN)/ivr serve $(if $(CONFIG),--config $(CONFIG))

test: system-packages-test $(INSTALLED) rasa-venv
	$(BIN)/ruff check ivr tests bench
	$(BIN)/ivr validate dialogs prompts
	IVR_REQUIRE_RASA=1 $(BIN)/pytest

bench: $(INSTALLED)
	$(BIN)/python bench/engine_turns.py
	$(BIN)/python bench/validate_flows.py
	$(BIN)/python bench/voice_calls.py
	$(BIN)/python bench/speech_streams.py
	$(BIN)/python bench/concurrent_calls.py
	$(BIN)/python bench/browser_calls.py
	$(BIN)/python bench/widget_in_browser.py
	$(BIN)/python bench/card_on_screen.py
	$(BIN)/python bench/routing_decisions.py
	$(BIN)/python bench/sms_escalation.py
	$(BIN)/python bench/sms_inbound.py

lint: $(INSTALLED)
	$(BIN)/ruff check ivr tests bench
	$(BIN)/ruff format --check ivr tests bench

format: $(INSTALLED)
	$(BIN)/ruff format ivr tests bench
	$(BIN)/ruff check --fix ivr tests bench

$(INSTALLED): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

system-packages:
	scripts/ensure-system-packages.sh serve

system-packages-test:
	scripts/ensure-system-packages.sh test

rasa-venv:
	scripts/setup-rasa.sh

clean:
	rm -rf $(VENV) .rasa-venv .pytest_cache .ruff_cache *.egg-info
