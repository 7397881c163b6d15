"""Plain-text cleaning, language detection and the run-level quarantine threshold."""

from __future__ import annotations

import pytest

from smarketing_tasks.ingest.report import QuarantineThresholdExceeded, check_quarantine_shares
from smarketing_tasks.responses.text import clean_text, detect_language, detect_languages


@pytest.mark.parametrize(("raw", "clean"), [
    ("<p>Great <b>tee</b>!</p>", "Great tee!"),
    ("Nice<script>alert('x')</script> fit", "Nice fit"),
    ("&lt;script&gt;alert(1)&lt;/script&gt;ok", "ok"),  # markup that arrived entity-encoded
    ("Line one<br>Line two", "Line one\nLine two"),
    ("zero\u200bwidth\u202eflip", "zerowidthflip"),
    ("tab\tand   spaces \x07bell", "tab and spaces bell"),
    ("Cafe\u0301", "Café"),  # NFC
    ("5 < 6 and 7 > 3", "5 < 6 and 7 > 3"),  # comparisons are not tags
    ("😍🔥", "😍🔥"),
    ("   ", None),
    ("<img src=x onerror=alert(1)>", None),
    (None, None),
])
def test_clean_text(raw, clean):
    assert clean_text(raw) == clean


def test_language_detection_is_deterministic_and_says_nothing_when_unsure():
    english = "Absolutely love this tee, the fabric is soft and it keeps its shape."
    assert [detect_language(english) for _ in range(5)] == ["en"] * 5
    assert detect_language("Qualität ist super, schnelle Lieferung, gerne wieder!") == "de"
    assert detect_language("Good.") is None
    assert detect_language("👍👍👍👍👍👍👍👍👍👍👍👍👍👍👍👍👍👍👍👍👍") is None
    assert detect_language(english, min_letters=500) is None


def test_quarantine_threshold_counts_only_runs_big_enough_to_judge():
    small = {"dataset": "reviews", "source": "shop", "rows_read": 3, "rows_quarantined": 2}
    big = {"dataset": "reviews", "source": "shop", "rows_read": 1000, "rows_quarantined": 300}
    check_quarantine_shares([small], max_share=0.2, min_rows=100)
    with pytest.raises(QuarantineThresholdExceeded, match="reviews from shop"):
        check_quarantine_shares([small, big], max_share=0.2, min_rows=100)


def test_languages_on_several_processes_match_one():
    phrases = ["Absolutely love this tee, the fabric is soft.", "Sehr schönes Shirt, angenehmer Stoff.",
               "Très bonne qualité, livraison rapide.", "Good."]
    texts = [f"{phrases[i % 4]} {'x' * (i % 7)}" for i in range(2_400)] + phrases * 100  # distinct and repeated
    assert detect_languages(texts, processes=2) == detect_languages(texts, processes=1)


def test_the_fast_detector_answers_when_sure_and_langdetect_decides_when_it_is_not():
    from smarketing_tasks.responses.text import FAST_DETECTOR_CONFIDENCE, _fast_identifier, _langdetect

    sure = "Die Jacke ist warm, aber der Reißverschluss ist nach zwei Wochen kaputt gegangen."
    assert _fast_identifier().classify(sure)[1] >= FAST_DETECTOR_CONFIDENCE and detect_language(sure) == "de"
    unsure = "Schnelle Lieferung, tolle Qualität"  # py3langid: de at ~0.65, langdetect: de
    assert _fast_identifier().classify(unsure)[1] < FAST_DETECTOR_CONFIDENCE
    assert detect_language(unsure) == _langdetect(unsure) == "de"


