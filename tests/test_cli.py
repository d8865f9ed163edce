"""The `ivr` command as an operator runs it: subprocesses, exit codes, what is printed."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
from ruamel.yaml import YAML

from tests.serve_fixtures import REPO, copy_flow_files, free_port

TIMEOUT_S = 60
PLACE = re.compile(r"^.+\.yaml:\d+:\d+: ", re.M)


def ivr(
    *args: str, cwd: Path = REPO, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `ivr ARGS` with no IVR_* variables but those given (and no phone calls: those have
    their own tests)."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("IVR_")}
    environ["IVR_SIP_ENABLED"] = "no"
    environ.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "ivr.cli", *args],
        cwd=cwd,
        env=environ,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )


def load_yaml(path: Path) -> object:
    return YAML(typ="safe").load(path.read_text(encoding="utf-8"))


def line_of(path: Path, text: str) -> int:
    lines = path.read_text(encoding="utf-8").splitlines()
    return next(n for n, line in enumerate(lines, 1) if text in line)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A directory holding copies of dialogs/ and prompts/, to run commands in."""
    copy_flow_files(tmp_path)
    return tmp_path


# ------------------------------------------------------------------ help


@pytest.mark.parametrize(
    "command",
    [
        [],
        ["serve"],
        ["validate"],
        ["schema"],
        ["simulate"],
        ["test"],
        ["nlu"],
        ["nlu", "export-rasa"],
    ],
    ids=lambda c: " ".join(c) or "ivr",
)
def test_help_works_for_every_command(command: list[str]) -> None:
    done = ivr(*command, "--help")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: ivr")
    assert done.stderr == ""


def test_no_command_is_a_usage_error() -> None:
    done = ivr()
    assert done.returncode == 2
    assert "usage: ivr" in done.stderr


# ------------------------------------------------------------------ validate


def test_validate_the_shipped_flows_is_clean() -> None:
    done = ivr("validate", "dialogs", "prompts")
    assert done.returncode == 0, done.stdout + done.stderr
    assert not PLACE.search(done.stdout)
    assert "ok:" in done.stderr
    assert "bank" in done.stderr and "parcel" in done.stderr


def test_validate_reports_file_line_col_and_exits_1(workdir: Path) -> None:
    bank = workdir / "dialogs" / "bank.yaml"
    bank.write_text(
        bank.read_text(encoding="utf-8").replace("next: identify", "next: nowhere"),
        encoding="utf-8",
    )
    done = ivr("validate", "dialogs", "prompts", cwd=workdir)
    assert done.returncode == 1
    places = PLACE.findall(done.stdout)
    assert places, done.stdout
    expected = f"dialogs/bank.yaml:{line_of(bank, 'next: nowhere')}:"
    mention = [line for line in done.stdout.splitlines() if "nowhere" in line]
    assert mention and mention[0].startswith(expected), done.stdout
    assert "error(s)" in done.stderr


def test_validate_reports_yaml_syntax_errors_with_their_place(workdir: Path) -> None:
    parcel = workdir / "dialogs" / "parcel.yaml"
    parcel.write_text(parcel.read_text(encoding="utf-8") + "  oops: [unclosed\n", "utf-8")
    done = ivr("validate", str(parcel), cwd=workdir)
    assert done.returncode == 1
    assert re.search(r"^.*parcel\.yaml:\d+:\d+: .*YAML", done.stdout, re.M), done.stdout


def test_validate_a_missing_path_is_an_error(workdir: Path) -> None:
    done = ivr("validate", "dialogs", "no_such_dir", cwd=workdir)
    assert done.returncode == 1
    assert "no_such_dir" in done.stderr


# ------------------------------------------------------------------ schema


@pytest.fixture(scope="module")
def schema() -> dict:
    done = ivr("schema")
    assert done.returncode == 0, done.stderr
    schema = json.loads(done.stdout)
    jsonschema.validators.validator_for(schema).check_schema(schema)
    return schema


@pytest.mark.parametrize("flow", ["bank.yaml", "parcel.yaml"])
def test_schema_accepts_the_example_flows(schema: dict, flow: str) -> None:
    jsonschema.validate(load_yaml(REPO / "dialogs" / flow), schema)


