"""Is one router really better than another on the same questions? Paired statistics, numpy only.

Both routers answer the same questions, so the comparison is paired: each
question is right or wrong for both. McNemar's test looks only at the
questions where they disagree (``b`` right -> wrong, ``c`` wrong -> right):
under "no difference" each such question is a fair coin. With fewer than
``EXACT_BELOW`` of them the binomial p-value is exact; above, the chi-square
with continuity correction (Edwards 1948) is close and cheap. The bootstrap
resamples questions (the same ones for both routers) to put a confidence
interval on the difference of any metric, macro-F1 included, which McNemar
cannot. No scipy: the deploy install has numpy only.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

EXACT_BELOW = 25  # discordant pairs under which McNemar's p-value is the exact binomial one
ALPHA = 0.05
RESAMPLES = 2000


@dataclass(frozen=True)
class McNemar:
    right_to_wrong: int  # b: right before, wrong after
    wrong_to_right: int  # c: wrong before, right after
    statistic: float | None  # chi-square with continuity correction; None for the exact test
    p_value: float
    method: str  # "exact binomial" or "chi-square, continuity corrected"

    def to_dict(self) -> dict:
        return asdict(self)


def mcnemar(old_right, new_right) -> McNemar:
    """McNemar's test on per-question correctness (booleans, same questions in the same order)."""
    old, new = np.asarray(old_right, dtype=bool), np.asarray(new_right, dtype=bool)
    if old.shape != new.shape:
        raise ValueError(f"paired results differ in length: {old.shape} vs {new.shape}")
    return mcnemar_counts(int((old & ~new).sum()), int((~old & new).sum()))


def mcnemar_counts(b: int, c: int) -> McNemar:
    """McNemar's test from the discordant counts ``b`` (right -> wrong) and ``c`` (wrong -> right)."""
    n = b + c
    if n < EXACT_BELOW:
        return McNemar(b, c, None, binomial_two_sided(min(b, c), n), "exact binomial")
    statistic = (abs(b - c) - 1) ** 2 / n
    return McNemar(b, c, statistic, chi2_1_sf(statistic), "chi-square, continuity corrected")


def binomial_two_sided(k: int, n: int) -> float:
    """Two-sided p-value of ``k`` successes or fewer in ``n`` fair coin flips (doubled tail, at most 1)."""
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(k, n - k) + 1)) / 2**n
    return min(1.0, 2 * tail)


def chi2_1_sf(x: float) -> float:
    """P(X >= x) for a chi-square variable with one degree of freedom."""
    return math.erfc(math.sqrt(max(x, 0.0) / 2))


@dataclass(frozen=True)
class Interval:
    difference: float  # new - old on all the questions
    low: float
    high: float
    confidence: float
    resamples: int

    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0

    def to_dict(self) -> dict:
        return asdict(self)


def paired_bootstrap(metric: Callable[[np.ndarray], tuple[float, float]], n: int, *,
                     resamples: int = RESAMPLES, confidence: float = 1 - ALPHA, seed: int = 0) -> Interval:
    """Percentile interval of ``new - old`` where ``metric(indices) -> (old, new)`` scores both on those questions.

    Each resample draws ``n`` question indices with replacement and scores
    both routers on the same draw, so what the two share cancels out.
    """
    if n < 1:
        raise ValueError("no questions to resample")
    old, new = metric(np.arange(n))
    rng = np.random.default_rng(seed)
    diffs = np.empty(resamples)
    for i in range(resamples):
        a, b = metric(rng.integers(0, n, n))
        diffs[i] = b - a
    tail = (1 - confidence) / 2 * 100
    if np.isnan(diffs).all():  # a metric with no question to count in any resample (e.g. no answer question)
        return Interval(float(new - old), float("nan"), float("nan"), confidence, resamples)
    low, high = np.nanpercentile(diffs, [tail, 100 - tail])
    return Interval(float(new - old), float(low), float(high), confidence, resamples)
