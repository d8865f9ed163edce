"""The simulator channel: a phone call played as text, for `ivr simulate` and golden tests.

A line is what the caller says; `dtmf:1234#` is keys pressed; `(silence)` is saying nothing
until the step's timeout. Bot turns go to `output` as they happen.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from ivr.flow.channel import ChannelClosed, CustomerInput, InputSpec, Prompt, TransferTarget

SILENCE = "(silence)"
DTMF_PREFIX = "dtmf:"

LineSource = Callable[[], Awaitable[str | None]]  # None: the caller hung up / script ended


def parse_line(line: str) -> CustomerInput | None:
    text = line.strip()
    if text == SILENCE:
        return None
    if text.lower().startswith(DTMF_PREFIX):
        return CustomerInput(kind="dtmf", digits=text[len(DTMF_PREFIX) :].strip())
    return CustomerInput(kind="speech", text=text, confidence=1.0)


class SimulatorChannel:
    name = "simulator"
    medium = "voice"

    def __init__(self, read_line: LineSource, output: Callable[[str], None]) -> None:
        self._read_line = read_line
        self._output = output
        self.ended: str | None = None
        self.transferred: TransferTarget | None = None

    async def say(self, prompt: Prompt) -> None:
        self._output(f"bot: {prompt.text}")

    async def ask(self, prompt: Prompt, spec: InputSpec) -> CustomerInput | None:
        self._output(f"bot: {prompt.text}")
        line = await self._read_line()
        if line is None:
            raise ChannelClosed("the caller hung up")
        return parse_line(line)

    async def transfer(self, target: TransferTarget) -> bool:
        self.transferred = target
        where = f"queue {target.queue}" if target.queue else target.sip_uri
        self._output(f"[transfer to {where}]")
        return True

    async def end(self, reason: str) -> None:
        self.ended = reason
        self._output(f"[end: {reason}]")
