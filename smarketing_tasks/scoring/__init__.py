"""Advocate scoring: sentiment and the lukewarm rule, value (RFM, BG/NBD, Gamma-Gamma), advocacy actions,
an explainable 0-100 score with a segment, and follow-ups for the customers who need a call.

``pipeline`` talks to the warehouse; ``score``, ``text`` and ``clv`` are pure and tested on their own.
docs/scoring.md documents every rule and the checks on real data.
"""

from smarketing_tasks.scoring.settings import ScoringSettings

__all__ = ["ScoringSettings"]
