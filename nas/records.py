"""The records of a search: append-only JSONL files written as results arrive, the source of truth.

A run folder ``results/<name>/`` holds two:

* ``children.jsonl``: one record per finished child (``trial_id``, ``index``, ``status``, ``val_ppl``, ``reward``,
  ``params``, ``train_seconds``, ``epochs``, ``seed``, ``formula``, ``spec``, ``error``, ``finished_at``);
* ``controller.jsonl``: one record per controller update (``step``, ``trial_ids``, ``controller/...`` diagnostics).

After a crash and resume a trial or step may be recorded twice; the last record wins. A SIGKILL can leave a torn
last line, which readers skip. Every other file is written whole, through :func:`atomic_write`.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

CHILDREN_FILE, CONTROLLER_FILE = "children.jsonl", "controller.jsonl"


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
