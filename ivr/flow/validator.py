"""Checks across a FlowSet: everything that is valid YAML of the right shape but still wrong.

Unknown or unreachable steps, missing prompts, unknown intents, flows that are called but not
defined, lookups without an error branch, a verification policy that names unknown steps or
cannot verify, templates that do not compile or name something no
step defines, secure answers that would be spoken; queues that transfers and overflows name but
no `queues:` file defines, overflow cycles, the flows and prompts queues name. Each problem
points at the line it is about.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ivr.flow import model as m
from ivr.flow.loader import Flow, FlowSet, SourceDoc, load
from ivr.flow.problems import Problem, Severity
from ivr.flow.templates import (
    KNOWN_ROOTS,
    TemplateProblem,
    is_prompt_id,
    is_template,
    names_used,
    parse,
)
from ivr.routing.model import WEEKDAYS, QueueDefinition, parse_days

CONVERSATION_FIELDS = ("id", "channel", "channels", "language", "contact")


def _hint(name: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


@dataclass
class Definitions:
    """What the flows of a set define, for checking what templates read."""

    slots: set[str] = field(default_factory=set)
    secrets: set[str] = field(default_factory=set)
    lookups: set[str] = field(default_factory=set)
    env: set[str] | None = None  # None: env keys are not known here (not checked)

    @classmethod
    def of(cls, flow_set: FlowSet, env: Iterable[str] | None) -> Definitions:
        defs = cls(env=set(env) if env is not None else None)
        for flow in flow_set.flows.values():
            for step in flow.steps.values():
                if isinstance(step, m.AskStep):
                    (defs.secrets if step.ask.secure else defs.slots).add(step.ask.slot)
                elif isinstance(step, m.SetStep):
                    defs.slots.update(step.set)
                elif isinstance(step, m.HttpStep):
                    defs.lookups.add(step.http.as_)
                elif isinstance(step, m.VerifyStep):
                    defs.lookups.add(step.verify.lookup.as_)
        return defs


@dataclass
class Texts:
    """Where a step's texts, templates and expressions are (path inside the step) and how used."""

    spoken: list[tuple[tuple[str | int, ...], str]] = field(default_factory=list)
    templates: list[tuple[tuple[str | int, ...], str]] = field(default_factory=list)
    expressions: list[tuple[tuple[str | int, ...], str]] = field(default_factory=list)


def _listening_texts(texts: Texts, action: str, listening: m.Listening) -> None:
    for name in ("no_input", "no_match"):
        value = getattr(listening, name)
        if value:
            texts.spoken.append(((action, name), value))


def _http_templates(texts: Texts, path: tuple[str | int, ...], http: m.HttpAction) -> None:
    texts.templates.append(((*path, "url"), http.url))
    for key, value in http.headers.items():
        texts.templates.append(((*path, "headers", key), value))
    for sub_path, value in _strings_in(http.body, (*path, "body")):
        texts.templates.append((sub_path, value))


