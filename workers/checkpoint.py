"""A child's training checkpoint on disk: one file of tensors and plain values, written atomically.

What a checkpoint holds is :func:`workers.train.checkpoint_of`'s business (weights, optimiser, random state,
:class:`workers.train.Position`); here it is only written and read. It is read with
``torch.load(weights_only=True)``: a checkpoint file can hold tensors, numbers, strings, lists and dicts, never a
pickled object, so reading one cannot run code (the same rule as the search's records: nothing a run folder
holds is unpickled).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

CHECKPOINT_FILE = "child.pt"
FORMAT = 1
"""Bumped when what a checkpoint holds changes; a checkpoint of another format is not resumed from."""


def write_checkpoint(payload: Mapping[str, Any], folder: str | os.PathLike) -> Path:
    """Write ``payload`` as ``folder/child.pt`` (via a temporary file renamed into place)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".child-", suffix=".pt")
    os.close(fd)
    try:
        torch.save({**payload, "format": FORMAT}, tmp)
        os.replace(tmp, folder / CHECKPOINT_FILE)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return folder / CHECKPOINT_FILE


def read_checkpoint(folder: str | os.PathLike) -> dict[str, Any]:
    """The payload in ``folder/child.pt``; ValueError (naming the file and why) when it is missing, unreadable,
    holds anything but tensors and plain values, or is of another format."""
    path = Path(folder) / CHECKPOINT_FILE
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - a missing, truncated or foreign file all mean: cannot resume from it
        raise ValueError(f"checkpoint {path} cannot be read ({type(e).__name__}: {str(e)[:200]})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        got = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise ValueError(f"checkpoint {path} is of format {got!r}, not {FORMAT}")
    return payload
