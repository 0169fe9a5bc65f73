"""Results of a search as tables: the cells and controller tables, the leaderboard and the progress plot, all
built by pure functions from the run's records (:mod:`nas.runs.records`).

Tables (``cells.csv``, ``cells.parquet``, ``controller.csv``) and ``progress.png`` are rewritten atomically; they
can always be rebuilt from ``children.jsonl`` and ``controller.jsonl`` with :func:`write_tables`.
"""

from __future__ import annotations

import functools
import json
import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from nas.console import bits_per_token, column_table
from nas.runs.pareto import draw_front, pareto_column
from nas.runs.records import (
    CHILDREN_FILE,
    CONTROLLER_FILE,
    ChildRecord,
    atomic_write,
    child_records,
    json_safe,
    latest_per_trial,
    read_children,
    read_records,
)
from search_spaces import ChildSpec
from workers.outcome import OUTCOME_COLUMNS, OUTCOME_TAIL_COLUMNS

CELLS_CSV, CELLS_PARQUET, CONTROLLER_CSV, PROGRESS_PNG = "cells.csv", "cells.parquet", "controller.csv", "progress.png"

_OUTCOME = list(OUTCOME_COLUMNS.items())
LEAD_COLUMNS = {  # name -> dtype, before the hyperparameter columns: the child outcome's fields, reward after val_ppl
    "rank": "Int64", "pareto": "boolean", "trial_id": "string", "index": "Int64", **dict(_OUTCOME[:2]),
    "reward": "Float64",
    **dict(_OUTCOME[2:]), "reused_from": "Int64",
}
TAIL_COLUMNS = {"formula": "string", "spec": "string", "error": "string", "seed": "Int64", **OUTCOME_TAIL_COLUMNS}
"""After the hyperparameter columns."""
CONTROLLER_METRICS = ("reward", "baseline", "advantage", "entropy", "log_prob", "loss", "grad_norm")
CONTROLLER_COLUMNS = {"step": "Int64", **{m: "Float64" for m in CONTROLLER_METRICS}, "trial_ids": "string"}
DESCENDING = frozenset({"reward"})  # every other sortable column sorts ascending (lower is better)


# ---- tables: pure functions over records -------------------------------------------------------------------------


def _array(values: list, dtype: str | None, what: str) -> pd.api.extensions.ExtensionArray:
    values = [json_safe(v) for v in values]
    if dtype is None:  # hyperparameters: keep the values' own type, nullable
        kinds = {type(v) for v in values if v is not None}
        dtype = ("boolean" if kinds == {bool} else "Int64" if kinds == {int} else
                 "Float64" if kinds and kinds <= {int, float} else "string")
        if dtype == "string" and kinds - {str}:  # mixed types: text, so that CSV and Parquet can hold them
            values = [None if v is None else str(v) for v in values]
    try:
        return pd.array(values, dtype=dtype)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{what}: values {values[:5]} do not fit {dtype} ({e})") from None


def _last_wins(records: Iterable[Mapping[str, Any]], key: str, what: str) -> list[Mapping[str, Any]]:
    latest: dict[Any, Mapping[str, Any]] = {}
    for r in records:
        if r.get(key) is None:
            raise ValueError(f"{what}: record without {key!r}: {json.dumps(json_safe(dict(r)))[:120]}")
        latest[r[key]] = r
    return list(latest.values())


def _hparam_column(name: str) -> str:
    return f"hp.{name}" if name in LEAD_COLUMNS or name in TAIL_COLUMNS else name