def test_only_a_bounded_prefix_is_read_and_identical_texts_are_detected_once():
    from smarketing_tasks.responses.text import DETECT_PREFIX_CHARS

    english = "The hoodie is warm and the stitching is neat, I wear it every day. "
    padded = english * (DETECT_PREFIX_CHARS // len(english) + 1)
    assert detect_language(padded + "Qualität, schöne Farbe, gerne wieder. " * 100) == "en"  # German past the prefix
    texts = [english, "Sehr schönes Shirt, angenehmer Stoff und gute Passform.", english, "Good."]
    assert detect_languages(texts) == ["en", "de", "en", None]


def test_a_response_later_than_the_run_is_rejected_if_a_source_delivers_it():
    """Sources only deliver rows up to the run's time; should one not, the row is quarantined, not stored."""
    from datetime import UTC, datetime

    import pandas as pd

    from smarketing_tasks.responses.settings import ResponsesSettings
    from smarketing_tasks.responses.validate import validate_responses

    until = datetime(2026, 6, 1, tzinfo=UTC)
    frame = pd.DataFrame({"review_id": ["now", "later"], "rating": ["5", "5"], "body": ["ok", "ok"],
                          "created_at": ["2026-05-31T10:00:00Z", "2099-01-01T00:00:00Z"]})
    checked = validate_responses("reviews", frame, until, ResponsesSettings(), [])
    assert list(checked.clean["review_id"]) == ["now"]
    assert [(row, rule) for row, rule, _ in checked.rejects] == [(1, "future_created_at")]
    assert checked.max_change == datetime(2026, 5, 31, 10, tzinfo=UTC)  # the watermark never jumps ahead


UNPACK_TEXTS = ["Great quality, fast delivery!", "Sehr gute Qualität, schnelle Lieferung, gerne wieder.",
                "C'est un très bon produit, je le recommande.", "Muy buen producto", "Good.", "ok", "",
                "Отличный товар, быстрая доставка", "12345", "ciao bella roba davvero"]


def test_unpacked_language_models_answer_exactly_as_the_packaged_ones(tmp_path):
    """The copies a run loads in milliseconds are the packaged models: same languages, scores and probabilities."""
    import langdetect.detector_factory as factory
    from py3langid.langid import _load_identifier

    from smarketing_tasks.responses.text import _unpacked_identifier, _unpacked_profiles

    packaged = _load_identifier(norm_probs=True)
    unpacked, from_copy = _unpacked_identifier(tmp_path), _unpacked_identifier(tmp_path)
    for text in UNPACK_TEXTS:
        assert unpacked.classify(text) == from_copy.classify(text) == packaged.classify(text), text

    profiles = factory.DetectorFactory()
    profiles.load_profile(factory.PROFILES_DIRECTORY)
    _unpacked_profiles(tmp_path)
    copy = _unpacked_profiles(tmp_path)
    assert copy.langlist == profiles.langlist
    assert set(copy.word_lang_prob_map) == set(profiles.word_lang_prob_map)
    assert all(copy.word_lang_prob_map[w] == p for w, p in profiles.word_lang_prob_map.items())
    factory.DetectorFactory.seed = 0
    for text in [t for t in UNPACK_TEXTS if len(t) > 5 and not t.isdigit()]:  # langdetect finds features in these
        answers = []
        for source in (profiles, copy):
            detector = source.create()
            detector.append(text)
            answers.append([(found.lang, found.prob) for found in detector.get_probabilities()])
        assert answers[0] == answers[1], text
    # Each copy is published whole (no half-written scratch folder is left behind).
    assert sorted(p.name.split("-")[0] for p in tmp_path.iterdir()) == ["langdetect", "py3langid"]
    assert all((p / "complete").exists() for p in tmp_path.iterdir())


def test_a_damaged_copy_is_refused_and_an_unwritable_cache_falls_back_to_the_packaged_model(tmp_path, monkeypatch):
    import numpy as np

    import smarketing_tasks.responses.text as text

    text._unpacked_profiles(tmp_path)
    (folder,) = tmp_path.iterdir()
    np.save(folder / "probabilities.npy", np.zeros((3, 55)))  # as if cut short
    with pytest.raises(ValueError, match="damaged"):
        text._unpacked_profiles(tmp_path)

    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setattr(text, "_model_cache_dir", lambda: blocker / "cache")  # cannot be created
    text._fast_identifier.cache_clear()
    try:
        assert text._fast_identifier().classify("Sehr gute Qualität, schnelle Lieferung, gerne wieder.")[0] == "de"
    finally:
        text._fast_identifier.cache_clear()
