"""Templates and conditions: Jinja2's sandbox over the conversation, never Python `eval`.

Texts (`"Your balance is {{ lookups.balance.amount }}"`) and expressions (`customer.vip and
slots.amount > 100`) see only these names:

- `slots`         answers collected by ask steps and `set`
- `customer`      the verified customer's record plus `id`, `verified`, `method`
- `lookups`       results of http lookups, by their `as` name
- `intent`        the last recognised intent
- `conversation`  `id`, `channel`, `channels`, `language`
- `env`           the values of the `[flow_env]` config section (URLs of customer systems)
- `secrets`       answers of `secure` steps: for lookups only, never for anything said

Validation compiles every template once and checks each name and each `slots.x`, `lookups.x`,
`secrets.x` against what the flow defines, so a typo is an error before a caller hears it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import quote

from jinja2 import ChainableUndefined, StrictUndefined, TemplateSyntaxError, nodes
from jinja2.exceptions import SecurityError, UndefinedError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from ivr.conversation import Conversation

KNOWN_ROOTS = ("slots", "customer", "lookups", "intent", "conversation", "env", "secrets")
MAX_RENDERED = 4096

MAX_PRODUCT = 10_000  # longest string or list a template may build with * (and ** bound)


class _Sandbox(ImmutableSandboxedEnvironment):
    """Jinja2's immutable sandbox (no `.update()` on the conversation's data), with `*` and
    `**` bounded so an expression cannot build a gigabyte string or a huge integer."""

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and isinstance(right, int | float) and abs(right) > 64:
            raise SecurityError("exponent too large")
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                sized = isinstance(seq, str | list | tuple) and isinstance(times, int)
                if sized and len(seq) * times > MAX_PRODUCT:
                    raise SecurityError("result too large")
        return super().call_binop(context, operator, left, right)


class Trusted(str):
    """A value from the operator's config (env.*): inserted into URLs as it is."""


def _url_part(value: Any) -> str:
    """Everything customer-provided is quoted in a URL, so an answer cannot add `../`, `?`
    or `#` to the path of a customer-system request."""
    return value if isinstance(value, Trusted) else quote(str(value), safe="")


_env = _Sandbox(undefined=ChainableUndefined, autoescape=False)
# Lookups: a name that is not defined is an error (the request is not sent half-filled).
_strict_env = _Sandbox(undefined=StrictUndefined, autoescape=False)
_url_env = _Sandbox(undefined=StrictUndefined, autoescape=False, finalize=_url_part)
_TEXT_ENVS = {"text": _env, "strict": _strict_env, "url": _url_env}


class TemplateProblem(ValueError):
    """A template that does not compile or names something unknown (message for people)."""


@dataclass(frozen=True)
class NameUse:
    root: str  # "slots"
    attr: str | None  # "account_number" in slots.account_number


def is_template(text: str) -> bool:
    return "{{" in text or "{%" in text


PROMPT_ID = re.compile(r"^[a-z][a-z0-9_.\-]*$")


def is_prompt_id(text: str) -> bool:
    """A bare identifier names a prompt; anything with spaces or punctuation is literal text."""
    return bool(PROMPT_ID.match(text)) and not is_template(text)


@lru_cache(maxsize=4096)
def _compiled_text(source: str, mode: str) -> Any:
    return _TEXT_ENVS[mode].from_string(source)


@lru_cache(maxsize=4096)
def _compiled_expression(source: str) -> Any:
    return _env.compile_expression(source, undefined_to_none=True)


def parse(source: str, *, expression: bool) -> nodes.Template:
    """The syntax tree of a text or expression; TemplateProblem when it does not compile."""
    try:
        if expression:
            # The same grammar Jinja's compile_expression uses, so errors match run time.
            return _env.parse("{{ " + source + " }}")
        return _env.parse(source)
    except TemplateSyntaxError as exc:
        kind = "expression" if expression else "template"
        raise TemplateProblem(f"bad {kind}: {exc.message}") from None


def names_used(tree: nodes.Template) -> Iterator[NameUse]:
    """Every root name a template reads, with the first attribute when there is one."""
    attributed: set[int] = set()
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        target = node.node
        if isinstance(target, nodes.Name) and target.ctx == "load":
            attributed.add(id(target))
            if isinstance(node, nodes.Getattr):
                yield NameUse(target.name, node.attr)
            elif isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
                yield NameUse(target.name, node.arg.value)
            else:
                yield NameUse(target.name, None)
    locals_ = {n.name for n in tree.find_all(nodes.Name) if n.ctx in ("store", "param")}
    for name in tree.find_all(nodes.Name):
        if name.ctx == "load" and id(name) not in attributed and name.name not in locals_:
            yield NameUse(name.name, None)


def _why(exc: Exception) -> str:
    """Why a template failed, for logs and the timeline. The sandbox's refusals and undefined
    names explain themselves without values; other errors may quote a value (a secret,
    perhaps), so only their kind is told."""
    if isinstance(exc, SecurityError | UndefinedError):
        return f"{exc.__class__.__name__}: {exc}"
    return exc.__class__.__name__


def render_text(source: str, context: dict[str, Any], mode: str = "text") -> str:
    """Render a text. `mode`: "text" (spoken; unknown names render empty), "strict" (unknown
    names are an error) or "url" (strict, and every non-config value URL-quoted)."""
    if not is_template(source):
        return source
    try:
        rendered = _compiled_text(source, mode).render(context)
    except Exception as exc:  # a sandbox refusal, an undefined name, or the author's type error
        raise TemplateProblem(f"cannot render {source!r}: {_why(exc)}") from None
    return rendered[:MAX_RENDERED]


def evaluate(source: str, context: dict[str, Any]) -> Any:
    try:
        return _compiled_expression(source)(**context)
    except Exception as exc:
        raise TemplateProblem(f"cannot evaluate {source!r}: {_why(exc)}") from None


def render_value(value: Any, context: dict[str, Any]) -> Any:
    """Render every string inside a JSON-like value (an http body), strictly."""
    if isinstance(value, str):
        return render_text(value, context, "strict")
    if isinstance(value, list):
        return [render_value(v, context) for v in value]
    if isinstance(value, dict):
        return {k: render_value(v, context) for k, v in value.items()}
    return value


def context_for(
    conv: Conversation,
    *,
    channel: str,
    env: dict[str, str],
    secrets: dict[str, str] | None = None,
) -> dict[str, Any]:
    customer = {
        **conv.profile,
        "id": conv.identity.customer_id,
        "verified": conv.identity.verified,
        "method": conv.identity.method,
    }
    return {
        "slots": dict(conv.slots),
        "customer": customer,
        "lookups": dict(conv.lookups),
        "intent": conv.last_intent,
        "conversation": {
            "id": conv.id,
            "channel": channel,
            "channels": list(conv.channels),
            "language": conv.language,
            "contact": dict(conv.contact),
        },
        "env": {name: Trusted(value) for name, value in env.items()},
        "secrets": dict(secrets or {}),
    }
