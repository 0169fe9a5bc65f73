"""Picking a search's winner by retraining: what ``nas train RUN --top K`` runs.

A search ranks its children after a short budget each, on a prefix of the validation split; such rankings discard
bad cells well and order good ones poorly (NAS-Bench-NLP's WikiText-2 logs: Kendall tau 0.59 between validation
loss after 1 epoch and final test loss). :func:`retrain_top` retrains the search's K best children under the
retraining settings (:func:`nas.retrain.trainer.retrain`, every seed asked for), and picks the winner by the retrained
*validation* perplexity (mean over seeds), never by test perplexity, which stays an unbiased report.

The output folder holds one ``rank<K>/`` folder per child (``nas train``'s usual output), and:

- ``top.csv`` and ``top.json``: one row per child (search rank and validation perplexity, parameters, retrained
  validation and test perplexity as mean and std over seeds, retrained rank), Kendall's tau-b between the search's
  order and the retrained one, and the winner;
- ``spec.json`` and ``winner.py``: the winner's spec and its ``nas export`` module (``nas export
  <folder>/spec.json`` writes it again under another name).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from nas.console import format_mean_std, mean_std, text_table
from nas.retrain.trainer import RetrainOutcome, RetrainRecipe, check_out_dir, retrain, scored
from nas.runs.export import write_export
from nas.runs.records import atomic_write, json_safe
from nas.runs.results import load_cells
from search_spaces import ChildSpec

TOP_CSV = "top.csv"
TOP_JSON = "top.json"
WINNER_MODULE = "winner.py"


def kendall_tau_b(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's tau-b rank correlation of two equally long sequences (ties allowed; NaN when either is constant
    or they hold fewer than two pairs): (concordant - discordant) / sqrt((n0 - ties_x) (n0 - ties_y))."""
    if len(x) != len(y):
        raise ValueError(f"kendall_tau_b: {len(x)} and {len(y)} values; give equally many")
    concordant = discordant = ties_x = ties_y = 0
    n = len(x)
    for i in range(n):
        for j in range(i + 1, n):
            dx, dy = x[i] - x[j], y[i] - y[j]
            if dx == 0:
                ties_x += 1
            if dy == 0:
                ties_y += 1
            if dx * dy > 0:
                concordant += 1
            elif dx * dy < 0:
                discordant += 1
    pairs = n * (n - 1) // 2
    denominator = math.sqrt((pairs - ties_x) * (pairs - ties_y))
    return (concordant - discordant) / denominator if denominator else math.nan


@dataclass(frozen=True)
class RetrainedChild:
    """One of the search's top children and how it retrained (one row of ``top.csv``)."""

    search_rank: int
    index: int
    """The child's index in the search."""
    search_val_ppl: float
    params: int | None
    seeds: int
    """Training seeds that completed."""
    val_ppl: float
    """Retrained validation perplexity, mean over seeds (NaN when none completed)."""
    val_ppl_std: float
    test_ppl: float
    test_ppl_std: float
    formula: str
    folder: str
    """Its ``nas train`` folder inside the output folder."""
    retrained_rank: int | None = None
    """Its place by retrained validation perplexity among the children that retrained (None: it did not)."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class TopOutcome:
    out_dir: Path
    rows: tuple[RetrainedChild, ...]
    """One per retrained child, in search order (as in ``top.csv``)."""
    tau: float
    """Kendall's tau-b between the search's validation perplexities and the retrained ones (NaN under 2 scored)."""
    winner: int | None
    """Search rank of the child with the best retrained validation perplexity (None when none completed)."""


def _row(rank: int, child: pd.Series, outcome: RetrainOutcome) -> RetrainedChild:
    done = scored(list(outcome.runs))
    val, val_std = mean_std([r["val_ppl"] for r in done])
    return RetrainedChild(rank, int(child["index"]), float(child["val_ppl"]),
                          int(child["params"]) if pd.notna(child.get("params")) else None, len(done), val, val_std,
                          outcome.test_ppl_mean, outcome.test_ppl_std, str(child["formula"]), outcome.out_dir.name)


def _with_retrained_ranks(rows: list[RetrainedChild]) -> list[RetrainedChild]:
    ranked = sorted((r for r in rows if math.isfinite(r.val_ppl)), key=lambda r: (r.val_ppl, r.search_rank))
    place = {r.search_rank: i for i, r in enumerate(ranked, 1)}
    return [dataclasses.replace(r, retrained_rank=place.get(r.search_rank)) for r in rows]


def top_children(run_dir: Path, k: int) -> pd.DataFrame:
    """The search's ``k`` best completed children (by val_ppl), best first; a clear error when there are fewer."""
    cells = load_cells(run_dir)
    ranked = cells[cells["rank"].notna()].sort_values("rank")
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ValueError(f"--top {k!r}: use a whole number >= 1")
    if not len(ranked):
        raise ValueError(f"--top {k}: {run_dir} has no completed child with a val_ppl yet; wait for one")
    if k > len(ranked):
        raise ValueError(f"--top {k}: {run_dir} has only {len(ranked)} completed children with a val_ppl; give "
                         f"--top {len(ranked)} or less")
    return ranked.head(k)


