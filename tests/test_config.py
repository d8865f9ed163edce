"""Settings: defaults, the INI file, IVR_<SECTION>_<KEY> variables, and errors that say where."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ivr.config import ConfigError, Settings, load_settings


def write_conf(tmp_path: Path, text: str, name: str = "ivr.conf") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def error_of(path: Path | None = None, environ: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ or {})
    return str(caught.value)


# ------------------------------------------------------------------ defaults


def test_defaults_without_file_or_variables() -> None:
    settings = load_settings(None, {})
    assert settings == Settings()
    assert settings.http.host == "127.0.0.1"
    assert settings.http.port == 8700
    assert settings.store.url == "sqlite:///data/ivr.sqlite3"
    assert settings.api.token == ""
    assert settings.flows.dialogs == "dialogs"
    assert settings.flows.chat_flow == "bank"
    assert settings.flows.reload is True
    assert settings.nlu.engine == "builtin"
    assert settings.chat.max_message_bytes == 4096
    assert settings.demo.crm is True
    assert settings.source == "<defaults>"
    assert settings.public_url == "http://127.0.0.1:8700"
    assert settings.flow_env_with_defaults() == {"CRM_URL": "http://127.0.0.1:8700/demo/crm"}


def test_variables_not_for_ivr_are_ignored() -> None:
    assert load_settings(None, {"HTTP_PORT": "1", "PATH": "/bin", "ivr_http_port": "1"}) == (
        Settings()
    )


# ------------------------------------------------------------------ the INI file


def test_ini_values_are_read_with_their_types(tmp_path: Path) -> None:
    conf = write_conf(
        tmp_path,
        "; comment\n"
        "[http]\n"
        "host = 0.0.0.0\n"
        "port = 9000\n"
        "public_url = https://ivr.example.com/\n"
        "\n"
        "[flows]\n"
        "reload = no\n"
        "chat_flow = parcel\n"
        "\n"
        "[nlu]\n"
        "threshold = 0.75\n"
        "\n"
        "[chat]\n"
        "idle_timeout = 60\n"
        "\n"
        "[demo]\n"
        "crm = off\n",
    )
    settings = load_settings(conf, {})
    assert settings.http.host == "0.0.0.0"
    assert settings.http.port == 9000
    assert settings.public_url == "https://ivr.example.com"
    assert settings.flows.reload is False
    assert settings.flows.chat_flow == "parcel"
    assert settings.nlu.threshold == 0.75
    assert settings.chat.idle_timeout == 60.0
    assert settings.demo.crm is False
    assert settings.flow_env_with_defaults() == {}  # no demo CRM, nothing configured
    assert settings.source == str(conf)
    # Untouched keys keep their defaults.
    assert settings.store.url == Settings().store.url
    assert settings.chat.max_message_bytes == 4096


@pytest.mark.parametrize(
    ("written", "expected"),
    [("yes", True), ("True", True), ("on", True), ("1", True), ("NO", False), ("off", False)],
)
def test_booleans_take_the_usual_words(tmp_path: Path, written: str, expected: bool) -> None:
    conf = write_conf(tmp_path, f"[flows]\nreload = {written}\n")
    assert load_settings(conf, {}).flows.reload is expected


def test_section_and_key_names_are_case_insensitive(tmp_path: Path) -> None:
    conf = write_conf(tmp_path, "[HTTP]\nPort = 9001\n")
    assert load_settings(conf, {}).http.port == 9001


# ------------------------------------------------------------------ variables


def test_variables_override_the_file(tmp_path: Path) -> None:
    conf = write_conf(tmp_path, "[http]\nport = 9000\nhost = 10.0.0.1\n[flows]\nreload = no\n")
    settings = load_settings(
        conf,
        {
            "IVR_HTTP_PORT": "9100",
            "IVR_FLOWS_RELOAD": "yes",
            "IVR_CHAT_MAX_MESSAGE_BYTES": "100",
            "IVR_STORE_URL": "postgresql://ivr@db/ivr",
            "IVR_API_TOKEN": "s3cret",
        },
    )
    assert settings.http.port == 9100
    assert settings.http.host == "10.0.0.1"  # from the file: no variable for it
    assert settings.flows.reload is True
    assert settings.chat.max_message_bytes == 100
    assert settings.store.url == "postgresql://ivr@db/ivr"
    assert settings.api.token == "s3cret"


def test_variables_alone_change_the_defaults() -> None:
    settings = load_settings(None, {"IVR_NLU_ENGINE": "rasa", "IVR_NLU_RASA_TIMEOUT": "0.25"})
    assert settings.nlu.engine == "rasa"
    assert settings.nlu.rasa_timeout == 0.25


def test_flow_env_keeps_the_case_of_names(tmp_path: Path) -> None:
    conf = write_conf(
        tmp_path,
        "[flow_env]\nCRM_URL = https://crm.example.com/api\nBilling_Api = https://billing\n",
    )
    settings = load_settings(conf, {"IVR_FLOW_ENV_Parcel_Url": "https://parcels"})
    assert dict(settings.flow_env) == {
        "CRM_URL": "https://crm.example.com/api",
        "Billing_Api": "https://billing",
        "Parcel_Url": "https://parcels",
    }
    # A configured CRM_URL is kept: the demo CRM does not replace it.
    assert settings.flow_env_with_defaults()["CRM_URL"] == "https://crm.example.com/api"


def test_flow_env_variable_overrides_the_file(tmp_path: Path) -> None:
    conf = write_conf(tmp_path, "[flow_env]\nCRM_URL = https://from-file\n")
    settings = load_settings(conf, {"IVR_FLOW_ENV_CRM_URL": "https://from-env"})
    assert settings.flow_env["CRM_URL"] == "https://from-env"


def test_demo_crm_url_follows_public_url() -> None:
    settings = load_settings(None, {"IVR_HTTP_PUBLIC_URL": "https://ivr.example.com/"})
    assert settings.flow_env_with_defaults() == {"CRM_URL": "https://ivr.example.com/demo/crm"}


# ------------------------------------------------------------------ errors


def test_bad_integer_names_file_and_line(tmp_path: Path) -> None:
    conf = write_conf(tmp_path, "[http]\nhost = 127.0.0.1\n\nport = eighty\n")
    assert error_of(conf) == f"{conf}:4: [http] port: expected an integer, got 'eighty'"


def test_bad_boolean_names_file_and_line(tmp_path: Path) -> None:
    conf = write_conf(tmp_path, "[demo]\ncrm = maybe\n")
    assert error_of(conf) == f"{conf}:2: [demo] crm: expected yes or no, got 'maybe'"


def test_bad_number_names_file_and_line(tmp_path: Path) -> None:
    conf = write_conf(tmp_path, "[http]\nport = 1\n[chat]\nidle_timeout = soon\n")
    assert error_of(conf) == f"{conf}:4: [chat] idle_timeout: expected a number, got 'soon'"


def test_bad_variable_is_named() -> None:
    message = error_of(environ={"IVR_HTTP_PORT": "80a"})
    assert message == "IVR_HTTP_PORT: expected an integer, got '80a'"


@pytest.mark.parametrize(
    ("text", "variable", "pattern"),
    [
        ("[http]\nport = 70000\n", None, r":2: \[http\] port: 70000 is not a TCP port"),
        ("[nlu]\n\nengine = spacy\n", None, r":3: \[nlu\] engine: expected builtin or rasa"),
        ("[log]\nlevel = loud\n", None, r":2: \[log\] level: expected debug"),
        ("", "IVR_HTTP_PORT=0", r"^IVR_HTTP_PORT: 0 is not a TCP port"),
        (
            "[webrtc]\nice_servers = stun:ok.example.com, STUN:loud.example.com\n",
            None,
            r":2: \[webrtc\] ice_servers: 'STUN:loud.example.com' is not a stun: or turn: URL",
        ),
        ("[webrtc]\naddresses = 127.0.0.1, lo\n", None, r":2: \[webrtc\] addresses: 'lo' is not"),
    ],
    ids=["port range", "nlu engine", "log level", "variable", "ice server", "address"],
)
def test_values_out_of_range_name_where_they_were_written(
    tmp_path: Path, text: str, variable: str | None, pattern: str
) -> None:
    conf = write_conf(tmp_path, text)
    environ = dict([variable.split("=")]) if variable else {}
    message = error_of(conf, environ)
    assert re.search(pattern, message), message
    if variable is None:
        assert message.startswith(f"{conf}:")


def test_unknown_key_names_the_line_and_suggests(tmp_path: Path) -> None:
    conf = write_conf(tmp_path, "[http]\nhost = 127.0.0.1\nprot = 9000\n")
    message = error_of(conf)
    assert message.startswith(f"{conf}:3: [http] prot: unknown key")
    assert "did you mean 'port'?" in message
    assert "host, port, public_url" in message


def test_unknown_key_in_a_variable_is_named() -> None:
    message = error_of(environ={"IVR_CHAT_MAX_BYTES": "1"})
    assert message.startswith("IVR_CHAT_MAX_BYTES: unknown key")
    assert "max_message_bytes" in message


def test_unknown_section_names_the_line_and_suggests(tmp_path: Path) -> None:
    conf = write_conf(tmp_path, "[http]\nport = 9000\n\n[chta]\nidle_timeout = 5\n")
    assert error_of(conf) == f"{conf}:4: unknown section [chta] (did you mean [chat]?)"


def test_unknown_section_without_a_likely_meaning(tmp_path: Path) -> None:
    conf = write_conf(tmp_path, "[zzzzzz]\nx = 1\n")
    assert error_of(conf) == f"{conf}:1: unknown section [zzzzzz]"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("port = 9000\n", ":1: 'port = 9000' comes before any [section]"),
        ("[http]\nport = 1\nport = 2\n", ":3: [http] port is given twice"),
        ("[http]\nport = 1\n[http]\n", ":3: [http] is given twice"),
        ("[http]\n\nport\n", ":3: cannot read 'port'"),
    ],
    ids=["no section", "key twice", "section twice", "no value"],
)
def test_unreadable_file_names_the_line(tmp_path: Path, text: str, expected: str) -> None:
    conf = write_conf(tmp_path, text)
    assert error_of(conf).startswith(f"{conf}{expected}")


def test_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.conf"
    assert error_of(missing) == f"{missing}: no such config file"


def test_a_directory_or_binary_file_is_refused(tmp_path: Path) -> None:
    assert error_of(tmp_path).startswith(f"{tmp_path}: cannot read the config file")
    binary = tmp_path / "binary.conf"
    binary.write_bytes(b"\xff\xfe\x00[http]")
    assert "not UTF-8" in error_of(binary)