def children_table(records: Iterable[ChildRecord | Mapping[str, Any]]) -> pd.DataFrame:
    """One row per child (last record of a trial_id wins), sorted by ``index``; nullable dtypes, NA = missing.

    Columns: rank (1 = lowest val_ppl among completed children, NA for the rest), pareto (on the front of val_ppl
    against params, :mod:`nas.runs.pareto`), trial_id, index, status, val_ppl, reward, params, train_seconds,
    epochs, fidelity, reused_from, one column per hyperparameter, formula, spec (compact JSON), error, seed, then
    the outcome's other fields (``OUTCOME_TAIL_COLUMNS``). A hyperparameter named like one of those columns gets an
    ``hp.`` prefix.
    """
    rows = [r.to_dict() for r in latest_per_trial(child_records(records))]
    rows.sort(key=lambda r: r["index"])
    hp_names: dict[str, None] = {}  # ordered set, in order of first appearance
    for r in rows:
        hp_names.update(dict.fromkeys((r.get("spec") or {}).get("hparams") or {}))

    cols: dict[str, Any] = {}
    for name, dtype in LEAD_COLUMNS.items():
        if name not in ("rank", "pareto"):  # derived below
            cols[name] = _array([r.get(name) for r in rows], dtype, f"children.{name}")
    for hp in hp_names:
        values = [((r.get("spec") or {}).get("hparams") or {}).get(hp) for r in rows]
        cols[_hparam_column(hp)] = _array(values, None, f"children.spec.hparams.{hp}")
    cols["formula"] = _array([r.get("formula") or "" for r in rows], "string", "children.formula")
    specs = [None if r.get("spec") is None else json.dumps(json_safe(r["spec"]), separators=(",", ":")) for r in rows]
    cols["spec"] = _array(specs, "string", "children.spec")
    cols["error"] = _array([r.get("error") or "" for r in rows], "string", "children.error")
    cols["seed"] = _array([r.get("seed") for r in rows], "Int64", "children.seed")
    for name, dtype in OUTCOME_TAIL_COLUMNS.items():
        cols[name] = _array([r[name] for r in rows], dtype, f"children.{name}")

    df = pd.DataFrame(cols)
    df.insert(0, "rank", _ranks(df))
    df.insert(1, "pareto", pareto_column(df))
    return df


def _ranks(df: pd.DataFrame) -> pd.Series:
    """1, 2, ... by val_ppl over completed children with a value (ties: lower index first); NA for the rest,
    children that reused an earlier child's outcome included (their spec is ranked once, as the earlier child)."""
    ok = (df["status"] == "completed").fillna(False) & df["val_ppl"].notna() & df["reused_from"].isna()
    order = df.loc[ok].sort_values(["val_ppl", "index"], kind="stable").index
    rank = pd.Series(pd.NA, index=df.index, dtype="Int64")
    rank.loc[order] = range(1, len(order) + 1)
    return rank


def hparam_columns(df: pd.DataFrame) -> list[str]:
    """The hyperparameter columns of a cells table: those between the lead columns and ``formula``."""
    cols = list(df.columns)
    return cols[cols.index(list(LEAD_COLUMNS)[-1]) + 1 : cols.index("formula")]


