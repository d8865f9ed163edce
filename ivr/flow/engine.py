"""The flow engine: runs a conversation's flow, step by step, against one channel.

A FlowRun owns nothing durable: the Conversation is the state, and it is persisted after every
turn and every step, so a run can stop at any point (the customer hung up, another channel took
over, the process died) and a new run, on any channel, continues at the stored step. Steps are
small functions in `steps/`, one module per kind; this module only sequences them and offers the
helpers they share (say, listen, record, render), which is also where privacy is enforced:
secure answers are recorded as a placeholder and kept only in `FlowRun.secrets` (memory).

It also applies the flow's `verification` policy: a verification made on another channel counts
for `valid_minutes`, and `reverify` steps send a customer not verified on the channel in use to
be verified again, then back (see `_expire_verification` and `_reverify_at`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import aiohttp

from ivr.conversation import SECURE_PLACEHOLDER, Conversation, Role, Status, Turn
from ivr.flow import model as m
from ivr.flow.channel import (
    Channel,
    ChannelClosed,
    CustomerInput,
    InputSpec,
    Prompt,
    TransferTarget,
)
from ivr.flow.loader import Flow, FlowSet
from ivr.flow.templates import TemplateProblem, context_for, is_prompt_id, render_text
from ivr.speech.nlu.base import IntentClassifier

log = logging.getLogger("ivr.flow")
T = TypeVar("T")
_TEMPLATE_PART = re.compile(r"\{\{.*?\}\}|\{%.*?%\}", re.DOTALL)

DEFAULT_TEXTS = {
    "no_input": "Sorry, I didn't catch that.",
    "no_match": "Sorry, I didn't understand that.",
    "goodbye": "Goodbye.",
    "error": "Sorry, something went wrong on our side. Please try again later.",
}


@dataclass(frozen=True)
class Next:
    step: str


@dataclass(frozen=True)
class Jump:
    """Continue in another flow (goto flow, call, return)."""

    flow: str
    step: str


@dataclass(frozen=True)
class Stop:
    status: Status
    reason: str
    close_channel: bool = True  # False: the customer stays on the line (waiting in a queue)


StepResult = Next | Jump | Stop


class RunObserver(Protocol):
    """Metrics and logs watch runs through this; they never change what happens."""

    def on_turn(self, conv: Conversation, turn: Turn) -> None: ...
    def on_step(self, flow: str, kind: str, seconds: float) -> None: ...
    def on_end(self, conv: Conversation, status: Status) -> None: ...


@dataclass(frozen=True)
class QueueClosed:
    """A queue that takes nobody now (its hours): say `message`, or go on in `flow`."""

    queue: str
    message: str | None = None  # text or a prompt id
    flow: str | None = None


class Queues(Protocol):
    """Human queues (`ivr.routing`): a transfer to a queue waits there for an agent, with the
    customer's channel kept open."""

    def admit(self, queue: str) -> str | QueueClosed:
        """The queue that takes a transfer to `queue` now (itself, or its closed-hours
        overflow), or what to do instead."""
        ...

    async def enqueue(
        self, conv: Conversation, target: TransferTarget, channel: Channel
    ) -> None: ...

    def holds(self, conversation_id: str) -> bool:
        """Is the conversation waiting or with an agent here (its channel held open)?"""
        ...


class Handoff(Protocol):
    """Where escalations go beyond the channel (SMS links, chat links)."""

    async def escalate(
        self, conv: Conversation, action: m.EscalateAction, to: str | None
    ) -> None: ...


@dataclass
class FlowServices:
    """What runs need from the control plane; one instance shared by all runs."""

    persist: Callable[[Conversation], Awaitable[None]]
    http: aiohttp.ClientSession | None = None
    nlu: Callable[[str], IntentClassifier | None] = lambda language: None
    env: dict[str, str] = field(default_factory=dict)
    handoff: Handoff | None = None
    queues: Queues | None = None
    observers: list[RunObserver] = field(default_factory=list)


def listening_spec(listening: m.Listening, **own: Any) -> InputSpec:
    """The channel's view of a question: what all listening steps share (input modes, no-input
    timeout, end of utterance), plus what is the step's own (digits rules, hints, choices)."""
    return InputSpec(
        modes=frozenset(listening.input),
        timeout=listening.timeout,
        end_silence=listening.end_silence,
        complete_silence=listening.complete_silence,
        **own,
    )


