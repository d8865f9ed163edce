"""Prompt synthesis (pyttsx3/espeak-ng), the prompt cache and recorded-prompt conversion."""

from __future__ import annotations

import os
import wave
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from ivr.speech.tts.cache import cache_path, recording_cache_path
from ivr.speech.tts.render import (
    AudioFormatError,
    Renderer,
    TtsError,
    convert_recording,
    normalize_wav,
    parse_voices,
)
from tests.speech_audio import needs_espeak

PROMPT = "Please enter your account number, or press zero for an agent."


def wav_info(path: Path) -> tuple[int, int, int, float]:
    with wave.open(str(path), "rb") as wav:
        rate = wav.getframerate()
        return rate, wav.getnchannels(), wav.getsampwidth(), wav.getnframes() / rate


def write_wav(path: Path, samples: np.ndarray, rate: int, width: int = 2) -> None:
    """`samples`: float in [-1, 1], shape (frames, channels)."""
    if width == 1:
        data = np.clip(samples * 127 + 128, 0, 255).astype(np.uint8).tobytes()
    else:
        data = np.clip(samples * 32767, -32768, 32767).astype("<i2").tobytes()
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(samples.shape[1])
        wav.setsampwidth(width)
        wav.setframerate(rate)
        wav.writeframes(data)


def tone(seconds: float, rate: int, channels: int, hz: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    mono = 0.5 * np.sin(2 * np.pi * hz * t)
    return np.repeat(mono[:, None], channels, axis=1)


@pytest.fixture(scope="module")
def renderer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Renderer]:
    if os.system("command -v espeak-ng >/dev/null") != 0:
        pytest.skip("espeak-ng is not installed")
    r = Renderer(tmp_path_factory.mktemp("prompt-cache"), {"en": "en-us"}, rate=170)
    yield r
    r.close()


# ---------------------------------------------------------------- cache keys


def test_cache_path_is_keyed_by_everything_that_changes_the_audio(tmp_path: Path) -> None:
    base = cache_path(tmp_path, "Hello", "en", "en-us", 170)
    assert base == cache_path(tmp_path, "Hello", "en", "en-us", 170)
    assert base.parent == tmp_path / "en" and base.suffix == ".wav"
    variants = {
        cache_path(tmp_path, "Hello!", "en", "en-us", 170),
        cache_path(tmp_path, "Hello", "en-GB", "en-us", 170),
        cache_path(tmp_path, "Hello", "en", "en-gb", 170),
        cache_path(tmp_path, "Hello", "en", "en-us", 180),
    }
    assert base not in variants and len(variants) == 4
    with pytest.raises(ValueError, match="not a language code"):
        cache_path(tmp_path, "Hello", "../../etc", "x", 170)


def test_recording_key_changes_with_the_file(tmp_path: Path) -> None:
    source = tmp_path / "welcome.wav"
    write_wav(source, tone(0.2, 8000, 1), 8000)
    first = recording_cache_path(tmp_path / "cache", source)
    write_wav(source, tone(0.3, 8000, 1), 8000)  # ops staff re-record the prompt
    assert recording_cache_path(tmp_path / "cache", source) != first


def test_voices_setting() -> None:
    assert parse_voices("") == {}
    assert parse_voices("en=en-us, ko=ko") == {"en": "en-us", "ko": "ko"}
    with pytest.raises(ValueError, match="'ko' is not language=voice"):
        parse_voices("en=en-us, ko")


# ---------------------------------------------------------------- rendering


@needs_espeak
def test_render_writes_16k_mono_and_caches(renderer: Renderer, capfd) -> None:
    first = renderer.render(PROMPT, "en")
    assert not first.cached
    assert first.path == renderer.path_for(PROMPT, "en")
    assert first.path == cache_path(renderer.cache_dir, PROMPT, "en", "en-us", 170)
    rate, channels, width, seconds = wav_info(first.path)
    assert (rate, channels, width) == (16000, 1, 2)
    assert 2.0 < seconds < 6.0 and abs(seconds - first.seconds) < 0.01
    stamp = first.path.stat().st_mtime_ns

    again = renderer.render(PROMPT, "en")
    assert again.cached and again.path == first.path
    assert first.path.stat().st_mtime_ns == stamp  # not rendered again

    other = renderer.render("Goodbye.", "en")
    assert other.path != first.path and not other.cached
    assert capfd.readouterr().out == ""  # pyttsx3's "Audio saved to ..." is not on stdout
    leftovers = [p.name for p in first.path.parent.iterdir() if p.name.startswith(".")]
    assert leftovers == []  # temporary files are gone


