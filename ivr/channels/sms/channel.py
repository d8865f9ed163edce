"""`SmsChannel`: a flow's turns as text messages, one message per turn.

What the bot says is gathered and goes out with the next question, so a turn is one text
("Welcome. Which card? Reply 1 for debit, 2 for credit."), never a burst of fragments. Parts are
joined by spaces, not line breaks (some SMS centres' line-based protocols split at them). A menu's
options are numbered (their own keys where the flow gives them), and a reply of that number
picks the option.

Two situations spare the customer a question they already answered:
- a new conversation starts with the customer's own first text ("I lost my card"): it answers the
  first question that takes free text or a choice (an intent menu), so it is not asked for again;
  a question expecting digits or a secret is asked, and that first text stays on the timeline;
- a conversation resumed because a reply came in (after a restart, or a thread left idle): the
  reply answers the question the customer has on their phone, so it is not sent again.

The channel waits for a reply `idle_timeout` seconds; then the run stops, the conversation stays
at its step, and a later reply resumes it (`ivr.channels.sms.service`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from ivr.channels.inbox import Inbox
from ivr.conversation import Conversation, Role
from ivr.flow.channel import (
    ChannelClosed,
    Choice,
    CustomerInput,
    InputSpec,
    Prompt,
    TransferTarget,
)

Send = Callable[[str], Awaitable[object]]
_KEYS = frozenset("0123456789*#")


def numbered(choices: tuple[Choice, ...]) -> list[tuple[str, Choice]]:
    """Each choice with what to reply for it: its own key, else its place in the list."""
    if all(c.key for c in choices):
        return [(c.key or "", c) for c in choices]
    return [(str(index), c) for index, c in enumerate(choices, start=1)]


def render_question(text: str, choices: tuple[Choice, ...]) -> str:
    if not choices:
        return text
    options = ", ".join(f"{key} for {c.label}" for key, c in numbered(choices))
    return f"{text} Reply {options}."


def reply_input(text: str, spec: InputSpec | None) -> CustomerInput:
    """A reply as the flow expects it: an option's number picks it, digits count as keys."""
    reply = text.strip()
    if spec is not None and spec.choices:
        for key, choice in numbered(spec.choices):
            if reply == key and choice.key is None:
                return CustomerInput(kind="text", text=choice.label)
    if reply and set(reply) <= _KEYS:
        return CustomerInput(kind="dtmf", digits=reply, text=reply)
    return CustomerInput(kind="text", text=reply)


def answers_freely(spec: InputSpec) -> bool:
    """Can a customer's opening text be the answer (free text, or a choice by intent)?"""
    return spec.expect in ("text", "choice") and not spec.secure


class SmsChannel:
    name = "sms"
    medium = "text"

    def __init__(
        self,
        number: str,
        send: Send,
        idle_timeout: float,
        *,
        opening: str | None = None,
        replying: bool = False,
    ) -> None:
        self.number = number
        self._send = send
        self._idle_timeout = idle_timeout
        self._opening = opening  # a new conversation's first text
        self._replying = replying  # resumed by a reply: the question was already sent
        self._said: list[str] = []
        self._spec: InputSpec | None = None
        self._inbox: Inbox[str] = Inbox()
        self.conv: Conversation | None = None  # set by the service once the run has it
        self.finished = False

    # ------------------------------------------------------------------ from the service

    def deliver(self, text: str) -> bool:
        """A reply; False when too many are already waiting."""
        return self._inbox.put(text)

    def close(self) -> None:
        """The thread is over (STOP, or another channel took the conversation)."""
        self._inbox.close()

    # ------------------------------------------------------------------ the flow's channel

    async def _flush(self, *more: str) -> None:
        parts = [*self._said, *more]
        self._said.clear()
        if parts:
            await self._send(" ".join(parts))

    async def say(self, prompt: Prompt) -> None:
        self._said.append(prompt.text)

    async def ask(self, prompt: Prompt, spec: InputSpec) -> CustomerInput | None:
        self._spec = spec
        opening, self._opening = self._opening, None
        replying, self._replying = self._replying, False
        if opening is not None and answers_freely(spec):
            return reply_input(opening, spec)
        if opening is not None and self.conv is not None:
            self.conv.add_turn(self.name, Role.CUSTOMER, opening)  # kept, though not an answer
        if not (replying and not self._said):
            await self._flush(render_question(prompt.text, spec.choices))
        return reply_input(await self._next(self._idle_timeout), spec)

    async def _next(self, timeout: float | None) -> str:
        try:
            return await self._inbox.get(timeout, "the SMS thread was closed")
        except TimeoutError:
            self.finished = True  # a later reply resumes the conversation on a fresh thread
            await self._flush()
            raise ChannelClosed("no reply by SMS in time; a later reply continues") from None
        except ChannelClosed:
            self.finished = True
            raise

    async def transfer(self, target: TransferTarget) -> bool:
        """To a queue: what was said ("please hold") goes out with the first notice (their
        place in the queue) or the agent's arrival, as one text."""
        return not target.sip_uri  # a text cannot be put through to a phone

    async def end(self, reason: str) -> None:
        self.finished = True  # the next text from this number is not for this conversation
        await self._flush()

    # ------------------------------------------------------------------ with an agent
    # (ivr.routing.line.CustomerLine: after a transfer to a queue)

    async def notify(self, text: str) -> None:
        await self._flush(text)

    async def agent_joined(self, agent_name: str) -> None:
        await self._flush(f"{agent_name} is here to help you.")

    async def from_agent(self, agent_name: str, text: str) -> None:
        await self._flush(f"{agent_name}: {text}")

    async def from_customer(self) -> CustomerInput:
        """No idle limit: a customer may answer an agent hours later."""
        return reply_input(await self._next(None), None)
