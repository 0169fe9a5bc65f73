"""The records of a search: append-only JSONL files written as results arrive, the source of truth.

A run folder ``results/<name>/`` holds two:

* ``children.jsonl``: one record per finished child (``trial_id``, ``index``, ``status``, ``val_ppl``, ``reward``,
  ``params``, ``train_seconds``, ``epochs``, ``seed``, ``formula``, ``spec``, ``error``, ``finished_at``);
* ``controller.jsonl``: one record per controller update (``step``, ``trial_ids``, ``controller/...`` diagnostics).

A child's line is a :class:`ChildRecord`, read by :func:`read_children` and written by :func:`append_child`.
After a crash and resume a trial or step may be recorded twice; the last record wins (:func:`latest_per_trial`).
A SIGKILL can leave a torn last line, which readers skip. Every other file is written whole, through
:func:`atomic_write`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import tempfile
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from workers.outcome import ChildOutcome

CHILDREN_FILE, CONTROLLER_FILE = "children.jsonl", "controller.jsonl"
CONFIG_FILE = "config.json"
"""The settings a search ran with, in its results folder (what ``--resume`` and ``nas train`` read)."""


def json_safe(value: Any) -> Any:
    """``value`` with every NaN/inf float (also inside dicts and lists) replaced by None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.generic):  # numpy scalars: plain Python values, then the same rule
        return json_safe(value.item())
    return value


def append_record(path: str | os.PathLike, record: Mapping[str, Any]) -> None:
    """Append ``record`` as one JSON line (NaN/inf written as null), flushed and fsynced.

    A torn last line left by a killed writer is dropped first, so the new record starts on its own line.
    """
    path = Path(path)
    line = json.dumps(json_safe(dict(record)), allow_nan=False, separators=(",", ":")) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "ab") as f:
        if f.seek(0, os.SEEK_END) and not _ends_with_newline(path):
            data = path.read_bytes()
            tail_start = data.rfind(b"\n") + 1
            if _parse(data[tail_start:]) is None:
                f.truncate(tail_start)  # append mode: the next write lands at the new end
            else:
                f.write(b"\n")  # a whole record that only lacks its newline: keep it
        f.write(line.encode("utf-8"))
        f.flush()
        os.fsync(f.fileno())


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1) == b"\n"


def _parse(raw: bytes) -> dict | None:
    """The JSON object on one line, or None if the line is not one."""
    try:
        value = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    return value if isinstance(value, dict) else None


def read_records(path: str | os.PathLike) -> list[dict]:
    """The JSON objects in a JSONL file, in order; a missing file is []. An unparsable last line (torn by a kill)
    is skipped with a warning; an unparsable line anywhere else raises ValueError naming the line."""
    path = Path(path)
    if not path.exists():
        return []
    lines = [(n, raw) for n, raw in enumerate(path.read_bytes().split(b"\n"), 1) if raw.strip()]
    records = []
    for i, (n, raw) in enumerate(lines):
        record = _parse(raw)
        if record is not None:
            records.append(record)
        elif i == len(lines) - 1:
            warnings.warn(f"{path}:{n}: skipped a torn last line (a write in progress or interrupted): {raw[:60]!r}",
                          stacklevel=2)
        else:
            raise ValueError(
                f"{path}:{n}: not a JSON object ({raw[:60]!r}); only a torn last line is skipped, "
                "so repair or delete this line"
            )
    return records


def atomic_write(path: Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it over ``path``."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


# ---- a child's record: one typed value, one reader, one writer ----------------------------------------------------


@dataclass(frozen=True)
class ChildRecord:
    """One finished child as ``children.jsonl`` holds it: its outcome and what the searcher knew of it. A field is
    added here (and in :meth:`to_dict` / :meth:`from_dict` when it is not an outcome field) and nowhere else."""

    trial_id: str
    """Tune's trial id; ``reused-<index>`` / ``over-budget-<index>`` for a child recorded without a trial."""
    index: int
    """The order the child was sampled in (0, 1, ...)."""
    outcome: ChildOutcome
    reward: float = math.nan
    """The controller's reward for the child (NaN when it taught nothing)."""
    reused_from: int | None = None
    """The index of the earlier child of the same spec whose outcome this child reused (no training)."""
    seed: int | None = None
    """The child's training seed."""
    formula: str = ""
    """The cell's formula on one line."""
    spec: dict[str, Any] | None = None
    """The child's spec as JSON (:meth:`search_spaces.ChildSpec.to_dict`)."""
    started_at: float | None = None
    finished_at: float | None = None
    node_ip: str | None = None
    node_id: str | None = None
    gpus: Any = None
    """Where it trained: wall-clock times (seconds since the epoch), the Ray node, the GPUs it saw."""

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of one ``children.jsonl`` line."""
        return {"trial_id": self.trial_id, "index": self.index, **self.outcome.to_dict(), "reward": self.reward,
                "reused_from": self.reused_from, "seed": self.seed, "formula": self.formula, "spec": self.spec,
                "started_at": self.started_at, "finished_at": self.finished_at, "node_ip": self.node_ip,
                "node_id": self.node_id, "gpus": self.gpus}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ChildRecord:
        """A record from its JSON object (null for NaN; fields added since an older version take their defaults).
        Raises ValueError naming the record when it has no trial_id or index, or an unknown status."""
        for key in ("trial_id", "index"):
            if d.get(key) is None:
                raise ValueError(f"children: record without {key!r}: {json.dumps(json_safe(dict(d)))[:120]}")
        known = {f.name: d[f.name] for f in dataclasses.fields(ChildOutcome) if d.get(f.name) is not None}
        try:
            outcome = ChildOutcome(**known)
        except (TypeError, ValueError) as e:
            raise ValueError(f"children: record of trial {d['trial_id']!r}: {e}") from None
        reward = d.get("reward")
        return cls(d["trial_id"], d["index"], outcome, math.nan if reward is None else reward, d.get("reused_from"),
                   d.get("seed"), d.get("formula") or "", d.get("spec"), d.get("started_at"), d.get("finished_at"),
                   d.get("node_ip"), d.get("node_id"), d.get("gpus"))


def child_records(items: Iterable[ChildRecord | Mapping[str, Any]]) -> list[ChildRecord]:
    """``items`` as records: each a :class:`ChildRecord` already or its JSON object."""
    return [r if isinstance(r, ChildRecord) else ChildRecord.from_dict(r) for r in items]


def latest_per_trial(records: Iterable[ChildRecord]) -> list[ChildRecord]:
    """One record per trial, in the order of the file: a trial recorded more than once (a crash and resume) is kept
    only at its last record, which wins."""
    records = list(records)
    last = {r.trial_id: i for i, r in enumerate(records)}
    return [r for i, r in enumerate(records) if last[r.trial_id] == i]


def read_children(run_dir: str | os.PathLike) -> list[ChildRecord]:
    """Every record of a run's ``children.jsonl``, in file order ([] when there is none yet)."""
    return child_records(read_records(Path(run_dir) / CHILDREN_FILE))


def append_child(run_dir: str | os.PathLike, record: ChildRecord) -> None:
    """Append ``record`` to the run's ``children.jsonl`` (see :func:`append_record`)."""
    append_record(Path(run_dir) / CHILDREN_FILE, record.to_dict())
