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
from pathlib import Path

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


# py3langid ships its model LZMA-compressed (4.5 MB, 68 MB unpacked): unpacking it took 0.5-1.5 s in every
# run that saw a review. It is unpacked once into the data directory and memory-mapped from there.
_MODEL_ARRAYS = ("ptc", "pc", "classes", "nextmove", "nextmove_row", "out_feat")


@cache
def _fast_identifier():
    """py3langid's bundled model with normalised probabilities, loaded once per process."""
    from py3langid.langid import _load_identifier

    try:
        return _unpacked_identifier(_model_cache_dir())
    # No writable data directory, a damaged copy, or a py3langid whose internals moved: its own loader.
    except (OSError, ValueError, KeyError, EOFError, TypeError, AttributeError):
        return _load_identifier(norm_probs=True)


def _model_cache_dir() -> Path:
    from smarketing_tasks.paths import DATA_DIR

    return DATA_DIR / "cache"


def _unpacked_identifier(cache_dir: Path):
    """The same identifier as ``_load_identifier(norm_probs=True)``, from arrays unpacked under ``cache_dir``
    (keyed by the packed model's size and time, so an upgraded package unpacks its own)."""
    import numpy as np
    from py3langid import langid, modelio

    packed = langid.MODEL_DIR / langid.MODEL_FILE
    stat = packed.stat()
    folder = cache_dir / f"py3langid-{stat.st_size}-{stat.st_mtime_ns}"
    if not (folder / "complete").exists():
        _unpack_model(packed, folder)
    arrays = {name: np.load(folder / f"{name}.npy", mmap_mode="r", allow_pickle=False) for name in _MODEL_ARRAYS}
    # As py3langid's from_model_file builds it; the large score table stays mapped (pages read on use).
    return langid.LanguageIdentifier(
        np.asarray(arrays["ptc"]), np.array(arrays["pc"]), arrays["classes"].tolist(),
        modelio._to_array(arrays["nextmove"]), arrays["out_feat"].tolist(), norm_probs=True,
        tk_row=modelio._to_array(arrays["nextmove_row"]))


def _unpack_model(packed: Path, folder: Path) -> None:
    import lzma
    import shutil
    import tempfile

    import numpy as np

    with tempfile.TemporaryFile() as npz:
        with lzma.open(packed) as source:
            shutil.copyfileobj(source, npz, length=1 << 20)
        npz.seek(0)
        with np.load(npz, allow_pickle=False) as data:
            _publish(folder, {f"{name}.npy": data[name] for name in _MODEL_ARRAYS})


def _publish(folder: Path, files: dict) -> None:
    """Write ``files`` (bytes, or arrays saved as .npy) into a private folder and rename it to ``folder``:
    a concurrent run sees every file or none."""
    import shutil
    import tempfile

    import numpy as np

    folder.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=folder.name + ".", dir=folder.parent))
    try:
        for name, content in files.items():
            if isinstance(content, bytes):
                (scratch / name).write_bytes(content)
            else:
                np.save(scratch / name, content, allow_pickle=False)
        (scratch / "complete").touch()
        scratch.chmod(0o755)
        try:
            scratch.rename(folder)
        except OSError:  # another process put its copy there first
            if not (folder / "complete").exists():
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def prepare_langdetect() -> None:
    """Give langdetect its profiles from the unpacked copy (0.04-0.1 s instead of 0.5 s a process) and seed it;
    for other modules that call ``langdetect.detect`` themselves."""
    _detector_ready()


@cache
def _detector_ready() -> bool:
    """Seed langdetect and give it its profiles, from the unpacked copy when there is one (see below)."""
    import langdetect.detector_factory as factory
    from langdetect import DetectorFactory

    DetectorFactory.seed = 0  # langdetect is random by default; the same text must give the same answer
    if factory._factory is None:
        try:
            factory._factory = _unpacked_profiles(_model_cache_dir())
        except (OSError, ValueError, EOFError, KeyError):
            factory.init_factory()
    return True


class _ProfileRows(dict):
    """langdetect's n-gram → per-language probabilities, each list read from a mapped table when first asked
    for: a text needs a few hundred of the 87,598 n-grams, and building them all took 0.5 s a run."""

    def __init__(self, rows: dict[str, int], table) -> None:
        super().__init__(rows)
        self._table = table
        self._lists: dict[str, list[float]] = {}

    def __getitem__(self, word: str) -> list[float]:
        found = self._lists.get(word)
        if found is None:
            found = self._lists[word] = self._table[dict.__getitem__(self, word)].tolist()
        return found


def _unpacked_profiles(cache_dir: Path):
    """A langdetect factory equal to ``init_factory()``'s (same languages in the same order, the same float64
    probabilities), from a copy under ``cache_dir`` keyed by the profile files as listed."""
    import hashlib
    import os

    import langdetect.detector_factory as factory
    import numpy as np

    names = os.listdir(factory.PROFILES_DIRECTORY)  # the order init_factory gives the languages
    listing = "\n".join(f"{n}:{os.stat(os.path.join(factory.PROFILES_DIRECTORY, n)).st_size}" for n in names)
    folder = cache_dir / f"langdetect-{hashlib.sha256(listing.encode()).hexdigest()[:16]}"
    if not (folder / "complete").exists():
        loaded = factory.DetectorFactory()
        loaded.load_profile(factory.PROFILES_DIRECTORY)
        words = list(loaded.word_lang_prob_map)
        if any("\n" in word for word in words):
            raise ValueError("an n-gram holds a newline: the word list cannot be one per line")
        _publish(folder, {"ngrams.txt": "\n".join(words).encode(), "languages.txt": "\n".join(loaded.langlist).encode(),
                          "probabilities.npy": np.array([loaded.word_lang_prob_map[w] for w in words], np.float64)})
    # A word list and a dict built from it load ~4x faster than the same dict unmarshalled.
    words = (folder / "ngrams.txt").read_bytes().decode().split("\n")
    languages = (folder / "languages.txt").read_bytes().decode().split("\n")
    table = np.load(folder / "probabilities.npy", mmap_mode="r", allow_pickle=False)
    if table.ndim != 2 or table.shape[0] != len(words) or table.shape[1] < len(languages):
        raise ValueError(f"{folder} is damaged: {table.shape} probabilities for {len(words)} n-grams")
    unpacked = factory.DetectorFactory()
    unpacked.word_lang_prob_map = _ProfileRows(dict(zip(words, range(len(words)), strict=True)), table)
    unpacked.langlist = languages
    return unpacked


def _langdetect(text: str) -> str | None:
    _detector_ready()
    import langdetect.detector_factory as factory
    from langdetect import LangDetectException

    if factory._factory is None:  # reset since (tests do)
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
