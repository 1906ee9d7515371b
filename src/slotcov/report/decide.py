"""The decision rule of the claims ledger: intervals, verdicts and Holm's correction.

Every function takes numpy arrays whose LAST axis is seeds and whose leading axes (if any) are
independent repetitions, so `slotcov claims` (one repetition: the result files) and `slotcov power`
(thousands of simulated ones) run the same code.

Rule: a claim holds where its effect lies in `region` = (low, high). At level alpha the interval is
the two-sided (1 - 2 alpha) one, i.e. each bound is a one-sided test at alpha:
  reproduced      the interval lies inside the region
  not reproduced  the interval lies outside it (for a superiority: entirely below the smallest
                  effect of interest, i.e. the effect is too small, or reversed)
  inconclusive    otherwise, and always below MIN_SEEDS finished seeds or with zero spread in a cell
Intervals: Welch's t for two cells, a one-sample t against a constant, Clopper-Pearson for a rate,
Newcombe's hybrid score interval (from Wilson intervals) for a difference of two rates.
"""
from __future__ import annotations

import numpy as np
from scipy import stats

MIN_SEEDS = 3
REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE = 1, -1, 0


def t_summary(a, b) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(effect, standard error, degrees of freedom) of mean(a) - mean(b): Welch for two samples,
    one-sample t when b is a number."""
    a = np.asarray(a, float)
    na, qa = a.shape[-1], a.var(-1, ddof=1) / a.shape[-1]
    if np.ndim(b) == 0:
        return a.mean(-1) - float(b), np.sqrt(qa), np.full(np.shape(qa), na - 1.0)
    b = np.asarray(b, float)
    nb, qb = b.shape[-1], b.var(-1, ddof=1) / b.shape[-1]
    with np.errstate(invalid="ignore", divide="ignore"):
        df = (qa + qb) ** 2 / (qa ** 2 / (na - 1) + qb ** 2 / (nb - 1))
    return a.mean(-1) - b.mean(-1), np.sqrt(qa + qb), df


def t_interval(effect, se, df, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """The two-sided (1 - 2 alpha) t interval: each bound a one-sided test at alpha."""
    half = stats.t.ppf(1 - alpha, df) * se
    return effect - half, effect + half


def t_pvalues(effect, se, df, region) -> tuple[np.ndarray, np.ndarray]:
    """One-sided p-values of the two decisive verdicts: (reproduced, not reproduced).

    reproduced needs the effect above `low` AND below `high`: the larger of the two p-values;
    not reproduced needs it below `low` OR above `high`: the smaller."""
    low, high = region
    with np.errstate(invalid="ignore", divide="ignore"):
        z_low, z_high = (effect - low) / se, (effect - high) / se
    above_low = stats.t.sf(z_low, df) if np.isfinite(low) else np.zeros(np.shape(effect))
    below_high = stats.t.cdf(z_high, df) if np.isfinite(high) else np.zeros(np.shape(effect))
    below_low = stats.t.cdf(z_low, df) if np.isfinite(low) else np.ones(np.shape(effect))
    above_high = stats.t.sf(z_high, df) if np.isfinite(high) else np.ones(np.shape(effect))
    return np.maximum(above_low, below_high), np.minimum(below_low, above_high)


def rate_interval(k, n, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Clopper-Pearson bounds for a rate k/n, each one-sided at alpha."""
    k, n = np.asarray(k, float), np.asarray(n, float)
    with np.errstate(invalid="ignore"):
        low = np.where(k > 0, stats.beta.ppf(alpha, k, n - k + 1), 0.0)
        high = np.where(k < n, stats.beta.ppf(1 - alpha, k + 1, n - k), 1.0)
    return low, high


def rate_pvalues(k, n, region) -> tuple[np.ndarray, np.ndarray]:
    """Exact binomial p-values of (reproduced, not reproduced), dual to rate_interval."""
    low, high = (r if 0 < r < 1 else (-np.inf if r <= 0 else np.inf) for r in region)
    k = np.asarray(k, float)
    above_low = stats.binom.sf(k - 1, n, low) if np.isfinite(low) else np.zeros(np.shape(k))
    below_high = stats.binom.cdf(k, n, high) if np.isfinite(high) else np.zeros(np.shape(k))
    below_low = stats.binom.cdf(k, n, low) if np.isfinite(low) else np.ones(np.shape(k))
    above_high = stats.binom.sf(k - 1, n, high) if np.isfinite(high) else np.ones(np.shape(k))
    return np.maximum(above_low, below_high), np.minimum(below_low, above_high)


