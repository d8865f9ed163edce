"""`ivr agents add|list|remove|passwd|phone` against a temporary SQLite store: exit codes,
messages that name the option, and no password or hash ever printed."""

from __future__ import annotations

import asyncio
import io
import os
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ivr import cli
from ivr.store import AgentStore, open_store
from ivr.store.schema import agent_phones, agents
from tests.serve_fixtures import REPO

PASSWORD = "correct horse 42"


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'agents.db'}"


@pytest.fixture
def config(tmp_path: Path, store_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A config file naming the store (and no IVR_* variable to override it)."""
    for name in [n for n in os.environ if n.startswith("IVR_")]:
        monkeypatch.delenv(name)
    path = tmp_path / "ivr.conf"
    path.write_text(f"[store]\nurl = {store_url}\n", encoding="utf-8")
    yield str(path)


@pytest.fixture
def ivr(
    config: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Callable[..., tuple[int, str, str]]:
    """`ivr agents ARGS --config FILE` in this process: (exit code, stdout, stderr)."""

    def run(*args: str, stdin: str = "") -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        code = cli.main(["agents", *args, "--config", config])
        out, err = capsys.readouterr()
        return code, out, err

    return run


def in_store(url: str, action: Callable[[AgentStore], Awaitable[Any]]) -> Any:
    async def run() -> Any:
        async with open_store(url) as store:
            return await action(AgentStore(store.database))

    return asyncio.run(run())


def stored_hash(url: str) -> str:
    async def read(store: AgentStore) -> str:
        async with store._db.connect("test") as conn:
            return (await conn.execute(agents.select())).one().password_hash

    return in_store(url, read)


ALICE = ("add", "Alice", "--name", "Alice Smith", "--skills", "cards:8,banking:5")
ALICE_OPTIONS = (*ALICE, "--queues", "cards,general", "--calls", "1", "--chats", "2")


def test_add_then_list_shows_the_agent_and_never_a_password_or_hash(
    ivr: Callable[..., tuple[int, str, str]], store_url: str
) -> None:
    code, out, err = ivr(*ALICE_OPTIONS, "--password-stdin", stdin=PASSWORD + "\n")
    assert (code, err) == (0, "")
    assert "alice" in out

    code, out, _ = ivr("list")

    assert code == 0
    header, row = out.splitlines()
    assert header.split() == ["USERNAME", "NAME", "SKILLS", "QUEUES", "CAPACITY", "PHONE"]
    assert row.split() == ["alice", "Alice", "Smith", "cards:8,banking:5", "cards,general",
                           "calls:1,chats:2", "-"]  # fmt: skip
    agent = in_store(store_url, lambda s: s.authenticate("alice", PASSWORD))
    assert agent.capacity == {"voice": 1, "text": 2}
    assert agent.queues == ("cards", "general")
    hashed = stored_hash(store_url)
    assert PASSWORD not in out and hashed not in out and "argon2" not in out


def test_add_asks_for_the_password_twice(
    ivr: Callable[..., tuple[int, str, str]], store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    typed = iter([PASSWORD, PASSWORD])
    monkeypatch.setattr(cli.getpass, "getpass", lambda prompt="": next(typed))
    assert ivr(*ALICE)[0] == 0
    assert in_store(store_url, lambda s: s.authenticate("alice", PASSWORD)) is not None


def test_two_different_passwords_add_nobody(
    ivr: Callable[..., tuple[int, str, str]], store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    typed = iter([PASSWORD, PASSWORD + "x"])
    monkeypatch.setattr(cli.getpass, "getpass", lambda prompt="": next(typed))
    code, _, err = ivr(*ALICE)
    assert code == 2
    assert "password: the two entries differ" in err
    assert in_store(store_url, lambda s: s.list()) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--skills", "cards:11"), "--skills: 'cards:11': proficiency must be 1..10"),
        (("--skills", "cards:0"), "--skills: 'cards:0': proficiency must be 1..10"),
        (("--skills", "cards"), "--skills: 'cards': expected SKILL:LEVEL"),
        (("--skills", "cards:eight"), "--skills: 'cards:eight': expected SKILL:LEVEL"),
        (("--skills", "two words:5"), "--skills: 'two words'"),
        (("--queues", "cards,a b"), "--queues: 'a b'"),
        (("--calls", "-1"), "--calls: must be 0 or more, got -1"),
        (("--chats", "-2"), "--chats: must be 0 or more, got -2"),
    ],
)
def test_bad_options_name_the_option_and_exit_2(
    ivr: Callable[..., tuple[int, str, str]], store_url: str, args: tuple[str, ...], message: str
) -> None:
    code, _, err = ivr("add", "alice", *args, "--password-stdin", stdin=PASSWORD + "\n")
    assert code == 2
    assert f"ivr agents add: {message}" in err
    assert in_store(store_url, lambda s: s.list()) == []


@pytest.mark.parametrize(
    ("username", "password", "message"),
    [
        ("a b", PASSWORD, "USERNAME: 'a b'"),
        ("x", PASSWORD, "USERNAME: 'x'"),
        ("alice", "seven77", "password: must be at least 8 characters"),
        ("alice", "", "password: must be at least 8 characters"),
    ],
)
def test_a_bad_username_or_password_exits_2(
    ivr: Callable[..., tuple[int, str, str]],
    store_url: str,
    username: str,
    password: str,
    message: str,
) -> None:
    code, _, err = ivr("add", username, "--password-stdin", stdin=password + "\n")
    assert code == 2
    assert message in err
    assert in_store(store_url, lambda s: s.list()) == []


def test_a_number_that_is_not_one_is_a_usage_error(
    ivr: Callable[..., tuple[int, str, str]],
) -> None:
    with pytest.raises(SystemExit) as exited:
        ivr("add", "alice", "--calls", "two", "--password-stdin", stdin=PASSWORD)
    assert exited.value.code == 2


def test_adding_a_taken_username_exits_1_and_keeps_the_first(
    ivr: Callable[..., tuple[int, str, str]], store_url: str
) -> None:
    assert ivr(*ALICE, "--password-stdin", stdin=PASSWORD + "\n")[0] == 0
    code, _, err = ivr("add", "ALICE", "--password-stdin", stdin="another password\n")
    assert code == 1
    assert "'alice' already exists" in err
    assert in_store(store_url, lambda s: s.authenticate("alice", PASSWORD)) is not None


def test_list_without_agents_says_so(ivr: Callable[..., tuple[int, str, str]]) -> None:
    code, out, err = ivr("list")
    assert (code, out) == (0, "")
    assert "no agents" in err


def test_remove_deletes_the_agent_and_signs_them_out(
    ivr: Callable[..., tuple[int, str, str]], store_url: str
) -> None:
    ivr(*ALICE, "--password-stdin", stdin=PASSWORD + "\n")
    agent = in_store(store_url, lambda s: s.by_username("alice"))
    token = in_store(store_url, lambda s: s.open_session(agent.id, 600))

    assert ivr("remove", "Alice")[0] == 0

    assert in_store(store_url, lambda s: s.session_agent(token)) is None
    assert in_store(store_url, lambda s: s.list()) == []
    code, _, err = ivr("remove", "alice")
    assert code == 1
    assert "no agent named 'alice'" in err


def test_passwd_replaces_the_password_and_signs_the_agent_out(
    ivr: Callable[..., tuple[int, str, str]], store_url: str
) -> None:
    ivr(*ALICE, "--password-stdin", stdin=PASSWORD + "\n")
    agent = in_store(store_url, lambda s: s.by_username("alice"))
    token = in_store(store_url, lambda s: s.open_session(agent.id, 600))

    code, out, _ = ivr("passwd", "alice", "--password-stdin", stdin="a brand new one\n")

    assert code == 0
    assert "a brand new one" not in out
    assert in_store(store_url, lambda s: s.session_agent(token)) is None
    assert in_store(store_url, lambda s: s.authenticate("alice", PASSWORD)) is None
    assert in_store(store_url, lambda s: s.authenticate("alice", "a brand new one")) is not None


def test_passwd_refuses_a_short_password_or_an_unknown_agent(
    ivr: Callable[..., tuple[int, str, str]], store_url: str
) -> None:
    ivr(*ALICE, "--password-stdin", stdin=PASSWORD + "\n")
    code, _, err = ivr("passwd", "alice", "--password-stdin", stdin="short\n")
    assert code == 2
    assert "password: must be at least 8 characters" in err
    assert in_store(store_url, lambda s: s.authenticate("alice", PASSWORD)) is not None
    code, _, err = ivr("passwd", "bob", "--password-stdin", stdin="a brand new one\n")
    assert code == 1
    assert "no agent named 'bob'" in err


def test_an_unreachable_store_exits_1_with_the_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [n for n in os.environ if n.startswith("IVR_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("IVR_STORE_URL", "postgresql://ivr@127.0.0.1:1/ivr")
    assert cli.main(["agents", "list"]) == 1
    assert "ivr agents list: " in capsys.readouterr().err


def test_the_ivr_command_adds_an_agent_from_a_pipe(tmp_path: Path, store_url: str) -> None:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("IVR_")}
    environ["IVR_STORE_URL"] = store_url
    done = subprocess.run(
        [sys.executable, "-m", "ivr.cli", "agents", *ALICE, "--password-stdin"],
        input=PASSWORD + "\n", cwd=REPO, env=environ, capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert in_store(store_url, lambda s: s.authenticate("alice", PASSWORD)) is not None


# ------------------------------------------------------------------ an agent's SIP phone

PHONE = "sip:alice@pbx.example"


def phone_rows(url: str) -> list[Any]:
    async def read(store: AgentStore) -> list[Any]:
        async with store._db.connect("test") as conn:
            return list(await conn.execute(agent_phones.select()))

    return in_store(url, read)


def test_add_with_a_phone_lists_it_and_a_signed_in_desk_learns_it(
    ivr: Callable[..., tuple[int, str, str]], store_url: str
) -> None:
    code, _, err = ivr(*ALICE, "--phone", PHONE, "--password-stdin", stdin=PASSWORD + "\n")
    assert (code, err) == (0, "")
    assert ivr("list")[1].splitlines()[1].split()[-1] == PHONE
    agent = in_store(store_url, lambda s: s.by_username("alice"))
    assert agent.phone == PHONE and agent.public_view()["phone"] == PHONE
    token = in_store(store_url, lambda s: s.open_session(agent.id, 600))
    assert in_store(store_url, lambda s: s.session_agent(token)).phone == PHONE


def test_phone_sets_replaces_and_clears_the_phone_of_an_agent(
    ivr: Callable[..., tuple[int, str, str]], store_url: str
) -> None:
    ivr(*ALICE, "--password-stdin", stdin=PASSWORD + "\n")
    assert in_store(store_url, lambda s: s.by_username("alice")).phone is None

    code, out, _ = ivr("phone", "Alice", PHONE)
    assert code == 0 and PHONE in out
    assert ivr("phone", "alice", "sips:100@pbx.example;transport=tls")[0] == 0
    assert in_store(store_url, lambda s: s.by_username("alice")).phone == (
        "sips:100@pbx.example;transport=tls"
    )
    assert len(phone_rows(store_url)) == 1

    code, out, _ = ivr("phone", "alice", "--none")
    assert code == 0 and "desktop" in out
    assert in_store(store_url, lambda s: s.by_username("alice")).phone is None
    assert phone_rows(store_url) == []


ADD = ("add", "alice", "--password-stdin")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((*ADD, "--phone", "tel:+15551234"), "ivr agents add: --phone: 'tel:+15551234'"),
        ((*ADD, "--phone", "dana@pbx"), "--phone: 'dana@pbx': a SIP URI starting with sip:"),
        (("phone", "alice", "sip:a b@pbx"), "ivr agents phone: SIP_URI: 'sip:a b@pbx'"),
        (("phone", "alice", "sip:a@pbx?X-Spoof=1"), "SIP_URI: 'sip:a@pbx?X-Spoof=1'"),
        (("phone", "alice"), "ivr agents phone: SIP_URI: give the phone's URI"),
        (("phone", "alice", PHONE, "--none"), "ivr agents phone: SIP_URI: give the phone's URI"),
    ],
)
def test_a_phone_that_is_not_a_sip_uri_is_refused_naming_the_field(
    ivr: Callable[..., tuple[int, str, str]], store_url: str, args: tuple[str, ...], message: str
) -> None:
    if args[0] == "phone":
        ivr(*ALICE, "--password-stdin", stdin=PASSWORD + "\n")
    code, _, err = ivr(*args, stdin=PASSWORD + "\n")
    assert code == 2
    assert message in err
    assert phone_rows(store_url) == []


def test_phone_of_an_unknown_agent_exits_1(ivr: Callable[..., tuple[int, str, str]]) -> None:
    code, _, err = ivr("phone", "bob", PHONE)
    assert code == 1
    assert "no agent named 'bob'" in err


def test_removing_an_agent_removes_their_phone(
    ivr: Callable[..., tuple[int, str, str]], store_url: str
) -> None:
    ivr(*ALICE, "--phone", PHONE, "--password-stdin", stdin=PASSWORD + "\n")
    assert ivr("remove", "alice")[0] == 0
    assert phone_rows(store_url) == []


def test_a_store_made_before_phones_existed_gets_their_table(
    ivr: Callable[..., tuple[int, str, str]], store_url: str
) -> None:
    """No migrations: `create_all` adds the new table to an older database, and its agents
    have no phone until one is set."""
    ivr(*ALICE, "--password-stdin", stdin=PASSWORD + "\n")

    async def drop(store: AgentStore) -> None:
        async with store._db.begin("test") as conn:
            await conn.run_sync(agent_phones.drop)

    in_store(store_url, drop)  # as the database was before this table
    assert in_store(store_url, lambda s: s.authenticate("alice", PASSWORD)).phone is None
    assert ivr("phone", "alice", PHONE)[0] == 0
    assert in_store(store_url, lambda s: s.authenticate("alice", PASSWORD)).phone == PHONE
