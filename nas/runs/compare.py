"""Comparing searches: the best validation perplexity found so far, by children and by compute (``nas compare``).

A run's *curve* is built from its ``children.jsonl`` records in the order they were appended (the order children
finished): one row per child with the cumulative seconds of child training spent and the best val_ppl among the
*completed* children so far. Every record is a child and its ``train_seconds`` (missing or null: 0, as for a
child whose outcome was reused) count as compute; a diverged, failed or stopped child adds no perplexity (a
stopped child's perplexity was measured at a lower fidelity, so it is not comparable). A trial recorded twice (a
crash and resume) is one child: its last record wins, in the place of that record, as for the cells table.

The functions over records and curves are pure (no Ray, no torch) so that a benchmark script can use them too.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from nas.console import column_table, format_seconds
from nas.runs.records import (
    CHILDREN_FILE,
    CONFIG_FILE,
    ChildRecord,
    atomic_write,
    child_records,
    latest_per_trial,
    read_children,
)

DEFAULT_AT = (25, 50, 100, 150)
"""The numbers of children ``nas compare`` shows the best-so-far value at (then each run's final count)."""

CURVE_COLUMNS = ("child", "compute_seconds", "compute_work", "best_val_ppl")
COMPUTE_COLUMNS = ("compute_seconds", "compute_work")
"""Two measures of compute: seconds of child training (what a user waits for; depends on the machine's load) and
*work*, training batches x parameters summed over trained children (load-independent; proportional to the
arithmetic when batch size and BPTT are fixed). A reused child costs neither."""


# ---- curves: pure functions over records ---------------------------------------------------------------------------


def _train_seconds(r: Mapping[str, Any]) -> float:
    value = r.get("train_seconds")
    if value is None:
        return 0.0
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ValueError(f"children: train_seconds {value!r} of child index {r.get('index')!r} is not a number of "
                         "seconds >= 0; repair or delete that record")
    return float(value) if math.isfinite(value) else 0.0  # NaN is written as null: the same "not measured"


def _work(r: Mapping[str, Any]) -> float:
    """Training batches x parameters of a child; 0 for a reused outcome or a child that never trained."""
    if r.get("reused_from") is not None:
        return 0.0
    batches, params = r.get("fidelity"), r.get("params")
    if not isinstance(batches, int) or not isinstance(params, int) or isinstance(batches, bool):
        return 0.0
    return float(batches) * float(params)


def _completed_ppl(r: Mapping[str, Any]) -> float:
    value = r.get("val_ppl")
    if r.get("status") != "completed" or isinstance(value, bool) or not isinstance(value, (int, float)):
        return math.nan
    return float(value) if math.isfinite(value) else math.nan


def best_so_far(records: Iterable[ChildRecord | Mapping[str, Any]]) -> pd.DataFrame:
    """One row per child in finish order: ``child`` (1, 2, ...), ``compute_seconds`` (cumulative train_seconds),
    ``compute_work`` (cumulative training batches x parameters, :data:`COMPUTE_COLUMNS`) and ``best_val_ppl``
    (the lowest val_ppl of a completed child so far; NaN before the first)."""
    rows = [r.to_dict() for r in latest_per_trial(child_records(records))]
    seconds = np.array([_train_seconds(r) for r in rows], dtype=float)
    work = np.array([_work(r) for r in rows], dtype=float)
    ppl = np.array([_completed_ppl(r) for r in rows], dtype=float)
    return pd.DataFrame({
        "child": np.arange(1, len(rows) + 1, dtype=np.int64),
        "compute_seconds": np.cumsum(seconds),
        "compute_work": np.cumsum(work),
        "best_val_ppl": np.fmin.accumulate(ppl) if len(ppl) else ppl,  # fmin skips NaN
    })


def value_at(curve: pd.DataFrame, children: int | None = None, compute: float | None = None,
             by: str = "compute_seconds") -> float:
    """The best-so-far val_ppl after ``children`` children, or after ``compute`` of child training (measured in
    the column ``by``, one of :data:`COMPUTE_COLUMNS`: seconds by default).

    NaN when no completed child came before that point, or when the point lies beyond the run (more children
    than it has, more seconds than it spent): what the run would have found there is unknown.
    """
    if (children is None) == (compute is None):
        raise ValueError("value_at: give either children or compute (seconds), not both or neither")
    best = curve["best_val_ppl"].to_numpy(dtype=float)
    if children is not None:
        if isinstance(children, bool) or not isinstance(children, (int, np.integer)) or children < 0:
            raise ValueError(f"value_at: children={children!r}; give a whole number >= 0")
        return float(best[children - 1]) if 0 < children <= len(best) else math.nan
    if not isinstance(compute, (int, float, np.number)) or not compute >= 0:  # also refuses NaN
        raise ValueError(f"value_at: compute={compute!r}; give a number of seconds >= 0")
    spent = curve[by].to_numpy(dtype=float)
    if not len(spent) or compute > spent[-1]:
        return math.nan
    done = int(np.searchsorted(spent, compute, side="right"))  # children finished within ``compute`` seconds
    return float(best[done - 1]) if done else math.nan


def compute_to_reach(curve: pd.DataFrame, target: float, by: str = "compute_seconds") -> float:
    """The compute (column ``by``: seconds by default) at which the curve first has best_val_ppl <= ``target``;
    inf if it never does."""
    if not isinstance(target, (int, float, np.number)) or math.isnan(target):
        raise ValueError(f"compute_to_reach: target {target!r} is not a perplexity")
    reached = np.flatnonzero(curve["best_val_ppl"].to_numpy(dtype=float) <= target)
    return float(curve[by].iloc[reached[0]]) if reached.size else math.inf


# ---- the table -----------------------------------------------------------------------------------------------------


def parse_counts(text: str) -> tuple[int, ...]:
    """``--at``: comma-separated numbers of children, e.g. ``10,20``; returned sorted, each once."""
    try:
        counts = sorted({int(part) for part in text.split(",")})
    except ValueError:
        raise ValueError(f"--at {text!r}: give comma-separated whole numbers of children, e.g. --at 10,20") from None
    if counts[0] < 1:
        raise ValueError(f"--at {text!r}: numbers of children start at 1; give e.g. --at 10,20")
    return tuple(counts)


def _ppl(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.2f}"


def comparison_table(runs: Sequence[tuple[str, pd.DataFrame]], at: Sequence[int] = DEFAULT_AT) -> str:
    """The text ``nas compare`` prints: a line naming the reference (the first run and its final best), then one
    row per run: its children, the best so far after each of ``at`` children ("-" beyond the run or before its
    first completed child), its final best, its total compute, the compute it needed to reach the reference's
    final best and that as a fraction of the reference's total compute."""
    if not runs:
        raise ValueError("comparison_table: no runs given")
    ref_label, ref = runs[0]
    target = value_at(ref, children=len(ref)) if len(ref) else math.nan
    if math.isnan(target):
        raise ValueError(f"{ref_label} has no completed child, so there is no best val_ppl to reach; put a run "
                         "with a completed child first")
    ref_total = float(ref["compute_seconds"].iloc[-1])
    reach = f"to reach {target:.2f}"
    table: dict[str, list[str]] = {k: [] for k in ["run", "children", *(f"best@{n}" for n in at), "final best",
                                                  "compute", reach, "of ref compute"]}
    for label, curve in runs:
        total = float(curve["compute_seconds"].iloc[-1]) if len(curve) else 0.0
        needed = compute_to_reach(curve, target)
        table["run"].append(label)
        table["children"].append(str(len(curve)))
        for n in at:
            table[f"best@{n}"].append(_ppl(value_at(curve, children=n)))
        table["final best"].append(_ppl(value_at(curve, children=len(curve)) if len(curve) else math.nan))
        table["compute"].append(format_seconds(total))
        table[reach].append(format_seconds(needed))
        table["of ref compute"].append(f"{needed / ref_total:.2f}" if math.isfinite(needed) and ref_total > 0 else "-")
    lines = [f"reference: {ref_label}, final best val_ppl {target:.2f}; best@N: the best val_ppl of a completed child "
             "among the first N; compute: seconds of child training",
             *column_table(table, left={"run"})]
    return "\n".join(lines)


# ---- run folders ---------------------------------------------------------------------------------------------------


def find_run(run: str, results_dir: str | os.PathLike = "results") -> Path:
    """A results folder given as a path, else as an experiment name under ``results_dir`` (the first of the two
    that holds a children.jsonl)."""
    candidates = [Path(run), Path(results_dir) / run]
    for candidate in candidates:
        if (candidate / CHILDREN_FILE).is_file():
            return candidate
    for candidate in candidates:
        if candidate.is_dir():
            raise ValueError(f"{candidate} has no {CHILDREN_FILE}, so it is not a results folder of `nas search`; "
                             "give the folder printed at the end of a search, e.g. results/<name>")
    existing = sorted(p.parent.name for p in Path(results_dir).glob(f"*/{CHILDREN_FILE}"))
    raise ValueError(f"{run!r} is neither a results folder nor an experiment in {results_dir}; give a path such as "
                     f"results/<name> or a name (existing in {results_dir}: {', '.join(existing) or 'none'})")


def run_algo(run_dir: str | os.PathLike) -> str:
    """The search algorithm a run used (``algo`` in its config.json), or a note saying why it is unknown."""
    try:
        config = json.loads((Path(run_dir) / CONFIG_FILE).read_text())
    except (OSError, ValueError):
        return f"no readable {CONFIG_FILE}"
    return str(config.get("algo") or "algo unknown") if isinstance(config, dict) else f"no readable {CONFIG_FILE}"


def load_curve(run_dir: str | os.PathLike) -> pd.DataFrame:
    """The best-so-far curve of a results folder, from its children.jsonl."""
    return best_so_far(read_children(run_dir))


# ---- the plot ------------------------------------------------------------------------------------------------------


def _mean_std(x: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """x, mean and sample std (0 for one run) at the points where every run has a value."""
    keep = np.isfinite(ys).all(axis=0)
    ys = ys[:, keep]
    std = ys.std(axis=0, ddof=1) if len(ys) > 1 else np.zeros(ys.shape[1])
    return x[keep], ys.mean(axis=0), std


def _by_children(curves: Sequence[pd.DataFrame]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = min(len(c) for c in curves)
    ys = np.array([c["best_val_ppl"].to_numpy(dtype=float)[:n] for c in curves]).reshape(len(curves), n)
    return _mean_std(np.arange(1, n + 1, dtype=float), ys)


def _by_compute(curves: Sequence[pd.DataFrame]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    end = min(float(c["compute_seconds"].iloc[-1]) if len(c) else -1.0 for c in curves)
    grid = np.unique(np.concatenate([c["compute_seconds"].to_numpy(dtype=float) for c in curves]))
    grid = grid[grid <= end]
    ys = np.array([[value_at(c, compute=g) for g in grid] for c in curves]).reshape(len(curves), len(grid))
    return _mean_std(grid, ys)


def plot_curves(groups: Mapping[str, Sequence[pd.DataFrame]], path: str | os.PathLike) -> Path:
    """Write a PNG of best-so-far val_ppl vs children (left) and vs compute seconds (right), one line per group.

    A group of several runs is drawn as the mean over its runs with a band of ± one sample standard deviation,
    where every run of the group has a value (from the first point all have a completed child up to the shortest
    run: a mean over a changing set of runs would mislead); a group of one run is its curve. Returns the path.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # Agg, without touching pyplot's global state
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    if not groups or any(not len(runs) for runs in groups.values()):
        raise ValueError("plot_curves: give at least one group, each with at least one run")
    fig = Figure(figsize=(11, 4.5), layout="constrained")
    FigureCanvasAgg(fig)
    by_children, by_compute = fig.subplots(1, 2, sharey=True)
    fig.suptitle("best validation perplexity so far (completed children)", fontsize=11)
    values = []
    for i, (name, runs) in enumerate(groups.items()):
        label = name if len(runs) == 1 else f"{name} (mean ± std of {len(runs)} runs)"
        for ax, (x, mean, std) in ((by_children, _by_children(runs)), (by_compute, _by_compute(runs))):
            if not len(x):
                continue
            ax.step(x, mean, where="post", color=f"C{i}", label=label)
            ax.plot(x[-1:], mean[-1:], "o", ms=4, color=f"C{i}")  # where the run (the shortest of the group) ends
            if len(runs) > 1:
                ax.fill_between(x, mean - std, mean + std, step="post", color=f"C{i}", alpha=0.2, lw=0)
            values.append(mean)
    if values and (lo := min(v.min() for v in values)) > 0 and max(v.max() for v in values) / lo > 10:
        by_children.set_yscale("log")
    by_children.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    by_children.set_xlabel("children finished")
    by_children.set_ylabel("best validation perplexity")
    by_compute.set_xlabel("compute (seconds of child training)")
    for ax in (by_children, by_compute):
        ax.grid(alpha=0.3)
    if values:
        by_children.legend(fontsize=8, loc="best")
    else:
        by_children.text(0.5, 0.5, "no completed child yet", transform=by_children.transAxes, ha="center")
    path = Path(path)
    return atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=100))
