"""Speech synthesis: prompts rendered by pyttsx3/espeak-ng into an on-disk cache of 16 kHz WAVs.

The renderer runs inside the speech worker process (`python -m ivr.speech.worker --role tts`);
other processes find cached prompts with `cache_path` (a `stat`, no round trip) and ask for the
rest with `ivr.speech.tts.client.TtsClient`.
"""

from ivr.speech.tts.cache import cache_path, recording_cache_path
from ivr.speech.tts.render import (
    DEFAULT_RATE,
    AudioFormatError,
    Rendered,
    Renderer,
    TtsError,
    normalize_wav,
    parse_voices,
)

__all__ = [
    "DEFAULT_RATE",
    "AudioFormatError",
    "Rendered",
    "Renderer",
    "TtsError",
    "cache_path",
    "normalize_wav",
    "parse_voices",
    "recording_cache_path",
]
