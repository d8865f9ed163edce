"""One live run per conversation: channels take a conversation over, never share it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ivr.conversation import Role
from ivr.conversation_service import ConversationService, persister
from ivr.flow.channel import CustomerInput, InputSpec, Prompt, TransferTarget
from ivr.flow.engine import FlowServices
from ivr.flow.repository import FlowRepository
from ivr.store import open_store

FLOW = """
flow: talk
start: name
steps:
  name:
    ask: {prompt: "What is your name?", slot: name}
    next: colour
  colour:
    ask: {prompt: "Hello {{ slots.name }}, your favourite colour?", slot: colour}
    next: bye
  bye:
    end: "Goodbye {{ slots.name }}."
"""


class QueueChannel:
    """A text channel whose customer answers from a queue; records what the bot said."""

    medium = "text"

    def __init__(self, name: str) -> None:
        self.name = name
        self.said: list[str] = []
        self.answers: asyncio.Queue[str] = asyncio.Queue()
        self.asked = asyncio.Event()

    async def say(self, prompt: Prompt) -> None:
        self.said.append(prompt.text)

    async def ask(self, prompt: Prompt, spec: InputSpec) -> CustomerInput | None:
        self.said.append(prompt.text)
        self.asked.set()
        return CustomerInput(kind="text", text=await self.answers.get())

    async def transfer(self, target: TransferTarget) -> bool:
        return True

    async def end(self, reason: str) -> None:
        self.said.append(f"[end {reason}]")


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[ConversationService]:
    (tmp_path / "talk.yaml").write_text(FLOW)
    repo = FlowRepository([tmp_path], env_keys=[])
    assert repo.load(), repo.problems
    async with open_store(f"sqlite:///{tmp_path}/store.db") as store:
        svc = ConversationService(repo, store, FlowServices(persist=persister(store)))
        yield svc
        await svc.close()


async def test_a_second_channel_takes_over_at_the_stored_step(service: ConversationService) -> None:
    chat = QueueChannel("chat")
    live = await service.start(chat, "talk")
    await asyncio.wait_for(chat.asked.wait(), 5)
    chat.asked.clear()
    await chat.answers.put("Ada")
    await asyncio.wait_for(chat.asked.wait(), 5)  # now asked the colour

    sms = QueueChannel("sms")
    taken = await service.resume(live.conv.id, sms)
    await asyncio.wait_for(sms.asked.wait(), 5)
    assert live.task.cancelled()
    assert sms.said == ["Hello Ada, your favourite colour?"]
    await sms.answers.put("green")
    await asyncio.wait_for(taken.task, 5)
    assert sms.said[-2:] == ["Goodbye Ada.", "[end completed]"]
    stored = await service.store.get(live.conv.id)
    assert stored is not None and stored.channels == ["chat", "sms"]
    questions = [t.text for t in stored.timeline if t.role is Role.BOT and t.text.endswith("?")]
    assert questions.count("What is your name?") == 1


async def test_simultaneous_takeovers_leave_exactly_one_live_run(
    service: ConversationService,
) -> None:
    first = QueueChannel("chat")
    live = await service.start(first, "talk")
    await asyncio.wait_for(first.asked.wait(), 5)
    a, b = QueueChannel("sms"), QueueChannel("webrtc")
    runs = await asyncio.gather(service.resume(live.conv.id, a), service.resume(live.conv.id, b))
    await asyncio.wait_for(b.asked.wait(), 5)  # takeovers are served in order: b is last
    assert service.live_count == 1
    assert runs[0].task.done() and not runs[1].task.done()
    assert service.live(live.conv.id) is runs[1].conv
    stored = await service.get(live.conv.id)
    assert stored is not None
    seqs = [t.ts for t in stored.timeline]
    assert seqs == sorted(seqs)
