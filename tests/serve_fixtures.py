"""Pytest plugin: the `ivr serve` application in-process, and a web-chat customer to drive it.

`server` runs `create_app` on a loopback socket of its own (port picked by the OS) with a
throwaway SQLite store and a copy of dialogs/ and prompts/ under tmp_path, so a test may edit
the flows and watch the hot reload. `serve_app` does the same with other settings (another
store URL, other flow directories). `Served.chat()` opens a real websocket to /chat/ws;
`Chat.expect_bot(pattern)` and friends read frames with a bounded wait.

Helpers for subprocess tests live here too: `free_port()`, `wait_until()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import secrets
import shutil
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from ruamel.yaml import YAML

from ivr.config import (
    ApiSettings,
    FlowsSettings,
    HttpSettings,
    Settings,
    SipSettings,
    StoreSettings,
)
from ivr.web.app import create_app

REPO = Path(__file__).resolve().parent.parent
FRAME_TIMEOUT_S = 5.0

# The demo CRM's customers (ivr/demo/crm.py).
ALICE = {"account": "12345678", "pin": "2580", "name": "Alice"}
BOB = {"account": "87654321", "pin": "9876", "name": "Bob"}


def prompt_text(prompts_dir: Path, prompt_id: str, medium: str = "text") -> str:
    """What the catalogue in `prompts_dir` says for `prompt_id` on a text channel."""
    catalogue = YAML(typ="safe").load((prompts_dir / "en.yaml").read_text(encoding="utf-8"))
    entry = catalogue["prompts"][prompt_id]
    if isinstance(entry, str):
        return entry
    return entry.get(medium) or entry["voice"]


def texts_in(value: Any) -> list[str]:
    """Every text a JSON document shows (keys, strings, whole numbers), but ids and times:
    those are random digits that may hold any four in a row."""
    if isinstance(value, dict):
        return [
            text
            for key, item in value.items()
            for text in [str(key), *([] if key in ("id", "ts") else texts_in(item))]
        ]
    if isinstance(value, list):
        return [text for item in value for text in texts_in(item)]
    if isinstance(value, bool | float) or value is None:
        return []
    return [str(value)]


def assert_never_shows(secret: str, document: Any) -> None:
    shown = [text for text in texts_in(document) if secret in text]
    assert shown == [], f"{secret!r} shown in {shown}"


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def wait_until(
    probe: Callable[[], Awaitable[Any]], *, timeout: float = 10.0, interval: float = 0.05
) -> Any:
    """Call `probe` until it returns something truthy (its exceptions count as not yet);
    fail after `timeout` seconds with the last answer or error."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = await probe()
            if last:
                return last
        except Exception as exc:
            last = exc
        if time.monotonic() >= deadline:
            pytest.fail(f"not reached within {timeout} s; last answer: {last!r}")
        await asyncio.sleep(interval)


