"""The lukewarm rule (seed 004: "Good" is the most dangerous word), on hand-written cases and real review text."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from smarketing_tasks.scoring.score import feedback
from smarketing_tasks.scoring.settings import ScoringSettings
from smarketing_tasks.scoring.text import analyse_texts, detect_language, is_faint

CORPUS = Path(__file__).resolve().parents[2] / "data" / "review_corpus.csv"


def _feedback(rating=None, text=None, nps=None, comment=None, review_age=1.0, nps_age=1.0, language=None,
              settings=None):
    frame = pd.DataFrame([{"last_rating": rating, "review_text": text, "review_age_days": review_age,
                           "review_language": language, "nps_score": nps, "nps_comment": comment,
                           "nps_age_days": nps_age if nps is not None else None}])
    return feedback(frame, settings or ScoringSettings()).iloc[0]


@pytest.mark.parametrize(("rating", "text"), [
    (4, "Good."), (4, "good"), (3, "ok"), (4, "Fine"), (3, "it was alright"), (4, "Okay"), (4, None),
    (3, "Does the job."), (4, "Pretty good overall"),
])
def test_three_or_four_stars_with_neutral_words_are_lukewarm(rating, text):
    result = _feedback(rating, text)
    assert result.is_lukewarm
    assert result.nps_class == "passive"


@pytest.mark.parametrize("text", ["Good.", "ok", "Fine", "Nice", "it was alright", "not bad"])
def test_five_stars_with_faint_words_are_lukewarm_not_promoters(text):
    result = _feedback(5, text)
    assert result.is_lukewarm
    assert result.nps_class == "passive"


@pytest.mark.parametrize("text", ["Great!", "Love it!", "Absolutely love this, told all my friends about it."])
def test_five_stars_with_real_enthusiasm_are_promoters(text):
    result = _feedback(5, text)
    assert not result.is_lukewarm
    assert result.nps_class == "promoter"


def test_four_stars_with_enthusiastic_words_stay_passive_but_not_lukewarm():
    result = _feedback(4, "Really love the design and it feels great in the hand, only wish it came in green.")
    assert not result.is_lukewarm
    assert result.nps_class == "passive"


@pytest.mark.parametrize(("rating", "text"), [(1, "Good."), (2, "ok"), (4, "Terrible, broke after a week.")])
def test_low_stars_or_negative_words_are_detractors_not_lukewarm(rating, text):
    result = _feedback(rating, text)
    assert not result.is_lukewarm
    assert result.nps_class == "detractor"


def test_the_lukewarm_star_band_is_a_setting():
    import dataclasses

    narrow = dataclasses.replace(ScoringSettings(), lukewarm_stars_min=4)
    assert _feedback(3, "ok").is_lukewarm
    three = _feedback(3, "ok", settings=narrow)
    assert not three.is_lukewarm and three.nps_class == "passive"
    assert _feedback(4, "ok", settings=narrow).is_lukewarm


def test_nps_answer_classes_and_faint_comment():
    assert _feedback(nps=10, comment="Brilliant service, I recommend you to everyone").nps_class == "promoter"
    assert _feedback(nps=9, comment="fine").is_lukewarm
    assert _feedback(nps=8).is_lukewarm  # a passive answer with no words
    assert _feedback(nps=6, comment="ok").nps_class == "detractor"


def test_latest_feedback_wins_between_review_and_nps():
    newer_review = _feedback(5, "Great!", nps=7, comment="ok", review_age=1, nps_age=30)
    assert newer_review.feedback_from == "review" and newer_review.nps_class == "promoter"
    newer_nps = _feedback(5, "Great!", nps=7, comment="ok", review_age=30, nps_age=1)
    assert newer_nps.feedback_from == "nps" and newer_nps.is_lukewarm


def test_non_english_text_is_flagged_not_scored():
    result = _feedback(5, "Sehr gut, schnelle Lieferung, gerne wieder.")
    assert result.feedback_language == "de"
    assert not result.feedback_scored
    assert pd.isna(result.feedback_compound)
    assert not result.is_lukewarm  # VADER's 0.0 on German must not read as "neutral words"
    assert result.nps_class == "promoter"
    # On a passive level, a long foreign text may be glowing: flagged, not lukewarm; a short one is lukewarm.
    assert not _feedback(4, "Super Qualität, passt perfekt und kam schnell an.").is_lukewarm
    assert _feedback(4, "Gut.", language="de").is_lukewarm
    # A language the source already knows is trusted over detection.
    assert _feedback(4, "Good.", language="fr").feedback_language == "fr"


def test_short_texts_do_not_go_to_the_unreliable_detector():
    assert detect_language("Good.") == "en"  # langdetect alone says Somali
    assert detect_language("ok") == "en"
    assert detect_language("Gut") == "und"
    assert detect_language("Muy bueno, llegó rápido y funciona perfecto") == "es"


def test_faint_words_and_thresholds():
    assert is_faint("Good.", 0.44, 4, 0.55)
    assert not is_faint("Excellent", 0.57, 4, 0.55)
    assert not is_faint("Terrible", -0.48, 4, 0.55, -0.3)
    # The threshold is a setting: with a stricter idea of enthusiasm, "Excellent" is faint too.
    assert is_faint("Excellent", 0.57, 4, 0.6)


def test_identical_texts_are_analysed_once_and_agree():
    frame = analyse_texts(["Good."] * 3 + ["Love it!"])
    assert frame["compound"].tolist()[:3] == [frame["compound"].iloc[0]] * 3
    assert frame["faint"].tolist() == [True, True, True, False]


def test_lukewarm_rule_on_real_review_text():
    """A corpus of realistic reviews, labelled by hand; the rule must agree on at least 95% of them and on
    every lukewarm 'Good.'-style answer (misses are listed in docs/scoring.md)."""
    corpus = pd.read_csv(CORPUS, keep_default_na=False)
    result = feedback(pd.DataFrame({"last_rating": corpus["rating"], "review_age_days": 1.0,
                                    "review_text": corpus["text"].where(corpus["text"] != "", None)}),
                      ScoringSettings())
    foreign = ~result["feedback_scored"] & result["feedback_language"].fillna("und").ne("und") \
        & result["feedback_language"].ne("en")
    got = pd.Series(result["nps_class"]).where(~result["is_lukewarm"], "lukewarm").where(~foreign, "flagged")
    agreement = (got.to_numpy() == corpus["expected"].to_numpy()).mean()
    assert agreement >= 0.95, corpus.assign(got=got)[got.to_numpy() != corpus["expected"].to_numpy()]
    short_faint = corpus["text"].str.lower().str.strip(".!").isin(["good", "ok", "fine", "nice", "it was alright"])
    assert (got[short_faint & (corpus["rating"] >= 3)] == "lukewarm").all()
    assert set(corpus["expected"]) == {"lukewarm", "promoter", "passive", "detractor", "flagged"}


def test_text_signals_in_forked_processes_equal_one_process(monkeypatch):
    """A large batch's signals spread over processes are the ones a single process computes, in the same order
    (repeated texts included; English, other languages, short and empty texts)."""
    from smarketing_tasks.scoring import text

    base = ["Good.", "Absolutely love this jacket, fits perfectly", "Terrible. Broke after a week.",
            "Das Produkt ist leider nach zwei Wochen kaputt gegangen, sehr enttäuschend.",
            "Très bon produit, je le recommande à toutes mes amies.", "ok", "", "Best tee ever",
            "Not what I expected, the colour is off and the seams came loose"]
    texts = [f"{t} {n}" if t and n % 3 else t for n in range(120) for t in base]  # distinct ones and repeats
    chunks_seen: list[int] = []
    real_in_processes = text.in_processes

    def counting(work, items, processes):
        chunks_seen.append(processes)
        return real_in_processes(work, items, processes)

    alone = text.text_signals(texts)
    monkeypatch.setattr(text, "PARALLEL_MIN_TEXTS", 10)
    monkeypatch.setattr(text, "in_processes", counting)
    parallel = text.text_signals(texts, processes=3)
    assert chunks_seen == [3]  # the pool ran
    assert parallel == alone
    assert {language for language, _ in alone} >= {"en", "de", "fr", "und"}
    monkeypatch.setattr(text, "PARALLEL_MIN_TEXTS", 10_000)
    chunks_seen.clear()
    assert text.text_signals(texts, processes=3) == alone and chunks_seen == []  # below the threshold: one process
