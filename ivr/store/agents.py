"""`AgentStore`: human agents' accounts (argon2id passwords) and their signed-in sessions.

An agent is one row of `agents` (and one of `agent_phones` if their calls go to a SIP phone);
what leaves this module is an `AgentRecord`, which has no password hash at all, so no repr, log
line or JSON view can show one. A session is a random token that lives only in the agent's
cookie; the table keeps its SHA-256, so a copy of the database does not sign anyone in.

Hashing is slow on purpose (argon2id: tens of milliseconds and 64 MiB each): it runs in a
thread, at most `PARALLEL_HASHES` at once, so sign-ins neither stall the event loop nor let a
burst of them take the machine's memory. What the web does with sessions (cookies, throttling)
lives in `ivr.web.agent_auth`, not here.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import secrets
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Row, Select, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from ivr.store.database import Database
from ivr.store.schema import agent_phones, agent_sessions, agents

USERNAME = re.compile(r"^[a-z0-9._-]{2,64}$")
NAME = re.compile(r"^[A-Za-z0-9._-]{1,64}$")  # skills, queues and capacity media
# An agent's phone: sip: or sips:, an optional user, a host (and port), optional parameters.
# No URI headers (`?...`): the transfer puts the conversation's context there itself.
SIP_URI = re.compile(r"^sips?:(?:[^@\s<>\"?]+@)?[A-Za-z0-9.\-\[\]:]+(?:;[^\s<>\"?]*)?$", re.I)
MAX_SIP_URI = 256
MIN_PASSWORD, MAX_PASSWORD = 8, 1024
MAX_DISPLAY_NAME = 200
PROFICIENCY = range(1, 11)
DEFAULT_CAPACITY = {"voice": 1, "text": 3}
LAST_SEEN_EVERY = 60.0  # seconds: a busy desktop must not write on every request
PARALLEL_HASHES = 2
MAX_TOKEN = 256  # longer cookies are not ours: no query for them


class AgentExists(Exception):
    """`add` of a username that is taken."""


class AgentInputError(ValueError):
    """A field of an agent that cannot be stored; `field` names it, `problem` says why."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


@dataclass(frozen=True)
class AgentRecord:
    """An agent as the rest of the server sees it: never with a password or its hash."""

    id: str
    username: str
    display_name: str
    skills: Mapping[str, int] = field(hash=False)
    queues: tuple[str, ...]
    capacity: Mapping[str, int] = field(hash=False)
    created_at: float
    disabled: bool = False
    phone: str | None = None  # their SIP phone's URI: calls they accept are transferred there

    def public_view(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "username": self.username,
            "display_name": self.display_name,
            "skills": dict(self.skills),
            "queues": list(self.queues),
            "capacity": dict(self.capacity),
            "created_at": self.created_at,
            "disabled": self.disabled,
            "phone": self.phone,
        }


# ------------------------------------------------------------------ validation


def normalize_username(username: str) -> str:
    """Usernames are case-insensitive: `Alice` signs in as `alice`."""
    return username.strip().lower()


def check_username(username: str) -> str:
    name = normalize_username(username)
    if not USERNAME.match(name):
        raise AgentInputError(
            "username",
            f"{username!r}: 2 to 64 of a-z, 0-9, '.', '_' and '-'",
        )
    return name


