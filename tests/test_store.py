"""The conversation store, against SQLite and a real PostgreSQL server alike."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ivr.conversation import Conversation, Role, Status
from ivr.store import ConversationStore, StoreError, open_store

REPO = Path(__file__).resolve().parents[1]
WAIT_S = 30


@pytest.fixture(
    params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)],
)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ivr.db'}"
    return request.getfixturevalue("fresh_postgres_url")


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[ConversationStore]:
    async with open_store(store_url) as opened:
        yield opened


def make_conversation(customer_id: str | None = None, updated_at: float = 1000.0) -> Conversation:
    conv = Conversation.start("billing", "greet", language="de")
    if customer_id:
        conv.identity.mark_verified(customer_id, "pin", "voice")
    conv.created_at = conv.updated_at = updated_at
    return conv


async def test_conversation_round_trips_with_timeline_in_order(store: ConversationStore) -> None:
    conv = make_conversation()
    conv.identity.mark_verified("C-42", "dob", "voice")
    conv.identity.failed_attempts = 1
    conv.slots = {"amount": 12.5, "months": [1, 2], "note": "Grüße ✓"}
    conv.lookups = {"account": {"balance": -3.2, "plan": None, "tags": ["a", "b"]}}
    conv.position.stack = [("billing", "confirm"), ("main", "menu")]
    conv.position.step = "ask_amount"
    conv.last_intent = "pay_bill"
    conv.contact = {"phone": "+4930123456", "email": "kim@example.org"}
    conv.handoff = {"queue": "billing", "priority": 2}
    conv.status = Status.QUEUED
    conv.add_turn("voice", Role.BOT, "Hello, how can I help?", step="greet")
    conv.add_turn("voice", Role.CUSTOMER, "pay my bill", intent="pay_bill", confidence=0.91)
    conv.add_turn("webchat", Role.CUSTOMER, "[secure input]", input="secure")
    conv.add_turn("webchat", Role.AGENT, "Hi, this is Sam", agent={"id": 7, "name": "Sam"})

    await store.save(conv)
    loaded = await store.get(conv.id)

    assert loaded == conv
    assert [turn.text for turn in loaded.timeline][1] == "pay my bill"
    assert loaded.channels == ["voice", "webchat"]
    assert loaded.position.stack == [("billing", "confirm"), ("main", "menu")]
    assert await store.get("no-such-conversation") is None


async def test_saving_twice_appends_only_new_turns(store: ConversationStore) -> None:
    conv = make_conversation()
    conv.add_turn("voice", Role.BOT, "one")
    conv.add_turn("voice", Role.CUSTOMER, "two")
    await store.save(conv)
    await store.save(conv)  # nothing new: nothing added
    conv.add_turn("sms", Role.BOT, "three")
    conv.slots["x"] = 1
    await store.save(conv)

    loaded = await store.get(conv.id)

    assert loaded is not None
    assert [turn.text for turn in loaded.timeline] == ["one", "two", "three"]
    assert loaded.slots == {"x": 1}
    assert await store.count() == 1


async def test_a_conversation_resumes_from_another_store(store_url: str) -> None:
    conv = make_conversation()
    conv.add_turn("voice", Role.CUSTOMER, "send me a link")
    conv.status = Status.ESCALATED
    async with open_store(store_url) as first:
        await first.save(conv)

    async with open_store(store_url) as second:  # a restart, or another node
        resumed = await second.get(conv.id)
        assert resumed is not None
        resumed.status = Status.ACTIVE
        resumed.add_turn("sms", Role.CUSTOMER, "here I am")
        await second.save(resumed)
        loaded = await second.get(conv.id)

    assert loaded is not None
    assert loaded.status == Status.ACTIVE
    assert [(t.channel, t.text) for t in loaded.timeline] == [
        ("voice", "send me a link"),
        ("sms", "here I am"),
    ]


async def test_two_stores_saving_at_once_store_each_turn_once(store_url: str) -> None:
    conv = make_conversation()
    for n in range(20):
        conv.add_turn("webchat", Role.CUSTOMER, f"turn {n}")
    async with open_store(store_url) as first, open_store(store_url) as second:
        await asyncio.wait_for(
            asyncio.gather(first.save(conv), second.save(conv), first.save(conv)), WAIT_S
        )
        loaded = await first.get(conv.id)

    assert loaded is not None
    assert [turn.text for turn in loaded.timeline] == [f"turn {n}" for n in range(20)]


async def test_list_recent_is_newest_first_and_limited(store: ConversationStore) -> None:
    saved = [make_conversation(updated_at=1000.0 + n) for n in range(5)]
    for conv in saved:
        conv.add_turn("voice", Role.BOT, f"hello {conv.id}")
        conv.updated_at = conv.created_at  # add_turn moved it; keep the planned order
    for conv in (saved[2], saved[0], saved[4], saved[1], saved[3]):
        await store.save(conv)

    recent = await store.list_recent(limit=3)

    assert [conv.id for conv in recent] == [saved[4].id, saved[3].id, saved[2].id]
    assert [turn.text for turn in recent[0].timeline] == [f"hello {saved[4].id}"]
    assert len(await store.list_recent()) == 5
    assert await store.count() == 5


async def test_by_customer(store: ConversationStore) -> None:
    old = make_conversation("C-1", updated_at=1000.0)
    new = make_conversation("C-1", updated_at=2000.0)
    other = make_conversation("C-2", updated_at=3000.0)
    anonymous = make_conversation(None, updated_at=4000.0)
    for conv in (new, other, old, anonymous):
        await store.save(conv)
    # identified later in a conversation: the new customer id is found
    anonymous.identity.mark_verified("C-1", "pin", "webchat")
    await store.save(anonymous)

    found = await store.by_customer("C-1")

    assert [conv.id for conv in found] == [anonymous.id, new.id, old.id]
    assert [conv.id for conv in await store.by_customer("C-1", limit=1)] == [anonymous.id]
    assert await store.by_customer("C-3") == []


CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from ivr.conversation import Conversation, Role
    from ivr.store import open_store

    async def main(url):
        async with open_store(url) as store:
            conv = Conversation.start("billing", "greet")
            for n in range(100_000):
                conv.add_turn("voice", Role.CUSTOMER, f"turn {n}", n=n)
                conv.slots["last"] = n
                await store.save(conv)
                print(conv.id, n, flush=True)

    asyncio.run(main(sys.argv[1]))
    """
)


