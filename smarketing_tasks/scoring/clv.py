"""Future value: BG/NBD (Fader, Hardie & Lee 2005) and Gamma-Gamma (Fader, Hardie & Lee 2005b), by maximum likelihood.

Why not a library: pymc-marketing's CLV module needs Python >= 3.12 (this stack is 3.11, see STACK_NOTES) and
``lifetimes`` is unmaintained since 2020. Both models are a few lines of closed-form likelihood, so they are
written here with numpy/scipy, vectorised over customers, and checked against the published CDNOW fit
(tests/smarketing_tasks/scoring/test_clv.py, docs/scoring.md).

Inputs per customer (in a time unit of your choice, weeks for CDNOW):

- ``x``: number of repeat purchases (purchase occasions after the first one),
- ``t_x``: time of the last purchase, measured from the first one (0 when x = 0),
- ``T``: time from the first purchase to the end of the observation period.

Rows may carry a ``weight`` (how many customers share the same (x, t_x, T)), which is how the scorer fits a
million customers in a second: it groups identical triples in SQL first.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import optimize, special


@dataclass(frozen=True)
class BgNbdParams:
    r: float
    alpha: float
    a: float
    b: float
    log_likelihood: float = float("nan")
    customers: int = 0
    converged: bool = True

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class GammaGammaParams:
    p: float
    q: float
    gamma: float
    log_likelihood: float = float("nan")
    customers: int = 0
    converged: bool = True

    def as_dict(self) -> dict:
        return asdict(self)


def _as_arrays(*values) -> list[np.ndarray]:
    return [np.asarray(v, dtype="float64") for v in values]


def bgnbd_log_likelihood(params: tuple[float, float, float, float], x, t_x, T) -> np.ndarray:
    """Per-customer log-likelihood of BG/NBD (FHL 2005, eq. 6), computed in logs for stability."""
    r, alpha, a, b = params
    x, t_x, T = _as_arrays(x, t_x, T)
    ln_a1 = special.gammaln(r + x) - special.gammaln(r) + r * np.log(alpha)
    ln_a2 = special.gammaln(a + b) + special.gammaln(b + x) - special.gammaln(b) - special.gammaln(a + b + x)
    ln_a3 = -(r + x) * np.log(alpha + T)
    repeat = x > 0
    # A4 only exists for repeat buyers; b + x - 1 > 0 there, so the log is safe.
    ln_a4 = np.where(
        repeat,
        np.log(a) - np.log(np.where(repeat, b + x - 1, 1.0)) - (r + x) * np.log(alpha + t_x),
        -np.inf,
    )
    return ln_a1 + ln_a2 + np.logaddexp(ln_a3, ln_a4)


def fit_bgnbd(x, t_x, T, weight=None, initial: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0),
              penalty: float = 0.0) -> BgNbdParams:
    """Maximum-likelihood BG/NBD parameters (optimised on log-parameters so they stay positive)."""
    x, t_x, T = _as_arrays(x, t_x, T)
    weight = np.ones_like(x) if weight is None else np.asarray(weight, dtype="float64")
    if len(x) == 0:
        raise ValueError("cannot fit BG/NBD on no customers")
    if np.any(x < 0) or np.any(t_x < 0) or np.any(t_x > T):
        raise ValueError("BG/NBD needs x >= 0 and 0 <= t_x <= T for every customer")
    total = weight.sum()

    def objective(log_params: np.ndarray) -> float:
        params = np.exp(log_params)
        ll = (weight * bgnbd_log_likelihood(tuple(params), x, t_x, T)).sum()
        # A tiny L2 penalty on the parameters' size keeps degenerate samples (no repeaters) finite.
        return -ll / total + penalty * float((params**2).sum())

    # A quasi-Newton run gets close in a few hundred evaluations; Nelder-Mead then polishes (the likelihood
    # is flat along a/b, where gradient methods stop early).
    # Log-parameters stay within e^-12..e^12: data with no dropout or no heterogeneity pushes a, b or alpha
    # towards 0 or infinity, where the closed forms lose all precision (plausible() then rejects the fit).
    bounds = [(-12.0, 12.0)] * 4
    first = optimize.minimize(objective, np.log(np.asarray(initial)), method="L-BFGS-B", bounds=bounds)
    polished = optimize.minimize(objective, first.x, method="Nelder-Mead", bounds=bounds,
                                 options={"xatol": 1e-6, "fatol": 1e-10, "maxfev": 400})
    best = polished if polished.fun <= first.fun else first
    r, alpha, a, b = np.exp(best.x)
    return BgNbdParams(float(r), float(alpha), float(a), float(b), log_likelihood=float(-best.fun * total),
                       customers=int(total), converged=bool(polished.success or first.success))


def plausible(params: BgNbdParams, x, t_x, T, weight=None) -> bool:
    """A sanity check before a fit is used: finite predictions, and a population forecast for the next
    period as long as the observed one within a factor of 20 of the observed purchase rate."""
    x, t_x, T = _as_arrays(x, t_x, T)
    weight = np.ones_like(x) if weight is None else np.asarray(weight, dtype="float64")
    horizon = float(np.median(T)) or 1.0
    predicted = expected_purchases(params, horizon, x, t_x, T, clip=False)
    if not np.all(np.isfinite(predicted)) or np.any(predicted < -1e-9):
        return False
    observed_rate = (weight * x).sum() / max((weight * T).sum(), 1e-9)
    predicted_rate = (weight * predicted).sum() / (weight.sum() * horizon)
    if observed_rate == 0:
        return predicted_rate < 1e-3
    return 1 / 20 <= predicted_rate / observed_rate <= 20


def expected_purchases(params: BgNbdParams, t: float, x, t_x, T, clip: bool = True) -> np.ndarray:
    """E[Y(t) | x, t_x, T]: expected purchases in the next ``t`` time units (FHL 2005, eq. 10)."""
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    x, t_x, T = _as_arrays(x, t_x, T)
    z = t / (alpha + T + t)
    hyp = special.hyp2f1(r + x, b + x, a + b + x - 1, z)
    first = (a + b + x - 1) / (a - 1)
    bracket = 1 - ((alpha + T) / (alpha + T + t)) ** (r + x) * hyp
    denominator = 1 + np.where(x > 0, a / (b + x - 1) * ((alpha + T) / (alpha + t_x)) ** (r + x), 0.0)
    value = first * bracket / denominator
    if not clip:
        return value
    return np.clip(np.nan_to_num(value, nan=0.0, posinf=0.0, neginf=0.0), 0.0, None)


def probability_alive(params: BgNbdParams, x, t_x, T) -> np.ndarray:
    """P(still active | x, t_x, T) (FHL 2005, eq. 11); 1 for customers with no repeat purchase."""
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    x, t_x, T = _as_arrays(x, t_x, T)
    repeat = x > 0
    ratio = np.where(repeat, a / np.where(repeat, b + x - 1, 1.0) * ((alpha + T) / (alpha + t_x)) ** (r + x), 0.0)
    return 1.0 / (1.0 + ratio)


def population_expected_purchases(params: BgNbdParams, t) -> np.ndarray:
    """E[X(t)] for a customer who started at time 0 (FHL 2005, eq. 7): for cumulative tracking plots."""
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    t = np.asarray(t, dtype="float64")
    return (a + b - 1) / (a - 1) * (1 - (alpha / (alpha + t)) ** r * special.hyp2f1(r, b, a + b - 1, t / (alpha + t)))


def gamma_gamma_log_likelihood(params: tuple[float, float, float], x, mean_value) -> np.ndarray:
    """Per-customer log-likelihood of the Gamma-Gamma spend model (Fader, Hardie & Lee 2005b)."""
    p, q, gamma = params
    x, m = _as_arrays(x, mean_value)
    return (special.gammaln(p * x + q) - special.gammaln(p * x) - special.gammaln(q) + q * np.log(gamma)
            + (p * x - 1) * np.log(m) + p * x * np.log(x) - (p * x + q) * np.log(gamma + m * x))


def fit_gamma_gamma(x, mean_value, initial: tuple[float, float, float] = (1.0, 1.0, 1.0)) -> GammaGammaParams:
    """Fit on repeat buyers only (x > 0, mean repeat order value > 0)."""
    x, m = _as_arrays(x, mean_value)
    keep = (x > 0) & (m > 0) & np.isfinite(m)
    x, m = x[keep], m[keep]
    if len(x) == 0:
        raise ValueError("Gamma-Gamma needs at least one repeat buyer with a positive mean order value")
    scale = float(np.median(m))  # fit on values scaled to ~1, then scale gamma back: better conditioning

    def objective(log_params: np.ndarray) -> float:
        return -gamma_gamma_log_likelihood(tuple(np.exp(log_params)), x, m / scale).mean()

    bounds = [(-12.0, 12.0)] * 3
    first = optimize.minimize(objective, np.log(np.asarray(initial)), method="L-BFGS-B", bounds=bounds)
    polished = optimize.minimize(objective, first.x, method="Nelder-Mead", bounds=bounds,
                                 options={"xatol": 1e-8, "fatol": 1e-11, "maxfev": 400})
    result = polished if polished.fun <= first.fun else first
    p, q, gamma = np.exp(result.x)
    ll = float(-result.fun * len(x) - (len(x) * np.log(scale)))  # the likelihood of the unscaled values
    return GammaGammaParams(float(p), float(q), float(gamma * scale), log_likelihood=ll, customers=len(x),
                            converged=bool(first.success or polished.success))


def expected_order_value(params: GammaGammaParams | None, x, mean_value, population_mean: float,
                         shrink_orders: float = 2.0) -> np.ndarray:
    """Expected value of a customer's next order.

    With Gamma-Gamma parameters (and q > 1): E[M | x, m_x] = (gamma + m_x x) p / (p x + q - 1).
    Without (too few repeat buyers, or the fit failed): the documented simpler estimator, a credibility-
    weighted mean that pulls a customer's own mean towards the population mean, with weight x / (x + k).
    """
    x, m = _as_arrays(x, mean_value)
    m = np.where(np.isfinite(m) & (m > 0), m, population_mean)
    if params is not None and params.q > 1:
        p, q, gamma = params.p, params.q, params.gamma
        prior = np.where(x > 0, (gamma + m * x) * p / (p * x + q - 1), p * gamma / (q - 1))
        return prior
    weight = x / (x + shrink_orders)
    return weight * m + (1 - weight) * population_mean