def test_schema_rejects_an_unknown_step_kind(schema: dict) -> None:
    flow = load_yaml(REPO / "dialogs" / "bank.yaml")
    assert isinstance(flow, dict)
    flow["steps"]["greet"] = {"launch_rockets": "now", "next": "identify"}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(flow, schema)


def test_schema_can_be_written_to_a_file(schema: dict, tmp_path: Path) -> None:
    out = tmp_path / "flow.schema.json"
    done = ivr("schema", "--output", str(out))
    assert done.returncode == 0, done.stderr
    assert json.loads(out.read_text(encoding="utf-8")) == schema


# ------------------------------------------------------------------ simulate


def test_simulate_exits_0_when_the_flow_ends(tmp_path: Path) -> None:
    script = tmp_path / "balance.txt"
    script.write_text("# Alice asks for her balance\n12345678\ndtmf:2580#\ndtmf:1\nno\n")
    done = ivr("simulate", "bank", "--script", str(script))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Your balance is 1250.40 euros." in done.stdout
    assert "Goodbye" in done.stdout
    assert "[ended]" in done.stdout


def test_simulate_exits_1_when_the_script_ends_while_the_flow_waits(tmp_path: Path) -> None:
    script = tmp_path / "short.txt"
    script.write_text("12345678\n")
    done = ivr("simulate", "bank", "--script", str(script))
    assert done.returncode == 1
    assert "four digit PIN" in done.stdout
    assert "'verify'" in done.stderr


def test_simulate_takes_a_flow_file_from_anywhere(tmp_path: Path) -> None:
    flow = tmp_path / "hello.yaml"
    flow.write_text(
        "flow: hello\n"
        "language: en\n"
        "start: hi\n"
        "steps:\n"
        "  hi:\n"
        '    say: "Hello from a file."\n'
        "    next: bye\n"
        "  bye:\n"
        "    end: goodbye\n"
    )
    script = tmp_path / "nothing.txt"
    script.write_text("# the caller says nothing\n")
    done = ivr("simulate", str(flow), "--script", str(script))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "bot: Hello from a file." in done.stdout
    assert "[ended] at step 'bye' of flow 'hello'" in done.stdout


def test_simulate_an_unknown_flow_exits_1_naming_the_known_ones(tmp_path: Path) -> None:
    script = tmp_path / "empty.txt"
    script.write_text("")
    done = ivr("simulate", "nope", "--script", str(script))
    assert done.returncode == 1
    assert "'nope'" in done.stderr and "bank" in done.stderr


def test_simulate_a_missing_script_exits_1(tmp_path: Path) -> None:
    done = ivr("simulate", "bank", "--script", str(tmp_path / "missing.txt"))
    assert done.returncode == 1
    assert "missing.txt" in done.stderr
    assert "Traceback" not in done.stderr


# ------------------------------------------------------------------ golden conversations


def test_the_shipped_goldens_pass() -> None:
    done = ivr("test", "tests/golden")
    assert done.returncode == 0, done.stdout + done.stderr
    count = len(list((REPO / "tests" / "golden").glob("*.yaml")))
    assert f"{count} passed, 0 failed" in done.stdout


def test_a_failing_golden_exits_1(tmp_path: Path) -> None:
    golden = tmp_path / "wrong.yaml"
    golden.write_text(
        "flow: bank\nconversation:\n  - bot: welcome to southwind bank\nexpect:\n  status: ended\n"
    )
    done = ivr("test", str(golden))
    assert done.returncode == 1
    assert f"FAIL {golden}" in done.stdout
    assert "0 passed, 1 failed" in done.stdout


# ------------------------------------------------------------------ nlu export-rasa


