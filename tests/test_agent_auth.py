"""Agents' accounts and sessions: the store (SQLite and a real PostgreSQL), and sign-in over
real HTTP (cookie, guard of /agent, sign-out, throttling, cross-origin refusal, no leaks)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from argon2 import PasswordHasher
from sqlalchemy import func, select, update

from ivr.config import StoreSettings
from ivr.store import AgentExists, AgentInputError, AgentRecord, AgentStore, open_store
from ivr.store.schema import agent_sessions, agents
from ivr.web import agent_auth
from ivr.web.agent_auth import COOKIE, SESSION_TTL, THROTTLE_WINDOW, LoginThrottle
from ivr.web.app import create_app
from ivr.web.keys import AGENTS
from tests.serve_fixtures import Served

PASSWORD = "correct horse 42"
# Cheap parameters for the store tests: hashing is not what they test (the server uses the
# defaults, and one test checks that a cheap hash is upgraded to them).
CHEAP = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


class CountingHasher(PasswordHasher):
    """A cheap hasher that counts verifications (to see that unknown users cost one too)."""

    def __init__(self) -> None:
        super().__init__(time_cost=1, memory_cost=8, parallelism=1)
        self.verified = 0

    def verify(self, hash: str | bytes, password: str | bytes) -> bool:
        self.verified += 1
        return super().verify(hash, password)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ivr.db'}"
    return request.getfixturevalue("fresh_postgres_url")


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[AgentStore]:
    async with open_store(store_url) as conversations:
        yield AgentStore(conversations.database, hasher=CHEAP)


async def add_alice(store: AgentStore, **changes: Any) -> AgentRecord:
    fields: dict[str, Any] = {
        "username": "Alice",
        "display_name": "Alice Smith",
        "password": PASSWORD,
        "skills": {"cards": 8, "banking": 5},
        "queues": ["cards", "general"],
        "capacity": {"voice": 1, "text": 3},
    } | changes
    return await store.add(**fields)


async def column(store: AgentStore, col: Any, where: Any = None) -> list[Any]:
    query = select(col) if where is None else select(col).where(where)
    async with store._db.connect("test") as conn:
        return list((await conn.execute(query)).scalars())


async def session_count(store: AgentStore) -> int:
    async with store._db.connect("test") as conn:
        return await conn.scalar(select(func.count()).select_from(agent_sessions)) or 0


# ------------------------------------------------------------------ accounts


async def test_an_added_agent_signs_in_with_any_case_of_the_username(store: AgentStore) -> None:
    alice = await add_alice(store)

    assert alice.username == "alice"
    assert await store.authenticate("ALICE", PASSWORD) == alice
    assert await store.authenticate(" alice ", PASSWORD) == alice
    assert await store.get(alice.id) == alice
    assert await store.by_username("AlIcE") == alice
    assert await store.list() == [alice]
    assert alice.skills == {"cards": 8, "banking": 5}
    assert alice.queues == ("cards", "general")
    assert alice.capacity == {"voice": 1, "text": 3}


async def test_a_wrong_password_or_an_unknown_user_gets_nobody(store: AgentStore) -> None:
    await add_alice(store)
    assert await store.authenticate("alice", PASSWORD + "!") is None
    assert await store.authenticate("alice", "") is None
    assert await store.authenticate("bob", PASSWORD) is None
    assert await store.authenticate("not a valid name", PASSWORD) is None


async def test_an_unknown_user_costs_a_hash_verification_like_a_known_one(
    store_url: str,
) -> None:
    hasher = CountingHasher()
    async with open_store(store_url) as conversations:
        store = AgentStore(conversations.database, hasher=hasher)
        await add_alice(store)
        await store.authenticate("alice", "wrong password")
        assert hasher.verified == 1
        await store.authenticate("nobody", "wrong password")
        assert hasher.verified == 2


async def test_a_disabled_agent_cannot_sign_in_and_loses_the_sessions(store: AgentStore) -> None:
    alice = await add_alice(store)
    token = await store.open_session(alice.id, 600)

    assert await store.set_disabled("alice", True)

    assert await store.authenticate("alice", PASSWORD) is None
    assert await store.session_agent(token) is None
    assert (await store.get(alice.id)).disabled  # type: ignore[union-attr]
    assert await store.set_disabled("alice", False)
    assert await store.authenticate("alice", PASSWORD) == alice
    assert not await store.set_disabled("nobody", True)


async def test_a_session_of_an_agent_disabled_behind_our_back_finds_nobody(
    store: AgentStore,
) -> None:
    alice = await add_alice(store)
    token = await store.open_session(alice.id, 600)
    async with store._db.begin("test") as conn:  # as an admin tool would, sessions left open
        await conn.execute(update(agents).values(disabled=True))
    assert await store.session_agent(token) is None


@pytest.mark.parametrize(
    "username", ["a", "x" * 65, "al ice", "alice!", "ålice", "", "alice@example.org"]
)
async def test_usernames_outside_the_rules_are_refused(store: AgentStore, username: str) -> None:
    with pytest.raises(AgentInputError) as raised:
        await add_alice(store, username=username)
    assert raised.value.field == "username"
    assert await store.list() == []


@pytest.mark.parametrize("username", ["ab", "A.B-c_9", "x" * 64])
async def test_usernames_inside_the_rules_are_stored_lowercased(
    store: AgentStore, username: str
) -> None:
    agent = await add_alice(store, username=username)
    assert agent.username == username.lower()
    assert [a.username for a in await store.list()] == [username.lower()]


@pytest.mark.parametrize(
    ("changes", "field_name"),
    [
        ({"password": "seven77"}, "password"),
        ({"skills": {"cards": 0}}, "skills"),
        ({"skills": {"cards": 11}}, "skills"),
        ({"skills": {"cards": True}}, "skills"),
        ({"skills": {"cards": 5.5}}, "skills"),
        ({"skills": {"two words": 5}}, "skills"),
        ({"queues": "cards"}, "queues"),
        ({"queues": [""]}, "queues"),
        ({"capacity": {"voice": -1}}, "capacity"),
        ({"capacity": {"text": "3"}}, "capacity"),
    ],
)
async def test_bad_fields_are_refused_naming_the_field(
    store: AgentStore, changes: dict[str, Any], field_name: str
) -> None:
    with pytest.raises(AgentInputError) as raised:
        await add_alice(store, **changes)
    assert raised.value.field == field_name
    assert await store.list() == []


async def test_a_taken_username_in_any_case_raises_agent_exists(store: AgentStore) -> None:
    await add_alice(store)
    with pytest.raises(AgentExists, match="alice"):
        await add_alice(store, username="ALICE", password="another password")
    assert len(await store.list()) == 1
    assert await store.authenticate("alice", PASSWORD) is not None  # the first one's password


async def test_the_password_is_kept_as_an_argon2id_hash_never_shown(store: AgentStore) -> None:
    alice = await add_alice(store)
    (stored,) = await column(store, agents.c.password_hash)

    assert stored.startswith("$argon2id$")
    assert PASSWORD not in stored
    assert "password_hash" not in {f.name for f in dataclasses.fields(AgentRecord)}
    for shown in (repr(alice), json.dumps(alice.public_view()), repr(await store.list())):
        assert stored not in shown
        assert PASSWORD not in shown
        assert "argon2" not in shown


async def test_a_weak_hash_is_replaced_at_sign_in(store: AgentStore) -> None:
    await add_alice(store)
    (cheap,) = await column(store, agents.c.password_hash)
    strong_store = AgentStore(store._db)  # today's default parameters

    assert await strong_store.authenticate("alice", PASSWORD) is not None

    (upgraded,) = await column(store, agents.c.password_hash)
    assert upgraded != cheap
    assert not PasswordHasher().check_needs_rehash(upgraded)
    assert await strong_store.authenticate("alice", PASSWORD) is not None


# ------------------------------------------------------------------ sessions


async def test_a_session_token_finds_its_agent_and_only_its_hash_is_stored(
    store: AgentStore,
) -> None:
    alice = await add_alice(store)
    token = await store.open_session(alice.id, 600)

    assert len(token) >= 40
    assert await store.session_agent(token) == alice
    assert await column(store, agent_sessions.c.token_hash) == [
        hashlib.sha256(token.encode()).hexdigest()
    ]


@pytest.mark.parametrize("token", ["", "forged", "x" * 43, "y" * 5000])
async def test_an_unknown_token_finds_nobody(store: AgentStore, token: str) -> None:
    alice = await add_alice(store)
    await store.open_session(alice.id, 600)
    assert await store.session_agent(token) is None


async def test_an_expired_session_finds_nobody_and_is_deleted(store: AgentStore) -> None:
    alice = await add_alice(store)
    now = time.time()
    token = await store.open_session(alice.id, 60, now=now)

    assert await store.session_agent(token, now=now + 59) == alice
    assert await store.session_agent(token, now=now + 60) is None
    assert await session_count(store) == 0
    assert await store.session_agent(token, now=now) is None  # gone for good


async def test_opening_a_session_purges_expired_ones(store: AgentStore) -> None:
    alice = await add_alice(store)
    now = time.time()
    await store.open_session(alice.id, 10, now=now - 100)
    await store.open_session(alice.id, 10, now=now - 50)
    await store.open_session(alice.id, 600, now=now)
    assert await session_count(store) == 1


async def test_last_seen_is_written_at_most_once_a_minute(store: AgentStore) -> None:
    alice = await add_alice(store)
    token = await store.open_session(alice.id, 3600, now=1_000_000_000.0)

    await store.session_agent(token, now=1_000_000_030.0)
    assert await column(store, agent_sessions.c.last_seen) == [1_000_000_000.0]
    await store.session_agent(token, now=1_000_000_061.0)
    assert await column(store, agent_sessions.c.last_seen) == [1_000_000_061.0]


async def test_a_closed_session_finds_nobody(store: AgentStore) -> None:
    alice = await add_alice(store)
    token = await store.open_session(alice.id, 600)
    other = await store.open_session(alice.id, 600)

    assert await store.close_session(token)
    assert not await store.close_session(token)
    assert await store.session_agent(token) is None
    assert await store.session_agent(other) == alice  # another browser stays signed in


async def test_close_sessions_of_signs_one_agent_out_everywhere(store: AgentStore) -> None:
    alice = await add_alice(store)
    bob = await add_alice(store, username="bob", display_name="Bob")
    tokens = [await store.open_session(alice.id, 600) for _ in range(3)]
    bobs = await store.open_session(bob.id, 600)

    assert await store.close_sessions_of(alice.id) == 3

    assert [await store.session_agent(t) for t in tokens] == [None, None, None]
    assert await store.session_agent(bobs) == bob


async def test_a_new_password_ends_the_sessions_and_replaces_the_old_one(
    store: AgentStore,
) -> None:
    alice = await add_alice(store)
    token = await store.open_session(alice.id, 600)

    assert await store.set_password("ALICE", "a brand new one")

    assert await store.session_agent(token) is None
    assert await store.authenticate("alice", PASSWORD) is None
    assert await store.authenticate("alice", "a brand new one") == alice
    assert not await store.set_password("nobody", "a brand new one")
    with pytest.raises(AgentInputError):
        await store.set_password("alice", "short")


async def test_removing_an_agent_ends_the_sessions(store: AgentStore) -> None:
    alice = await add_alice(store)
    token = await store.open_session(alice.id, 600)

    assert await store.remove("Alice")

    assert await store.session_agent(token) is None
    assert await session_count(store) == 0
    assert await store.get(alice.id) is None
    assert not await store.remove("alice")


def test_the_throttle_holds_a_username_back_for_the_rest_of_the_window() -> None:
    now = [1000.0]
    throttle = LoginThrottle(failures=5, window=300.0, clock=lambda: now[0])
    for _ in range(5):
        assert throttle.begin("alice") is None
        now[0] += 10
    assert throttle.begin("alice") == 250  # the first failure ages out at 1300
    assert throttle.begin("bob") is None  # per username
    now[0] = 1300.0
    assert throttle.begin("alice") is None  # one slot free again
    assert throttle.begin("alice") == 10
    throttle.succeeded("alice")
    assert throttle.begin("alice") is None


# ------------------------------------------------------------------ over HTTP


@dataclass
class Browser:
    """A browser on the agent pages: holds the `ivr_agent` cookie itself (so tests can forge
    it) and keeps every answer's status, headers and body in `seen`."""

    base: str
    session: aiohttp.ClientSession
    cookie: str | None = None
    seen: list[str] = field(default_factory=list)
    set_cookies: list[SimpleCookie] = field(default_factory=list)

    async def request(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any, Any]:
        """(status, headers, JSON body or text)."""
        headers = dict(kwargs.pop("headers", {}))
        if self.cookie is not None:
            headers["Cookie"] = f"{COOKIE}={self.cookie}"
        async with self.session.request(
            method, self.base + path, headers=headers, allow_redirects=False, **kwargs
        ) as resp:
            text = await resp.text()
            self.seen.append(f"{resp.status}\n{dict(resp.headers)}\n{text}")
            if COOKIE in resp.cookies:
                self.set_cookies.append(resp.cookies)
                self.cookie = resp.cookies[COOKIE].value or None
            try:
                return resp.status, resp.headers, json.loads(text)
            except ValueError:
                return resp.status, resp.headers, text

    async def sign_in(self, username: str, password: str, **kwargs: Any) -> tuple[int, Any, Any]:
        data = {"username": username, "password": password}
        return await self.request("POST", "/agent/login", data=data, **kwargs)

    async def sign_in_json(self, username: str, password: str) -> tuple[int, Any, Any]:
        return await self.request(
            "POST", "/agent/login", json={"username": username, "password": password}
        )

    async def me(self) -> tuple[int, Any]:
        status, _, body = await self.request("GET", "/agent/api/me")
        return status, body