async def test_a_killed_process_loses_nothing_it_saved(store_url: str) -> None:
    acknowledged = 25
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CHILD,
        store_url,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=asyncio.subprocess.PIPE,
    )
    assert child.stdout is not None
    try:
        for expected in range(acknowledged):
            line = await asyncio.wait_for(child.stdout.readline(), WAIT_S)
            assert line, "the child process exited before saving enough turns"
            conv_id, n = line.decode().split()
            assert int(n) == expected
    finally:
        child.send_signal(signal.SIGKILL)
        await asyncio.wait_for(child.wait(), WAIT_S)

    async with open_store(store_url) as store:
        loaded = await store.get(conv_id)

    assert loaded is not None
    texts = [turn.text for turn in loaded.timeline]
    assert len(texts) >= acknowledged  # the child may have saved more than it acknowledged
    assert texts == [f"turn {n}" for n in range(len(texts))]
    assert loaded.slots["last"] >= acknowledged - 1
    assert loaded.timeline[-1].meta == {"n": len(texts) - 1}


async def test_a_closed_store_is_a_clear_error(store_url: str) -> None:
    async with open_store(store_url) as store:
        await store.save(make_conversation())

    with pytest.raises(StoreError, match="closed"):
        await store.count()
    with pytest.raises(StoreError, match="closed"):
        await store.save(make_conversation())


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://ivr:s3cret@db/ivr", "unsupported database URL scheme 'mysql'"),
        ("ivr:s3cret@db/ivr", "no scheme"),
        ("postgresql://ivr:s3cret@db:port/ivr", "malformed postgresql database URL"),
        ("", "no scheme"),
    ],
)
async def test_bad_url_is_a_clear_error(url: str, message: str) -> None:
    with pytest.raises(StoreError, match=message) as raised:
        async with open_store(url):
            pass
    assert "s3cret" not in str(raised.value)


def _unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_unreachable_postgres_is_a_store_error() -> None:
    url = f"postgresql://ivr:s3cret@127.0.0.1:{_unused_port()}/ivr"
    with pytest.raises(StoreError, match="opening the store") as raised:
        await asyncio.wait_for(open_store(url).__aenter__(), WAIT_S)
    assert "127.0.0.1" in str(raised.value)
    assert "s3cret" not in str(raised.value)


async def test_unopenable_sqlite_file_is_a_store_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    with pytest.raises(StoreError, match="not-a-directory"):
        async with open_store(f"sqlite:///{blocker / 'ivr.db'}"):
            pass


async def test_missing_postgres_database_is_a_store_error(postgres_url: str) -> None:
    url = postgres_url.rsplit("/", 1)[0] + "/no_such_database"
    with pytest.raises(StoreError, match="no_such_database"):
        async with open_store(url):
            pass