def test_export_rasa_writes_a_rasa_project(tmp_path: Path) -> None:
    out = tmp_path / "rasa"
    done = ivr("nlu", "export-rasa", "--out", str(out))
    assert done.returncode == 0, done.stderr
    nlu = load_yaml(out / "data" / "nlu.yml")
    domain = load_yaml(out / "domain.yml")
    config = load_yaml(out / "config.yml")
    assert isinstance(nlu, dict) and isinstance(domain, dict) and isinstance(config, dict)
    trained = {entry["intent"] for entry in nlu["nlu"] if "intent" in entry}
    assert {"check_balance", "report_lost_card", "talk_to_agent"} <= trained
    assert trained <= set(domain["intents"])
    assert config["pipeline"]
    assert config["language"] == "en"


def test_export_rasa_for_an_unknown_language_exits_1(tmp_path: Path) -> None:
    done = ivr("nlu", "export-rasa", "--out", str(tmp_path / "x"), "--language", "tlh")
    assert done.returncode == 1
    assert "'tlh'" in done.stderr


# ------------------------------------------------------------------ config errors and serve


def test_serve_with_a_bad_config_value_exits_1_naming_the_line(tmp_path: Path) -> None:
    conf = tmp_path / "bad.conf"
    conf.write_text("[http]\nhost = 127.0.0.1\nport = eighty\n")
    done = ivr("serve", "--config", str(conf))
    assert done.returncode == 1
    assert "bad.conf:3: [http] port: expected an integer, got 'eighty'" in done.stderr


def test_serve_with_an_unknown_section_exits_1_naming_the_line(tmp_path: Path) -> None:
    conf = tmp_path / "bad.conf"
    conf.write_text("[http]\nport = 9000\n\n[htpp]\nport = 9001\n")
    done = ivr("serve", "--config", str(conf))
    assert done.returncode == 1
    assert "bad.conf:4: unknown section [htpp]" in done.stderr


def test_serve_with_a_bad_variable_exits_1_naming_it(tmp_path: Path) -> None:
    done = ivr("serve", env={"IVR_CHAT_IDLE_TIMEOUT": "forever"})
    assert done.returncode == 1
    assert "IVR_CHAT_IDLE_TIMEOUT" in done.stderr and "'forever'" in done.stderr


def test_a_missing_config_file_exits_1(tmp_path: Path) -> None:
    done = ivr("validate", "--config", str(tmp_path / "nope.conf"), "dialogs")
    assert done.returncode == 1
    assert "nope.conf" in done.stderr


def test_serve_on_a_port_in_use_exits_1_with_a_clear_message(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = ivr(
            "serve",
            env={
                "IVR_HTTP_PORT": str(port),
                "IVR_STORE_URL": f"sqlite:///{tmp_path}/ivr.db",
                "IVR_API_TOKEN": "t",
                "IVR_FLOWS_RELOAD": "no",
            },
        )
    assert done.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr
    assert "Traceback" not in done.stderr
    assert "serving on" not in done.stderr  # it never said it was serving


def test_serve_with_an_unreachable_store_exits_1_without_a_traceback(tmp_path: Path) -> None:
    dead = free_port()
    done = ivr(
        "serve",
        env={
            "IVR_HTTP_PORT": str(free_port()),
            "IVR_STORE_URL": f"postgresql://ivr@127.0.0.1:{dead}/ivr",
            "IVR_API_TOKEN": "t",
            "IVR_FLOWS_RELOAD": "no",
        },
    )
    assert done.returncode == 1
    assert f"127.0.0.1:{dead}" in done.stderr
    assert "Traceback" not in done.stderr


def test_prompts_render_fills_the_cache_and_a_second_run_finds_it_full(tmp_path: Path) -> None:
    env = {"IVR_SPEECH_CACHE_DIR": str(tmp_path / "cache")}
    first = ivr("prompts", "render", env=env)
    assert first.returncode == 0, first.stderr
    assert " 0 already cached" in first.stdout and " 0 failed" in first.stdout
    rendered = sorted((tmp_path / "cache" / "en").glob("*.wav"))
    assert len(rendered) > 10 and first.stdout.split(": ", 1)[1].startswith(
        f"{len(rendered)} rendered"
    )
    again = ivr("prompts", "render", env=env)
    assert again.returncode == 0
    assert f"{len(rendered)} already cached" in again.stdout
    assert "0 rendered" in again.stdout