@pytest.fixture
async def browser(server: Served) -> AsyncIterator[Browser]:
    # No cookie jar of its own: what is sent is exactly what the test set.
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session:
        yield Browser(server.url, session)


@pytest.fixture
async def alice(server: Served) -> AgentRecord:
    return await add_alice(server.app[AGENTS])


async def test_the_sign_in_page_is_a_labelled_form_that_posts(browser: Browser) -> None:
    status, headers, page = await browser.request("GET", "/agent/login")
    assert status == 200
    assert headers["Content-Type"].startswith("text/html")
    assert '<form method="post" action="/agent/login">' in page
    assert '<label for="username">' in page and 'id="username" name="username"' in page
    assert '<label for="password">' in page and 'name="password" type="password"' in page
    assert "<script" not in page and "http" not in page.replace("http-equiv", "")
    assert "{{" not in page


async def test_a_form_sign_in_sets_a_strict_httponly_cookie_and_opens_the_api(
    browser: Browser, alice: AgentRecord
) -> None:
    status, headers, _ = await browser.sign_in("Alice", PASSWORD)

    assert status == 303
    assert headers["Location"] == "/agent"
    morsel = browser.set_cookies[-1][COOKIE]
    assert morsel["httponly"] is True
    assert morsel["samesite"] == "Strict"
    assert morsel["path"] == "/"
    assert morsel["max-age"] == str(SESSION_TTL)
    assert not morsel["secure"]  # plain http here; see the https test
    assert await browser.me() == (200, {"agent": alice.public_view()})
    # Signed in, the sign-in page sends the browser on to the desktop.
    status, headers, _ = await browser.request("GET", "/agent/login")
    assert (status, headers["Location"]) == (303, "/agent")