def retrain_top(run_dir: str | Path, k: int, cfg: RetrainRecipe, out_dir: str | Path,
                out: Callable[[str], None] = print) -> TopOutcome:
    """Retrain the ``k`` best children of the search in ``run_dir`` under ``cfg`` into ``out_dir`` (see the module
    docstring) and pick the winner by retrained validation perplexity."""
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    check_out_dir(out_dir)
    children = top_children(run_dir, k)
    specs = {int(c["rank"]): ChildSpec.from_json(c["spec"]) for _, c in children.iterrows()}
    rows: list[RetrainedChild] = []
    for _, child in children.iterrows():
        rank = int(child["rank"])
        out(f"--- search rank {rank} of {k}: child {int(child['index'])}, search val ppl {child['val_ppl']:.2f}")
        outcome = retrain(specs[rank], cfg, out_dir / f"rank{rank}", source=f"{run_dir.name} rank {rank}", out=out)
        rows.append(_row(rank, child, outcome))
        _write(out_dir, rows, None)  # after every child, so an interrupted run keeps the finished ones
    rows = _with_retrained_ranks(rows)
    retrained = [r for r in rows if r.retrained_rank is not None]
    tau = kendall_tau_b([r.search_val_ppl for r in retrained], [r.val_ppl for r in retrained])
    winner = min(retrained, key=lambda r: (r.val_ppl, r.search_rank)).search_rank if retrained else None
    _write(out_dir, rows, tau, winner)
    if winner is not None:
        atomic_write(out_dir / "spec.json", lambda p: p.write_text(specs[winner].to_json() + "\n"))
        write_export(specs[winner], out_dir / WINNER_MODULE, class_name="SearchedCell")
    return TopOutcome(out_dir, tuple(rows), tau, winner)


def _write(out_dir: Path, rows: list[RetrainedChild], tau: float | None, winner: int | None = None) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    dicts = [r.to_dict() for r in rows]
    doc = {"rows": dicts, "kendall_tau_b": tau, "winner_search_rank": winner,
           "winner_by": "retrained validation perplexity (mean over seeds)"}
    text = json.dumps(json_safe(doc), indent=2, allow_nan=False) + "\n"
    atomic_write(out_dir / TOP_JSON, lambda p: p.write_text(text))
    atomic_write(out_dir / TOP_CSV, lambda p: pd.DataFrame(dicts).to_csv(p, index=False))


def top_lines(top: TopOutcome) -> list[str]:
    """The console table: search rank and perplexity against the retrained ones, tau and the winner."""
    table = [("search rank", "search val ppl", "retrained val ppl", "test ppl", "retrained rank", "parameters")]
    for r in top.rows:
        table.append((str(r.search_rank), f"{r.search_val_ppl:.2f}", format_mean_std(r.val_ppl, r.val_ppl_std),
                      format_mean_std(r.test_ppl, r.test_ppl_std), str(r.retrained_rank or "-"),
                      f"{r.params:,}" if r.params else "-"))
    lines = text_table(table)
    tau = "n/a (fewer than two retrained)" if not math.isfinite(top.tau) else f"{top.tau:+.2f}"
    lines.append(f"Kendall tau-b between the search's order and the retrained one: {tau}")
    if top.winner is None:
        lines.append("no child completed its retraining; no winner")
    else:
        lines.append(f"winner by retrained validation perplexity: search rank {top.winner}; wrote "
                     f"{top.out_dir / 'spec.json'} and {top.out_dir / WINNER_MODULE}")
    return lines
