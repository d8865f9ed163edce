"""The YAML flow format as typed models: what ops staff may write, and nothing else.

Every step is a mapping with exactly one *action* key (`say`, `ask`, `menu`, ...) and the routing
keys that action uses (`next`, `on_failure`, `on_error`, ...). The loader picks the step kind by
its action key and validates the step against that kind's model, so an error names the field the
author got wrong. `ivr schema` prints the JSON Schema built from these same models.

Strings marked *text* are either a prompt id from `prompts/` (a bare identifier such as
`welcome`) or literal text; both may use templates (`{{ slots.account_number }}`). Strings marked
*expression* are sandboxed Jinja2 expressions over the conversation (`customer.vip and
slots.amount > 100`), never Python.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

StepId = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_\-]*$", description="A step id")]
Text = Annotated[
    str,
    Field(min_length=1, description="A prompt id from prompts/ or literal text; may use {{ }}"),
]
Expression = Annotated[str, Field(min_length=1, description="A sandboxed Jinja2 expression")]
InputMode = Literal["speech", "dtmf"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ---------------------------------------------------------------- shared pieces of actions


class Listening(Strict):
    """How the bot listens for an answer (used by ask, menu and verification factors)."""

    input: list[InputMode] = Field(
        default_factory=lambda: ["speech", "dtmf"],
        min_length=1,
        description="Voice channels: accept speech, keys, or both. Text channels accept text.",
    )
    timeout: float = Field(5.0, gt=0, le=120, description="Seconds of silence = no input")
    retries: int = Field(2, ge=0, le=10, description="Re-asks after no input / no match")
    no_input: Text | None = Field(None, description="Said when nothing was heard")
    no_match: Text | None = Field(None, description="Said when the answer did not fit")
    barge_in: bool = Field(True, description="The caller may interrupt the prompt")
    end_silence: float | None = Field(
        None, gt=0, le=5, description="Voice: seconds of trailing silence ending an utterance"
    )
    complete_silence: float | None = Field(
        None,
        gt=0,
        le=5,
        description="Voice: the same once the answer is a whole phrase of the expected ones "
        "that no longer one begins with (e.g. 'yes' to a yes/no question)",
    )


class AskAction(Listening):
    prompt: Text
    slot: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", description="Where the answer goes")
    type: Literal["text", "digits", "number", "date", "yes_no"] = "text"
    length: int | None = Field(None, ge=1, le=64, description="digits: exact length")
    min_length: int | None = Field(None, ge=1, le=64)
    max_length: int | None = Field(None, ge=1, le=64)
    terminator: str | None = Field("#", pattern=r"^[0-9*#]$", description="Key ending DTMF entry")
    date_format: str = Field("%Y%m%d", description="date: how keyed digits are read")
    secure: bool = Field(
        False, description="Never stored, logged or shown; usable only as secrets.<slot>"
    )
    hints: list[str] = Field(default_factory=list, description="Phrases to expect (ASR hints)")


class MenuOption(Strict):
    next: StepId
    intent: str | None = Field(None, description="Intent that picks this option")
    key: str | None = Field(None, pattern=r"^[0-9*#]$", description="DTMF key that picks it")
    label: str | None = Field(None, description="Shown as a button / numbered choice in text")

    @model_validator(mode="after")
    def _needs_a_trigger(self) -> MenuOption:
        if self.intent is None and self.key is None:
            raise ValueError("an option needs an 'intent' or a 'key' (or both)")
        return self


class MenuAction(Listening):
    prompt: Text
    options: list[MenuOption] = Field(min_length=1)


class BranchCase(Strict):
    when: Expression
    next: StepId


class HttpAction(Strict):
    url: Text
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "GET"
    headers: dict[str, str] = Field(default_factory=dict)
    body: Any = Field(None, description="JSON body; strings inside may use templates")
    timeout: float = Field(3.0, gt=0, le=60)
    as_: str = Field(
        alias="as",
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="The result is kept as lookups.<as>",
    )
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class VerifyFactor(Listening):
    prompt: Text
    field: str = Field(description="Field of the lookup result the answer must equal")
    method: str | None = Field(None, description="Recorded as how the customer was verified")
    type: Literal["digits", "date", "text"] = "digits"
    length: int | None = Field(None, ge=1, le=64)
    terminator: str | None = Field("#", pattern=r"^[0-9*#]$")
    date_format: str = "%Y%m%d"
    input: list[InputMode] = Field(default_factory=lambda: ["dtmf"], min_length=1)
    retries: int = Field(0, ge=0, le=10)


class VerifyAction(Strict):
    lookup: HttpAction
    id_field: str = Field("id", description="Field of the lookup result that names the customer")
    factor: VerifyFactor
    attempts: int = Field(3, ge=1, le=10, description="Wrong answers allowed before failure")
    keep: list[str] | None = Field(
        None,
        description="Fields of the customer record to keep (default: all but the factor); "
        "leave out other secrets such as security answers",
    )
    wrong: Text | None = Field(None, description="Said after a wrong answer")


class TransferAction(Strict):
    queue: str | None = None
    skills: list[str] = Field(default_factory=list)
    priority: int | Expression | None = Field(
        None, description="Higher goes first; none = the queue's own priority"
    )
    sip: str | None = Field(None, pattern=r"^sips?:", description="SIP URI of a PBX or ACD")
    say: Text | None = None

    @model_validator(mode="after")
    def _one_target(self) -> TransferAction:
        if (self.queue is None) == (self.sip is None):
            raise ValueError("a transfer needs exactly one target: 'queue' or 'sip'")
        return self


class EscalateAction(Strict):
    channel: Literal["sms", "chat"]
    say: Text | None = None
    to: Expression | None = Field(None, description="Phone number; default: the caller's")
    resume: StepId | None = Field(None, description="Where the conversation continues")
    keep_call: bool = Field(False, description="Keep the call open until the link is opened")


class GotoFlow(Strict):
    flow: str
    step: StepId | None = None


class CallAction(Strict):
    flow: str


# ---------------------------------------------------------------- step kinds


class Step(Strict):
    description: str | None = None


class SayStep(Step):
    say: Text
    barge_in: bool = False
    next: StepId


class AskStep(Step):
    ask: AskAction
    next: StepId
    on_failure: StepId | None = None


class MenuStep(Step):
    menu: MenuAction
    on_failure: StepId | None = None


class BranchStep(Step):
    branch: list[BranchCase] = Field(min_length=1)
    next: StepId = Field(description="Where to go when no case holds")


class SetStep(Step):
    set: dict[str, Expression] = Field(min_length=1)
    next: StepId


class HttpStep(Step):
    http: HttpAction
    next: StepId
    on_error: StepId | None = None


class VerifyStep(Step):
    verify: VerifyAction
    on_success: StepId
    on_failure: StepId
    on_error: StepId | None = None


class TransferStep(Step):
    transfer: TransferAction
    on_failure: StepId | None = Field(
        None,
        description="Where to go when the far end refuses a SIP transfer (busy, no answer); "
        "default: the flow's defaults.on_failure, else a goodbye",
    )


class EscalateStep(Step):
    escalate: EscalateAction
    next: StepId | None = Field(None, description="Default resume step")


class GotoStep(Step):
    goto: StepId | GotoFlow


class CallStep(Step):
    call: CallAction
    next: StepId


class ReturnStep(Step):
    return_: Literal[True] = Field(alias="return")
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class EndStep(Step):
    end: Text | Literal[True]


STEP_KINDS: dict[str, type[Step]] = {
    "say": SayStep,
    "ask": AskStep,
    "menu": MenuStep,
    "branch": BranchStep,
    "set": SetStep,
    "http": HttpStep,
    "verify": VerifyStep,
    "transfer": TransferStep,
    "escalate": EscalateStep,
    "goto": GotoStep,
    "call": CallStep,
    "return": ReturnStep,
    "end": EndStep,
}

AnyStep = (
    SayStep
    | AskStep
    | MenuStep
    | BranchStep
    | SetStep
    | HttpStep
    | VerifyStep
    | TransferStep
    | EscalateStep
    | GotoStep
    | CallStep
    | ReturnStep
    | EndStep
)


class FlowDefaults(Strict):
    on_failure: StepId | None = Field(None, description="When an ask/menu runs out of retries")
    on_error: StepId | None = Field(None, description="When a lookup fails or times out")


class Reverification(Strict):
    """Steps that trust only a verification made on the channel in use (a payment, a change of
    address): reached without one, the customer is verified again first."""

    steps: list[StepId] = Field(min_length=1, description="The steps that need it")
    via: StepId = Field(
        description="Where the customer is verified again (a verify step, or a step leading to "
        "one); once verified, the flow goes back to the step that needed it"
    )
    within_minutes: float | None = Field(
        None, gt=0, description="...and made at most this long ago (default: any time)"
    )


class VerificationPolicy(Strict):
    """How long a verification counts when the conversation moves between channels."""

    valid_minutes: float | None = Field(
        None,
        gt=0,
        description="A verification made on another channel counts for this long; after that, "
        "continuing on a new channel forgets it, so the flow asks again (default: no limit)",
    )
    reverify: Reverification | None = None


class FlowHeader(Strict):
    """A flow file without its steps (the steps are validated one by one)."""

    flow: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_\-]*$", description="The flow's name")
    description: str | None = None
    language: str = Field("en", pattern=r"^[a-z]{2}(-[A-Z]{2})?$")
    start: StepId
    defaults: FlowDefaults = Field(default_factory=FlowDefaults)
    numbers: list[str] = Field(
        default_factory=list, description="Dialled numbers (SIP user parts) this flow answers"
    )
    verification: VerificationPolicy = Field(default_factory=VerificationPolicy)


class FlowDocument(FlowHeader):
    """The whole flow file; used to publish the JSON Schema for editors."""

    steps: dict[StepId, AnyStep] = Field(min_length=1)


class IntentDefinition(Strict):
    examples: list[str] = Field(min_length=1)
    description: str | None = None


class EntityDefinition(Strict):
    pattern: str


class IntentsHeader(Strict):
    """An intents file without its intents (each is validated on its own)."""

    language: str = Field("en", pattern=r"^[a-z]{2}(-[A-Z]{2})?$")
    entities: dict[str, EntityDefinition] = Field(default_factory=dict)


class IntentsDocument(IntentsHeader):
    intents: dict[str, IntentDefinition] = Field(min_length=1)


class PromptVariants(Strict):
    """One prompt worded for each medium: `voice` is heard (calls), `text` is read (chat, SMS).
    Either may be left out; the other is used then."""

    voice: str | None = Field(None, min_length=1)
    text: str | None = Field(None, min_length=1)

    @model_validator(mode="after")
    def _needs_one(self) -> PromptVariants:
        if self.voice is None and self.text is None:
            raise ValueError("a prompt needs 'voice' or 'text' (or both)")
        return self

    def for_medium(self, medium: str) -> str:
        preferred = self.text if medium == "text" else self.voice
        return preferred or self.voice or self.text or ""

    @property
    def variants(self) -> list[str]:
        return [v for v in (self.voice, self.text) if v]


PromptText = Annotated[str, Field(min_length=1)] | PromptVariants


class PromptsHeader(Strict):
    """A prompts file without its prompts (each is validated on its own)."""

    language: str = Field(pattern=r"^[a-z]{2}(-[A-Z]{2})?$")


class PromptsDocument(PromptsHeader):
    prompts: dict[str, PromptText] = Field(min_length=1)


def action_of(step: Step) -> str:
    """The action key of a validated step (`say`, `ask`, ...)."""
    for name, kind in STEP_KINDS.items():
        if type(step) is kind:
            return name
    raise TypeError(f"not a step: {step!r}")