async def test_a_json_sign_in_answers_the_agent(browser: Browser, alice: AgentRecord) -> None:
    status, _, body = await browser.sign_in_json("alice", PASSWORD)
    assert (status, body) == (200, {"agent": alice.public_view()})
    assert browser.cookie
    assert await browser.me() == (200, {"agent": alice.public_view()})


@pytest.mark.parametrize("username", ["alice", "nobody"], ids=["wrong password", "unknown user"])
async def test_a_failed_sign_in_says_the_same_whether_the_user_exists(
    browser: Browser, alice: AgentRecord, username: str
) -> None:
    status, _, page = await browser.sign_in(username, "not the password")
    assert status == 401
    assert "Wrong username or password" in page
    assert f'value="{username}"' in page  # typed once, not twice
    assert browser.cookie is None

    status, _, body = await browser.sign_in_json(username, "not the password")
    assert (status, body) == (401, {"error": "Wrong username or password"})
    assert browser.cookie is None


async def test_a_typed_username_is_escaped_on_the_page_again(browser: Browser) -> None:
    status, _, page = await browser.sign_in('"><script>x()</script>', "whatever it is")
    assert status == 401
    assert "<script>" not in page
    assert "&quot;&gt;&lt;script&gt;" in page


@pytest.mark.parametrize("body", ["[1, 2]", "{not json", '"alice"'])
async def test_a_json_sign_in_that_is_not_an_object_is_400(browser: Browser, body: str) -> None:
    status, _, answer = await browser.request(
        "POST", "/agent/login", data=body, headers={"Content-Type": "application/json"}
    )
    assert status == 400
    assert "username" in answer["error"]


