"""Which audio file says a prompt: a recording if ops made one, else synthesised speech.

A recorded `prompts/<language>/<prompt-id>.wav` wins over TTS (converted once to our 16 kHz
format by the TTS worker). Other text — catalogue prompts without a recording, and dynamic text
such as balances and names — is rendered by the TTS worker into the on-disk cache, keyed by
text, language and voice, so each sentence is synthesised once. A cache hit costs a `stat`, not
a round trip.
"""

from __future__ import annotations

import logging
import wave
from dataclasses import dataclass
from pathlib import Path

from ivr.flow.channel import Prompt
from ivr.speech.tts.cache import cache_path

log = logging.getLogger("ivr.voice")


@dataclass(frozen=True)
class VoiceOf:
    """The TTS voice settings that are part of the cache key."""

    voices: dict[str, str]
    rate: int

    def voice(self, language: str) -> str:
        return self.voices.get(language, language)


class PromptAudio:
    def __init__(self, prompts_dir: Path, cache_dir: Path, voice: VoiceOf, tts: object) -> None:
        self.prompts_dir = prompts_dir
        self.cache_dir = cache_dir
        self.voice = voice
        self.tts = tts  # a TtsClient, or anything with async render(text, language)/convert(path)

    async def files(self, prompt: Prompt) -> tuple[list[str], float]:
        """Files to play for `prompt`, and how long they last (seconds)."""
        if not prompt.text:
            return [], 0.0
        path = await self._file(prompt)
        return [str(path)], _seconds(path)

    async def recording(self, prompt_id: str, language: str) -> Path | None:
        """The recording ops made of `prompt_id`, in our format, or None if there is none."""
        recorded = self.prompts_dir / language / f"{prompt_id}.wav"
        if not recorded.is_file():
            return None
        return Path(await self.tts.convert(str(recorded.resolve())))  # type: ignore[attr-defined]

    async def _file(self, prompt: Prompt) -> Path:
        if prompt.prompt_id:
            recorded = await self.recording(prompt.prompt_id, prompt.language)
            if recorded is not None:
                return recorded
        cached = cache_path(
            self.cache_dir,
            prompt.text,
            prompt.language,
            self.voice.voice(prompt.language),
            self.voice.rate,
        )
        if cached.is_file():
            return cached
        return Path(await self.tts.render(prompt.text, prompt.language))  # type: ignore[attr-defined]


def _seconds(path: Path) -> float:
    try:
        with wave.open(str(path), "rb") as wav:
            return wav.getnframes() / wav.getframerate()
    except (OSError, wave.Error, EOFError, ZeroDivisionError):
        return 0.0