def controller_table(records: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """One row per controller update (last record of a step wins), sorted by step; ``controller/`` prefix
    stripped; ``trial_ids`` joined with ";". Empty (with the columns) for random search."""
    rows = sorted(_last_wins(records, "step", "controller"), key=lambda r: r["step"])
    cols = {"step": _array([r["step"] for r in rows], "Int64", "controller.step")}
    for m in CONTROLLER_METRICS:
        cols[m] = _array([r.get(f"controller/{m}") for r in rows], "Float64", f"controller.controller/{m}")
    ids = [r.get("trial_ids") or [] for r in rows]
    cols["trial_ids"] = _array([x if isinstance(x, str) else ";".join(map(str, x)) for x in ids], "string",
                               "controller.trial_ids")
    return pd.DataFrame(cols)


# ---- run folders ---------------------------------------------------------------------------------------------------


def _read_csv(path: Path, dtypes: Mapping[str, str]) -> pd.DataFrame:
    df = pd.read_csv(path, dtype=dict(dtypes), dtype_backend="numpy_nullable", keep_default_na=False,
                     na_values=[""])
    for name in df:  # "" and missing look alike in CSV: text columns of records are "" when empty
        if name in ("formula", "error") or OUTCOME_TAIL_COLUMNS.get(name) == "string":
            df[name] = df[name].fillna("")
    return df


def _not_a_run(run_dir: Path) -> ValueError:
    return ValueError(
        f"{run_dir} is not a results folder of `nas search` (no {CHILDREN_FILE} or {CELLS_CSV}); "
        "give the folder printed at the end of a search, e.g. results/<name>"
    )


def _with_every_column(df: pd.DataFrame) -> pd.DataFrame:
    """A table written by an older version, with the columns added since (missing values) in their places."""
    lead = list(LEAD_COLUMNS)
    for i, name in enumerate(lead):
        if name not in df and name != "pareto":
            df.insert(list(df.columns).index(lead[i - 1]) + 1, name, pd.array([None] * len(df), LEAD_COLUMNS[name]))
    if "pareto" not in df:  # derived from columns every table has
        df.insert(list(df.columns).index("rank") + 1, "pareto", pareto_column(df))
    for name, dtype in TAIL_COLUMNS.items():
        if name not in df:
            df[name] = pd.array([None] * len(df), dtype)
    return df


def _load_controller(run_dir: Path) -> pd.DataFrame:
    if not (run_dir / CONTROLLER_FILE).is_file() and (run_dir / CONTROLLER_CSV).is_file():
        return _read_csv(run_dir / CONTROLLER_CSV, CONTROLLER_COLUMNS)
    return controller_table(read_records(run_dir / CONTROLLER_FILE))


def _existing_dir(run_dir: str | os.PathLike) -> Path:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise _not_a_run(run_dir)
    return run_dir


class Run:
    """A results folder of `nas search`, opened once per command and passed on: its child records are read once,
    its cells table built once, and tables, plot and rank lookups all come from those.

    Open it after the search has written to it (the records are read on first use and kept).
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    @functools.cached_property
    def children(self) -> list[ChildRecord]:
        """Every record of ``children.jsonl``, in file order."""
        return read_children(self.path)

    @functools.cached_property
    def _built_cells(self) -> pd.DataFrame:
        return children_table(self.children)

    @functools.cached_property
    def cells(self) -> pd.DataFrame:
        """The cells table: built from children.jsonl, else read from cells.parquet or cells.csv (a folder whose
        records were deleted). Shared: derive a new frame rather than changing this one."""
        if (self.path / CHILDREN_FILE).is_file():
            return self._built_cells
        if (self.path / CELLS_PARQUET).is_file():
            return _with_every_column(pd.read_parquet(self.path / CELLS_PARQUET))
        if (self.path / CELLS_CSV).is_file():
            return _with_every_column(_read_csv(self.path / CELLS_CSV, {**LEAD_COLUMNS, **TAIL_COLUMNS}))
        raise _not_a_run(self.path)

    def write_tables(self) -> list[Path]:
        """Rebuild cells.csv, cells.parquet, controller.csv and progress.png from the run's JSONL records.

        The folder must exist; missing record files mean no children / no controller updates yet.
        """
        run_dir = _existing_dir(self.path)
        cells = self._built_cells
        controller = controller_table(read_records(run_dir / CONTROLLER_FILE))
        return [
            atomic_write(run_dir / CELLS_CSV, lambda p: cells.to_csv(p, index=False)),
            atomic_write(run_dir / CELLS_PARQUET, lambda p: cells.to_parquet(p, index=False)),
            atomic_write(run_dir / CONTROLLER_CSV, lambda p: controller.to_csv(p, index=False)),
            _write_progress(run_dir, cells, controller),
        ]

    def plot_progress(self) -> Path:
        """Write ``progress.png`` (see :func:`plot_progress`)."""
        run_dir = _existing_dir(self.path)
        has_cells = any((run_dir / f).is_file() for f in (CHILDREN_FILE, CELLS_PARQUET, CELLS_CSV))
        cells = self.cells if has_cells else children_table([])
        return _write_progress(run_dir, cells, _load_controller(run_dir))

    def child_at_rank(self, rank: int = 1) -> pd.Series:
        """The results row of the ``rank``-th best completed child (by val_ppl)."""
        df = self.cells
        n = int(df["rank"].notna().sum())
        if not isinstance(rank, int) or rank < 1 or rank > n:
            choice = f"give a rank from 1 to {n}" if n else "wait for a child to complete"
            raise ValueError(f"rank {rank!r}: {self.path} has {n} completed children with a val_ppl; {choice}")
        child = df.loc[df["rank"] == rank].iloc[0]
        if pd.isna(child["spec"]):
            raise ValueError(f"rank {rank}: the record of this child has no spec")
        return child

    def spec_at_rank(self, rank: int = 1) -> ChildSpec:
        """The spec of the ``rank``-th best completed child (by val_ppl)."""
        return ChildSpec.from_json(self.child_at_rank(rank)["spec"])


def load_cells(run_dir: str | os.PathLike) -> pd.DataFrame:
    """The cells table of a run (:attr:`Run.cells`)."""
    return Run(run_dir).cells


def write_tables(run_dir: str | os.PathLike) -> list[Path]:
    """:meth:`Run.write_tables` of the folder ``run_dir``."""
    return Run(run_dir).write_tables()


def child_at_rank(run_dir: str | os.PathLike, rank: int = 1) -> pd.Series:
    """The results row of the ``rank``-th best completed child (by val_ppl) of a run."""
    return Run(run_dir).child_at_rank(rank)


def spec_at_rank(run_dir: str | os.PathLike, rank: int = 1) -> ChildSpec:
    """The spec of the ``rank``-th best completed child (by val_ppl) of a run."""
    return Run(run_dir).spec_at_rank(rank)


# ---- reading the results -------------------------------------------------------------------------------------------


def summary_line(df: pd.DataFrame) -> str:
    """E.g. ``12 children: 11 completed, 1 diverged, 0 failed; best val_ppl 123.45 (index 7)``."""
    counts = df["status"].value_counts()
    parts = [f"{int(counts.get(s, 0))} {s}" for s in ("completed", "diverged", "failed")]
    parts += [f"{int(c)} {s}" for s, c in counts.items() if s not in ("completed", "diverged", "failed")]
    best = df.loc[df["rank"] == 1]
    best_text = "no ranked child yet" if best.empty else (
        f"best val_ppl {best['val_ppl'].iloc[0]:.2f} (index {best['index'].iloc[0]})")
    return f"{len(df)} {'child' if len(df) == 1 else 'children'}: {', '.join(parts)}; {best_text}"


def _fmt(value: Any, spec: str) -> str:
    return "-" if pd.isna(value) else format(value, spec)


def leaderboard(df: pd.DataFrame, top: int = 5, sort: str = "val_ppl", width: int = 150, level: str = "word") -> str:
    """A one-line summary and a fixed-width table of the ``top`` children by ``sort`` (non-completed last); at
    character ``level`` the validation bits per character (log2 of the perplexity) beside the perplexity."""
    hps = hparam_columns(df)
    sortable = ["val_ppl", "reward", "params", "train_seconds", "index", "epochs", "fidelity", *hps]
    if sort not in sortable:
        raise ValueError(f"sort: {sort!r} is not a sortable column; choose from {', '.join(sortable)}")
    if top < 1:
        raise ValueError(f"top: {top} rows asked; give 1 or more")
    done = (df["status"] == "completed").fillna(False)
    ordered = df.assign(_later=~done).sort_values(
        ["_later", sort, "index"], ascending=[True, sort not in DESCENDING, True], na_position="last", kind="stable")
    rows = ordered.head(top)

    table: dict[str, list[str]] = {
        "rank": [_fmt(v, "d") for v in rows["rank"]], "index": [_fmt(v, "d") for v in rows["index"]],
        "status": [_fmt(v, "s") for v in rows["status"]], "val_ppl": [_fmt(v, ".2f") for v in rows["val_ppl"]],
        **({"bits/char": [_fmt(bits_per_token(v) if pd.notna(v) else math.nan, ".3f") for v in rows["val_ppl"]]}
           if level == "char" else {}),
        "reward": [_fmt(v, ".4g") for v in rows["reward"]], "params": [_fmt(v, ",d") for v in rows["params"]],
        "train_seconds": [_fmt(v, ".1f") for v in rows["train_seconds"]],
    }
    if df["fidelity"].dropna().nunique() > 1:  # early stopping: the training batches each child reached
        table["fidelity"] = [_fmt(v, "d") for v in rows["fidelity"]]
    if df["reused_from"].notna().any():  # which earlier child's outcome a child reused (no training)
        table["reuses"] = [_fmt(v, "d") for v in rows["reused_from"]]
    table.update({hp: ["-" if pd.isna(v) else str(v) for v in rows[hp]] for hp in hps})
    used = sum(max(map(len, [k, *vals])) for k, vals in table.items())  # the widths before the formula's
    room = max(20, min(60, width - used - 2 * len(table)))
    table["formula"] = [f if len(f) <= room else f[: room - 1] + "…" for f in rows["formula"].fillna("")]
    return "\n".join([summary_line(df), *column_table(table, left={"status", "formula"})])


# ---- the progress plot ---------------------------------------------------------------------------------------------


def plot_progress(run_dir: str | os.PathLike) -> Path:
    """Write ``progress.png``: val_ppl per child with the running best, and the controller's reward, baseline
    and entropy per update (or a note that this was a random search). Returns its path."""
    return Run(run_dir).plot_progress()


_MARKS = {"diverged": ("x", "tab:red"), "failed": ("X", "black"), "stopped": ("v", "tab:orange")}


def _integer_x(ax: Any, x: np.ndarray) -> None:
    """Whole-number ticks, and at least one unit of room, so that one point does not get a ±0.04 axis."""
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    if np.isfinite(x).any():
        lo, hi = np.nanmin(x), np.nanmax(x)
        pad = max(0.5, 0.04 * (hi - lo))
        ax.set_xlim(lo - pad, hi + pad)


def _write_progress(run_dir: Path, cells: pd.DataFrame, controller: pd.DataFrame) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # Agg, without touching pyplot's global state
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 10), layout="constrained")
    FigureCanvasAgg(fig)
    top, middle, bottom = fig.subplots(3, 1)

    index = cells["index"].to_numpy(dtype=float, na_value=np.nan)
    ppl = cells["val_ppl"].to_numpy(dtype=float, na_value=np.nan)
    done = (cells["status"] == "completed").fillna(False).to_numpy(dtype=bool) & np.isfinite(ppl)
    top.set_title(summary_line(cells) if len(cells) else "no children yet", fontsize=10)
    if not len(cells):
        top.set_xticks([])
        top.set_yticks([])
    if done.any():
        top.plot(index[done], ppl[done], "o", ms=4, color="tab:blue", label="completed")
        top.step(index[done], np.fmin.accumulate(ppl[done]), where="post", color="tab:green", label="best so far")
        lo, hi = ppl[done].min(), ppl[done].max()
        if lo > 0 and hi / lo > 10:
            top.set_yscale("log")
    elif len(cells):
        top.text(0.5, 0.5, "no completed child yet", transform=top.transAxes, ha="center", va="center")
        top.set_yticks([])  # no perplexity to show: no made-up scale either
    for status, (marker, color) in _MARKS.items():
        mask = (cells["status"] == status).fillna(False).to_numpy(dtype=bool)
        if mask.any():  # at the top edge: these children have no perplexity to place them by
            top.plot(index[mask], np.full(mask.sum(), 0.97), marker, color=color, ms=7, clip_on=False,
                     transform=top.get_xaxis_transform(), label=f"{status} ({mask.sum()})")
    _integer_x(top, index)
    top.set_xlabel("child (order sampled)")
    top.set_ylabel("validation perplexity")
    if len(cells):
        top.legend(fontsize=8, loc="upper right", bbox_to_anchor=(1, 0.92))

    if done.any() and cells["params"].notna().any():
        draw_front(middle, cells)
        middle.legend(fontsize=8, loc="upper right")
    else:
        middle.text(0.5, 0.5, "no completed child with a parameter count yet", transform=middle.transAxes,
                    ha="center", va="center")
        middle.set_xticks([])
        middle.set_yticks([])

    if controller.empty:
        bottom.text(0.5, 0.5, "no controller updates (random search, or none yet)", transform=bottom.transAxes,
                    ha="center", va="center")
        bottom.set_xticks([])
        bottom.set_yticks([])
    else:
        step = controller["step"].to_numpy(dtype=float, na_value=np.nan)
        series = {m: controller[m].to_numpy(dtype=float, na_value=np.nan) for m in ("reward", "baseline", "entropy")}
        handles = bottom.plot(step, series["reward"], ".-", color="tab:blue", label="reward")
        handles += bottom.plot(step, series["baseline"], "-", color="tab:gray", label="baseline")
        twin = bottom.twinx()
        handles += twin.plot(step, series["entropy"], "--", color="tab:purple", label="entropy")
        twin.set_ylabel("entropy")
        bottom.set_ylabel("reward")
        _integer_x(bottom, step)
        bottom.set_xlabel("controller update")
        bottom.legend(handles=handles, fontsize=8, loc="best")

    return atomic_write(run_dir / PROGRESS_PNG, lambda p: fig.savefig(p, format="png", dpi=100))
