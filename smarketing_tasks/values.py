"""Wording many values at once: each distinct value is formatted once (scores, amounts and counts repeat)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def each_distinct(values: np.ndarray, word: Callable) -> np.ndarray:
    """``word(value)`` for each value (as a Python int or float, NaN included), computed once per distinct value;
    an object array in the values' order."""
    import pandas as pd

    if values.dtype.kind == "f" and ((values == 0) & np.signbit(values)).any():  # factorize merges -0.0 into 0.0
        return np.array([word(v) for v in values.tolist()], dtype=object)
    codes, distinct = pd.factorize(values, use_na_sentinel=False)
    return np.array([word(v) for v in distinct.tolist()], dtype=object)[codes]
