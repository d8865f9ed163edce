"""Rasa 3.x training data from the intent catalogue, so ops staff write intents only once.

`export_rasa(catalog, out_dir)` writes a Rasa project that `rasa train nlu` accepts:

* `data/nlu.yml` — training data format "3.1": one entry per intent with its examples, and one
  `regex` entry per catalogue entity (name = entity name, the pattern as its only example);
  Rasa's RegexEntityExtractor only uses a regex whose entity is annotated in some example, so
  example text matching an entity pattern is annotated (`[12345678](account_number)`); an
  entity that no example shows is logged as a warning (Rasa would never extract it);
* `domain.yml` — the intents and entities;
* `config.yml` — the light pipeline measured for this project (train ≈ 9 s, parse 3–5 ms):
  WhitespaceTokenizer, RegexFeaturizer, RegexEntityExtractor (use_regexes), two
  CountVectorsFeaturizers (words, and char_wb n-grams 1–4) and LogisticRegressionClassifier.

Then: `rasa train nlu -c config.yml -d domain.yml --nlu data/nlu.yml --out models`.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.scalarstring import DoubleQuotedScalarString, LiteralScalarString

from ivr.speech.nlu.base import IntentCatalog

log = logging.getLogger(__name__)

RASA_FORMAT_VERSION = "3.1"

PIPELINE: list[dict[str, Any]] = [
    {"name": "WhitespaceTokenizer"},
    {"name": "RegexFeaturizer"},
    {"name": "RegexEntityExtractor", "use_regexes": True, "use_lookup_tables": False},
    {"name": "CountVectorsFeaturizer"},
    {"name": "CountVectorsFeaturizer", "analyzer": "char_wb", "min_ngram": 1, "max_ngram": 4},
    {"name": "LogisticRegressionClassifier", "max_iter": 1000},
]


def export_rasa(catalog: IntentCatalog, out_dir: Path) -> list[Path]:
    """Write `data/nlu.yml`, `domain.yml` and `config.yml` under `out_dir` (created if
    missing, files overwritten) and return their paths."""
    if not catalog.intents:
        raise ValueError("the intent catalogue has no intents: nothing to train")
    empty = [name for name, examples in catalog.intents.items() if not examples]
    if empty:
        raise ValueError(f"intents without examples cannot be trained: {', '.join(empty)}")

    out_dir = Path(out_dir)
    (out_dir / "data").mkdir(parents=True, exist_ok=True)
    version = DoubleQuotedScalarString(RASA_FORMAT_VERSION)

    patterns = {
        name: re.compile(pattern, re.IGNORECASE) for name, pattern in catalog.entities.items()
    }
    shown: set[str] = set()
    nlu: list[dict[str, Any]] = [
        {"intent": name, "examples": _bullets(_annotate(e, patterns, shown) for e in examples)}
        for name, examples in catalog.intents.items()
    ]
    for name in catalog.entities:
        if name not in shown:
            log.warning(
                "entity %r: no intent example contains a value matching its pattern, so Rasa "
                "will not extract it; add one, e.g. an example with a sample value",
                name,
            )
    nlu += [
        {"regex": name, "examples": _bullets([pattern])}
        for name, pattern in catalog.entities.items()
    ]
    files = {
        out_dir / "data" / "nlu.yml": {"version": version, "nlu": nlu},
        out_dir / "domain.yml": {
            "version": version,
            "intents": list(catalog.intents),
            "entities": list(catalog.entities),
        },
        out_dir / "config.yml": {
            "recipe": "default.v1",
            "assistant_id": _assistant_id(catalog),
            "language": catalog.language,
            "pipeline": PIPELINE,
        },
    }

    yaml = YAML()
    yaml.default_flow_style = False
    yaml.indent(mapping=2, sequence=4, offset=2)
    for path, document in files.items():
        with path.open("w", encoding="utf-8") as stream:
            yaml.dump(document, stream)
    return list(files)


def _annotate(example: str, patterns: dict[str, re.Pattern[str]], shown: set[str]) -> str:
    """Mark entity values in `example` with Rasa's `[value](entity)` syntax."""
    spans: list[tuple[int, int, str]] = []
    for name, pattern in patterns.items():
        for found in pattern.finditer(example):
            overlaps = any(found.start() < end and start < found.end() for start, end, _ in spans)
            if found.end() > found.start() and not overlaps:
                spans.append((found.start(), found.end(), name))
                shown.add(name)
    for start, end, name in sorted(spans, reverse=True):
        example = f"{example[:start]}[{example[start:end]}]({name}){example[end:]}"
    return example


def _bullets(lines: Iterable[str]) -> LiteralScalarString:
    """Rasa's examples block: one `- example` line each (newlines inside become spaces)."""
    return LiteralScalarString("".join(f"- {' '.join(str(line).split())}\n" for line in lines))


def _assistant_id(catalog: IntentCatalog) -> str:
    """Stable per catalogue, so retraining the same catalogue gives the same id."""
    digest = hashlib.sha256(repr(sorted(catalog.intents)).encode()).hexdigest()[:12]
    return f"ivr-{digest}"