class Chat:
    """A web-chat customer on a real websocket. Every frame received is kept in `frames`."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, prompts_dir: Path) -> None:
        self.ws = ws
        self.prompts_dir = prompts_dir
        self.frames: list[dict[str, Any]] = []
        self.conversation_id: str | None = None

    async def send(self, frame: dict[str, Any] | str | bytes) -> None:
        if isinstance(frame, bytes):
            await self.ws.send_bytes(frame)
        elif isinstance(frame, str):
            await self.ws.send_str(frame)
        else:
            await self.ws.send_json(frame)

    async def start(self, flow: str | None = None) -> str:
        await self.send({"type": "start", **({"flow": flow} if flow else {})})
        frame = await self.expect("conversation")
        self.conversation_id = frame["id"]
        return frame["id"]

    async def say(self, text: str) -> None:
        await self.send({"type": "message", "text": text})

    async def keys(self, digits: str) -> None:
        await self.send({"type": "dtmf", "digits": digits})

    async def next_frame(self, timeout: float = FRAME_TIMEOUT_S) -> dict[str, Any]:
        msg = await asyncio.wait_for(self.ws.receive(), timeout)
        if msg.type != aiohttp.WSMsgType.TEXT:
            raise ConnectionError(f"websocket gave {msg.type.name} ({msg.data!r}), not a frame")
        frame = json.loads(msg.data)
        self.frames.append(frame)
        return frame

    async def expect(
        self,
        kind: str,
        pattern: str | None = None,
        *,
        timeout: float = FRAME_TIMEOUT_S,
        **fields: Any,
    ) -> dict[str, Any]:
        """Read frames until one of type `kind` whose text matches `pattern` (re.search) and
        whose other fields equal `fields`; fail after `timeout` seconds, showing what came."""
        seen: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            try:
                if left <= 0:
                    raise TimeoutError
                frame = await self.next_frame(left)
            except (TimeoutError, ConnectionError) as exc:
                pytest.fail(
                    f"no {kind} frame matching {pattern!r} {fields or ''} within {timeout} s "
                    f"({type(exc).__name__}: {exc}); frames seen meanwhile: {seen}"
                )
            seen.append(frame)
            if frame.get("type") != kind:
                continue
            text = frame.get("text", frame.get("reason", ""))
            if pattern is not None and not re.search(pattern, str(text), re.I):
                continue
            if all(frame.get(k) == v for k, v in fields.items()):
                return frame

    async def expect_bot(self, pattern: str | None = None, **fields: Any) -> dict[str, Any]:
        return await self.expect("bot", pattern, **fields)

    async def expect_question(self, pattern: str | None = None, **fields: Any) -> dict[str, Any]:
        """A bot frame that waits for the customer's answer."""
        return await self.expect("bot", pattern, expects_answer=True, **fields)

    def prompt(self, prompt_id: str) -> str:
        """The text a chat shows for a prompt of the served catalogue."""
        return prompt_text(self.prompts_dir, prompt_id)

    async def expect_prompt(self, prompt_id: str, **fields: Any) -> dict[str, Any]:
        """A bot frame saying exactly the catalogue's prompt `prompt_id`."""
        return await self.expect("bot", f"^{re.escape(self.prompt(prompt_id))}$", **fields)

    async def expect_error(self, pattern: str | None = None) -> dict[str, Any]:
        return await self.expect("error", pattern)

    async def close(self) -> None:
        await self.ws.close()


@dataclass
class Served:
    """One running application, reached over real HTTP at `url`."""

    url: str
    app: web.Application
    settings: Settings
    token: str
    dialogs: Path
    prompts: Path
    session: aiohttp.ClientSession
    _chats: list[Chat] = field(default_factory=list)
    _runner: web.AppRunner | None = None

    async def stop(self) -> None:
        """Shut the server down as `ivr serve` does on SIGTERM (a restart's first half)."""
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    def headers(self, token: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token if token is None else token}"}

    async def get(self, path: str, **kwargs: Any) -> tuple[int, Any]:
        """GET `path`: (status, JSON body, or text when the answer is not JSON)."""
        async with self.session.get(self.url + path, **kwargs) as resp:
            body = await resp.text()
            try:
                return resp.status, json.loads(body)
            except ValueError:
                return resp.status, body

    async def api(self, path: str, token: str | None = None) -> tuple[int, Any]:
        return await self.get(path, headers=self.headers(token))

    async def conversation(self, conv_id: str) -> dict[str, Any]:
        status, body = await self.api(f"/api/conversations/{conv_id}")
        assert status == 200, body
        return body

    async def health(self) -> dict[str, Any]:
        # 200 when serving, 503 when degraded: both carry the status body.
        status, body = await self.get("/healthz")
        assert status in (200, 503), (status, body)
        return body

    async def chat(self) -> Chat:
        ws = await self.session.ws_connect(
            self.url + "/chat/ws", timeout=aiohttp.ClientWSTimeout(ws_close=FRAME_TIMEOUT_S)
        )
        chat = Chat(ws, self.prompts)
        self._chats.append(chat)
        return chat

    async def wait_for_flows_version(self, above: int, timeout: float = 10.0) -> dict[str, Any]:
        async def newer() -> dict[str, Any] | None:
            flows = (await self.health())["flows"]
            return flows if flows["version"] > above else None

        return await wait_until(newer, timeout=timeout)

    async def wait_for_refusals(self, timeout: float = 10.0) -> dict[str, Any]:
        async def refused() -> dict[str, Any] | None:
            flows = (await self.health())["flows"]
            return flows if flows["refused"] else None

        return await wait_until(refused, timeout=timeout)