def check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise AgentInputError("password", f"must be at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise AgentInputError("password", f"must be at most {MAX_PASSWORD} characters")
    return password


def check_display_name(display_name: str, username: str) -> str:
    name = " ".join(display_name.split()) or username  # no newlines or tabs in a name
    if len(name) > MAX_DISPLAY_NAME:
        raise AgentInputError("display_name", f"at most {MAX_DISPLAY_NAME} characters")
    return name


def _check_name(kind: str, name: object) -> str:
    if not isinstance(name, str) or not NAME.match(name):
        raise AgentInputError(kind, f"{name!r}: a name is 1 to 64 of A-Z, a-z, 0-9, '.', '_', '-'")
    return name


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_skills(skills: Mapping[str, int]) -> dict[str, int]:
    checked: dict[str, int] = {}
    for name, level in skills.items():
        _check_name("skills", name)
        if not _is_int(level) or level not in PROFICIENCY:
            raise AgentInputError("skills", f"'{name}:{level}': proficiency must be 1..10")
        checked[name] = level
    return checked


def check_queues(queues: Sequence[str]) -> list[str]:
    if isinstance(queues, str):  # a lone string would become a queue per letter
        raise AgentInputError("queues", "expected a list of queue names")
    return list(dict.fromkeys(_check_name("queues", queue) for queue in queues))


def check_capacity(capacity: Mapping[str, int]) -> dict[str, int]:
    checked: dict[str, int] = {}
    for medium, count in capacity.items():
        _check_name("capacity", medium)
        if not _is_int(count) or count < 0:
            raise AgentInputError("capacity", f"'{medium}:{count}': must be a whole number >= 0")
        checked[medium] = count
    return checked


def check_phone(phone: str | None) -> str | None:
    """An agent's SIP phone URI (None or empty: no phone, calls come to the desktop)."""
    uri = (phone or "").strip()
    if not uri:
        return None
    if len(uri) > MAX_SIP_URI or not SIP_URI.match(uri):
        raise AgentInputError(
            "phone", f"{uri!r}: a SIP URI starting with sip: or sips:, e.g. sip:dana@pbx.example"
        )
    return uri


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


# ------------------------------------------------------------------ the store


_AGENT_COLUMNS = (
    agents.c.id,
    agents.c.username,
    agents.c.display_name,
    agents.c.skills,
    agents.c.queues,
    agents.c.capacity,
    agents.c.created_at,
    agents.c.disabled,
    agent_phones.c.sip_uri.label("phone"),
)
_WITH_PHONE = agents.outerjoin(agent_phones, agent_phones.c.agent_id == agents.c.id)


def _select_agents(*more: Any) -> Select[Any]:
    """The agents' columns (their phone's too), and `more`."""
    return select(*_AGENT_COLUMNS, *more).select_from(_WITH_PHONE)


async def _agent_id(conn: AsyncConnection, name: str) -> str | None:
    return await conn.scalar(select(agents.c.id).where(agents.c.username == name))


async def _put_phone(conn: AsyncConnection, agent_id: str, uri: str | None) -> None:
    """The agent's phone row, replaced (or gone: None)."""
    await conn.execute(delete(agent_phones).where(agent_phones.c.agent_id == agent_id))
    if uri is not None:
        await conn.execute(agent_phones.insert().values(agent_id=agent_id, sip_uri=uri))


def _record(row: Row[Any]) -> AgentRecord:
    return AgentRecord(
        id=row.id,
        username=row.username,
        display_name=row.display_name,
        skills=json.loads(row.skills),
        queues=tuple(json.loads(row.queues)),
        capacity=json.loads(row.capacity),
        created_at=row.created_at,
        disabled=bool(row.disabled),
        phone=row.phone,
    )


class AgentStore:
    """Agents and sessions on an open `Database` (the one the conversations live in)."""

    def __init__(self, database: Database, hasher: PasswordHasher | None = None) -> None:
        self._db = database
        self._hasher = hasher or PasswordHasher()  # argon2id, RFC 9106's second profile
        self._insert = postgresql.insert if database.dialect == "postgresql" else sqlite.insert
        self._hashing = asyncio.Semaphore(PARALLEL_HASHES)
        self._dummy_hash: str | None = None

    # ---------------------------------------------------------- passwords

    async def _hash(self, password: str) -> str:
        async with self._hashing:
            return await asyncio.to_thread(self._hasher.hash, password)

    async def _verify(self, password_hash: str, password: str) -> bool:
        async with self._hashing:
            try:
                return await asyncio.to_thread(self._hasher.verify, password_hash, password)
            except (VerificationError, InvalidHashError):
                return False

    async def _dummy(self) -> str:
        """A hash no password matches, so an unknown username costs what a known one does."""
        if self._dummy_hash is None:
            self._dummy_hash = await self._hash(secrets.token_urlsafe(32))
        return self._dummy_hash

    # ---------------------------------------------------------- accounts

    async def add(
        self,
        username: str,
        display_name: str,
        password: str,
        skills: Mapping[str, int] | None = None,
        queues: Sequence[str] = (),
        capacity: Mapping[str, int] | None = None,
        phone: str | None = None,
    ) -> AgentRecord:
        """A new agent; `AgentInputError` for a bad field, `AgentExists` for a taken name."""
        name = check_username(username)
        record = AgentRecord(
            id=uuid.uuid4().hex,
            username=name,
            display_name=check_display_name(display_name, name),
            skills=check_skills(skills or {}),
            queues=tuple(check_queues(queues)),
            capacity=check_capacity(DEFAULT_CAPACITY if capacity is None else capacity),
            created_at=time.time(),
            phone=check_phone(phone),
        )
        password_hash = await self._hash(check_password(password))
        row = {
            "id": record.id,
            "username": record.username,
            "display_name": record.display_name,
            "password_hash": password_hash,
            "skills": json.dumps(record.skills),
            "queues": json.dumps(list(record.queues)),
            "capacity": json.dumps(record.capacity),
            "created_at": record.created_at,
            "disabled": False,
        }
        # "on conflict do nothing" rather than catching the driver's error: the same on both
        # databases, and two operators adding one name at once get one account and one error.
        statement = (
            self._insert(agents)
            .values(row)
            .on_conflict_do_nothing(index_elements=[agents.c.username])
            .returning(agents.c.id)
        )
        async with self._db.begin(f"adding agent {name}") as conn:
            added = (await conn.execute(statement)).first()
            if added is not None:
                await _put_phone(conn, record.id, record.phone)
        if added is None:
            raise AgentExists(f"an agent named {name!r} already exists")
        return record

    async def get(self, agent_id: str) -> AgentRecord | None:
        return await self._one(agents.c.id == agent_id, f"loading agent {agent_id}")

    async def by_username(self, username: str) -> AgentRecord | None:
        name = normalize_username(username)
        return await self._one(agents.c.username == name, f"loading agent {name}")

    async def _one(self, where: Any, action: str) -> AgentRecord | None:
        async with self._db.connect(action) as conn:
            row = (await conn.execute(_select_agents().where(where))).first()
        return _record(row) if row is not None else None

    async def list(self) -> list[AgentRecord]:
        query = _select_agents().order_by(agents.c.username)
        async with self._db.connect("listing agents") as conn:
            return [_record(row) for row in await conn.execute(query)]

    async def remove(self, username: str) -> bool:
        """Delete the agent and sign them out everywhere; False if there was no such agent."""
        name = normalize_username(username)
        async with self._db.begin(f"removing agent {name}") as conn:
            agent_id = await _agent_id(conn, name)
            if agent_id is None:
                return False
            # The foreign key cascades too; deleting first also covers a database without it.
            await conn.execute(delete(agent_sessions).where(agent_sessions.c.agent_id == agent_id))
            await _put_phone(conn, agent_id, None)
            await conn.execute(delete(agents).where(agents.c.id == agent_id))
        return True

    async def set_password(self, username: str, password: str) -> bool:
        """Replace the password and end the agent's sessions; False if there is no such agent."""
        name = normalize_username(username)
        password_hash = await self._hash(check_password(password))
        return await self._update_and_sign_out(name, {"password_hash": password_hash})

    async def set_disabled(self, username: str, disabled: bool) -> bool:
        """Disable (and sign out) or re-enable an agent; False if there is no such agent."""
        name = normalize_username(username)
        return await self._update_and_sign_out(name, {"disabled": disabled})

    async def set_phone(self, username: str, phone: str | None) -> bool:
        """The agent's SIP phone (None: none, their calls come to the desktop again); their
        desktop uses it from its next connection (a reload). False if there is no such agent."""
        name = normalize_username(username)
        uri = check_phone(phone)
        async with self._db.begin(f"setting the phone of agent {name}") as conn:
            agent_id = await _agent_id(conn, name)
            if agent_id is None:
                return False
            await _put_phone(conn, agent_id, uri)
        return True

    async def _update_and_sign_out(self, name: str, values: dict[str, Any]) -> bool:
        async with self._db.begin(f"updating agent {name}") as conn:
            agent_id = await _agent_id(conn, name)
            if agent_id is None:
                return False
            await conn.execute(update(agents).where(agents.c.id == agent_id).values(values))
            await conn.execute(delete(agent_sessions).where(agent_sessions.c.agent_id == agent_id))
        return True

    async def authenticate(self, username: str, password: str) -> AgentRecord | None:
        """The agent if the password is theirs and they are not disabled, else None.

        An unknown username is checked against a dummy hash, so timing does not tell which
        usernames exist. A hash made with weaker parameters than today's is replaced."""
        name = normalize_username(username)
        query = _select_agents(agents.c.password_hash).where(agents.c.username == name)
        async with self._db.connect(f"signing in agent {name}") as conn:
            row = (await conn.execute(query)).first() if USERNAME.match(name) else None
        if row is None:
            await self._verify(await self._dummy(), password)
            return None
        if not await self._verify(row.password_hash, password) or row.disabled:
            return None
        if self._hasher.check_needs_rehash(row.password_hash):
            fresh = await self._hash(password)
            async with self._db.begin(f"rehashing the password of agent {name}") as conn:
                await conn.execute(
                    update(agents)
                    .where(agents.c.id == row.id, agents.c.password_hash == row.password_hash)
                    .values(password_hash=fresh)
                )
        return _record(row)

    # ---------------------------------------------------------- sessions

    async def open_session(
        self, agent_id: str, ttl_seconds: float, now: float | None = None
    ) -> str:
        """A new session token for the cookie; only its hash is stored. Expired sessions of
        everyone are purged here, so the table holds live sessions only."""
        now = time.time() if now is None else now
        token = secrets.token_urlsafe(32)
        row = {
            "token_hash": token_hash(token),
            "agent_id": agent_id,
            "created_at": now,
            "expires_at": now + ttl_seconds,
            "last_seen": now,
        }
        async with self._db.begin(f"opening a session for agent {agent_id}") as conn:
            await conn.execute(delete(agent_sessions).where(agent_sessions.c.expires_at <= now))
            await conn.execute(agent_sessions.insert().values(row))
        return token

    async def session_agent(self, token: str, now: float | None = None) -> AgentRecord | None:
        """The agent a live session token belongs to; None for an unknown, expired (then
        deleted) or disabled one."""
        if not token or len(token) > MAX_TOKEN:
            return None
        now = time.time() if now is None else now
        key = token_hash(token)
        query = (
            _select_agents(agent_sessions.c.expires_at, agent_sessions.c.last_seen)
            .join(agent_sessions, agent_sessions.c.agent_id == agents.c.id)
            .where(agent_sessions.c.token_hash == key)
        )
        async with self._db.connect("checking an agent session") as conn:
            row = (await conn.execute(query)).first()
        if row is None:
            return None
        if row.expires_at <= now:
            await self.close_session(token)
            return None
        if row.disabled:
            return None
        if now - row.last_seen >= LAST_SEEN_EVERY:
            async with self._db.begin("noting an agent session's activity") as conn:
                await conn.execute(
                    update(agent_sessions)
                    .where(agent_sessions.c.token_hash == key)
                    .values(last_seen=now)
                )
        return _record(row)

    async def close_session(self, token: str) -> bool:
        """Sign this browser out; False if the token was not a live session."""
        if not token or len(token) > MAX_TOKEN:
            return False
        async with self._db.begin("closing an agent session") as conn:
            result = await conn.execute(
                delete(agent_sessions).where(agent_sessions.c.token_hash == token_hash(token))
            )
        return bool(result.rowcount)

    async def close_sessions_of(self, agent_id: str) -> int:
        """Sign the agent out everywhere (password changed, account removed); how many."""
        async with self._db.begin(f"closing the sessions of agent {agent_id}") as conn:
            result = await conn.execute(
                delete(agent_sessions).where(agent_sessions.c.agent_id == agent_id)
            )
        return result.rowcount or 0
