"""Pytest plugin: a real PostgreSQL server for the test session.

`postgres_url` (session) starts a throwaway cluster from the installed PostgreSQL binaries,
listening on 127.0.0.1 at a free port with trust auth and fsync off, and yields the URL of its
`ivr_test` database; the cluster is stopped and deleted at the end. `fresh_postgres_url` gives
each test its own empty database (created from `ivr_test`, dropped afterwards), so tests never
see each other's rows. Without PostgreSQL binaries, tests using them are skipped. When running as
root the server runs as the `postgres` user, since initdb refuses root.
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

SUPERUSER = "postgres"
DATABASE = "ivr_test"
TIMEOUT_S = 30
START_ATTEMPTS = 3  # a free port can be taken between picking it and the server binding it


def _bin_dir() -> Path | None:
    """The directory holding pg_ctl, initdb and psql: from PATH, else the newest Debian install."""
    on_path = shutil.which("pg_ctl")
    candidates = [Path(os.path.realpath(on_path)).parent] if on_path else []
    candidates += [
        Path(found).parent
        for found in sorted(
            glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
            key=lambda p: [int(part) for part in Path(p).parts[-3].split(".") if part.isdigit()],
            reverse=True,
        )
    ]
    for directory in candidates:
        if all((directory / tool).is_file() for tool in ("pg_ctl", "initdb", "psql")):
            return directory
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class _Server:
    bin_dir: Path
    root: Path
    run_as: list[str]  # prefix running a command as the cluster's owner
    port: int = 0

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def log(self) -> Path:
        return self.root / "server.log"

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self.run_as, *args],
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S + 10,
            check=False,
        )

    def init(self) -> None:
        done = self.run(
            str(self.bin_dir / "initdb"),
            "-D", str(self.data),
            "-U", SUPERUSER,
            "--auth=trust",
            "--encoding=UTF8",
            "--no-sync",
        )  # fmt: skip
        if done.returncode:
            raise RuntimeError(f"initdb failed:\n{done.stdout}\n{done.stderr}")

    def start(self) -> None:
        for _ in range(START_ATTEMPTS):
            self.port = _free_port()
            options = (
                f"-F -p {self.port} -k {self.root} -c listen_addresses=127.0.0.1"
                " -c full_page_writes=off -c max_connections=100"
            )
            done = self.run(
                str(self.bin_dir / "pg_ctl"),
                "start", "-w", "-t", str(TIMEOUT_S),
                "-D", str(self.data), "-l", str(self.log), "-o", options,
            )  # fmt: skip
            if done.returncode == 0:
                return
        log = self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""
        raise RuntimeError(f"PostgreSQL did not start:\n{done.stdout}\n{done.stderr}\n{log}")

    def stop(self) -> None:
        self.run(
            str(self.bin_dir / "pg_ctl"),
            "stop", "-w", "-t", str(TIMEOUT_S), "-m", "fast", "-D", str(self.data),
        )  # fmt: skip

    def sql(self, statement: str) -> None:
        """Run one statement as the superuser in the `postgres` maintenance database."""
        psql = [
            str(self.bin_dir / "psql"),
            "-h", "127.0.0.1", "-p", str(self.port), "-U", SUPERUSER, "-d", "postgres",
            "-v", "ON_ERROR_STOP=1", "-X", "-q", "-c", statement,
        ]  # fmt: skip
        done = subprocess.run(
            psql,
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
            check=False,
        )
        if done.returncode:
            raise RuntimeError(f"psql {statement!r} failed: {done.stderr.strip()}")

    def url(self, database: str) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"


@pytest.fixture(scope="session")
def _postgres_server() -> Iterator[_Server]:
    bin_dir = _bin_dir()
    if bin_dir is None:
        pytest.skip(
            "PostgreSQL binaries not found (no pg_ctl/initdb on PATH or in "
            "/usr/lib/postgresql/*/bin): install the `postgresql` package to run these tests"
        )
    root = Path(tempfile.mkdtemp(prefix="ivr-pg-"))
    run_as: list[str] = []
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam(SUPERUSER)
        except KeyError:
            shutil.rmtree(root, ignore_errors=True)
            pytest.skip("running as root and there is no `postgres` user to run PostgreSQL as")
        os.chown(root, owner.pw_uid, owner.pw_gid)
        run_as = ["runuser", "-u", SUPERUSER, "--"]
    server = _Server(bin_dir=bin_dir, root=root, run_as=run_as)
    try:
        server.init()
        server.start()
        try:
            server.sql(f"CREATE DATABASE {DATABASE}")
            yield server
        finally:
            server.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_url(_postgres_server: _Server) -> str:
    """URL of the session's `ivr_test` database (shared: tests wanting a clean one use
    `fresh_postgres_url`)."""
    return _postgres_server.url(DATABASE)


_numbers = itertools.count(1)


@pytest.fixture
def fresh_postgres_url(_postgres_server: _Server, postgres_url: str) -> Iterator[str]:
    """URL of an empty database of this test's own, dropped when the test ends."""
    name = f"{DATABASE}_{next(_numbers)}"
    _postgres_server.sql(f"CREATE DATABASE {name} TEMPLATE {DATABASE}")
    try:
        yield _postgres_server.url(name)
    finally:
        _postgres_server.sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
