"""PocketSphinx 5 (English, the model in the wheel) as an engine.

What the measurements on this machine decided (research: speech-engines-detail.md, and the
figures in the speech worker's report):

- A language-model decoder is expensive to make (~0.3 s and ~90 MB, with the GIL held the
  whole time, stalling every other call in the process) and cheap to reuse, so they live in a
  pool, one made before the worker is ready.
- Grammar decoders are separate and small: made with a one-word dictionary (~9 ms, ~5 MB
  instead of ~0.1 s and ~30 MB with the full one), they get each grammar word's pronunciations
  (all variants) copied from the full dictionary when a grammar needs them (~0.03 ms a word).
  Compiling a grammar costs ~0.3 ms (`add_jsgf_string`), so each decoder keeps the searches
  of the last few grammars it served, and switching to one is free (`activate_search`).
- `fwdflat=False`: the second (flat-lexicon) pass ran at end of utterance and took 40-140 ms with
  the GIL held; without it `end_utt` takes 5-50 ms and the flite test set was recognised the same
  (one more word right).
- Grammar searches are made with `bestpath=False`: `end_utt` drops from up to 430 ms (off-grammar
  speech) to < 1 ms with no accuracy loss. The flag is read when a search is created, so the
  language-model search keeps `bestpath=True`, whose lattice gives word posteriors (confidence).
- Holding the GIL, decoding belongs on the worker's loop thread (`threaded = False`).

Confidence (0..1):
- free speech: the mean posterior probability of the recognised words (from the bestpath
  lattice), the measure PocketSphinx itself offers;
- grammar: PocketSphinx has no posteriors without bestpath, so we use how well the audio fits the
  chosen words: the mean acoustic score per frame of the word segments, mapped through a logistic
  centred at GRAMMAR_FIT_MID. On flite voices in-grammar answers scored 8-28 (confidence
  0.6-1.0) and off-grammar speech forced into a digit loop 25-50 (0.02-0.7). The ranges overlap,
  so no gate is applied here: callers compare the confidence with their own threshold.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import tempfile
import time
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Literal

from ivr.speech.asr.base import AsrError, Utterance
from ivr.speech.asr.grammar import filter_grammar, parse_grammar, to_jsgf

log = logging.getLogger(__name__)

Kind = Literal["lm", "grammar"]

GRAMMAR_FIT_MID = 30.0  # acoustic cost per frame (log base 1.0001 units) at confidence 0.5
GRAMMAR_FIT_SCALE = 5.0  # cost units per e-fold of the odds
MAX_SEARCHES = 8  # compiled grammars kept per decoder
MAX_LEXICON_CACHE = 50_000


class _Decoder:
    """A pooled decoder and the grammar searches compiled on it."""

    def __init__(self, kind: Kind, decoder: Any) -> None:
        self.kind = kind
        self.decoder = decoder
        self.searches: OrderedDict[str, str] = OrderedDict()  # grammar key -> search name
        self.uses = 0

    def use_grammar(self, key: str, jsgf: str, words: Iterable[str], lexicon: Any) -> None:
        name = self.searches.get(key)
        if name is None:
            name = f"g{key}"
            if self.kind == "grammar":
                self._learn(words, lexicon)
            config = self.decoder.config
            config["bestpath"] = False  # read by the search being made (see module doc)
            try:
                self.decoder.add_jsgf_string(name, jsgf)
            except ValueError:
                raise AsrError("PocketSphinx rejected the grammar") from None
            finally:
                config["bestpath"] = self.kind == "lm"
            self.searches[key] = name
            if len(self.searches) > MAX_SEARCHES:
                _, old = self.searches.popitem(last=False)
                self.decoder.remove_search(old)
        else:
            self.searches.move_to_end(key)
        self.decoder.activate_search(name)

    def _learn(self, words: Iterable[str], lexicon: Any) -> None:
        """Copy the pronunciations of `words` this small dictionary lacks from `lexicon` (a
        decoder with the full dictionary), alternates ("to(2)", "to(3)") included."""
        for word in words:
            if self.decoder.lookup_word(word) is not None:
                continue
            for variant in (word, *(f"{word}({n})" for n in range(2, 10))):
                phones = lexicon.lookup_word(variant)
                if phones is None:
                    break
                self.decoder.add_word(variant, phones, False)  # searches are made after

    def use_language_model(self) -> None:
        if self.kind != "lm":
            raise AsrError("a grammar-only decoder has no language model")
        self.decoder.activate_search()  # the default search: the LM the decoder was made with


class PocketSphinxEngine:
    """English recognition with the model bundled in the pocketsphinx wheel.

    `prewarm_lm`/`prewarm_grammar` decoders are made at once (before the worker says it is
    ready); more are made on demand when all are busy, and up to `max_idle` of each kind are
    kept for reuse."""

    threaded = False

    def __init__(
        self,
        language: str = "en",
        spec: str = "pocketsphinx",
        *,
        prewarm_lm: int = 1,
        prewarm_grammar: int = 2,
        max_idle_lm: int = 6,  # ~the most LM streams one process sustains (bench)
        max_idle_grammar: int = 32,
    ) -> None:
        import pocketsphinx  # noqa: F401  (fail here, at start-up, when it is missing)

        self.language = language
        self.spec = spec
        self.max_idle: dict[Kind, int] = {"lm": max_idle_lm, "grammar": max_idle_grammar}
        self._idle: dict[Kind, list[_Decoder]] = {"lm": [], "grammar": []}
        self._known: dict[str, bool] = {}
        self._lexicon: Any = None  # a decoder with the full dictionary: pronunciations
        self.created = 0
        for _ in range(prewarm_lm):
            self._idle["lm"].append(self._new("lm"))
        for _ in range(prewarm_grammar):
            self._idle["grammar"].append(self._new("grammar"))

    # ------------------------------------------------------------------ decoders

    def _new(self, kind: Kind) -> _Decoder:
        from pocketsphinx import Decoder

        started = time.perf_counter()
        common: dict[str, Any] = {"loglevel": "FATAL", "fwdflat": False}
        if kind == "lm":
            decoder = Decoder(bestpath=True, **common)
            if self._lexicon is None:
                self._lexicon = decoder
        else:
            # Without a language model a decoder needs some search to start with: a keyphrase
            # is the cheapest. Grammars are added per utterance.
            with _tiny_dict() as path:
                decoder = Decoder(lm=None, keyphrase="yes", dict=path, bestpath=False, **common)
        self.created += 1
        log.debug(
            "PocketSphinx %s decoder made in %.0f ms",
            kind,
            (time.perf_counter() - started) * 1000,
        )
        return _Decoder(kind, decoder)

    def _take(self, kind: Kind) -> _Decoder:
        if self._idle[kind]:
            return self._idle[kind].pop()
        if kind == "lm":
            log.info("all PocketSphinx LM decoders busy: making one (blocks the worker ~0.3 s)")
        return self._new(kind)

    def _give_back(self, slot: _Decoder, healthy: bool) -> None:
        slot.uses += 1
        if healthy and len(self._idle[slot.kind]) < self.max_idle[slot.kind]:
            self._idle[slot.kind].append(slot)

    @property
    def lexicon(self) -> Any:
        """A decoder with the full dictionary (the first LM decoder, else one made for this)."""
        if self._lexicon is None:
            from pocketsphinx import Decoder

            self._lexicon = Decoder(lm=None, keyphrase="yes", loglevel="FATAL")
        return self._lexicon

    def known(self, word: str) -> bool:
        """Is `word` in the pronunciation dictionary?"""
        hit = self._known.get(word)
        if hit is None:
            hit = self.lexicon.lookup_word(word) is not None
            if len(self._known) >= MAX_LEXICON_CACHE:
                self._known.clear()
            self._known[word] = hit
        return hit

    # ------------------------------------------------------------------ API

    def start(self, grammar: Sequence[str] | None = None) -> Utterance:
        parsed = parse_grammar(grammar)
        jsgf = None
        words: set[str] = set()
        if parsed is not None:
            filtered = filter_grammar(parsed, self.known, self.language)
            jsgf = to_jsgf(filtered)
            words = {w for p in filtered.phrases for w in p.split()} | set(filtered.digit_words)
            if jsgf is None:
                log.info("no grammar phrase is in the dictionary: free speech instead")
        slot = self._take("lm" if jsgf is None else "grammar")
        try:
            if jsgf is None:
                slot.use_language_model()
            else:
                assert parsed is not None
                slot.use_grammar(parsed.key, jsgf, words, self.lexicon)
            slot.decoder.start_utt()
        except Exception:
            self._give_back(slot, healthy=False)
            raise
        return PocketSphinxUtterance(self, slot, grammar=jsgf is not None)

    def close(self) -> None:
        self._idle = {"lm": [], "grammar": []}
        self._lexicon = None

    def idle_count(self, kind: Kind) -> int:
        return len(self._idle[kind])


class PocketSphinxUtterance(Utterance):
    # The hypothesis costs 2 µs (grammar) to 7 µs (language model) to read, and is sent only
    # when it changed: look every 40 ms, so the media worker knows "yes" was said ~40 ms after.
    partial_every = 0.04

    def __init__(self, engine: PocketSphinxEngine, slot: _Decoder, grammar: bool) -> None:
        super().__init__()
        self.engine = engine
        self.slot = slot
        self.grammar = grammar

    def _accept(self, pcm: bytes) -> None:
        try:
            self.slot.decoder.process_raw(pcm, False, False)
        except Exception:
            self._abandon()
            raise

    def _current_partial(self) -> str:
        hyp = self.slot.decoder.hyp()
        return hyp.hypstr if hyp is not None else ""

    def _finish(self) -> tuple[str, float]:
        decoder = self.slot.decoder
        try:
            decoder.end_utt()
            hyp = decoder.hyp()
            text = hyp.hypstr.strip() if hyp is not None else ""
            if not text:
                confidence = 0.0
            elif self.grammar:
                confidence = _grammar_fit(decoder)
            else:
                confidence = _mean_posterior(decoder)
        except Exception:
            self._abandon()
            raise
        self.engine._give_back(self.slot, healthy=True)
        return text, confidence

    def _cancel(self) -> None:
        try:
            self.slot.decoder.end_utt()
        except Exception:
            self._abandon()
            return
        self.engine._give_back(self.slot, healthy=True)

    def _abandon(self) -> None:
        """A decoder that raised is in an unknown state: it does not go back to the pool."""
        self._closed = True
        self.engine._give_back(self.slot, healthy=False)


@contextlib.contextmanager
def _tiny_dict() -> Iterator[str]:
    """The dictionary grammar decoders start from: one word (the format needs one). The
    decoder reads it when it is made, so the file lives only that long."""
    fd, path = tempfile.mkstemp(prefix="ivr-ps-", suffix=".dict")
    try:
        with os.fdopen(fd, "w") as out:
            out.write("yes Y EH S\n")
        yield path
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)


def _words(decoder: Any) -> list[Any]:
    """The recognised words' segments, without silences, fillers and sentence markers."""
    return [
        seg
        for seg in decoder.seg() or ()
        if seg.word and seg.word[0] not in "<[+("  # <s> <sil> [NOISE] +SMACK+ (NULL)
    ]


def _mean_posterior(decoder: Any) -> float:
    words = _words(decoder)
    if not words:
        return 0.0
    return _clamp(sum(seg.prob for seg in words) / len(words))


def _grammar_fit(decoder: Any) -> float:
    words = _words(decoder)
    frames = sum(seg.end_frame - seg.start_frame + 1 for seg in words)
    if not frames:
        return 0.0
    base = math.log(float(decoder.config["logbase"]))
    # Segment.ascore is the linear acoustic likelihood (logmath_exp'd); back to log units.
    cost = -sum(math.log(max(seg.ascore, 1e-300)) for seg in words) / base / frames
    return _clamp(1.0 / (1.0 + math.exp((cost - GRAMMAR_FIT_MID) / GRAMMAR_FIT_SCALE)))


def _clamp(value: float) -> float:
    return round(min(1.0, max(0.0, value)), 3)
