"""What customers said: language, VADER sentiment, and whether the words are faint ("good", "ok", "fine").

VADER is an English lexicon: on other languages it returns 0 ("neutral"), which would wrongly read as
lukewarm. So each text's language is noted first; only English text gets a sentiment, other languages are
flagged (``scored = False``) and left to a human, never guessed.

Language detection: ``langdetect`` costs ~2 ms a text (too slow for 300,000 reviews) and is unreliable on
the very short texts that matter most here ("Good." comes out as Somali). So a fast path decides first:
ASCII text whose words are mostly English function words or VADER lexicon words is English; a short
text made only of such words is English too. Everything else goes to ``langdetect`` (seeded, so results
are repeatable); too short and unknown is ``und`` (undetermined) and not scored.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd

# Faint words and phrases of a lukewarm answer (seed 004: "Good" is the most dangerous word). Compared after
# lower-casing and stripping punctuation; short texts made only of these words are faint too.
FAINT_PHRASES = frozenset({
    "good", "ok", "okay", "k", "fine", "alright", "all right", "it was alright", "it was ok", "it was okay",
    "it was fine", "it was good", "its ok", "its fine", "its good", "it s ok", "it's ok", "not bad", "decent",
    "average", "meh", "so so", "nothing special", "as expected", "as described", "does the job",
    "does what it says", "works", "it works", "fair", "acceptable", "satisfactory", "nice", "good enough",
    "pretty good", "quite good", "good product", "good service", "fine thanks", "all good", "no complaints",
    "could be better", "ok i guess", "good i guess", "fine i guess", "pretty ok", "reasonable", "adequate",
})
FAINT_WORDS = frozenset({
    "good", "ok", "okay", "fine", "alright", "decent", "average", "meh", "nice", "fair", "acceptable",
    "satisfactory", "reasonable", "adequate", "enough", "pretty", "quite", "it", "was", "is", "its", "s",
    "the", "a", "product", "service", "item", "thanks", "thank", "you", "i", "guess", "so", "all", "right",
    "not", "bad", "works", "expected", "as", "described", "does", "job", "what", "says", "overall", "really",
    "very",
})
_ENGLISH_WORDS_TEXT = """
a about after again all also am an and any are as at be been before being but by can could did do does
doing don down during each few for from further had has have having he her here hers him his how i if in
into is it its itself just me more most my no nor not now of off on once only or other our out over own
same she should so some such than that the their them then there these they this those through to too
under until up very was we were what when where which while who whom why will with would you your
arrived arrive delivery delivered shipping ordered order bought product item price quality size fit
months weeks days week day month time received package box again really still though"""
ENGLISH_FUNCTION_WORDS = frozenset(_ENGLISH_WORDS_TEXT.split())
# Function words that are not also common words of other Latin-script languages ("a", "in", "is", "so",
# "an", "die", "me", "no", "on" are left out): a fifth of a sentence in these is English, whatever its nouns.
_GLUE_TEXT = """the and it was with this that for my but have has had they would
could should very i've it's i'm we're don't didn't doesn't isn't wasn't of from after again really just
been were are what which when our your their"""
ENGLISH_ONLY_GLUE = frozenset(_GLUE_TEXT.split())
_WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?", re.UNICODE)


@lru_cache(maxsize=1)
def _analyzer():
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer()


@lru_cache(maxsize=1)
def _english_vocabulary() -> frozenset[str]:
    return frozenset(_analyzer().lexicon) | ENGLISH_FUNCTION_WORDS | FAINT_WORDS


def normalize(text: str) -> str:
    """Lower case, punctuation and repeated spaces removed: the form faint phrases are compared in."""
    text = unicodedata.normalize("NFKC", text).lower().replace("’", "'")
    return " ".join(_WORD.findall(text.replace("'", " ")))


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def detect_language(text: str, min_words_for_detector: int = 3) -> str:
    """ISO 639-1 code, or ``und`` when the text is too short or too unusual to say."""
    tokens = words(text)
    if not tokens:
        return "und"
    vocabulary = _english_vocabulary()
    known = sum(t.replace("'", "") in vocabulary or t in vocabulary for t in tokens) / len(tokens)
    glue = sum(t in ENGLISH_ONLY_GLUE for t in tokens) / len(tokens)
    ascii_text = text.replace("’", "'").isascii()
    if ascii_text and (known >= 0.6 or (len(tokens) < min_words_for_detector and known == 1.0)
                       or (len(tokens) >= 5 and glue >= 0.2)):
        return "en"
    if len(tokens) < min_words_for_detector:
        return "und"
    from langdetect import LangDetectException, detect

    from smarketing_tasks.responses.text import prepare_langdetect

    prepare_langdetect()  # seeded (langdetect is random otherwise), profiles from the unpacked copy
    try:
        return detect(text)
    except LangDetectException:
        return "und"


def is_faint(text: str, compound: float, short_words: int, strong_compound: float,
             negative_compound: float = -0.3) -> bool:
    """Faint: a known lukewarm phrase, or a short text with no strong feeling (clearly negative is not faint)."""
    plain = normalize(text)
    if not plain or compound <= negative_compound:
        return False
    tokens = plain.split()
    # Faint words stay faint whatever VADER's intensifiers make of them ("pretty good overall" scores 0.73).
    if plain in FAINT_PHRASES or all(t in FAINT_WORDS for t in tokens):
        return True
    return len(tokens) <= short_words and compound < strong_compound


@dataclass(frozen=True)
class TextRules:
    """Thresholds of the lukewarm rule, read from ScoringSettings."""

    short_words: int = 4
    strong_compound: float = 0.55
    negative_compound: float = -0.3


def analyse_texts(texts: Iterable[str | None], rules: TextRules = TextRules(),
                  languages: Iterable[str | None] | None = None,
                  sentiments: Iterable[float | None] | None = None) -> pd.DataFrame:
    """One row per text: language, scored (English), compound (NaN when not scored), faint, word count.

    Identical texts are analysed once (real reviews repeat a lot: "Great!", "Good."), which keeps a batch of
    a few hundred thousand texts within seconds. ``languages`` may carry a language the source already knows.
    ``sentiments`` may carry a VADER compound computed once per text elsewhere (smarketing.review_signals):
    a float (or None for "not scored there") is used instead of running VADER; ``...`` (Ellipsis) or a
    missing list means "not known, compute it".
    """
    texts = ["" if t is None or (isinstance(t, float) and np.isnan(t)) else str(t) for t in texts]
    known = list(languages) if languages is not None else [None] * len(texts)
    given_sentiments = list(sentiments) if sentiments is not None else [...] * len(texts)
    # Most customers wrote nothing: only the texts are looked at, the rest keep the columns' defaults.
    present = [i for i, text in enumerate(texts) if text]
    cache: dict[tuple, tuple[str, bool, float, bool, int]] = {}
    hits = []
    for i in present:
        text, given, sentiment = texts[i], known[i], given_sentiments[i]
        given = given if isinstance(given, str) and given else None
        if sentiment is not ... and sentiment is not None and sentiment != sentiment:
            sentiment = None  # NaN: not scored there
        key = (text, given, sentiment)
        hit = cache.get(key)
        if hit is None:
            hit = _analyse_one(text.strip(), given, sentiment, rules)
            cache[key] = hit
        hits.append(hit)
    n = len(texts)
    columns = {"language": np.full(n, "und", dtype=object), "scored": np.zeros(n, bool),
               "compound": np.full(n, np.nan), "faint": np.zeros(n, bool), "words": np.zeros(n, "int64")}
    if hits:
        for values, found in zip(columns.values(), zip(*hits, strict=True), strict=True):
            values[present] = found
    return pd.DataFrame(columns) if n else pd.DataFrame(
        [], columns=list(columns)).astype({"scored": "bool", "compound": "float64", "faint": "bool", "words": "int64"})


# What computed a stored text signal (smarketing.text_signals): change it when detection or VADER change,
# and stored signals are recomputed instead of read.
SIGNAL_METHOD = "scoring-text-1"


# Below this many distinct texts a pool costs more than it saves (forking, pickling, a lexicon per process).
PARALLEL_MIN_TEXTS = 4_000


def text_signals(texts: Sequence[str], processes: int = 1) -> list[tuple[str, float | None]]:
    """(language, VADER compound or None when not English) per text: the part of ``analyse_texts`` worth
    storing (the detector and VADER), from which it gives the same answer when passed back as given.

    With ``processes`` > 1 and at least ``PARALLEL_MIN_TEXTS`` distinct texts, the distinct texts are split
    into that many contiguous chunks analysed in forked processes; each text's answer depends on the text
    alone (VADER is a lexicon, the detectors are seeded), so the answers equal one process's.
    """
    distinct = list(dict.fromkeys(texts))
    if processes > 1 and len(distinct) >= PARALLEL_MIN_TEXTS:
        answers = dict(zip(distinct, in_processes(_signals_of_distinct, distinct, processes), strict=True))
    else:
        answers = dict(zip(distinct, _signals_of_distinct(distinct), strict=True))
    return [answers[t] for t in texts]


def _signals_of_distinct(texts: list[str]) -> list[tuple[str, float | None]]:
    analysed = analyse_texts(texts)
    return [(language, float(compound) if scored else None) for language, scored, compound in
            zip(analysed["language"], analysed["scored"], analysed["compound"], strict=True)]


def in_processes(work, items: list, processes: int) -> list:
    """``work(chunk)`` over ``processes`` contiguous chunks of ``items`` in forked processes, results in order.

    Fork, not spawn: the children start with the parent's imported modules and loaded models (VADER's lexicon,
    the detectors' tables), so they pay no import. Used above a size threshold only."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    size = -(-len(items) // processes)
    chunks = [items[i:i + size] for i in range(0, len(items), size)]
    _analyzer()  # loaded once here, inherited by every child
    with ProcessPoolExecutor(max_workers=len(chunks), mp_context=multiprocessing.get_context("fork")) as pool:
        return [answer for part in pool.map(work, chunks) for answer in part]


def _analyse_one(stripped: str, given: str | None, sentiment, rules: TextRules) -> tuple[str, bool, float, bool, int]:
    if not stripped:
        return ("und", False, float("nan"), False, 0)
    language = (given or detect_language(stripped)).lower()
    language = language if language == "und" else language[:2]
    n_words = len(words(stripped))
    if language != "en" or sentiment is None:  # not English, or the stored signal did not score it
        return (language, False, float("nan"), False, n_words)
    compound = float(_analyzer().polarity_scores(stripped)["compound"]) if sentiment is ... else float(sentiment)
    return ("en", True, compound,
            is_faint(stripped, compound, rules.short_words, rules.strong_compound, rules.negative_compound), n_words)


def excerpt(text: str | None, limit: int = 80) -> str:
    """The customer's words, trimmed for a reason line or a follow-up card."""
    if not text:
        return ""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"
