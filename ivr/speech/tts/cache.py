"""Where a rendered or converted prompt lives on disk.

The key is everything that changes the audio, so the control plane can find a rendered prompt
with a `stat` and no round trip to the TTS worker:

    <cache_dir>/<language>/<sha256 prefix>.wav       text, language, voice, rate, FORMAT
    <cache_dir>/_recorded/<sha256 prefix>.wav        a recording: its path, mtime and size

Files are always 16 kHz mono signed 16-bit WAV, and are written whole or not at all (a
temporary file in the same directory, then `os.replace`), so a reader never sees half a file.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import wave
from pathlib import Path

from ivr.speech.langmap import check_language

SAMPLE_RATE = 16000
FORMAT = "wav-16k-mono-s16-v1"  # part of every key: bump it when the output format changes
RECORDED_DIR = "_recorded"  # not a language code, so it cannot collide with one
_HEX = 32  # 128 bits of the digest: collisions are not a concern


def _digest(*parts: object) -> str:
    blob = json.dumps(parts, ensure_ascii=False, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:_HEX]


def cache_path(
    cache_dir: str | os.PathLike[str], text: str, language: str, voice: str, rate: int
) -> Path:
    """The file that holds `text` spoken in `language` by `voice` at `rate` words per minute.
    ValueError for a language that is not a language code (it names a directory)."""
    check_language(language)
    key = _digest("tts", FORMAT, text, language, voice, int(rate))
    return Path(cache_dir) / language / f"{key}.wav"


def recording_cache_path(cache_dir: str | os.PathLike[str], source: str | os.PathLike[str]) -> Path:
    """The normalised copy of the recording `source`; a new mtime or size is a new file, so
    ops staff replacing a recording never hear the old one. OSError if `source` is missing."""
    path = Path(source).resolve()
    info = path.stat()
    key = _digest("recorded", FORMAT, str(path), info.st_mtime_ns, info.st_size)
    return Path(cache_dir) / RECORDED_DIR / f"{key}.wav"


def wav_seconds(path: str | os.PathLike[str]) -> float:
    with wave.open(os.fspath(path), "rb") as wav:
        return wav.getnframes() / wav.getframerate()


def write_wav_atomic(path: Path, pcm: bytes, rate: int = SAMPLE_RATE) -> None:
    """Write mono s16 `pcm` to `path` as a WAV: in full, or not at all."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as raw, wave.open(raw, "wb") as wav:
            wav.setnchannels(1)
            wav.setsampwidth(2)
            wav.setframerate(rate)
            wav.writeframes(pcm)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; the media worker may run as another user
        os.replace(tmp, path)
    except BaseException:
        _unlink_quietly(tmp)
        raise


def _unlink_quietly(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)