@pytest.mark.parametrize("kind", ["none", "forged", "expired", "closed", "bearer token only"])
async def test_the_api_without_a_live_session_is_401_json(
    server: Served, browser: Browser, alice: AgentRecord, kind: str
) -> None:
    store = server.app[AGENTS]
    headers: dict[str, str] = {}
    if kind == "forged":
        browser.cookie = "forged-" + "A" * 36
    elif kind == "expired":
        browser.cookie = await store.open_session(alice.id, 60, now=time.time() - 61)
    elif kind == "closed":
        browser.cookie = await store.open_session(alice.id, 600)
        await store.close_session(browser.cookie)
    elif kind == "bearer token only":
        headers = server.headers()  # the API's token does not sign an agent in

    status, _, body = await browser.request("GET", "/agent/api/me", headers=headers)

    assert status == 401
    assert body["error"] == "sign in first"
    assert body["login"] == "/agent/login"


async def test_the_desktop_page_sends_a_stranger_to_the_sign_in_page(browser: Browser) -> None:
    status, headers, _ = await browser.request("GET", "/agent")
    assert status == 303
    assert headers["Location"] == "/agent/login"
    browser.cookie = "forged"
    status, headers, _ = await browser.request("GET", "/agent")
    assert (status, headers["Location"]) == (303, "/agent/login")
    assert browser.set_cookies[-1][COOKIE]["max-age"] == "0"  # the bad cookie is dropped


