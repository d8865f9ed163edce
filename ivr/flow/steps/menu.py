"""`menu`: pick one option by intent (speech or text) or by key (DTMF, or a typed digit)."""

from __future__ import annotations

from ivr.flow import model as m
from ivr.flow.channel import Choice, CustomerInput, InputSpec
from ivr.flow.engine import FlowRun, Next, StepResult, listening_spec


def input_spec(action: m.MenuAction, run: FlowRun) -> InputSpec:
    catalogue = run.flows.intents.get(run.conv.language)
    hints: list[str] = []
    for option in action.options:
        if option.label:
            hints.append(option.label)
        if option.intent and catalogue:
            hints.extend(catalogue.intents.get(option.intent, ()))
    return listening_spec(
        action,
        max_digits=1,
        terminator=None,
        hints=tuple(hints),
        expect="choice",
        choices=tuple(
            Choice(label=o.label or (o.intent or "").replace("_", " "), key=o.key)
            for o in action.options
        ),
    )


async def choose(action: m.MenuAction, run: FlowRun, answer: CustomerInput) -> m.MenuOption | None:
    typed = (answer.digits or answer.text or "").strip().rstrip("#")
    for option in action.options:
        if option.key is not None and typed == option.key:
            return option
    if answer.text is None:
        return None
    for option in action.options:
        if option.label and typed.lower() == option.label.lower():
            return option
    intents = [o.intent for o in action.options if o.intent]
    classifier = run.services.nlu(run.conv.language)
    if not intents or classifier is None:
        return None
    result = await classifier.parse(answer.text, candidates=intents)
    if result.intent is None:
        return None
    run.conv.last_intent = result.intent
    turn = run.conv.timeline[-1] if run.conv.timeline else None
    if turn is not None and turn.role == "customer":
        turn.meta.update(
            intent=result.intent, confidence=round(result.confidence, 3), nlu=result.source
        )
    return next((o for o in action.options if o.intent == result.intent), None)


async def run(step: m.MenuStep, run: FlowRun) -> StepResult:
    action = step.menu

    async def interpret(answer: CustomerInput) -> m.MenuOption | None:
        return await choose(action, run, answer)

    option = await run.collect(action.prompt, action, input_spec(action, run), interpret)
    if option is None:
        return await run.give_up(run.failure_step(step), "no menu option chosen")
    if option.intent:
        run.conv.last_intent = option.intent
    return Next(option.next)
