"""The contract between the flow engine and every channel: say, ask, transfer, end.

The engine never knows whether it talks to a phone call, a browser call, a web chat, an SMS
thread or the terminal simulator; each is an implementation of `Channel` in `ivr.channels`.
What differs between them is expressed as data here (`InputSpec`: speech or keys, timeouts,
hints for recognisers, choices a text channel can show as buttons or a numbered list), never as
`if channel == ...` in the engine.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

InputKind = Literal["speech", "dtmf", "text"]


@dataclass(frozen=True)
class Prompt:
    text: str  # what is said, templates already rendered
    prompt_id: str | None = None  # catalogue id: voice channels may play a recording of it
    barge_in: bool = False
    language: str = "en"


@dataclass(frozen=True)
class Choice:
    """One menu option as a text channel may show it."""

    label: str
    key: str | None = None


@dataclass(frozen=True)
class InputSpec:
    modes: frozenset[str] = frozenset({"speech", "dtmf"})
    timeout: float = 5.0  # voice: seconds of silence that count as no input
    end_silence: float | None = None  # voice: trailing silence ending an utterance
    complete_silence: float | None = None  # ...once it is a whole answer of a closed grammar
    max_digits: int | None = None  # DTMF entry completes at this many digits...
    terminator: str | None = "#"  # ...or at this key
    hints: tuple[str, ...] = ()  # phrases the answer is likely to be (ASR grammars)
    # What kind of answer: text, digits, number, date, yes_no, choice. Voice channels pick
    # their recogniser's grammar by it (spoken digits, a closed list of phrases).
    expect: str = "text"
    choices: tuple[Choice, ...] = ()
    secure: bool = False  # the channel must not log or echo the answer


@dataclass(frozen=True)
class CustomerInput:
    """What the customer answered: speech transcript or typed text, and/or keys."""

    kind: InputKind
    text: str | None = None
    digits: str | None = None
    confidence: float | None = None
    meta: dict[str, object] = field(default_factory=dict)

    @property
    def as_text(self) -> str:
        return self.text if self.text is not None else (self.digits or "")


@dataclass(frozen=True)
class TransferTarget:
    queue: str | None = None
    skills: tuple[str, ...] = ()
    priority: int | None = None  # None: the queue's own
    sip_uri: str | None = None
    headers: dict[str, str] = field(default_factory=dict)  # context for the far end


class Channel(Protocol):
    name: str  # "chat", "sip", "webrtc", "sms", "simulator": shown on the timeline
    medium: str  # "voice" (heard: calls) or "text" (read: chat, SMS): picks prompt wording

    async def say(self, prompt: Prompt) -> None:
        """Deliver `prompt` (voice: play it, barge-in aware; text: send a message)."""
        ...

    async def ask(self, prompt: Prompt, spec: InputSpec) -> CustomerInput | None:
        """Deliver `prompt`, then wait for the answer; None when nothing came in time."""
        ...

    async def transfer(self, target: TransferTarget) -> bool:
        """Hand the customer on (voice: REFER to a SIP URI; queues: hold while routed).
        False when the far end refused: the customer is still with us."""
        ...

    async def end(self, reason: str) -> None:
        """The flow is over on this channel: hang up, close the chat."""
        ...


class ChannelClosed(Exception):
    """The customer left (hung up, closed the chat): the run stops, the conversation stays."""
