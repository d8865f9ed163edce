"""Reading flow, intent and prompt files into a FlowSet, keeping where everything was written.

YAML is parsed with ruamel.yaml's round-trip loader, which remembers the line and column of
every key and value; pydantic then checks each document against `model.py`, and each error's
path is mapped back to the line it came from. Cross-references (unknown steps, prompts, intents,
templates) are checked afterwards by `validator.py` over the whole set.

A file's kind is told by its top-level key: `flow:` (a flow), `intents:` (intent examples and
entity patterns), `prompts:` (prompt texts of one language), `queues:` (human queues, see
`ivr/routing/model.py`).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, TypeAdapter, ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.constructor import DuplicateKeyError, RoundTripConstructor
from ruamel.yaml.error import MarkedYAMLError

from ivr.flow.model import (
    STEP_KINDS,
    FlowHeader,
    IntentDefinition,
    IntentsHeader,
    PromptsHeader,
    PromptText,
    PromptVariants,
    Step,
)
from ivr.flow.problems import Problem
from ivr.routing.model import QueueDefinition, QueuesHeader
from ivr.speech.nlu.base import IntentCatalog

M = TypeVar("M", bound=BaseModel)

YAML_SUFFIXES = (".yaml", ".yml")
MAX_FILE_BYTES = 2 * 1024 * 1024


@dataclass(frozen=True)
class SourceDoc:
    """A parsed YAML file: its round-trip tree answers "where was this written?"."""

    path: str
    root: Any

    def where(self, *keys: str | int, at_key: bool = False) -> tuple[int, int]:
        """1-based (line, col) of the node at `keys`, or of the deepest ancestor that exists.

        `at_key`: point at the last key itself rather than its value (for unknown fields).
        """
        node = self.root
        line, col = _own_position(node)
        for i, key in enumerate(keys):
            last = i == len(keys) - 1
            if isinstance(node, CommentedMap) and key in node:
                pos = node.lc.key(key) if (last and at_key) else node.lc.value(key)
                if pos is None or pos[0] is None:
                    pos = node.lc.key(key)
                line, col = pos
                node = node[key]
            elif isinstance(node, CommentedSeq) and isinstance(key, int) and key < len(node):
                line, col = node.lc.item(key)
                node = node[key]
            else:
                break
        return line + 1, col + 1

    def problem(self, message: str, *keys: str | int, at_key: bool = False) -> Problem:
        line, col = self.where(*keys, at_key=at_key)
        return Problem(self.path, line, col, message)


def _own_position(node: Any) -> tuple[int, int]:
    lc = getattr(node, "lc", None)
    if lc is not None and lc.line is not None:
        return lc.line, lc.col
    return 0, 0


@dataclass
class Flow:
    header: FlowHeader
    steps: dict[str, Step]
    source: SourceDoc
    # Steps written but not valid: their ids still exist (no "unknown step" echo errors) and
    # the step ids their raw mapping mentions still count as reachable from them.
    invalid_steps: dict[str, set[str]] = field(default_factory=dict)

    def has_step(self, step_id: str) -> bool:
        return step_id in self.steps or step_id in self.invalid_steps

    @property
    def name(self) -> str:
        return self.header.flow

    def where(self, step: str, *keys: str | int, at_key: bool = False) -> Problem:
        return self.source.problem("", "steps", step, *keys, at_key=at_key)


@dataclass
class FlowSet:
    """Everything the engine needs: flows by name, prompts and intents by language."""

    flows: dict[str, Flow] = field(default_factory=dict)
    prompts: dict[str, dict[str, PromptVariants]] = field(default_factory=dict)  # lang -> id
    prompt_sources: dict[tuple[str, str], Problem] = field(default_factory=dict)
    intents: dict[str, IntentCatalog] = field(default_factory=dict)  # lang -> catalogue
    intent_sources: dict[tuple[str, str], Problem] = field(default_factory=dict)
    queues: dict[str, QueueDefinition] = field(default_factory=dict)  # name -> queue
    # The file each queue is written in: `.problem(msg, "queues", name, ...)` places errors.
    queue_sources: dict[str, SourceDoc] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    broken_flows: set[str] = field(default_factory=set)  # named, but not valid: not "unknown"
    broken_queues: set[str] = field(default_factory=set)  # the same for queues

    def flow_for_number(self, number: str | None) -> Flow | None:
        for flow in self.flows.values():
            if number and number in flow.header.numbers:
                return flow
        return None


def yaml_files(paths: Iterable[Path]) -> Iterator[Path]:
    """The YAML files named, or found below the directories named, in a stable order."""
    for path in paths:
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*") if p.suffix in YAML_SUFFIXES)
        else:
            yield path


class _Constructor(RoundTripConstructor):
    """Round-trip loading with dates left as text: ruamel raises a bare ValueError, with no
    place, for a date-like `2026-13-01`; as text, the models parse dates and place errors."""


_Constructor.add_constructor("tag:yaml.org,2002:timestamp", RoundTripConstructor.construct_yaml_str)


def parse_yaml(path: Path) -> tuple[SourceDoc | None, list[Problem]]:
    shown = str(path)
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            return None, [Problem(shown, 1, 1, f"file is larger than {MAX_FILE_BYTES} bytes")]
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None, [Problem(shown, 1, 1, "no such file")]
    except UnicodeDecodeError as exc:
        return None, [Problem(shown, 1, 1, f"not UTF-8 text ({exc.reason})")]
    except OSError as exc:
        return None, [Problem(shown, 1, 1, f"cannot read: {exc.strerror}")]
    yaml = YAML(typ="rt")
    yaml.Constructor = _Constructor
    yaml.allow_duplicate_keys = False
    try:
        root = yaml.load(text)
    except DuplicateKeyError as exc:
        mark = exc.problem_mark
        key = (exc.problem or "").split('"')[1] if '"' in (exc.problem or "") else "a key"
        return None, [
            Problem(shown, mark.line + 1, mark.column + 1, f"duplicate id {key!r}: defined twice")
        ]
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        reason = exc.problem or exc.context or "invalid YAML"
        return None, [Problem(shown, line, col, f"YAML syntax error: {reason}")]
    return SourceDoc(shown, root), []


def to_plain(node: Any) -> Any:
    """ruamel's round-trip containers and scalars as plain Python values."""
    if isinstance(node, dict):
        return {str(k): to_plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [to_plain(v) for v in node]
    if isinstance(node, bool) or node is None:
        return node
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    if isinstance(node, str):
        return str(node)
    return node


def validate_model(
    model: Any, data: Any, doc: SourceDoc, prefix: Sequence[str | int] = ()
) -> tuple[Any, list[Problem]]:
    """Validate `data` as `model` (a pydantic model or any type, e.g. a union); on failure,
    one problem per place, written for people and placed in the file."""
    try:
        return _adapter(model).validate_python(data), []
    except ValidationError as exc:
        grouped: dict[tuple[Any, ...], list[Any]] = {}
        for err in exc.errors():
            err = {**err, "loc": _data_path(data, err["loc"])}
            grouped.setdefault(err["loc"], []).append(err)
        return None, [_problem_for(errs, model, doc, prefix) for errs in grouped.values()]


_ADAPTERS: dict[Any, TypeAdapter[Any]] = {}


def _adapter(model: Any) -> TypeAdapter[Any]:
    if model not in _ADAPTERS:
        _ADAPTERS[model] = TypeAdapter(model)
    return _ADAPTERS[model]


def _data_path(data: Any, loc: Sequence[Any]) -> tuple[Any, ...]:
    """The error's location as keys into the data: pydantic adds union member tags
    ("str", "function-after[...]") that are no key of the document, so drop those."""
    path: list[Any] = []
    node = data
    for part in loc:
        if (isinstance(node, dict) and part in node) or (
            isinstance(node, list) and isinstance(part, int) and part < len(node)
        ):
            path.append(part)
            node = node[part]
        elif (
            isinstance(node, dict)
            and isinstance(part, str)
            and part.isidentifier()
            and (part[0].islower())
            and part not in _UNION_TAGS
        ):
            path.append(part)  # a missing or unknown field: the report names it
            node = None
    return tuple(path)


_UNION_TAGS = {"str", "int", "float", "bool", "dict", "list", "none"}
_SHAPE_ERRORS = {
    "string_type",
    "int_type",
    "int_parsing",
    "float_type",
    "float_parsing",
    "bool_type",
    "bool_parsing",
    "dict_type",
    "list_type",
    "model_type",
    "literal_error",
    "model_attributes_type",
}


def _problem_for(
    errs: list[Any], model: Any, doc: SourceDoc, prefix: Sequence[str | int]
) -> Problem:
    meaningful = [e for e in errs if e["type"] not in _SHAPE_ERRORS]
    err = meaningful[0] if meaningful else errs[0]
    loc = [*prefix, *err["loc"]]
    kind = err["type"]
    field_name = str(err["loc"][-1]) if err["loc"] else ""
    if kind == "extra_forbidden":
        allowed = _allowed_fields(_model_in(model), err["loc"][:-1])
        hint = difflib.get_close_matches(field_name, allowed, n=1)
        message = f"unknown field {field_name!r}" + (
            f" (did you mean {hint[0]!r}?)" if hint else f"; expected one of: {', '.join(allowed)}"
        )
        return doc.problem(message, *loc, at_key=True)
    if kind == "missing":
        where = ".".join(str(p) for p in err["loc"][:-1])
        return doc.problem(
            f"missing required field {field_name!r}" + (f" in {where}" if where else ""),
            *loc[:-1],
        )
    what = ".".join(str(p) for p in loc) or "document"
    if meaningful:
        message = err["msg"].removeprefix("Value error, ")
    else:  # every alternative of a union refused the value's type: say what would do
        message = " or ".join(
            dict.fromkeys(e["msg"].removeprefix("Input should be ") for e in errs)
        )
        message = f"expected {message}"
    return doc.problem(f"{what}: {message}", *loc)


def _allowed_fields(model: type[BaseModel], loc: Sequence[Any]) -> list[str]:
    """Field names (with aliases) accepted at `loc` inside `model`, for did-you-mean hints."""
    current: Any = model
    for part in loc:
        if isinstance(part, int) or current is None:
            continue
        info = current.model_fields.get(str(part)) if hasattr(current, "model_fields") else None
        if info is None:
            current = None
            break
        current = _model_in(info.annotation)
    if current is None or not hasattr(current, "model_fields"):
        return []
    return sorted(info.alias or name for name, info in current.model_fields.items())


def _model_in(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def load_step(doc: SourceDoc, step_id: str, raw: Any) -> tuple[Step | None, list[Problem]]:
    if not isinstance(raw, dict):
        return None, [doc.problem(f"step {step_id!r} must be a mapping", "steps", step_id)]
    actions = [key for key in raw if key in STEP_KINDS]
    if not actions:
        unknown = [k for k in raw if k not in ("description", "next")]
        hint = difflib.get_close_matches(unknown[0], STEP_KINDS, n=1) if unknown else []
        message = f"step {step_id!r} has no action; expected one of: {', '.join(STEP_KINDS)}"
        if hint:
            message += f" (did you mean {hint[0]!r}?)"
        return None, [doc.problem(message, "steps", step_id, at_key=True)]
    if len(actions) > 1:
        return None, [
            doc.problem(
                f"step {step_id!r} has {len(actions)} actions ({', '.join(actions)}); "
                "a step does one thing: split it",
                "steps",
                step_id,
                actions[1],
                at_key=True,
            )
        ]
    kind = STEP_KINDS[actions[0]]
    return validate_model(kind, to_plain(raw), doc, ("steps", step_id))


def load_flow(doc: SourceDoc) -> tuple[Flow | None, list[Problem]]:
    raw = doc.root
    header_data = {k: to_plain(v) for k, v in raw.items() if k != "steps"}
    header, problems = validate_model(FlowHeader, header_data, doc)
    steps_raw = raw.get("steps")
    if not isinstance(steps_raw, dict) or not steps_raw:
        problems.append(doc.problem("missing required field 'steps' (a mapping of step ids)"))
        return None, problems
    steps: dict[str, Step] = {}
    invalid: dict[str, set[str]] = {}
    ids = {str(k) for k in steps_raw}
    for step_id, step_raw in steps_raw.items():
        step, step_problems = load_step(doc, str(step_id), step_raw)
        problems.extend(step_problems)
        if step is not None:
            steps[str(step_id)] = step
        else:
            invalid[str(step_id)] = {s for s in _strings(to_plain(step_raw)) if s in ids}
    if header is None:
        return None, problems
    return Flow(header=header, steps=steps, source=doc, invalid_steps=invalid), problems


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def load(paths: Iterable[Path]) -> tuple[FlowSet, list[Problem]]:
    """Load every flow, intents and prompts file under `paths`; never raises for bad input."""
    flow_set = FlowSet()
    problems: list[Problem] = []
    flow_docs: dict[str, str] = {}
    for path in yaml_files(paths):
        doc, parse_problems = parse_yaml(path)
        problems.extend(parse_problems)
        if doc is None:
            continue
        flow_set.files.append(doc.path)
        root = doc.root
        if not isinstance(root, CommentedMap):
            problems.append(
                doc.problem("expected a mapping with 'flow', 'intents' or 'prompts' (or 'queues')")
            )
        elif "flow" in root:
            flow, flow_problems = load_flow(doc)
            problems.extend(flow_problems)
            if flow is None and isinstance(root.get("flow"), str):
                flow_set.broken_flows.add(str(root["flow"]))
            if flow is not None:
                if flow.name in flow_docs:
                    problems.append(
                        doc.problem(
                            f"duplicate id: flow {flow.name!r} is also defined in "
                            f"{flow_docs[flow.name]}",
                            "flow",
                        )
                    )
                else:
                    flow_docs[flow.name] = doc.path
                    flow_set.flows[flow.name] = flow
        elif "intents" in root:
            problems.extend(_load_intents(doc, flow_set))
        elif "prompts" in root:
            problems.extend(_load_prompts(doc, flow_set))
        elif "queues" in root:
            problems.extend(_load_queues(doc, flow_set))
        else:
            problems.append(
                doc.problem(
                    "not a flow, intents or prompts file, nor queues: no 'flow', 'intents', "
                    "'prompts' or 'queues' key at the top"
                )
            )
    return flow_set, problems


def _catalogue_entries(
    doc: SourceDoc,
    key: str,
    header_model: Any,
    entry_model: Any,
    sources: dict[tuple[str, str], Problem],
    noun: str,
) -> tuple[Any, list[tuple[str, Any]], list[Problem]]:
    """A catalogue file (intents, prompts): its header, and each entry validated on its own so
    one bad entry does not hide the others. Entries defined before (in any file) are refused
    as duplicates and recorded in `sources` otherwise."""
    raw = to_plain(doc.root)
    entries = raw.get(key)
    header, problems = validate_model(header_model, {k: v for k, v in raw.items() if k != key}, doc)
    if not isinstance(entries, dict) or not entries:
        problems.append(doc.problem(f"{key!r} must be a mapping of {noun} ids", key))
    if header is None or problems:
        return header, [], problems
    accepted: list[tuple[str, Any]] = []
    for entry_id, value in entries.items():
        entry, entry_problems = validate_model(entry_model, value, doc, (key, entry_id))
        problems.extend(entry_problems)
        if entry is None:
            continue
        source_key = (header.language, entry_id)
        if source_key in sources:
            first = sources[source_key]
            problems.append(
                doc.problem(
                    f"duplicate id: {noun} {entry_id!r}"
                    + (f" ({header.language})" if noun == "prompt" else "")
                    + f" is also defined at {first.file}:{first.line}",
                    key,
                    entry_id,
                    at_key=True,
                )
            )
            continue
        sources[source_key] = doc.problem("", key, entry_id, at_key=True)
        accepted.append((entry_id, entry))
    return header, accepted, problems


def _load_intents(doc: SourceDoc, flow_set: FlowSet) -> list[Problem]:
    parsed, accepted, problems = _catalogue_entries(
        doc, "intents", IntentsHeader, IntentDefinition, flow_set.intent_sources, "intent"
    )
    if parsed is None or (not accepted and problems):
        return problems
    lang = parsed.language
    previous = flow_set.intents.get(lang) or IntentCatalog(language=lang, intents={})
    intents = {**previous.intents, **{name: tuple(d.examples) for name, d in accepted}}
    entities = dict(previous.entities)
    for name, entity in parsed.entities.items():
        try:
            re.compile(entity.pattern)
        except re.error as exc:
            problems.append(
                doc.problem(f"entity {name!r}: bad pattern: {exc}", "entities", name, "pattern")
            )
            continue
        entities[name] = entity.pattern
    flow_set.intents[lang] = IntentCatalog(language=lang, intents=intents, entities=entities)
    return problems


def _load_prompts(doc: SourceDoc, flow_set: FlowSet) -> list[Problem]:
    parsed, accepted, problems = _catalogue_entries(
        doc, "prompts", PromptsHeader, PromptText, flow_set.prompt_sources, "prompt"
    )
    if parsed is None:
        return problems
    catalogue = flow_set.prompts.setdefault(parsed.language, {})
    for prompt_id, prompt in accepted:
        catalogue[prompt_id] = (
            PromptVariants(voice=prompt, text=prompt) if isinstance(prompt, str) else prompt
        )
    return problems


QUEUE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]*$")


def _load_queues(doc: SourceDoc, flow_set: FlowSet) -> list[Problem]:
    """A queues file: each queue validated on its own (one bad queue does not hide the
    others); a name defined before, in any file, is refused as a duplicate."""
    raw = to_plain(doc.root)
    entries = raw.get("queues")
    _, problems = validate_model(QueuesHeader, {k: v for k, v in raw.items() if k != "queues"}, doc)
    if not isinstance(entries, dict) or not entries:
        return [*problems, doc.problem("'queues' must be a mapping of queue names", "queues")]
    for name, value in entries.items():
        if not QUEUE_NAME.match(name):
            problems.append(
                doc.problem(
                    f"bad queue name {name!r}: use letters, digits, '_' and '-'",
                    "queues",
                    name,
                    at_key=True,
                )
            )
            continue
        if name in flow_set.queue_sources:
            first = flow_set.queue_sources[name].where("queues", name, at_key=True)
            problems.append(
                doc.problem(
                    f"duplicate id: queue {name!r} is also defined at "
                    f"{flow_set.queue_sources[name].path}:{first[0]}",
                    "queues",
                    name,
                    at_key=True,
                )
            )
            continue
        flow_set.queue_sources[name] = doc
        # `general:` with nothing after it is the smallest queue there is: all defaults.
        queue, queue_problems = validate_model(
            QueueDefinition, {} if value is None else value, doc, ("queues", name)
        )
        problems.extend(queue_problems)
        if queue is None:
            flow_set.broken_queues.add(name)
        else:
            flow_set.queues[name] = queue
    return problems
