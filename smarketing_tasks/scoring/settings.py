"""Settings of advocate scoring (``smarketing_score``); every field has a working default.

Set them as ``SMARKETING_<FIELD>`` environment variables or as keys of the Airflow Variable
``smarketing_settings`` (see smarketing_tasks.config). docs/scoring.md explains each rule they tune.
"""

from __future__ import annotations

from dataclasses import dataclass

from smarketing_tasks.scoring.text import TextRules


@dataclass(frozen=True)
class ScoringSettings:
    # --- fan-out -----------------------------------------------------------------------------------------
    partitions: int = 4  # customers are split by hash(customer_id) mod partitions; one mapped task each
    input_builders: int = 2  # statements building a full run's inputs at once (each on one database core)

    # --- incremental runs (docs/scoring.md, "What a run rescores") ------------------------------------------
    full_rescore: bool = False  # rescore every customer on every run (else only changed and time-due ones)
    model_refit_days: int = 7  # refit the value model (and RFM cut points) when the last fit is this old ...
    model_refit_changed_share: float = 0.10  # ... or when customers with changed inputs since reach this share
    rescore_horizon_days: int = 1095  # how far ahead a customer's next time-boundary date is looked for

    # --- the lukewarm rule (seed 004) ----------------------------------------------------------------------
    short_words: int = 4  # a text of at most this many words with no strong feeling is "short and faint"
    strong_compound: float = 0.55  # VADER compound at or above this is real enthusiasm ("Great!", "Love it")
    negative_compound: float = -0.3  # at or below this the text is negative (detractor, not lukewarm)
    lukewarm_stars_min: int = 3  # 3-4 stars with neutral text are lukewarm ...
    lukewarm_stars_max: int = 4  # ... and 5 stars with faint text ("Good.") too: stars said top, words didn't

    # --- NPS classes: answers 9-10 promoter, 7-8 passive, 0-6 detractor; from stars where no answer -------
    stars_promoter_min: int = 5  # stars mapping: 5 promoter ...
    stars_passive_min: int = 3  # ... 3-4 passive, 1-2 detractor (documented in docs/scoring.md)

    # --- value --------------------------------------------------------------------------------------------
    value_horizon_days: int = 90  # expected purchases / value over the next N days
    clv_time_unit_days: float = 7.0  # BG/NBD is fitted in weeks, as in Fader, Hardie & Lee (2005)
    min_customers_for_fit: int = 50  # fewer customers (or repeat buyers) than this: documented fallbacks
    fit_sample_customers: int = 10_000  # above this many buyers the model is fitted on a fixed hash sample
    at_risk_p_alive: float = 0.35  # a repeat buyer whose P(active) fell below this is at risk
    at_risk_min_orders: int = 2  # ... if they bought at least this often (one-time buyers are just quiet)

    # --- the score: weights of the four components (normalised by their sum) --------------------------
    weight_satisfaction: float = 0.35  # what they told us: NPS answer or stars, capped when lukewarm
    weight_sentiment: float = 0.15  # how they said it (VADER compound of their latest English words)
    weight_advocacy: float = 0.30  # what they did: reviews, posts and reach, referrals that converted
    weight_value: float = 0.20  # RFM quintiles and the chance they are still active
    lukewarm_satisfaction_cap: float = 0.5  # a lukewarm customer's satisfaction counts at most this much

    # --- segments (checked in this order: detractor, lukewarm, at_risk, champion, advocate, promising) ---
    champion_min_score: float = 70.0  # promoter with an advocacy action (post or referral) and this score
    advocate_min_score: float = 55.0  # promoter or advocacy action with this score

    # --- follow-ups ---------------------------------------------------------------------------------------
    word_of_mouth_reach: int = 52  # people an unhappy customer tells (seed 004: 52; TARP: 9-15)
    follow_up_recency_half_life_days: float = 30.0  # priority halves for feedback this many days older

    def text_rules(self) -> TextRules:
        return TextRules(short_words=self.short_words, strong_compound=self.strong_compound,
                         negative_compound=self.negative_compound)

    def weights(self) -> dict[str, float]:
        raw = {"satisfaction": self.weight_satisfaction, "sentiment": self.weight_sentiment,
               "advocacy": self.weight_advocacy, "value": self.weight_value}
        if any(w < 0 for w in raw.values()) or sum(raw.values()) <= 0:
            raise ValueError(f"score weights must be >= 0 with a positive sum, got {raw}")
        total = sum(raw.values())
        return {k: v / total for k, v in raw.items()}