def copy_flow_files(dest: Path) -> tuple[Path, Path]:
    """A copy of the repository's dialogs/ and prompts/ under `dest`."""
    dialogs = shutil.copytree(REPO / "dialogs", dest / "dialogs")
    prompts = shutil.copytree(REPO / "prompts", dest / "prompts")
    return Path(dialogs), Path(prompts)


@pytest.fixture
def api_token() -> str:
    return "test-" + secrets.token_urlsafe(16)


@pytest.fixture
def flow_files(tmp_path: Path) -> tuple[Path, Path]:
    """(dialogs, prompts): copies of the repository's, free to edit."""
    return copy_flow_files(tmp_path / "flows")


ServeApp = Callable[..., Awaitable[Served]]


async def start_served(
    store_url: str,
    token: str,
    dialogs: Path,
    prompts: Path,
    *,
    reload: bool = True,
    **settings_changes: Any,
) -> Served:
    """The application on a loopback port of its own, without phone calls unless `sip=` says
    otherwise; the caller stops it (`Served.stop`) and closes its `session`."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # The port is ours from here: no race with other tests. A given `http` keeps its port (a
    # restarted server where a gateway still calls it).
    given = settings_changes.get("http")
    sock.bind(("127.0.0.1", given.port if given else 0))
    port = sock.getsockname()[1]
    settings = Settings(
        http=HttpSettings(host="127.0.0.1", port=port),
        store=StoreSettings(url=store_url),
        api=ApiSettings(token=token),
        flows=FlowsSettings(dialogs=str(dialogs), prompts=str(prompts), reload=reload),
    )
    # Phone calls have their own tests (test_voice_*): these start no media workers.
    settings_changes.setdefault("sip", SipSettings(enabled=False))
    settings = replace(settings, **settings_changes)
    app = create_app(settings)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=5)
    await runner.setup()
    await web.SockSite(runner, sock).start()
    return Served(
        url=f"http://127.0.0.1:{port}",
        app=app,
        settings=settings,
        token=token,
        dialogs=Path(settings.flows.dialogs),
        prompts=Path(settings.flows.prompts),
        session=aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=FRAME_TIMEOUT_S)),
        _runner=runner,
    )


@pytest.fixture
async def serve_app(
    tmp_path: Path, api_token: str, flow_files: tuple[Path, Path]
) -> AsyncIterator[ServeApp]:
    """A factory: `await serve_app(store_url=..., reload=..., ...)` starts an application on its
    own loopback socket and gives its `Served`; all are stopped when the test ends."""
    stack = contextlib.AsyncExitStack()
    numbers = iter(range(1_000_000))

    async def start(
        store_url: str | None = None,
        *,
        reload: bool = True,
        dialogs: Path | None = None,
        prompts: Path | None = None,
        **settings_changes: Any,
    ) -> Served:
        served = await start_served(
            store_url or f"sqlite:///{tmp_path}/ivr-{next(numbers)}.db",
            api_token,
            dialogs or flow_files[0],
            prompts or flow_files[1],
            reload=reload,
            **settings_changes,
        )
        await stack.enter_async_context(served.session)
        stack.push_async_callback(served.stop)

        async def close_chats() -> None:
            for chat in served._chats:
                await chat.close()

        stack.push_async_callback(close_chats)
        return served

    async with stack:
        yield start


@pytest.fixture
async def server(serve_app: ServeApp) -> Served:
    """The application with a fresh SQLite store and editable copies of the demo flows."""
    return await serve_app()
