"""The Pareto front of validation perplexity against size: the children no other child beats on both.

A child is on the front when no other ranked child (completed, with a val_ppl and a parameter count, not a reuse of an
earlier child's outcome) has at most its parameters and at most its perplexity, one of the two strictly less:
Optuna's ``study.best_trials`` for two minimised objectives. Children with the same parameters and the same
perplexity are both on it (neither beats the other). :func:`front_mask` finds the front in one sweep over the
children sorted by size; :func:`plot_fronts` draws every child of one or more runs with their fronts.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd


def front_mask(val_ppl: Sequence[float], params: Sequence[float], eligible: Sequence[bool] | None = None) -> list[bool]:
    """Which points are on the front (lower is better on both axes); ``eligible`` False (or a missing / NaN value)
    keeps a point off it and out of the comparison."""
    n = len(val_ppl)
    ok = [(eligible is None or bool(eligible[i])) and _finite(val_ppl[i]) and _finite(params[i]) for i in range(n)]
    order = sorted((i for i in range(n) if ok[i]), key=lambda i: (params[i], val_ppl[i]))
    on = [False] * n
    best = math.inf  # the lowest perplexity among strictly smaller models
    k = 0
    while k < len(order):
        size = params[order[k]]
        group = []
        while k < len(order) and params[order[k]] == size:
            group.append(order[k])
            k += 1
        low = min(val_ppl[i] for i in group)
        if low < best:
            for i in group:
                on[i] = val_ppl[i] == low
            best = low
    return on


def _finite(v: object) -> bool:
    return v is not None and v is not pd.NA and isinstance(v, (int, float)) and math.isfinite(v)


def pareto_column(cells: pd.DataFrame) -> pd.Series:
    """The cells table's ``pareto`` column: True for the children on the front, False for every other."""
    eligible = cells["rank"].notna()  # ranked: completed, with a val_ppl, not a reuse
    val = [None if pd.isna(v) else float(v) for v in cells["val_ppl"]]
    params = [None if pd.isna(v) else float(v) for v in cells["params"]]
    return pd.Series(front_mask(val, params, eligible.tolist()), index=cells.index, dtype="boolean")


def front(cells: pd.DataFrame) -> pd.DataFrame:
    """The children on the front, smallest first."""
    mask = cells["pareto"].fillna(False).astype(bool) if "pareto" in cells else pareto_column(cells).astype(bool)
    return cells.loc[mask].sort_values(["params", "val_ppl", "index"], kind="stable")


def draw_front(ax, cells: pd.DataFrame, color: str = "tab:blue", label: str = "") -> None:
    """Every ranked child as a point and the front as a step line, on ``ax`` (params on a log scale)."""
    ranked = cells[cells["rank"].notna() & cells["params"].notna()]
    ax.plot(ranked["params"].astype(float), ranked["val_ppl"].astype(float), "o", ms=3, alpha=0.35, color=color)
    best = front(ranked)
    ax.step(best["params"].astype(float), best["val_ppl"].astype(float), "-o", where="post", ms=5, color=color,
            label=f"{label + ': ' if label else ''}front ({len(best)} of {len(ranked)})")
    ax.set_xscale("log")
    ax.set_xlabel("parameters")
    ax.set_ylabel("validation perplexity")
    ax.grid(alpha=0.3, which="both")


def plot_fronts(runs: Mapping[str, pd.DataFrame], path: str | Path) -> Path:
    """Write a PNG with every run's children and Pareto front (one color per run)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from nas.runs.records import atomic_write

    fig = Figure(figsize=(7, 4.5), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    for i, (label, cells) in enumerate(runs.items()):
        draw_front(ax, cells, color=f"C{i}", label=label)
    ax.set_title("every child, and the Pareto front of perplexity against size", fontsize=10)
    ax.legend(fontsize=8)
    return atomic_write(Path(path), lambda p: fig.savefig(p, format="png", dpi=100))