@pytest.fixture
def no_desktop_yet(monkeypatch: pytest.MonkeyPatch) -> None:
    """As before ivr/web/static/agent.html existed: /agent shows the placeholder page."""
    static = agent_auth._static
    monkeypatch.setattr(
        agent_auth, "_static", lambda name: None if name == "agent.html" else static(name)
    )


async def test_the_placeholder_page_greets_the_agent_with_the_name_escaped(
    server: Served, browser: Browser, no_desktop_yet: None
) -> None:
    await add_alice(server.app[AGENTS], display_name="<b>Eve</b> & co")
    await browser.sign_in("alice", PASSWORD)

    status, _, page = await browser.request("GET", "/agent")

    assert status == 200
    assert "<b>Eve</b>" not in page
    assert "Signed in as &lt;b&gt;Eve&lt;/b&gt; &amp; co" in page
    assert '<form method="post" action="/agent/logout">' in page


async def test_the_desktop_page_is_served_to_a_signed_in_agent(
    browser: Browser, alice: AgentRecord, monkeypatch: pytest.MonkeyPatch
) -> None:
    static = agent_auth._static
    desktop = "<!doctype html><title>the desktop</title>"
    monkeypatch.setattr(
        agent_auth, "_static", lambda name: desktop if name == "agent.html" else static(name)
    )
    await browser.sign_in("alice", PASSWORD)

    status, headers, page = await browser.request("GET", "/agent")

    assert (status, page) == (200, desktop)
    assert headers["Cache-Control"] == "no-store"


async def test_signing_out_ends_the_session(browser: Browser, alice: AgentRecord) -> None:
    await browser.sign_in("alice", PASSWORD)
    token = browser.cookie
    assert (await browser.me())[0] == 200

    status, headers, _ = await browser.request("POST", "/agent/logout")

    assert status == 303
    assert headers["Location"] == "/agent/login"
    cleared = browser.set_cookies[-1][COOKIE]
    assert (cleared.value, cleared["max-age"]) == ("", "0")
    browser.cookie = token  # a copy of the old cookie is worth nothing now
    assert (await browser.me())[0] == 401


async def test_a_new_password_signs_the_browser_out(
    server: Served, browser: Browser, alice: AgentRecord
) -> None:
    await browser.sign_in("alice", PASSWORD)
    await server.app[AGENTS].set_password("alice", "a brand new one")
    assert (await browser.me())[0] == 401
    assert (await browser.sign_in("alice", PASSWORD))[0] == 401
    assert (await browser.sign_in("alice", "a brand new one"))[0] == 303


