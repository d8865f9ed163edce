"""Typed answers: turning what a customer said, typed or keyed into a slot value.

The same rules serve speech ("one two three four"), keys ("1234#") and chat text ("1234"), so a
flow asks for "an 8-digit account number" once and every channel understands the answer.
"""

from __future__ import annotations

import math
import re
from datetime import datetime
from typing import Any

from dateutil import parser as date_parser

from ivr.flow.channel import CustomerInput

_DIGIT_WORDS = {
    "zero": "0", "oh": "0", "o": "0", "nought": "0",
    "one": "1", "two": "2", "to": "2", "too": "2", "three": "3", "four": "4", "for": "4",
    "five": "5", "six": "6", "seven": "7", "eight": "8", "ate": "8", "nine": "9",
}  # fmt: skip
_UNITS = {
    w: int(d)
    for w, d in _DIGIT_WORDS.items()
    if w not in ("oh", "o", "to", "too", "for", "ate", "nought")
}
_TEENS = {
    "ten": 10,
    "eleven": 11,
    "twelve": 12,
    "thirteen": 13,
    "fourteen": 14,
    "fifteen": 15,
    "sixteen": 16,
    "seventeen": 17,
    "eighteen": 18,
    "nineteen": 19,
}
_TENS = {
    "twenty": 20,
    "thirty": 30,
    "forty": 40,
    "fifty": 50,
    "sixty": 60,
    "seventy": 70,
    "eighty": 80,
    "ninety": 90,
}
_SCALES = {"hundred": 100, "thousand": 1000, "million": 1_000_000}
_YES = {
    "yes",
    "yeah",
    "yep",
    "yup",
    "sure",
    "correct",
    "right",
    "ok",
    "okay",
    "please",
    "affirmative",
    "y",
    "true",
    "indeed",
    "absolutely",
    "definitely",
}
_NO = {"no", "nope", "nah", "not", "incorrect", "wrong", "n", "false", "negative", "never"}


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower())


def spoken_digits(text: str) -> str:
    """ "one two three four" / "1 2 3 4" / "12-34" / "double five" -> digits, else ""."""
    out: list[str] = []
    repeat = 1
    for word in _words(text):
        if word in ("double", "triple"):
            repeat = 2 if word == "double" else 3
            continue
        if word.isdigit():
            out.append(word * repeat)
        elif word in _DIGIT_WORDS:
            out.append(_DIGIT_WORDS[word] * repeat)
        elif word in ("and", "uh", "um", "is", "it's", "its", "my", "number", "the"):
            continue
        else:
            return ""
        repeat = 1
    return "".join(out)


def spoken_number(text: str) -> float | int | None:
    """A number said or typed; None when it is not one, or not a finite one."""
    value = _spoken_number(text)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, int) and abs(value) > 10**18:
        return None
    return value


def _spoken_number(text: str) -> float | int | None:
    cleaned = text.replace(",", "").strip()
    if re.fullmatch(r"-?\d+", cleaned):
        return int(cleaned)
    if re.fullmatch(r"-?\d+\.\d+", cleaned):
        return float(cleaned)
    total, current, seen = 0, 0, False
    after_numeral = False
    for word in re.findall(r"\d+(?:\.\d+)?|[a-z']+", cleaned.lower()):
        numeral = word[0].isdigit()
        if numeral and after_numeral:
            return None  # "1 000", "1.2.3": not one number; ask again rather than guess
        after_numeral = numeral
        if word in _UNITS:
            current += _UNITS[word]
        elif word in _TEENS:
            current += _TEENS[word]
        elif word in _TENS:
            current += _TENS[word]
        elif word == "hundred":
            current = max(current, 1) * 100
        elif word in _SCALES:
            total += max(current, 1) * _SCALES[word]
            current = 0
        elif word == "and":
            continue
        elif numeral:
            current += float(word) if "." in word else int(word)  # "2.5 thousand"
        else:
            return None
        seen = True
    return total + current if seen else None


# Yes and no per language: the words that mean them when read in an answer, and the phrases a
# recogniser is told to expect for a yes/no question (each must read as yes or no). A language
# not listed ("ko-KR" is "ko") is answered in English.
_YES_NO: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "en": (frozenset(_YES), frozenset(_NO)),
    "ko": (
        frozenset({"네", "예", "응", "그래", "그래요", "맞아", "맞아요", "맞습니다", "좋아요"}),
        frozenset({"아니요", "아니오", "아뇨", "아니", "아니에요", "아닙니다", "싫어요"}),
    ),
}
_YES_NO_PHRASES = {
    "en": ("yes", "yeah", "yep", "correct", "that's right", "no", "nope", "no thanks"),
    "ko": ("네", "예", "맞아요", "아니요", "아뇨", "아니"),
}


def _primary(language: str) -> str:
    primary = language.split("-", 1)[0].lower()
    return primary if primary in _YES_NO else "en"


def yes_no_hints(language: str) -> tuple[str, ...]:
    """What a recogniser should expect for a yes/no question in `language`."""
    return _YES_NO_PHRASES[_primary(language)]


def yes_no(text: str, language: str = "en") -> bool | None:
    """True for yes, False for no (or the keys 1 and 2), None when it is neither or both."""
    if text.strip() in ("1",):
        return True
    if text.strip() in ("2",):
        return False
    primary = _primary(language)
    yes_words, no_words = _YES_NO[primary]
    words = set(_words(text)) if primary == "en" else set(re.findall(r"\w+", text.lower()))
    yes, no = bool(words & yes_words), bool(words & no_words)
    if yes != no:
        return yes
    return None


def parse_answer(
    answer: CustomerInput,
    kind: str,
    *,
    length: int | None = None,
    min_length: int | None = None,
    max_length: int | None = None,
    terminator: str | None = "#",
    date_format: str = "%Y%m%d",
    language: str = "en",
) -> Any | None:
    """The slot value for `answer`, or None when it does not fit the expected type."""
    raw = answer.digits if answer.digits is not None else (answer.text or "")
    keyed_kind = answer.digits is not None or kind in ("digits", "number", "date")
    if terminator and keyed_kind and raw.endswith(terminator):
        raw = raw[: -len(terminator)]
    raw = raw.strip()
    if not raw:
        return None
    if kind == "text":
        return raw
    if kind == "digits":
        digits = raw if answer.digits is not None else spoken_digits(raw)
        if not digits.isdigit():
            return None
        if length and len(digits) != length:
            return None
        if min_length and len(digits) < min_length:
            return None
        if max_length and len(digits) > max_length:
            return None
        return digits
    if kind == "number":
        return spoken_number(raw)
    if kind == "yes_no":
        return yes_no(raw, language)
    if kind == "date":
        return _date(raw, keyed=answer.digits is not None, date_format=date_format)
    raise ValueError(f"unknown answer type {kind!r}")


def _date(raw: str, *, keyed: bool, date_format: str) -> str | None:
    compact = raw.replace(" ", "")
    try:
        if keyed or compact.isdigit():
            return datetime.strptime(compact, date_format).date().isoformat()
        return date_parser.parse(raw, fuzzy=True, dayfirst=False).date().isoformat()
    except (ValueError, OverflowError):
        return None
