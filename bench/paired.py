"""Statistics for comparing search settings over seeds: paired differences with a Student t interval, and
time-to-target ratios. Pure functions (no numpy needed, no scipy), shared by the benchmarks and tested.

A comparison is *paired*: the same seed gives both settings the same children's training seeds and the same
machine, so the per-seed difference removes what the seed does to both. The verdict comes from the 95% interval
of the mean difference over seeds (a t interval with n - 1 degrees of freedom), never from the two settings' own
standard deviations.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass


def _betacf(a: float, b: float, x: float) -> float:
    """The continued fraction of the regularized incomplete beta function (modified Lentz; Numerical Recipes
    6.4)."""
    tiny, eps = 1e-300, 1e-15
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 400):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < eps:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b), for a, b > 0 and x in [0, 1]."""
    if not 0.0 <= x <= 1.0:
        raise ValueError(f"betainc: x={x!r} is outside [0, 1]")
    if x in (0.0, 1.0):
        return x
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_two_sided_p(t: float, df: int) -> float:
    """P(|T| >= |t|) for Student's t with ``df`` degrees of freedom."""
    if df < 1:
        raise ValueError(f"t_two_sided_p: df={df!r}; needs at least 1 degree of freedom")
    if math.isinf(t):
        return 0.0
    return betainc(df / 2.0, 0.5, df / (df + t * t))


def t_quantile(q: float, df: int) -> float:
    """The ``q`` quantile (0.5 < q < 1) of Student's t with ``df`` degrees of freedom, by bisection."""
    if not 0.5 < q < 1.0:
        raise ValueError(f"t_quantile: q={q!r}; give 0.5 < q < 1")
    target = 2.0 * (1.0 - q)  # the two-sided tail probability at the quantile
    lo, hi = 0.0, 1.0
    while t_two_sided_p(hi, df) > target:
        hi *= 2.0
    for _ in range(200):
        mid = (lo + hi) / 2.0
        if t_two_sided_p(mid, df) > target:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2.0


@dataclass(frozen=True)
class Paired:
    """The mean of per-seed differences with its 95% t interval and two-sided p-value (H0: mean 0)."""

    n: int
    mean: float
    low: float
    high: float
    p: float
    wins: int
    """Seeds with a positive difference."""

    @property
    def verdict(self) -> str:
        """"better" / "worse" when the interval excludes 0 on that side, else "within noise"."""
        if self.n < 2 or math.isnan(self.low):
            return "too few seeds"
        return "better" if self.low > 0 else "worse" if self.high < 0 else "within noise"

    def text(self, digits: int = 2) -> str:
        return (f"{self.mean:+.{digits}f} [{self.low:+.{digits}f}, {self.high:+.{digits}f}] p={self.p:.3f} "
                f"({self.wins}/{self.n} seeds better; {self.verdict})")


def paired(differences: Sequence[float], level: float = 0.95) -> Paired:
    """Mean, ``level`` t interval and p-value of ``differences`` (one per seed; NaNs are refused: a seed that has
    no value for one of the two settings cannot be paired)."""
    d = [float(x) for x in differences]
    if any(math.isnan(x) for x in d):
        raise ValueError("paired: a difference is NaN; every seed needs a value for both settings")
    n = len(d)
    if n == 0:
        raise ValueError("paired: no differences")
    mean = statistics.fmean(d)
    wins = sum(x > 0 for x in d)
    if n < 2:
        return Paired(n, mean, math.nan, math.nan, math.nan, wins)
    sd = statistics.stdev(d)
    se = sd / math.sqrt(n)
    if se == 0.0:
        return Paired(n, mean, mean, mean, 0.0 if mean != 0 else 1.0, wins)
    half = t_quantile(0.5 + level / 2.0, n - 1) * se
    return Paired(n, mean, mean - half, mean + half, t_two_sided_p(mean / se, n - 1), wins)


def time_to_target_ratio(needed: float, reference_needed: float) -> float:
    """The compute a setting needed to reach the target divided by what the reference (random search, same seed)
    needed to reach it: inf when the setting never reached it (a miss)."""
    if not reference_needed > 0 or math.isinf(reference_needed):
        raise ValueError(f"time_to_target_ratio: the reference needed {reference_needed!r}; it must reach its own "
                         "final best with positive compute")
    return needed / reference_needed


def median_with_misses(values: Sequence[float]) -> float:
    """The median of ratios where a miss is inf (so it sorts last): finite while fewer than half missed."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    n = len(ordered)
    mid = n // 2
    if n % 2:
        return ordered[mid]
    low, high = ordered[mid - 1], ordered[mid]
    return math.inf if math.isinf(high) else (low + high) / 2.0