async def test_guessing_one_username_is_throttled_with_retry_after(
    browser: Browser, alice: AgentRecord
) -> None:
    for _ in range(5):
        assert (await browser.sign_in("alice", "guess guess"))[0] == 401

    status, headers, page = await browser.sign_in("ALICE", PASSWORD)  # even the right one

    assert status == 429
    assert 1 <= int(headers["Retry-After"]) <= THROTTLE_WINDOW
    assert "Too many failed sign-ins" in page
    assert browser.cookie is None
    status, headers, body = await browser.sign_in_json("alice", PASSWORD)
    assert status == 429
    assert body["retry_after"] == int(headers["Retry-After"])
    # Another username is not held back.
    assert (await browser.sign_in("nobody", "guess guess"))[0] == 401


@pytest.mark.parametrize(
    "origin", ["http://evil.example", "null", "https://127.0.0.1", "http://127.0.0.1:1"]
)
async def test_posts_from_another_origin_are_refused(
    browser: Browser, alice: AgentRecord, origin: str
) -> None:
    status, _, body = await browser.sign_in("alice", PASSWORD, headers={"Origin": origin})
    assert status == 403
    assert "cross-origin" in body["error"]
    assert browser.cookie is None

    await browser.sign_in("alice", PASSWORD)  # no Origin: a program, let through
    status, _, _ = await browser.request("POST", "/agent/logout", headers={"Origin": origin})
    assert status == 403
    assert (await browser.me())[0] == 200  # still signed in


async def test_posts_from_our_own_origin_are_accepted(
    server: Served, browser: Browser, alice: AgentRecord
) -> None:
    status, _, _ = await browser.sign_in("alice", PASSWORD, headers={"Origin": server.url})
    assert status == 303
    assert (await browser.me())[0] == 200


async def test_a_websocket_from_another_origin_is_refused(server: Served) -> None:
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await session.ws_connect(server.url + "/agent/ws", origin="http://evil.example")
    assert refused.value.status == 403


async def test_the_password_and_its_hash_never_reach_an_answer_or_the_log(
    server: Served, browser: Browser, alice: AgentRecord, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    await browser.sign_in("alice", PASSWORD[::-1])  # a wrong one, shown nowhere either
    await browser.sign_in_json("alice", PASSWORD[::-1])
    await browser.sign_in("alice", PASSWORD)
    token = browser.cookie
    await browser.me()
    await browser.request("GET", "/agent")
    await browser.request("POST", "/agent/logout")
    await browser.sign_in_json("alice", PASSWORD)
    (stored_hash,) = await column(server.app[AGENTS], agents.c.password_hash)

    assert token and "signed in" in caplog.text  # the log was captured
    for secret in (PASSWORD, PASSWORD[::-1], stored_hash, stored_hash.split("$")[-1]):
        assert secret not in caplog.text
        for answer in browser.seen:
            assert secret not in answer
    assert token not in caplog.text  # the session token is in the cookie only


# ------------------------------------------------------------------ https


def self_signed(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "cert.pem", directory / "key.pem"
    done = subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return cert, key


@pytest.mark.skipif(shutil.which("openssl") is None, reason="the openssl command is missing")
async def test_over_https_the_cookie_is_secure(server: Served, tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    settings = replace(server.settings, store=StoreSettings(url=f"sqlite:///{tmp_path}/tls.db"))
    runner = web.AppRunner(create_app(settings), access_log=None, shutdown_timeout=5)
    await runner.setup()
    try:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        await web.SockSite(runner, sock, ssl_context=context).start()
        await add_alice(runner.app[AGENTS])
        base = f"https://127.0.0.1:{sock.getsockname()[1]}"
        connector = aiohttp.TCPConnector(ssl=False)  # self-signed: not what is tested here
        async with aiohttp.ClientSession(
            connector=connector, cookie_jar=aiohttp.DummyCookieJar()
        ) as session:
            browser = Browser(base, session)
            status, _, _ = await browser.sign_in("alice", PASSWORD)
            assert status == 303
            assert browser.set_cookies[-1][COOKIE]["secure"] is True
            assert (await browser.me())[0] == 200
    finally:
        await runner.cleanup()
