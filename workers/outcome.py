"""How one child ended, as one typed record: what the trainable reports last, what the searcher records in
``children.jsonl``, what the progress line and the results tables show. A new field is added here only.

No Ray here: the searcher, the tables and ``nas train`` read it without a cluster.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

METRIC = "val_ppl"
"""What the searcher minimises: validation perplexity (best over the child's epochs)."""

STATUSES: tuple[str, ...] = ("completed", "diverged", "failed", "stopped", "over_budget")
"""How a child can end: trained to its budget; a loss became NaN/inf; it raised; stopped by an early-stopping
scheduler at a rung, i.e. at a lower fidelity; not trained because its model has more parameters than the search's
``max_params``. (A child cut off by Ctrl-C is not recorded: Tune runs it again when the search resumes.)"""


@dataclass(frozen=True)
class ChildOutcome:
    """The outcome of one child."""

    status: str
    """One of :data:`STATUSES`."""
    val_ppl: float = math.nan
    """Best validation perplexity measured (NaN when none was)."""
    params: int | None = None
    """Trainable parameters of the child model."""
    train_seconds: float | None = None
    """Seconds in training steps (evaluation excluded); None when training never started."""
    epochs: int = 0
    """Epochs completed."""
    error: str = ""
    """Why it diverged or failed (with a traceback for a failure)."""
    fidelity: int = 0
    """Training batches done when ``val_ppl`` was measured: the budget's total for a completed child, fewer for
    one an early-stopping scheduler stopped at a rung."""
    rung_ppl: dict[str, float] = dataclasses.field(default_factory=dict)
    """Validation perplexity at each rung the child passed (training batches -> perplexity)."""
    kernels: str = ""
    """How its cell ran: "triton" (GPU kernels), "native" (generated C), "torch" (torch operations), "" when
    unknown."""
    cuda_graphs: str = ""
    """"off", "captured", or why the CUDA graph capture failed ("eager: ..."); "" when unknown."""
    resumed_from: int = 0
    """Training batches done when a retried child resumed from its own checkpoint (0: it trained from the start)."""

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status: {self.status!r} is not one of {', '.join(STATUSES)}")

    def to_dict(self) -> dict[str, Any]:
        """The outcome's fields, as the trainable reports them and ``children.jsonl`` records them."""
        return dataclasses.asdict(self)

    @classmethod
    def from_result(cls, result: Mapping[str, Any] | None, error: bool = False) -> ChildOutcome:
        """The outcome of a trial from its last reported result (Tune's ``on_trial_complete``): a result still
        marked "running" ended before its final report (stopped); an errored or missing result failed; a
        "completed" result without a finite, positive perplexity failed."""
        r = dict(result or {})
        known = {f.name: r[f.name] for f in dataclasses.fields(cls) if f.name in r and f.name != "status"}
        ppl = r.get(METRIC)
        known[METRIC] = float(ppl) if isinstance(ppl, (int, float)) and not isinstance(ppl, bool) else math.nan
        known["error"] = str(known.get("error") or "")
        known["epochs"] = int(known.get("epochs") or 0)
        known["fidelity"] = int(known.get("fidelity") or 0)
        known["resumed_from"] = int(known.get("resumed_from") or 0)
        rung_ppl = dict(known.get("rung_ppl") or {})  # Tune flattens a reported dict into "rung_ppl/<batches>" keys
        rung_ppl.update({k.split("/", 1)[1]: v for k, v in r.items() if k.startswith("rung_ppl/")})
        known["rung_ppl"] = {str(k): float(v) for k, v in rung_ppl.items()}
        known["kernels"], known["cuda_graphs"] = str(known.get("kernels") or ""), str(known.get("cuda_graphs") or "")
        if error or not result:
            return cls("failed", **{**known, METRIC: math.nan,
                                    "error": known["error"] or "the trial raised an error in Ray (see its error.txt)"})
        status = r.get("status", "stopped")
        if status == "running" or status not in STATUSES:  # ended before its final report
            status = "stopped"
        if status == "completed" and not (math.isfinite(known[METRIC]) and known[METRIC] > 0):
            return cls("failed", **{**known, METRIC: math.nan,
                                    "error": f"reported a non-finite validation perplexity ({known[METRIC]})"})
        return cls(status, **known)


OUTCOME_COLUMNS: dict[str, str] = {
    "status": "string", "val_ppl": "Float64", "params": "Int64", "train_seconds": "Float64", "epochs": "Int64",
    "fidelity": "Int64",
}
"""The outcome fields a results table shows among its lead columns, with their pandas dtypes (``error`` is a
tail column)."""

_DTYPES = {str: "string", int: "Int64", float: "Float64", bool: "boolean"}


def _tail_columns() -> dict[str, str]:
    columns = {}
    for f in dataclasses.fields(ChildOutcome):
        if f.name in OUTCOME_COLUMNS or f.name == "error" or f.default is dataclasses.MISSING:
            continue  # a field with a default factory (rung_ppl: a dict) is no column
        if type(f.default) not in _DTYPES:
            raise TypeError(f"ChildOutcome.{f.name}: a default of type {type(f.default).__name__} has no column "
                            f"dtype; give it a str, int, float or bool default or add it to OUTCOME_COLUMNS")
        columns[f.name] = _DTYPES[type(f.default)]
    return columns


OUTCOME_TAIL_COLUMNS: dict[str, str] = _tail_columns()
"""Every other scalar outcome field, in declaration order, with the pandas dtype of its default: a results table's
last columns (after ``error`` and the seed), so that a field added to :class:`ChildOutcome` shows there by itself."""
