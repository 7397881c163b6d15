"""Customer text made safe to store and show: markup removed, control characters dropped, language noted.

Review and post bodies end up in testimonials, reports and BI tools. Storing them as plain text (tags
stripped, entities decoded, script and style blocks dropped with their content) means no later reader
has to trust that every renderer escapes. SQL fragments need nothing here: rows travel by COPY and
bound parameters, never by string-built SQL.
"""

from __future__ import annotations

import html
import re
import unicodedata
from functools import cache

_BLOCKS = re.compile(r"<\s*(script|style|iframe|object|embed)\b[^>]*>.*?(<\s*/\s*\1\s*>|$)", re.I | re.S)
_TAG = re.compile(r"<\s*/?\s*[a-zA-Z!][^>]*>")
_BREAK_TAG = re.compile(r"<\s*(br|/p|/div|/li)\s*/?\s*>", re.I)
# C0/C1 control characters except tab and newline; also zero-width and bidi overrides used to disguise text.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]")
_SPACES = re.compile(r"[ \t]+")
_NEWLINES = re.compile(r"\n{3,}")
_LETTER = re.compile(r"[^\W\d_]", re.U)


def clean_text(value: str | None) -> str | None:
    """Plain, NFC-normalised text without markup or control characters; None when nothing is left."""
    if value is None:
        return None
    text = value.replace("\r\n", "\n").replace("\r", "\n")
    text = _BLOCKS.sub(" ", text)
    text = _BREAK_TAG.sub("\n", text)
    text = _TAG.sub("", text)
    text = html.unescape(text)
    text = _TAG.sub("", _BLOCKS.sub(" ", text))  # markup that arrived entity-encoded
    text = unicodedata.normalize("NFC", _CONTROL.sub("", text))
    text = _NEWLINES.sub("\n\n", "\n".join(_SPACES.sub(" ", line).strip() for line in text.split("\n"))).strip()
    return text or None


# py3langid answers in ~0.1 ms a text; below this confidence (short or mixed texts, where its normalised
# probabilities spread out) the seeded langdetect decides, as it did alone before issue 9 (~1.7 ms a text).
FAST_DETECTOR_CONFIDENCE = 0.9
# Language shows in the first sentences; a longer text costs more and says nothing new.
DETECT_PREFIX_CHARS = 1_000


@cache
def _fast_identifier():
    from py3langid.langid import _load_identifier

    return _load_identifier(norm_probs=True)  # the model bundled with the package, loaded once per process


@cache
def _detector_ready() -> bool:
    from langdetect import DetectorFactory

    DetectorFactory.seed = 0  # langdetect is random by default; the same text must give the same answer
    return True


def _langdetect(text: str) -> str | None:
    _detector_ready()
    import langdetect.detector_factory as factory
    from langdetect import LangDetectException

    if factory._factory is None:
        factory.init_factory()
    detector = factory._factory.create()
    detector.n_trial = 3  # 3 sampling trials instead of 7: 1.6x faster, same answers on review-length texts
    detector.append(text)
    try:
        best = detector.get_probabilities()[0]
    except (LangDetectException, IndexError):
        return None
    if best.prob < 0.8:
        return None
    return best.lang.split("-")[0]


def detect_language(text: str | None, min_letters: int = 20) -> str | None:
    """ISO 639-1 code of ``text``, or None when it is too short or the detectors are unsure.

    py3langid first (fast, deterministic); when it is less than ``FAST_DETECTOR_CONFIDENCE`` sure, the
    seeded langdetect, which is right more often on short texts, decides (None below 0.8).
    """
    if not text or len(_LETTER.findall(text)) < min_letters:
        return None
    prefix = text[:DETECT_PREFIX_CHARS]
    language, confidence = _fast_identifier().classify(prefix)
    if confidence >= FAST_DETECTOR_CONFIDENCE:
        return str(language).split("-")[0]
    return _langdetect(prefix)


def _detect_distinct(texts: list[str], min_letters: int) -> list[str | None]:
    """Identical texts are detected once: real reviews repeat a lot ("Great quality, fast delivery!")."""
    found: dict[str, str | None] = {}
    out = []
    for text in texts:
        if text not in found:
            found[text] = detect_language(text, min_letters)
        out.append(found[text])
    return out


def detect_languages(texts: list[str], min_letters: int = 20, processes: int = 1) -> list[str | None]:
    """``detect_language`` for many texts; with ``processes`` > 1 and many distinct texts, on that many cores.

    Each distinct text is detected once. The answers are the same either way (both detectors are deterministic).
    """
    distinct = list(dict.fromkeys(texts))
    if processes <= 1 or len(distinct) < 2_000:
        return _detect_distinct(texts, min_letters)
    from concurrent.futures import ProcessPoolExecutor
    from functools import partial

    with ProcessPoolExecutor(max_workers=processes) as pool:
        answers = dict(zip(distinct, pool.map(partial(detect_language, min_letters=min_letters), distinct,
                                              chunksize=2_000), strict=True))
    return [answers[t] for t in texts]
