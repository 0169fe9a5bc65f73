"""What the commands print, formatted one way: fixed-width tables, mean ± std, durations, bits per token.

Pure functions of their arguments (standard library only), shared by the leaderboard and comparisons of runs
(:mod:`nas.runs`) and by retraining (:mod:`nas.retrain`).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Collection, Mapping, Sequence


def text_table(rows: Sequence[Sequence[str]], left: Collection[int] = ()) -> list[str]:
    """Fixed-width lines of ``rows`` (the header first), two spaces between columns: the columns whose indices are
    in ``left`` left-aligned, the others right-aligned; no trailing spaces."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))).rstrip()
            for row in rows]


def column_table(columns: Mapping[str, Sequence[str]], left: Collection[str] = ()) -> list[str]:
    """:func:`text_table` of a table given column by column (header -> cells), ``left`` naming columns."""
    rows = [tuple(columns), *zip(*columns.values())]
    return text_table(rows, left={i for i, name in enumerate(columns) if name in left})


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean (NaN for none) and sample standard deviation (NaN for fewer than two)."""
    return (statistics.fmean(values) if values else math.nan,
            statistics.stdev(values) if len(values) > 1 else math.nan)


def format_mean_std(mean: float, std: float) -> str:
    """``12.34 ± 0.56``, ``12.34`` without a std, ``-`` without a mean."""
    return "-" if not math.isfinite(mean) else f"{mean:.2f}" + (f" ± {std:.2f}" if math.isfinite(std) else "")


def duration(seconds: float, seconds_past_hour: bool = True) -> str:
    """Whole seconds as ``3m13s``, or past an hour ``2h05m20s`` (``2h05m`` without ``seconds_past_hour``)."""
    m, s = divmod(int(round(seconds)), 60)
    h, m = divmod(m, 60)
    if not h:
        return f"{m}m{s:02d}s"
    return f"{h}h{m:02d}m{s:02d}s" if seconds_past_hour else f"{h}h{m:02d}m"


def format_seconds(seconds: float) -> str:
    """``0.28 s``, ``12.3 s``, ``3m13s``, ``2h05m``; ``never`` for inf and ``-`` for NaN."""
    if math.isnan(seconds):
        return "-"
    if math.isinf(seconds):
        return "never"
    if seconds < 10:
        return f"{seconds:.2f} s"
    if seconds < 60:
        return f"{seconds:.1f} s"
    return duration(seconds, seconds_past_hour=False)


def bits_per_token(ppl: float) -> float:
    """Bits per token (per character at character level): log2 of the perplexity."""
    return math.log2(ppl) if ppl > 0 else math.nan
