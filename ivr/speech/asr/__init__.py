"""Speech recognition: engines (PocketSphinx, Vosk), grammars, and the client of the speech worker.

The engines run inside the speech worker process (`python -m ivr.speech.worker --role asr`);
other processes talk to it with `ivr.speech.asr.client.AsrClient`.
"""

from ivr.speech.asr.base import AsrError, Engine, Utterance
from ivr.speech.asr.engines import (
    EngineSpec,
    create_engine,
    create_engines,
    parse_asr_map,
    parse_engine_spec,
    resolve_vosk_model,
)
from ivr.speech.asr.grammar import DIGITS, digits_grammar

__all__ = [
    "DIGITS",
    "AsrError",
    "Engine",
    "EngineSpec",
    "Utterance",
    "create_engine",
    "create_engines",
    "digits_grammar",
    "parse_asr_map",
    "parse_engine_spec",
    "resolve_vosk_model",
]
