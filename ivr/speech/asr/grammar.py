"""Grammars: the answers a question expects, so the recogniser only has to choose among them.

An IVR question has few valid answers. Telling the recogniser which ones is the difference
between ~6 and ~70 concurrent recognising calls on a 2-core machine, and it roughly halves the
word error rate (research notes: speech-throughput.md). A grammar, on the wire and in this API,
is a list of strings:

- a phrase: `"yes"`, `"check my balance"`, `"상담원"`. Case and punctuation do not matter;
- a special item in angle brackets: `"<digits>"` means "a sequence of digit words of any length"
  (account numbers, PINs), which no finite phrase list can say.

`None` (or a list with nothing usable left) means free speech: the engine's full language model.

Each engine turns a grammar into its own form (`to_jsgf` for PocketSphinx, `to_vosk_phrases` for
Vosk) after dropping phrases with words its dictionary does not know: an unknown word would make
PocketSphinx refuse the whole grammar and Vosk silently recognise a different phrase.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

log = logging.getLogger(__name__)

DIGITS = "<digits>"
SPECIALS = frozenset({DIGITS})
MAX_PHRASES = 2000  # an intent catalogue's examples fit; a dictionary dump does not
MAX_PHRASE_CHARS = 200

# Digit words as callers say them when reading out a number, per language. The first column of
# Korean is Sino-Korean (used for account and phone numbers); 공 is the usual spoken zero.
DIGIT_WORDS: dict[str, tuple[str, ...]] = {
    "en": ("zero", "oh", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"),
    "ko": ("영", "공", "일", "이", "삼", "사", "오", "육", "칠", "팔", "구"),
}

_NOT_WORD = re.compile(r"[^\w']+")  # \w is Unicode-aware: Hangul and accented letters stay


def base_language(language: str) -> str:
    """ "en-US" -> "en": the tables above are keyed by the primary subtag."""
    return language.split("-", 1)[0].lower()


def digits_grammar() -> list[str]:
    """A grammar for a spoken digit sequence of any length."""
    return [DIGITS]


def digit_words(language: str) -> tuple[str, ...]:
    return DIGIT_WORDS.get(base_language(language), ())


def normalize_phrase(text: str) -> str:
    """Lower case, punctuation as spaces, single spaces: "Yes, please!" -> "yes please".
    Apostrophes inside words stay ("don't" is one dictionary word); underscores go."""
    words = (w.strip("'") for w in _NOT_WORD.sub(" ", text.lower().replace("_", " ")).split())
    return " ".join(w for w in words if w)


@dataclass(frozen=True)
class Grammar:
    """A checked grammar: normalised phrases (unique, in the caller's order) and specials."""

    phrases: tuple[str, ...]
    digits: bool = False

    @property
    def key(self) -> str:
        """A stable short name for caching the compiled form (PocketSphinx searches)."""
        blob = "\n".join((DIGITS if self.digits else "", *self.phrases)).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def parse_grammar(items: object) -> Grammar | None:
    """The wire form (a list of strings, or None) as a Grammar; None for free speech.

    ValueError for what a caller must fix: not a list, a non-string item, an unknown special,
    too many or too long phrases. Items that normalise to nothing ("?!") are ignored."""
    if items is None:
        return None
    if not isinstance(items, list | tuple):
        raise ValueError(f"grammar must be a list of phrases or null, not {type(items).__name__}")
    if len(items) > MAX_PHRASES:
        raise ValueError(f"grammar has {len(items)} phrases; at most {MAX_PHRASES}")
    phrases: dict[str, None] = {}  # an ordered set
    digits = False
    for item in items:
        if not isinstance(item, str):
            raise ValueError(f"grammar phrase {item!r} is not a string")
        stripped = item.strip()
        if stripped.startswith("<") and stripped.endswith(">"):
            if stripped.lower() not in SPECIALS:
                known = ", ".join(sorted(SPECIALS))
                raise ValueError(f"unknown grammar item {stripped!r} (known: {known})")
            digits = True
            continue
        if len(stripped) > MAX_PHRASE_CHARS:
            raise ValueError(f"phrase {stripped[:40]!r}... is over {MAX_PHRASE_CHARS} characters")
        phrase = normalize_phrase(stripped)
        if phrase:
            phrases[phrase] = None
    if not phrases and not digits:
        return None
    return Grammar(tuple(phrases), digits)


@dataclass(frozen=True)
class FilteredGrammar:
    """What is left of a grammar once words the engine does not know are gone."""

    phrases: tuple[str, ...]
    digit_words: tuple[str, ...]  # empty: no <digits> (or none of the words are known)
    dropped: tuple[str, ...]  # phrases removed because of an unknown word

    @property
    def empty(self) -> bool:
        return not self.phrases and not self.digit_words


def filter_grammar(
    grammar: Grammar, known: Callable[[str], bool], language: str
) -> FilteredGrammar:
    """Keep the phrases whose every word `known` accepts. A phrase with an unknown word is
    dropped whole: recognising "check balance" for "check my balance" would be worse than
    leaving the phrase out. Digit words come from DIGIT_WORDS for `language`."""
    kept: list[str] = []
    dropped: list[str] = []
    for phrase in grammar.phrases:
        (kept if all(known(w) for w in phrase.split()) else dropped).append(phrase)
    digits: tuple[str, ...] = ()
    if grammar.digits:
        digits = tuple(w for w in digit_words(language) if known(w))
        if not digits:
            log.warning("no digit words known for language %r: <digits> ignored", language)
    if dropped:
        log.info("grammar: dropped %d phrase(s) with unknown words: %s", len(dropped), dropped[:5])
    return FilteredGrammar(tuple(kept), digits, tuple(dropped))


def to_jsgf(grammar: FilteredGrammar) -> str | None:
    """A JSGF grammar for PocketSphinx, or None when nothing is left (then: free speech).

    Phrases are alternatives; `<digits>` is a real repeating rule `(zero | one | ...)+`.
    Words are plain JSGF tokens (normalize_phrase keeps only letters, digits and apostrophes,
    which PocketSphinx's JSGF parser accepts unquoted; quoted tokens it rejects)."""
    if grammar.empty:
        return None
    alternatives = list(grammar.phrases)
    lines = ["#JSGF V1.0;", "grammar answers;"]
    if grammar.digit_words:
        lines.append(f"<digit> = {' | '.join(grammar.digit_words)};")
        alternatives.append("<digit>+")
    lines.append(f"public <answer> = {' | '.join(alternatives)};")
    return "\n".join(lines) + "\n"


def to_vosk_phrases(grammar: FilteredGrammar) -> list[str] | None:
    """Phrases for a Vosk grammar recogniser, or None when nothing is left (free speech).

    Vosk builds a bigram model from the phrases, so single digit words as separate phrases
    already allow sequences of any length: that is how `<digits>` is expressed there."""
    if grammar.empty:
        return None
    return [*grammar.phrases, *(w for w in grammar.digit_words if w not in grammar.phrases)]


def describe(items: Sequence[str] | None) -> str:
    """A short form for logs: the first few phrases."""
    if items is None:
        return "free speech"
    head = ", ".join(items[:4])
    return f"[{head}{', ...' if len(items) > 4 else ''}] ({len(items)})"
