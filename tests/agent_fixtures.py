"""Agents for tests: accounts in the server's store, and a desktop socket to drive like a person.

`await add_agent(served, "alice", queues=["cards"], skills={"banking": 5})` creates an account;
`desk = await open_desk(served, "alice")` signs in over HTTP (a real cookie) and opens
`/agent/ws`; `await desk.expect("offer")` reads frames with a bounded wait.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest

from ivr.store import AgentRecord
from ivr.web.keys import AGENTS
from tests.serve_fixtures import ALICE, Chat, Served

PASSWORD = "correct horse battery"
FRAME_TIMEOUT_S = 5.0


async def add_agent(
    served: Served,
    username: str,
    *,
    name: str | None = None,
    queues: Sequence[str] = ("cards",),
    skills: Mapping[str, int] | None = None,
    capacity: Mapping[str, int] | None = None,
) -> AgentRecord:
    return await served.app[AGENTS].add(
        username,
        name or username.title(),
        PASSWORD,
        skills=skills if skills is not None else {"banking": 5},
        queues=queues,
        capacity=capacity or {"voice": 1, "text": 3},
    )


async def add_parcels_agent(served: Served, username: str = "gus") -> AgentRecord:
    """Gus serves parcels only (logistics, and some banking): a transfer's other queue."""
    return await add_agent(
        served,
        username,
        name="Gus Grissom",
        queues=("parcels",),
        skills={"banking": 2, "logistics": 5},
    )


@dataclass
class Desk:
    """An agent's desktop socket, with its own signed-in HTTP session."""

    session: aiohttp.ClientSession
    ws: aiohttp.ClientWebSocketResponse
    hello: dict[str, Any]
    frames: list[dict[str, Any]] = field(default_factory=list)

    async def send(self, frame: dict[str, Any]) -> None:
        await self.ws.send_str(json.dumps(frame))

    async def expect(
        self, kind: str, *, timeout: float = FRAME_TIMEOUT_S, **fields: Any
    ) -> dict[str, Any]:
        """The next frame of type `kind` whose fields equal `fields` (others are kept in
        `frames`); fails after `timeout` seconds, showing what came."""
        seen: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while True:
            try:
                message = await asyncio.wait_for(self.ws.receive(), deadline - time.monotonic())
            except TimeoutError:
                pytest.fail(f"no {kind} frame {fields} within {timeout} s; seen: {seen}")
            if message.type != aiohttp.WSMsgType.TEXT:
                pytest.fail(
                    f"desk socket gave {message.type.name} waiting for {kind}; seen: {seen}"
                )
            frame = json.loads(message.data)
            self.frames.append(frame)
            seen.append(frame)
            if frame.get("type") == kind and all(frame.get(k) == v for k, v in fields.items()):
                return frame

    async def presence(self, state: str) -> None:
        await self.send({"type": "presence", "state": state})
        await self.expect("presence", state=state)

    async def close(self) -> None:
        await self.ws.close()
        await self.session.close()


async def sign_in(served: Served, username: str) -> aiohttp.ClientSession:
    """A browser-like session holding the agent's cookie."""
    session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    async with session.post(
        served.url + "/agent/login", json={"username": username, "password": PASSWORD}
    ) as resp:
        assert resp.status == 200, await resp.text()
    return session


async def open_desk(served: Served, username: str, *, available: bool = True) -> Desk:
    session = await sign_in(served, username)
    ws = await session.ws_connect(served.url + "/agent/ws")
    message = await asyncio.wait_for(ws.receive(), FRAME_TIMEOUT_S)
    hello = json.loads(message.data)
    assert hello["type"] == "hello", hello
    desk = Desk(session, ws, hello)
    if available:
        await desk.presence("available")
    return desk


async def verified_chat_asking_for_an_agent(served: Served) -> tuple[Chat, str]:
    """A chat customer who proves who they are (account number and PIN), then asks for a person."""
    chat = await served.chat()
    conv_id = await chat.start("bank")
    await chat.say(ALICE["account"])
    await chat.keys(ALICE["pin"])
    await chat.keys("0")  # the bank menu's "agent"
    await chat.expect("transfer", queue="cards")
    return chat, conv_id
