"""The real `ivr serve` process: nothing said is lost when it is killed, and it stops cleanly.

Each test starts `python -m ivr.cli serve` on a free loopback port with its settings in IVR_*
variables, waits for /healthz, talks to it over a websocket like the chat page, and reads the
conversation back from the REST API.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.serve_fixtures import ALICE, REPO, Chat, free_port, prompt_text, wait_until

TOKEN = "process-test-token"
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0


class ServeProcess:
    def __init__(self, store_url: str, log: Path) -> None:
        self.store_url = store_url
        self.log = log
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("IVR_")}
        env.update(
            IVR_HTTP_PORT=str(self.port),
            IVR_STORE_URL=self.store_url,
            IVR_API_TOKEN=TOKEN,
            IVR_FLOWS_DIALOGS=str(REPO / "dialogs"),
            IVR_FLOWS_PROMPTS=str(REPO / "prompts"),
            IVR_FLOWS_RELOAD="no",
            IVR_SIP_ENABLED="no",  # phone calls have their own process tests
        )
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "ivr.cli", "serve"],
                cwd=REPO,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    async def wait_ready(self, session: aiohttp.ClientSession) -> None:
        async def healthy() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                pytest.fail(f"ivr serve exited with {self.proc.returncode}:\n{self.output()}")
            async with session.get(self.url + "/healthz") as resp:
                return resp.status == 200

        await wait_until(healthy, timeout=START_TIMEOUT_S)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=STOP_TIMEOUT_S)

    def stop(self) -> None:
        """Make sure it is not left running (teardown)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=STOP_TIMEOUT_S)


@pytest.fixture
def serve_process(tmp_path: Path) -> Iterator[Callable[[str], ServeProcess]]:
    """A factory of `ivr serve` processes on a store URL; none is left running."""
    started: list[ServeProcess] = []

    def make(store_url: str) -> ServeProcess:
        process = ServeProcess(store_url, tmp_path / f"serve-{len(started)}.log")
        started.append(process)
        return process

    yield make
    for process in started:
        process.stop()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/ivr.db"
    return request.getfixturevalue("fresh_postgres_url")


async def test_killing_the_server_loses_nothing_already_said(
    serve_process: Callable[[str], ServeProcess], store_url: str
) -> None:
    server = serve_process(store_url)
    server.start()
    headers = {"Authorization": f"Bearer {TOKEN}"}
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        await server.wait_ready(session)
        chat = Chat(await session.ws_connect(server.url + "/chat/ws"), REPO / "prompts")
        conv_id = await chat.start()
        await chat.expect_prompt("bank_welcome")
        await chat.expect_prompt("ask_account")
        await chat.say(ALICE["account"])
        await chat.expect_prompt("ask_pin")  # the answer was taken: the next question came

        server.kill()
        assert server.proc is not None and server.proc.returncode == -signal.SIGKILL
        await chat.ws.close()

        server.start()
        await server.wait_ready(session)
        async with session.get(f"{server.url}/api/conversations/{conv_id}", headers=headers) as r:
            assert r.status == 200, await r.text()
            conv = await r.json()

    said = [(t["role"], t["text"]) for t in conv["timeline"]]
    assert said == [
        ("bot", prompt_text(REPO / "prompts", "bank_welcome")),
        ("bot", prompt_text(REPO / "prompts", "ask_account")),
        ("customer", ALICE["account"]),
        ("bot", prompt_text(REPO / "prompts", "ask_pin")),
    ]
    assert conv["channels"] == ["chat"]
    assert str(conv["slots"]["account_number"]) == ALICE["account"]
    assert conv["position"]["step"] == "verify"
    assert conv["status"] == "active"


async def test_serve_exits_cleanly_on_sigterm(
    serve_process: Callable[[str], ServeProcess], tmp_path: Path
) -> None:
    server = serve_process(f"sqlite:///{tmp_path}/ivr.db")
    server.start()
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        await server.wait_ready(session)
        # A customer is mid-conversation: shutting down must not wait for them.
        chat = Chat(await session.ws_connect(server.url + "/chat/ws"), REPO / "prompts")
        conv_id = await chat.start()
        await chat.expect_prompt("ask_account")

        assert server.proc is not None
        began = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        try:
            code = server.proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"ivr serve still running {STOP_TIMEOUT_S} s after SIGTERM")
        assert code == 0, server.output()
        assert time.monotonic() - began < 5, "shutdown waited for the open chat"
        closing = await chat.ws.receive(timeout=5)
        assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        assert "Traceback" not in server.output()

        # The conversation was kept where it stood.
        server.start()
        await server.wait_ready(session)
        async with session.get(f"{server.url}/api/conversations/{conv_id}", headers=headers) as r:
            assert r.status == 200, await r.text()
            conv = await r.json()
    assert conv["position"]["step"] == "identify"
    assert conv["status"] == "active"
    assert [t["role"] for t in conv["timeline"]][:2] == ["bot", "bot"]