class FlowRun:
    def __init__(
        self,
        flows: FlowSet,
        conv: Conversation,
        channel: Channel,
        services: FlowServices,
    ) -> None:
        self.flows = flows
        self.conv = conv
        self.channel = channel
        self.services = services
        self.secrets: dict[str, str] = {}  # answers of secure steps: memory only, never stored
        # (flow, step) that sent the customer to verify again: back there once verified
        self.after_verification: tuple[str, str] | None = None

    # ------------------------------------------------------------------ the loop

    @property
    def flow(self) -> Flow:
        return self.flows.flows[self.conv.position.flow]

    async def run(self) -> Stop:
        from ivr.flow.steps import run_step  # steps import this module's helpers

        self.conv.join(self.channel.name)
        if self.conv.status in (Status.ESCALATED, Status.QUEUED):
            self.conv.status = Status.ACTIVE
        self._expire_verification()
        await self.persist()
        try:
            while True:
                step = self._current_step()
                via = self._reverify_at()
                if via is not None:
                    self._send_to_verify(via)
                    await self.persist()
                    continue
                started = time.perf_counter()
                result = await run_step(step, self)
                if isinstance(step, m.VerifyStep):
                    result = self._back_after_verification(step, result)
                for observer in self.services.observers:
                    observer.on_step(
                        self.flow.name, m.action_of(step), time.perf_counter() - started
                    )
                if isinstance(result, Next):
                    self.conv.position.step = result.step
                elif isinstance(result, Jump):
                    self.conv.position.flow = result.flow
                    self.conv.position.step = result.step
                else:
                    self.conv.status = result.status
                await self.persist()
                if isinstance(result, Stop):
                    if result.close_channel:
                        await self.channel.end(result.reason)
                    self._ended(result.status)
                    return result
        except ChannelClosed as closed:
            self.system(f"customer left the {self.channel.name} channel", reason=str(closed))
            await self.persist()
            self._ended(self.conv.status)
            return Stop(self.conv.status, "customer left")
        except Exception:
            # A fault of ours (or of a flow the validator could not judge): record it, tell
            # the customer, keep what was said. The conversation stays where it stood.
            log.exception(
                "conversation %s stopped by an error at step %s",
                self.conv.id,
                self.conv.position.step,
            )
            self.system("the conversation stopped because of an internal error")
            await self.persist()
            with contextlib.suppress(Exception):
                await self.channel.say(self.prompt(DEFAULT_TEXTS["error"]))
            with contextlib.suppress(Exception):  # even when the apology could not be said
                await self.channel.end("error")
            self._ended(self.conv.status)
            return Stop(self.conv.status, "internal error")

    def _current_step(self) -> m.Step:
        pos = self.conv.position
        flow = self.flows.flows.get(pos.flow)
        if flow is None:  # the flow was removed since this conversation was stored
            raise LookupError(f"flow {pos.flow!r} no longer exists")
        step = flow.steps.get(pos.step)
        if step is None:
            self.system(
                f"step {pos.step!r} no longer exists in flow {flow.name!r}; continuing at its start"
            )
            pos.flow, pos.step = flow.name, flow.header.start
            step = flow.steps[pos.step]
        return step

    # ------------------------------------------------------------------ verification policy

    def _policy(self) -> m.VerificationPolicy | None:
        flow = self.flows.flows.get(self.conv.position.flow)
        return flow.header.verification if flow is not None else None

    def _forget_verification(self, why: str) -> None:
        """Who the customer said they are stays; that it was proven does not."""
        identity = self.conv.identity
        identity.verified = False
        identity.method = identity.verified_at = identity.verified_on = None
        self.system(why)

    def _expire_verification(self) -> None:
        """A verification made on another channel counts for the flow's `valid_minutes`."""
        identity, policy = self.conv.identity, self._policy()
        if policy is None or policy.valid_minutes is None or not identity.verified:
            return
        if identity.verified_on == self.channel.name:
            return
        minutes = (time.time() - (identity.verified_at or 0.0)) / 60
        if minutes > policy.valid_minutes:
            self._forget_verification(
                f"verification expired: made on {identity.verified_on} {minutes:.0f} minutes "
                f"ago; on another channel it counts for {policy.valid_minutes:g}"
            )

    def _reverify_at(self) -> str | None:
        """Where to verify again before the current step, when it is a `reverify` step and the
        customer was not verified on this channel (recently enough); None to go on."""
        policy = self._policy()
        reverify = policy.reverify if policy is not None else None
        if reverify is None or self.conv.position.step not in reverify.steps:
            return None
        identity = self.conv.identity
        fresh = identity.verified and identity.verified_on == self.channel.name
        if fresh and reverify.within_minutes is not None:
            age = time.time() - (identity.verified_at or 0.0)
            fresh = age <= reverify.within_minutes * 60
        return None if fresh else reverify.via

    def _send_to_verify(self, via: str) -> None:
        pos = self.conv.position
        self.after_verification = (pos.flow, pos.step)
        why = f"step {pos.step!r} needs a verification made on this channel; verifying at {via!r}"
        if self.conv.identity.verified:
            self._forget_verification(why)
        else:
            self.system(why)
        pos.step = via

    def _back_after_verification(self, step: m.VerifyStep, result: StepResult) -> StepResult:
        back, self.after_verification = self.after_verification, None
        if back is None or result != Next(step.on_success) or not self.conv.identity.verified:
            return result
        return Jump(*back)

    def _ended(self, status: Status) -> None:
        for observer in self.services.observers:
            observer.on_end(self.conv, status)

    async def persist(self) -> None:
        # Shielded: a run cancelled by a channel takeover still completes the save it began.
        await asyncio.shield(self.services.persist(self.conv))

    # ------------------------------------------------------------------ helpers for steps

    def context(self) -> dict[str, Any]:
        return context_for(
            self.conv, channel=self.channel.name, env=self.services.env, secrets=self.secrets
        )

    def prompt(self, text: str, *, barge_in: bool = False) -> Prompt:
        """A text or prompt id, resolved in the catalogue and rendered for this conversation."""
        prompt_id = None
        catalogue = self.flows.prompts.get(self.conv.language, {})
        if is_prompt_id(text) and text in catalogue:
            prompt_id, text = text, catalogue[text].for_medium(self.channel.medium)
        public_context = {**self.context(), "secrets": {}}  # never speak a secret
        try:
            rendered = render_text(text, public_context)
        except TemplateProblem as exc:
            # Say the words around the broken part rather than template code, and tell ops.
            log.error("flow %s: %s", self.flow.name, exc)
            rendered = _TEMPLATE_PART.sub("", text)
        return Prompt(
            text=rendered.strip(),
            prompt_id=prompt_id,
            barge_in=barge_in,
            language=self.conv.language,
        )

    def record(self, role: Role, text: str, **meta: Any) -> Turn:
        turn = self.conv.add_turn(self.channel.name, role, text, **meta)
        for observer in self.services.observers:
            observer.on_turn(self.conv, turn)
        return turn

    def system(self, text: str, **meta: Any) -> Turn:
        return self.record(Role.SYSTEM, text, **meta)

    async def say(self, text: str, *, barge_in: bool = False) -> None:
        prompt = self.prompt(text, barge_in=barge_in)
        if not prompt.text:
            return
        self.record(Role.BOT, prompt.text, step=self.conv.position.step)
        await self.persist()
        await self.channel.say(prompt)

    async def listen(self, text: str, spec: InputSpec, *, barge_in: bool) -> CustomerInput | None:
        """Ask (prompt + wait), recording both sides; a secure answer is recorded masked."""
        prompt = self.prompt(text, barge_in=barge_in)
        self.record(Role.BOT, prompt.text, step=self.conv.position.step)
        await self.persist()
        answer = await self.channel.ask(prompt, spec)
        if answer is None:
            self.system("no input", step=self.conv.position.step)
        else:
            shown = SECURE_PLACEHOLDER if spec.secure else answer.as_text
            self.record(
                Role.CUSTOMER,
                shown,
                kind=answer.kind,
                step=self.conv.position.step,
                **(
                    {}
                    if spec.secure or answer.confidence is None
                    else {"confidence": answer.confidence}
                ),
            )
        await self.persist()
        return answer

    def default_text(self, name: str) -> str:
        catalogue = self.flows.prompts.get(self.conv.language, {})
        return name if name in catalogue else DEFAULT_TEXTS[name]

    async def collect(
        self,
        prompt: str,
        listening: m.Listening,
        spec: InputSpec,
        interpret: Callable[[CustomerInput], Awaitable[T | None]],
    ) -> T | None:
        """Ask until `interpret` accepts an answer, with the step's retries and replies."""
        for attempt in range(listening.retries + 1):
            answer = await self.listen(prompt, spec, barge_in=listening.barge_in)
            value = None if answer is None else await interpret(answer)
            if value is not None:
                return value
            if attempt < listening.retries:
                reply = listening.no_input if answer is None else listening.no_match
                await self.say(
                    reply or self.default_text("no_input" if answer is None else "no_match")
                )
        return None

    def failure_step(self, step: m.Step) -> str | None:
        return getattr(step, "on_failure", None) or self.flow.header.defaults.on_failure

    def error_step(self, step: m.Step) -> str | None:
        return getattr(step, "on_error", None) or self.flow.header.defaults.on_error

    async def give_up(self, target: str | None, why: str) -> StepResult:
        """Go to `target`, or end the conversation politely when the flow names none."""
        self.system(why)
        if target:
            return Next(target)
        await self.say(self.default_text("goodbye"))
        return Stop(Status.ENDED, why)
