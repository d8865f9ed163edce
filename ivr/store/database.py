"""Database URLs, the engine, and `open_store`.

Configuration names a database plainly; this module maps it to the async driver:

    sqlite:///relative/path.db    sqlite:////absolute/path.db    sqlite:///:memory:
    postgresql://user:password@host:5432/dbname    (postgres:// works too)

SQLite runs in WAL mode with a busy timeout, so one writer and many readers (other processes
included) get along. Tables are created at open. Every database failure reaches callers as a
`StoreError` naming what was being done and where (never the password), chained to the driver
error for the logs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import StaticPool

from ivr.store.schema import metadata

if TYPE_CHECKING:
    from ivr.store.conversations import ConversationStore

SQLITE_BUSY_TIMEOUT_MS = 10_000
POSTGRES_CONNECT_TIMEOUT_S = 10
# Nodes starting together take this PostgreSQL advisory lock so only one creates the tables.
_SCHEMA_LOCK = text("SELECT pg_advisory_xact_lock(740217301)")

_DRIVERS = {
    "sqlite": "sqlite+aiosqlite",
    "sqlite+aiosqlite": "sqlite+aiosqlite",
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
    "postgresql+asyncpg": "postgresql+asyncpg",
}
_EXPECTED = "expected sqlite:///path.db or postgresql://user@host:port/dbname"


class StoreError(Exception):
    """The database could not do what was asked (bad URL, unreachable, closed, failed query)."""


def parse_url(raw: str) -> tuple[URL, str]:
    """Map a configured URL to its async-driver URL; also return it for messages (no password)."""
    scheme, sep, _ = raw.partition("://")
    if not sep or not scheme:
        raise StoreError(f"database URL has no scheme: {_EXPECTED}")
    driver = _DRIVERS.get(scheme.lower())
    if driver is None:
        raise StoreError(f"unsupported database URL scheme {scheme!r}: {_EXPECTED}")
    try:
        url = make_url(raw)  # ValueError on a non-numeric port
    except (ArgumentError, ValueError):
        raise StoreError(f"malformed {scheme} database URL: {_EXPECTED}") from None
    shown = raw if url.get_backend_name() == "sqlite" else url.render_as_string(hide_password=True)
    return url.set(drivername=driver), shown


def _is_memory(url: URL) -> bool:
    return url.database in (None, "", ":memory:")


def _on_sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA journal_mode = WAL")
    # With WAL, NORMAL syncs at checkpoints, not at every commit: a killed process loses
    # nothing committed (the WAL is in the OS cache); only a power cut may lose the last
    # commits. 10x the write rate of FULL for saving after every turn (bench/engine_turns.py).
    cursor.execute("PRAGMA synchronous = NORMAL")
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.close()


def create_engine(url: URL) -> AsyncEngine:
    """An async engine for an already mapped URL (see `parse_url`)."""
    if url.get_backend_name() == "sqlite":
        options: dict[str, Any] = {}
        if _is_memory(url):
            options["poolclass"] = StaticPool  # one connection, or each would get its own DB
        engine = create_async_engine(url, **options)
        event.listen(engine.sync_engine, "connect", _on_sqlite_connect)
        return engine
    return create_async_engine(
        url,
        pool_pre_ping=True,  # survive a database restart between requests
        connect_args={"timeout": POSTGRES_CONNECT_TIMEOUT_S},
    )


def _describe(exc: BaseException) -> str:
    cause = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    message = str(cause).splitlines()[0] if str(cause) else ""
    return f"{type(cause).__name__}: {message}" if message else type(cause).__name__


class Database:
    """An open engine plus what every store needs: transactions that fail as `StoreError`."""

    def __init__(self, engine: AsyncEngine, shown_url: str) -> None:
        self.engine = engine
        self.shown_url = shown_url
        self.closed = False

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        try:
            yield
        except (SQLAlchemyError, OSError, TimeoutError) as exc:
            raise StoreError(f"{action} failed ({self.shown_url}): {_describe(exc)}") from exc

    def _check_open(self, action: str) -> None:
        if self.closed:
            raise StoreError(f"{action} failed ({self.shown_url}): the store is closed")

    @asynccontextmanager
    async def begin(self, action: str) -> AsyncIterator[AsyncConnection]:
        """A transaction: committed if the block succeeds, rolled back otherwise."""
        self._check_open(action)
        with self._errors(action):
            async with self.engine.begin() as conn:
                yield conn

    @asynccontextmanager
    async def connect(self, action: str) -> AsyncIterator[AsyncConnection]:
        """A connection for reading."""
        self._check_open(action)
        with self._errors(action):
            async with self.engine.connect() as conn:
                yield conn

    async def create_tables(self) -> None:
        async with self.begin("opening the store (creating tables)") as conn:
            if self.dialect == "postgresql":
                await conn.execute(_SCHEMA_LOCK)
            await conn.run_sync(metadata.create_all)

    async def close(self) -> None:
        self.closed = True
        await self.engine.dispose()


@asynccontextmanager
async def open_store(url: str) -> AsyncIterator[ConversationStore]:
    """Connect, create missing tables, yield the store; dispose of the engine on exit."""
    from ivr.store.conversations import ConversationStore  # it imports this module

    sa_url, shown = parse_url(url)
    if sa_url.get_backend_name() == "sqlite" and not _is_memory(sa_url):
        try:
            Path(sa_url.database or "").parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the directory for {shown}: {exc}") from exc
    database = Database(create_engine(sa_url), shown)
    try:
        await database.create_tables()
        yield ConversationStore(database)
    finally:
        await database.close()