@needs_espeak
def test_render_korean_with_the_language_as_voice(renderer: Renderer) -> None:
    rendered = renderer.render("상담원 연결은 영번을 눌러 주세요.", "ko")
    assert rendered.path.parent.name == "ko"
    assert wav_info(rendered.path)[:2] == (16000, 1)
    assert rendered.seconds > 1.0


@needs_espeak
def test_render_refusals(renderer: Renderer) -> None:
    with pytest.raises(TtsError, match="empty"):
        renderer.render("   ", "en")
    with pytest.raises(TtsError, match="no espeak-ng voice for language 'zz'"):
        renderer.render("hello", "zz")
    with pytest.raises(ValueError, match="not a language code"):
        renderer.render("hello", "en/../..")


@needs_espeak
def test_unknown_voice_is_refused_at_start(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="espeak-ng has no voice 'no-such-voice'"):
        Renderer(tmp_path, {"en": "no-such-voice"})


# ---------------------------------------------------------------- recordings


def test_normalize_8k_stereo(tmp_path: Path) -> None:
    source = tmp_path / "stereo8k.wav"
    write_wav(source, tone(1.5, 8000, 2), 8000)
    seconds = normalize_wav(source, tmp_path / "out.wav")
    rate, channels, width, length = wav_info(tmp_path / "out.wav")
    assert (rate, channels, width) == (16000, 1, 2)
    assert abs(length - 1.5) < 0.01 and abs(seconds - 1.5) < 0.01
    with wave.open(str(tmp_path / "out.wav"), "rb") as wav:
        out = np.frombuffer(wav.readframes(wav.getnframes()), "<i2") / 32768
    assert 0.45 < np.abs(out[1000:-1000]).max() < 0.55  # the tone kept its level


def test_normalize_8bit_and_44k(tmp_path: Path) -> None:
    for name, rate, width in (("u8.wav", 11025, 1), ("cd.wav", 44100, 2)):
        source = tmp_path / name
        write_wav(source, tone(0.5, rate, 1), rate, width)
        assert abs(normalize_wav(source, tmp_path / f"n-{name}") - 0.5) < 0.01
        assert wav_info(tmp_path / f"n-{name}")[:3] == (16000, 1, 2)


def test_normalize_refuses_what_is_not_wav(tmp_path: Path) -> None:
    mp3 = tmp_path / "prompt.mp3"
    mp3.write_bytes(b"ID3\x03\x00\x00\x00" + bytes(100))
    with pytest.raises(AudioFormatError, match=r"prompt\.mp3: not a WAV file"):
        normalize_wav(mp3, tmp_path / "out.wav")
    empty = tmp_path / "empty.wav"
    write_wav(empty, np.zeros((0, 1)), 8000)
    with pytest.raises(AudioFormatError, match="holds no audio"):
        normalize_wav(empty, tmp_path / "out.wav")
    assert not (tmp_path / "out.wav").exists()


def test_convert_recording_is_cached(tmp_path: Path) -> None:
    source = tmp_path / "welcome.wav"
    write_wav(source, tone(0.4, 22050, 2), 22050)
    first = convert_recording(tmp_path / "cache", str(source))
    assert not first.cached and first.path.parent.name == "_recorded"
    assert wav_info(first.path)[:2] == (16000, 1)
    assert convert_recording(tmp_path / "cache", str(source)).cached
    with pytest.raises(TtsError, match="absolute path"):
        convert_recording(tmp_path / "cache", "welcome.wav")
    with pytest.raises(TtsError, match="No such file"):
        convert_recording(tmp_path / "cache", str(tmp_path / "missing.wav"))
