"""The internal audio format and prompt files.

Inside our processes audio is 16-bit signed PCM, mono, 16 kHz, in 20 ms frames (640 bytes).
Codecs (G.711 at 8 kHz, G.722, Opus) are converted at the edges by pjsua2 and aiortc.
"""

from __future__ import annotations

import wave
from collections import OrderedDict
from pathlib import Path

SAMPLE_RATE = 16000
FRAME_MS = 20
FRAME_BYTES = SAMPLE_RATE * FRAME_MS // 1000 * 2  # 640
SILENCE = bytes(FRAME_BYTES)


class BadPromptAudio(ValueError):
    """A prompt file that is not 16 kHz mono 16-bit WAV (the speech worker makes them so)."""


def split_frames(pcm: bytes) -> list[bytes]:
    """20 ms frames; the last one padded with silence (a partial frame would never be sent)."""
    frames = [pcm[i : i + FRAME_BYTES] for i in range(0, len(pcm), FRAME_BYTES)]
    if frames and len(frames[-1]) < FRAME_BYTES:
        frames[-1] = frames[-1] + bytes(FRAME_BYTES - len(frames[-1]))
    return frames


def read_prompt(path: str | Path) -> bytes:
    try:
        with wave.open(str(path), "rb") as wav:
            if (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) != (SAMPLE_RATE, 1, 2):
                raise BadPromptAudio(
                    f"{path}: {wav.getframerate()} Hz, {wav.getnchannels()} channel(s), "
                    f"{8 * wav.getsampwidth()}-bit; prompts must be 16 kHz mono 16-bit"
                )
            return wav.readframes(wav.getnframes())
    except (wave.Error, EOFError) as exc:
        raise BadPromptAudio(f"{path}: not a WAV file ({exc})") from None


class PromptFiles:
    """Prompt audio read once and kept (prompts repeat on every call); bounded by bytes."""

    def __init__(self, max_bytes: int = 64 * 1024 * 1024) -> None:
        self.max_bytes = max_bytes
        self._cache: OrderedDict[tuple[str, int, int], list[bytes]] = OrderedDict()
        self._size = 0

    def frames(self, path: str) -> list[bytes]:
        stat = Path(path).stat()
        key = (path, stat.st_mtime_ns, stat.st_size)
        hit = self._cache.get(key)
        if hit is not None:
            self._cache.move_to_end(key)
            return hit
        frames = split_frames(read_prompt(path))
        self._cache[key] = frames
        self._size += len(frames) * FRAME_BYTES
        while self._size > self.max_bytes and len(self._cache) > 1:
            _, old = self._cache.popitem(last=False)
            self._size -= len(old) * FRAME_BYTES
        return frames
