"""The test softphone's call script: what the caller does, one action per line.

Only parsing and checking lives here (no SIP, no audio), so a bad script is refused with its
file and line before anything is dialled:

    wait-prompt            # far end spoke, then was quiet for 700 ms
    wait-speech            # far end starts speaking
    dtmf 12345678#
    say "I want to check my account balance"
    play recordings/balance.wav
    silence 1.5
    expect-transfer
    wait-file /tmp/agent-ready   # until another program creates it (ops scripts, tests)
    hangup

Comments are whole lines starting with `#`: a trailing `#` cannot start a comment because it is
also the DTMF pound key (`dtmf 123#`).
"""

from __future__ import annotations

import difflib
import re
import shlex
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

# Each action and what its argument is: none, a DTMF string, free text, a path or seconds.
ACTIONS: dict[str, str] = {
    "wait-prompt": "none",
    "wait-speech": "none",
    "dtmf": "digits",
    "say": "text",
    "play": "path",
    "silence": "seconds",
    "hangup": "none",
    "expect-transfer": "none",
    "wait-file": "path",
}

_DTMF = re.compile(r"[0-9*#A-Da-d]+")
MAX_SILENCE = 600.0  # a longer pause is almost surely a typo (ms taken for seconds)


class ScriptError(ValueError):
    """A bad action, with where it was written (`script.txt:3` or `--do 2`)."""

    def __init__(self, where: str, message: str) -> None:
        super().__init__(f"{where}: {message}")
        self.where = where


@dataclass(frozen=True)
class Action:
    name: str  # one of ACTIONS
    arg: str | float | None  # digits / text / path (str), seconds (float), or None
    source: str  # the line as written, for the outcome report
    where: str  # `script.txt:3` or `--do 2`, for error messages


def parse_action(text: str, where: str) -> Action:
    """One action from one line (already known not to be blank or a comment)."""
    source = text.strip()
    name, _, rest = source.partition(" ")
    name = name.strip().lower()
    rest = rest.strip()
    kind = ACTIONS.get(name)
    if kind is None:
        close = difflib.get_close_matches(name, ACTIONS, n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(ACTIONS)})"
        raise ScriptError(where, f"unknown action {name!r}{hint}")
    if kind == "none":
        if rest:
            raise ScriptError(where, f"{name} takes no argument, got {rest!r}")
        return Action(name, None, source, where)
    if not rest:
        raise ScriptError(where, f"{name} needs {_ARG_HELP[kind]}")
    if kind == "digits":
        digits = rest.replace(" ", "")
        if not _DTMF.fullmatch(digits):
            raise ScriptError(where, f"dtmf digits must be 0-9 * # A-D, got {rest!r}")
        return Action(name, digits.upper(), source, where)
    if kind == "seconds":
        try:
            seconds = float(rest)
        except ValueError:
            raise ScriptError(where, f"{name} needs seconds (like 1.5), got {rest!r}") from None
        if not 0 < seconds <= MAX_SILENCE:
            raise ScriptError(where, f"{name} must be between 0 and {MAX_SILENCE:g} s")
        return Action(name, seconds, source, where)
    return Action(name, _unquote(rest, where), source, where)


_ARG_HELP = {
    "digits": "digits (dtmf 1234#)",
    "text": 'text (say "hello")',
    "path": "a file (play prompt.wav, wait-file ready)",
    "seconds": "seconds (silence 1.5)",
}


def _unquote(rest: str, where: str) -> str:
    """`"quoted text"` or `'quoted'` as one argument; unquoted text is taken as written, so
    `say I'm here` works without quoting."""
    if rest[0] not in "\"'":
        return rest
    try:
        parts = shlex.split(rest)
    except ValueError as exc:
        raise ScriptError(where, f"bad quoting: {exc}") from None
    if len(parts) != 1:
        raise ScriptError(where, f"quote the whole argument, got {rest!r}")
    if not parts[0].strip():
        raise ScriptError(where, "empty argument")
    return parts[0]


def parse_lines(lines: Iterable[str], origin: str) -> list[Action]:
    """Actions of a script file's lines; blank lines and `#` comment lines are skipped."""
    actions = []
    for number, line in enumerate(lines, start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        actions.append(parse_action(stripped, f"{origin}:{number}"))
    return actions


def load_script(path: str | Path | None, dos: Iterable[str] = ()) -> list[Action]:
    """The script file's actions (if any), then the `--do` ones, in order."""
    actions: list[Action] = []
    if path is not None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ScriptError(str(path), f"cannot read the script: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise ScriptError(str(path), "the script is not UTF-8 text") from None
        actions.extend(parse_lines(text.splitlines(), str(path)))
    for number, text in enumerate(dos, start=1):
        if not text.strip():
            raise ScriptError(f"--do {number}", "empty action")
        actions.append(parse_action(text, f"--do {number}"))
    return actions