def _strings_in(value: object, path: tuple[str | int, ...]) -> Iterator[tuple[tuple, str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _strings_in(item, (*path, i))
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings_in(item, (*path, key))


def texts_of(step: m.Step) -> Texts:
    texts = Texts()
    match step:
        case m.SayStep():
            texts.spoken.append((("say",), step.say))
        case m.AskStep():
            texts.spoken.append((("ask", "prompt"), step.ask.prompt))
            _listening_texts(texts, "ask", step.ask)
        case m.MenuStep():
            texts.spoken.append((("menu", "prompt"), step.menu.prompt))
            _listening_texts(texts, "menu", step.menu)
        case m.BranchStep():
            for i, case in enumerate(step.branch):
                texts.expressions.append((("branch", i, "when"), case.when))
        case m.SetStep():
            for key, expr in step.set.items():
                texts.expressions.append((("set", key), expr))
        case m.HttpStep():
            _http_templates(texts, ("http",), step.http)
        case m.VerifyStep():
            _http_templates(texts, ("verify", "lookup"), step.verify.lookup)
            factor = step.verify.factor
            texts.spoken.append((("verify", "factor", "prompt"), factor.prompt))
            for name in ("no_input", "no_match"):
                if getattr(factor, name):
                    texts.spoken.append((("verify", "factor", name), getattr(factor, name)))
            if step.verify.wrong:
                texts.spoken.append((("verify", "wrong"), step.verify.wrong))
        case m.TransferStep():
            if step.transfer.say:
                texts.spoken.append((("transfer", "say"), step.transfer.say))
            if isinstance(step.transfer.priority, str):
                texts.expressions.append((("transfer", "priority"), step.transfer.priority))
        case m.EscalateStep():
            if step.escalate.say:
                texts.spoken.append((("escalate", "say"), step.escalate.say))
            if step.escalate.to:
                texts.expressions.append((("escalate", "to"), step.escalate.to))
        case m.EndStep():
            if isinstance(step.end, str):
                texts.spoken.append((("end",), step.end))
    return texts


def targets_of(step: m.Step) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """(path inside the step, step id) of every step this step can go to in its own flow."""
    for name in ("next", "on_failure", "on_error", "on_success"):
        target = getattr(step, name, None)
        if target:
            yield (name,), target
    match step:
        case m.MenuStep():
            for i, option in enumerate(step.menu.options):
                yield ("menu", "options", i, "next"), option.next
        case m.BranchStep():
            for i, case in enumerate(step.branch):
                yield ("branch", i, "next"), case.next
        case m.GotoStep() if isinstance(step.goto, str):
            yield ("goto",), step.goto
        case m.EscalateStep() if step.escalate.resume:
            yield ("escalate", "resume"), step.escalate.resume


class FlowChecker:
    """Checks one flow in the context of its set."""

    def __init__(self, flow: Flow, flow_set: FlowSet, defs: Definitions) -> None:
        self.flow = flow
        self.flow_set = flow_set
        self.defs = defs
        self.problems: list[Problem] = []
        self.lang = flow.header.language
        self.prompts = flow_set.prompts.get(self.lang, {})
        self.intents = flow_set.intents.get(self.lang)

    def report(
        self,
        message: str,
        *path: str | int,
        at_key: bool = False,
        severity: Severity = Severity.ERROR,
    ) -> None:
        where = self.flow.source.problem(message, *path, at_key=at_key)
        self.problems.append(Problem(where.file, where.line, where.col, message, severity))

    def check(self) -> list[Problem]:
        header = self.flow.header
        if not self.flow.has_step(header.start):
            self.report(
                f"unknown step {header.start!r}{_hint(header.start, self.flow.steps)}", "start"
            )
        for name in ("on_failure", "on_error"):
            target = getattr(header.defaults, name)
            if target and not self.flow.has_step(target):
                self.report(
                    f"unknown step {target!r}{_hint(target, self.flow.steps)}", "defaults", name
                )
        for step_id, step in self.flow.steps.items():
            self.check_step(step_id, step)
        self.check_verification()
        self.check_reachable()
        return self.problems

    def check_verification(self) -> None:
        reverify = self.flow.header.verification.reverify
        if reverify is None:
            return
        here = ("verification", "reverify")
        for i, step_id in enumerate(reverify.steps):
            if not self.flow.has_step(step_id):
                self.report(
                    f"unknown step {step_id!r}{_hint(step_id, self.flow.steps)}", *here, "steps", i
                )
        via = reverify.via
        if not self.flow.has_step(via):
            self.report(f"unknown step {via!r}{_hint(via, self.flow.steps)}", *here, "via")
        elif via in reverify.steps:
            self.report(
                f"step {via!r} verifies again for the steps in 'steps', so it cannot be one of "
                "them: it would send the customer to itself",
                *here,
                "via",
            )
        elif via in self.flow.steps and not self.leads_to_verify(via):
            self.report(
                f"step {via!r} leads to no 'verify' step: the customer could never be verified "
                "again; name the verify step (or one leading to it)",
                *here,
                "via",
            )

    def leads_to_verify(self, start: str) -> bool:
        seen: set[str] = set()
        todo = [start]
        while todo:
            step_id = todo.pop()
            step = self.flow.steps.get(step_id)
            if step is None or step_id in seen:
                continue
            if isinstance(step, m.VerifyStep):
                return True
            seen.add(step_id)
            todo.extend(target for _, target in targets_of(step))
        return False

    def check_step(self, step_id: str, step: m.Step) -> None:
        here = ("steps", step_id)
        for path, target in targets_of(step):
            if not self.flow.has_step(target):
                self.report(
                    f"unknown step {target!r}{_hint(target, self.flow.steps)}", *here, *path
                )
        self.check_flow_refs(step, here)
        if isinstance(step, m.TransferStep) and step.transfer.queue is not None:
            self.check_queue(step.transfer.queue, (*here, "transfer", "queue"))
        self.check_required_branches(step_id, step, here)
        texts = texts_of(step)
        for path, text in texts.spoken:
            self.check_spoken(text, (*here, *path))
        for path, text in texts.templates:
            self.check_template(text, (*here, *path), expression=False, may_use_secrets=True)
        for path, text in texts.expressions:
            self.check_template(text, (*here, *path), expression=True, may_use_secrets=False)
        if isinstance(step, m.MenuStep):
            self.check_menu(step.menu, here)
        if isinstance(step, m.AskStep):
            ask = step.ask
            if ask.min_length and ask.max_length and ask.min_length > ask.max_length:
                self.report("min_length is greater than max_length", *here, "ask", "min_length")

    def check_flow_refs(self, step: m.Step, here: tuple[str, ...]) -> None:
        ref: tuple[str, str | None, tuple[str, ...]] | None = None
        if isinstance(step, m.GotoStep) and isinstance(step.goto, m.GotoFlow):
            ref = (step.goto.flow, step.goto.step, ("goto", "flow"))
        elif isinstance(step, m.CallStep):
            ref = (step.call.flow, None, ("call", "flow"))
        if ref is None:
            return
        name, target_step, path = ref
        other = self.flow_set.flows.get(name)
        if other is None and name in self.flow_set.broken_flows:
            return  # its own errors are reported where it is written
        if other is None:
            self.report(f"unknown flow {name!r}{_hint(name, self.flow_set.flows)}", *here, *path)
        elif target_step and not other.has_step(target_step):
            self.report(
                f"unknown step {target_step!r} in flow {name!r}{_hint(target_step, other.steps)}",
                *here,
                "goto",
                "step",
            )

    def check_queue(self, name: str, path: tuple[str | int, ...]) -> None:
        # Every queue must be defined, even with no queues file: a typo here would otherwise
        # park customers in a queue no agent serves.
        if name not in self.flow_set.queues and name not in self.flow_set.broken_queues:
            self.report(f"unknown queue {name!r}{_unknown_queue_hint(name, self.flow_set)}", *path)

    def check_required_branches(self, step_id: str, step: m.Step, here: tuple[str, ...]) -> None:
        defaults = self.flow.header.defaults
        if isinstance(step, m.HttpStep | m.VerifyStep) and not (step.on_error or defaults.on_error):
            self.report(
                f"step {step_id!r} calls a customer system but has no 'on_error' (and the flow "
                "has no defaults.on_error): say where to go when it fails or times out",
                *here,
                at_key=True,
            )

    def check_menu(self, menu: m.MenuAction, here: tuple[str, ...]) -> None:
        keys: dict[str, int] = {}
        intents: dict[str, int] = {}
        for i, option in enumerate(menu.options):
            path = (*here, "menu", "options", i)
            if option.key is not None:
                if option.key in keys:
                    self.report(
                        f"duplicate id: key {option.key!r} is used by option "
                        f"{keys[option.key] + 1} too",
                        *path,
                        "key",
                    )
                keys[option.key] = i
            if option.intent is not None:
                if option.intent in intents:
                    self.report(
                        f"duplicate id: intent {option.intent!r} is used by option "
                        f"{intents[option.intent] + 1} too",
                        *path,
                        "intent",
                    )
                intents[option.intent] = i
                self.check_intent(option.intent, (*path, "intent"))

    def check_intent(self, intent: str, path: tuple[str | int, ...]) -> None:
        known = self.intents.intents if self.intents else {}
        if intent not in known:
            where = f" for language {self.lang!r}" if not known else ""
            self.report(f"unknown intent {intent!r}{where}{_hint(intent, known)}", *path)

    def check_spoken(self, text: str, path: tuple[str | int, ...]) -> None:
        if is_prompt_id(text):
            if text not in self.prompts:
                self.report(
                    f"unknown prompt {text!r} (no such id in the {self.lang!r} prompt catalogue)"
                    f"{_hint(text, self.prompts)}",
                    *path,
                )
                return
            for variant in self.prompts[text].variants:
                self.check_template(variant, path, expression=False, may_use_secrets=False)
            return
        self.check_template(text, path, expression=False, may_use_secrets=False)

    def check_template(
        self, text: str, path: tuple[str | int, ...], *, expression: bool, may_use_secrets: bool
    ) -> None:
        if not expression and not is_template(text):
            return
        try:
            tree = parse(text, expression=expression)
        except TemplateProblem as exc:
            self.report(str(exc), *path)
            return
        for use in names_used(tree):
            message = self.check_name(use.root, use.attr, may_use_secrets)
            if message:
                self.report(message, *path)

    def check_name(self, root: str, attr: str | None, may_use_secrets: bool) -> str | None:
        if root not in KNOWN_ROOTS:
            return (
                f"unknown name {root!r} in template{_hint(root, KNOWN_ROOTS)}; "
                f"known: {', '.join(KNOWN_ROOTS)}"
            )
        if root == "secrets" and not may_use_secrets:
            return (
                "a secure answer (secrets) may be sent to a lookup but never said or "
                "stored: remove it from this text"
            )
        if attr is None:
            return None
        known: set[str] | None = {
            "slots": self.defs.slots,
            "secrets": self.defs.secrets,
            "lookups": self.defs.lookups,
            "env": self.defs.env,
            "conversation": set(CONVERSATION_FIELDS),
        }.get(root)
        if known is None or attr in known:
            return None
        if root == "slots" and attr in self.defs.secrets:
            return f"{attr!r} is a secure answer: use secrets.{attr} in a lookup, never say it"
        noun = {
            "slots": "slot",
            "secrets": "secure slot",
            "lookups": "lookup",
            "env": "env value ([flow_env] in the config)",
            "conversation": "conversation field",
        }[root]
        return f"unknown {noun} {attr!r}{_hint(attr, known)}"

    def check_reachable(self) -> None:
        seen: set[str] = set()
        todo = [self.flow.header.start]
        defaults = self.flow.header.defaults
        todo += [t for t in (defaults.on_failure, defaults.on_error) if t]
        if self.flow.header.verification.reverify is not None:  # the engine sends customers there
            todo.append(self.flow.header.verification.reverify.via)
        todo += list(self.entry_points_from_other_flows())
        while todo:
            step_id = todo.pop()
            if step_id in seen or not self.flow.has_step(step_id):
                continue
            seen.add(step_id)
            if step_id in self.flow.invalid_steps:
                todo.extend(self.flow.invalid_steps[step_id])
            else:
                todo.extend(target for _, target in targets_of(self.flow.steps[step_id]))
        for step_id in [*self.flow.steps, *self.flow.invalid_steps]:
            if step_id not in seen:
                self.report(
                    f"unreachable step {step_id!r}: no step leads to it",
                    "steps",
                    step_id,
                    at_key=True,
                )

    def entry_points_from_other_flows(self) -> Iterator[str]:
        for other in self.flow_set.flows.values():
            for step in other.steps.values():
                if (
                    isinstance(step, m.GotoStep)
                    and isinstance(step.goto, m.GotoFlow)
                    and step.goto.flow == self.flow.name
                    and step.goto.step
                ):
                    yield step.goto.step


def _unknown_queue_hint(name: str, flow_set: FlowSet) -> str:
    if not flow_set.queue_sources:
        return "; no queues file defines any queue: add one with 'queues:' beside the flows"
    return _hint(name, flow_set.queue_sources)


class QueueChecker:
    """Checks the queues of a set against each other and against the flows and prompts."""

    def __init__(self, flow_set: FlowSet) -> None:
        self.flow_set = flow_set
        self.problems: list[Problem] = []

    def report(
        self, message: str, name: str, *path: str | int, severity: Severity = Severity.ERROR
    ) -> None:
        doc: SourceDoc = self.flow_set.queue_sources[name]
        where = doc.problem(message, "queues", name, *path)
        self.problems.append(Problem(where.file, where.line, where.col, message, severity))

    def check(self) -> list[Problem]:
        languages = self.languages()
        for name, queue in self.flow_set.queues.items():
            self.check_queue(name, queue, languages[name])
        self.check_cycles()
        return self.problems

    def check_queue(self, name: str, queue: QueueDefinition, languages: set[str]) -> None:
        overflow, hours = queue.overflow, queue.hours
        if queue.max_wait is not None and overflow is None:
            self.report(
                "max_wait needs an overflow: say where a conversation goes after waiting "
                "that long (queue, message or offer)",
                name,
                "max_wait",
            )
        if overflow is not None and queue.max_wait is None and (hours is None or hours.closed):
            self.report(
                "overflow is never used: set max_wait, or hours without closed",
                name,
                "overflow",
                severity=Severity.WARNING,
            )
        if overflow is not None and overflow.queue is not None:
            target = overflow.queue
            if target not in self.flow_set.queues and target not in self.flow_set.broken_queues:
                hint = _hint(target, self.flow_set.queue_sources)
                self.report(f"unknown queue {target!r}{hint}", name, "overflow", "queue")
        if overflow is not None and overflow.message is not None:
            self.check_text(overflow.message, languages, name, "overflow", "message")
        if queue.hold_music is not None:
            self.check_text(queue.hold_music, languages, name, "hold_music")
        if hours is not None:
            self.check_days(name, list(hours.open))
            if hours.closed is not None and hours.closed.flow is not None:
                flow = hours.closed.flow
                if flow not in self.flow_set.flows and flow not in self.flow_set.broken_flows:
                    hint = _hint(flow, self.flow_set.flows)
                    self.report(f"unknown flow {flow!r}{hint}", name, "hours", "closed", "flow")
            if hours.closed is not None and hours.closed.message is not None:
                message = hours.closed.message
                self.check_text(message, languages, name, "hours", "closed", "message")

    def check_days(self, name: str, specs: list[str]) -> None:
        named: dict[int, str] = {}
        for spec in specs:
            for day in parse_days(spec):
                if day in named:
                    self.report(
                        f"day {WEEKDAYS[day]!r} is in {named[day]!r} already: give each day once",
                        name,
                        "hours",
                        "open",
                        spec,
                    )
                    break
                named[day] = spec

    def check_text(self, text: str, languages: set[str], name: str, *path: str | int) -> None:
        """A prompt id must be in the catalogue of every language whose callers can reach
        the queue (of any catalogue when no flow reaches it); literal text must compile."""
        if is_prompt_id(text):
            catalogues = self.flow_set.prompts
            for lang in sorted(languages):
                prompts = catalogues.get(lang, {})
                if text not in prompts:
                    self.report(
                        f"unknown prompt {text!r} (no such id in the {lang!r} prompt "
                        f"catalogue){_hint(text, prompts)}",
                        name,
                        *path,
                    )
            if not languages and not any(text in p for p in catalogues.values()):
                every_id = {i for p in catalogues.values() for i in p}
                self.report(
                    f"unknown prompt {text!r} (in no prompt catalogue){_hint(text, every_id)}",
                    name,
                    *path,
                )
            return
        if not is_template(text):
            return
        try:
            tree = parse(text, expression=False)
        except TemplateProblem as exc:
            self.report(str(exc), name, *path)
            return
        for use in names_used(tree):
            if use.root == "secrets":
                self.report("a secure answer (secrets) is never said: remove it", name, *path)
            elif use.root not in KNOWN_ROOTS:
                hint = _hint(use.root, KNOWN_ROOTS)
                self.report(f"unknown name {use.root!r} in template{hint}", name, *path)

    def languages(self) -> dict[str, set[str]]:
        """Queue -> languages of the flows whose customers can end up waiting in it: by a
        transfer step, or through other queues' overflow."""
        found: dict[str, set[str]] = {name: set() for name in self.flow_set.queues}
        for flow in self.flow_set.flows.values():
            for step in flow.steps.values():
                if isinstance(step, m.TransferStep) and step.transfer.queue in found:
                    found[step.transfer.queue].add(flow.header.language)
        changed = True
        while changed:  # overflow chains are short; repeat until nothing new arrives
            changed = False
            for name, queue in self.flow_set.queues.items():
                target = queue.overflow.queue if queue.overflow else None
                if target in found and not found[name] <= found[target]:
                    found[target] |= found[name]
                    changed = True
        return found

    def check_cycles(self) -> None:
        reported: set[frozenset[str]] = set()
        for start in self.flow_set.queues:
            path: list[str] = []
            name: str | None = start
            while name is not None and name in self.flow_set.queues and name not in path:
                path.append(name)
                overflow = self.flow_set.queues[name].overflow
                name = overflow.queue if overflow else None
            if name is None or name not in path:
                continue
            cycle = path[path.index(name) :]
            if frozenset(cycle) in reported:
                continue
            reported.add(frozenset(cycle))
            self.report(
                f"overflow cycle: {' -> '.join([*cycle, name])}: a conversation would be "
                "passed round for ever; end one of them with a message or an offer",
                cycle[0],
                "overflow",
                "queue",
            )


def check(flow_set: FlowSet, env_keys: Iterable[str] | None = None) -> list[Problem]:
    defs = Definitions.of(flow_set, env_keys)
    problems: list[Problem] = []
    for flow in flow_set.flows.values():
        problems.extend(FlowChecker(flow, flow_set, defs).check())
    problems.extend(QueueChecker(flow_set).check())
    return problems


def validate(
    paths: Iterable[Path], env_keys: Iterable[str] | None = None
) -> tuple[FlowSet, list[Problem]]:
    """Load and check everything under `paths`: the one entry point for CLI, server and tests."""
    flow_set, problems = load(paths)
    problems += check(flow_set, env_keys)
    return flow_set, sorted(set(problems))
