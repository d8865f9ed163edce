"""The web chat channel: the flow's turns as messages over a websocket.

The websocket handler (`ivr.web.chat`) pushes what the customer types into `deliver()`; the
engine's `ask` takes the next message. A message that arrives while the bot is still talking
waits its turn, so nothing typed is lost. Questions carry their choices (menu buttons) and a
`secure` flag (the page masks the field and never echoes the answer). After a transfer to a
queue the same channel carries the customer to the agent (`ivr.routing.line.CustomerLine`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from ivr.channels.inbox import Inbox
from ivr.flow.channel import ChannelClosed, CustomerInput, InputSpec, Prompt, TransferTarget

Send = Callable[[dict[str, Any]], Awaitable[None]]


class ChatChannel:
    name = "chat"
    medium = "text"

    def __init__(self, send: Send, idle_timeout: float) -> None:
        self._send = send
        self._idle_timeout = idle_timeout
        self._inbox: Inbox[CustomerInput] = Inbox()

    def deliver(self, answer: CustomerInput) -> bool:
        """A customer message; False when too many are already waiting (flooding)."""
        return self._inbox.put(answer)

    def close(self) -> None:
        """The customer left: a waiting `ask` raises ChannelClosed."""
        self._inbox.close()

    async def _emit(self, message: dict[str, Any]) -> None:
        try:
            await self._send(message)
        except (ConnectionError, RuntimeError) as exc:
            raise ChannelClosed(str(exc)) from None

    async def say(self, prompt: Prompt) -> None:
        await self._emit({"type": "bot", "text": prompt.text})

    async def ask(self, prompt: Prompt, spec: InputSpec) -> CustomerInput | None:
        await self._emit(
            {
                "type": "bot",
                "text": prompt.text,
                "expects_answer": True,
                "secure": spec.secure,
                "choices": [{"label": c.label, "key": c.key} for c in spec.choices],
            }
        )
        try:
            return await self._inbox.get(self._idle_timeout, "the customer closed the chat")
        except TimeoutError:
            raise ChannelClosed("the chat was idle too long") from None

    async def transfer(self, target: TransferTarget) -> bool:
        # Left unread in the inbox, an answer to a secure question would reach the agent.
        self._inbox.drop_waiting()
        await self._emit({"type": "transfer", "queue": target.queue, "sip": target.sip_uri})
        return True

    # ---------------------------------------------------------------- with an agent
    # (ivr.routing.line.CustomerLine: after a transfer to a queue)

    async def notify(self, text: str) -> None:
        await self._emit({"type": "notice", "text": text})

    async def agent_joined(self, agent_name: str) -> None:
        await self._emit({"type": "agent_joined", "name": agent_name})

    async def from_agent(self, agent_name: str, text: str) -> None:
        await self._emit({"type": "agent", "name": agent_name, "text": text})

    async def from_customer(self) -> CustomerInput:
        """No idle limit here: waiting for a person is not the customer's silence."""
        return await self._inbox.get(None, "the customer closed the chat")

    async def end(self, reason: str) -> None:
        await self._emit({"type": "end", "reason": reason})