def rate_difference_interval(k1: int, n1: int, k2: int, n2: int, alpha: float) -> tuple[float, float]:
    """Newcombe's hybrid score interval for k1/n1 - k2/n2, each bound one-sided at alpha, built from
    scipy's Wilson intervals."""
    (l1, u1), (l2, u2) = (stats.binomtest(k, n).proportion_ci(1 - 2 * alpha, "wilson") for k, n in ((k1, n1), (k2, n2)))
    p1, p2 = k1 / n1, k2 / n2
    return p1 - p2 - np.hypot(p1 - l1, u2 - p2), p1 - p2 + np.hypot(u1 - p1, p2 - l2)


def verdict_codes(low, high, region) -> np.ndarray:
    """REPRODUCED where [low, high] lies inside the region, NOT_REPRODUCED where it lies outside it,
    INCONCLUSIVE otherwise (an interval touching a bound is inconclusive)."""
    r_low, r_high = region
    low, high = np.asarray(low, float), np.asarray(high, float)
    inside = (low > r_low) & (high < r_high)
    outside = (high < r_low) | (low > r_high)
    return np.where(inside, REPRODUCED, np.where(outside, NOT_REPRODUCED, INCONCLUSIVE))


def decide_t(a, b, region, alpha: float) -> dict:
    """Effect, interval and verdict code of mean(a) - mean(b) (b a number: one-sample), with the
    ledger's refusals: fewer than MIN_SEEDS seeds or zero spread in a sample is INCONCLUSIVE."""
    a = np.asarray(a, float)
    effect, se, df = t_summary(a, b)
    samples = [a] if np.ndim(b) == 0 else [a, np.asarray(b, float)]
    usable = np.ones(np.shape(effect), bool)
    for s in samples:
        usable &= (s.shape[-1] >= MIN_SEEDS) & (s.std(-1) > 0)
    low, high = t_interval(effect, se, df, alpha)
    codes = np.where(usable, verdict_codes(low, high, region), INCONCLUSIVE)
    return {"effect": effect, "se": se, "df": df, "low": low, "high": high, "codes": codes, "usable": usable}


def decide_rate(k, n: int, region, alpha: float) -> dict:
    """The same for a rate of k diverged seeds of n (INCONCLUSIVE below MIN_SEEDS seeds)."""
    low, high = rate_interval(k, n, alpha)
    codes = verdict_codes(low, high, region) if n >= MIN_SEEDS else np.zeros(np.shape(k), int)
    return {"effect": np.asarray(k, float) / max(n, 1), "low": low, "high": high, "codes": codes,
            "usable": np.full(np.shape(k), n >= MIN_SEEDS)}


def prediction_interval(a, b, level: float = 0.95) -> tuple[float, float]:
    """Where ONE new run's effect (one seed of a minus one of b, or one seed of a minus the number b)
    falls with probability `level`, from our seeds: the interval to hold the paper's single run against."""
    a = np.asarray(a, float)
    ta = a.var(ddof=1) * (1 + 1 / len(a))
    if np.ndim(b) == 0:
        effect, spread, df = a.mean() - float(b), ta, len(a) - 1.0
    else:
        b = np.asarray(b, float)
        tb = b.var(ddof=1) * (1 + 1 / len(b))
        effect, spread = a.mean() - b.mean(), ta + tb
        df = spread ** 2 / (ta ** 2 / (len(a) - 1) + tb ** 2 / (len(b) - 1))
    half = stats.t.ppf(0.5 + level / 2, df) * np.sqrt(spread)
    return float(effect - half), float(effect + half)


def holm(pvalues: list[float | None], alpha: float) -> list[dict]:
    """Holm's step-down procedure over a family fixed in advance (a None p-value, an untested member, counts
    as 1). Per member: its rank, its level alpha / (m - rank + 1), whether it is rejected, and (when the
    procedure stopped before reaching it) the index of the member it stopped at."""
    m = len(pvalues)
    p = [1.0 if v is None or not np.isfinite(v) else float(v) for v in pvalues]
    order = sorted(range(m), key=lambda i: (p[i], i))
    out, stopped_at = [None] * m, None
    for rank, i in enumerate(order, 1):
        level = alpha / (m - rank + 1)
        if stopped_at is None and p[i] > level:
            stopped_at = i
        out[i] = {"rank": rank, "level": level, "rejected": stopped_at is None,
                  "stopped_at": None if stopped_at in (None, i) else stopped_at}
    return out
