"""A restored Tune run resumes each unfinished child from the newest checkpoint on storage.

Tune's experiment state (saved every few seconds, then copied to storage) names each trial's latest checkpoint
at the time of the snapshot. A child goes on checkpointing after it, and ``CheckpointConfig(num_to_keep=1)``
deletes the checkpoint the snapshot names as soon as a newer one is registered. A driver killed in between leaves
a state that names a deleted checkpoint, and Tune's restore of that trial fails ("Could not recover from
checkpoint as it does not exist on storage anymore") on every retry. :class:`NewestCheckpoint` runs before the
restored run starts its first trial and points each such trial at the newest complete checkpoint in its folder
(newer than the one named, since only older ones are deleted), or at none, so it starts over.

It reaches into Tune's checkpoint manager (``ray.train._internal``), as Ray 2.60 has it (the version CI installs;
``pyproject.toml`` admits older ones): where the manager is not of that shape, nothing is repointed and Tune's own
restore decides. ``tests/test_resume.py`` kills a driver while a child checkpoints every 0.3 s to keep it honest.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import PurePosixPath

import pyarrow.fs
from ray import tune
from ray.train._internal.session import _TrainingResult
from ray.tune.experiment import Trial

from workers.checkpoint import CHECKPOINT_FILE


class NewestCheckpoint(tune.Callback):
    """For a restored Tune run: at its first step, before any trial starts, every unfinished trial whose
    checkpoint is gone from storage is pointed at the newest one that is there (one line per trial to ``out``)."""

    def __init__(self, out: Callable[[str], None]):
        self.out = out
        self.checked = False

    def on_step_begin(self, iteration: int, trials: list[Trial], **info) -> None:
        if self.checked:
            return
        self.checked = True
        for trial in trials:
            if trial.status not in (Trial.TERMINATED, Trial.ERROR):
                line = repoint(trial)
                if line:
                    self.out(line)


def repoint(trial: Trial) -> str | None:
    """Point ``trial`` at the newest checkpoint in its folder if the one it names is gone; what was done, or None
    when there was nothing to do."""
    manager = getattr(trial.run_metadata, "checkpoint_manager", None)
    if not all(hasattr(manager, a) for a in ("_latest_checkpoint_result", "_checkpoint_results")):
        return None  # another Ray's manager (see the module docstring)
    latest = manager._latest_checkpoint_result
    if latest is None or _exists(latest.checkpoint.filesystem, latest.checkpoint.path):
        return None
    named = PurePosixPath(latest.checkpoint.path)
    newest = newest_checkpoint(latest.checkpoint.filesystem, str(named.parent))
    result = None if newest is None else _TrainingResult(
        checkpoint=tune.Checkpoint(newest, filesystem=latest.checkpoint.filesystem), metrics=latest.metrics)
    manager._latest_checkpoint_result = result
    manager._checkpoint_results = [result] if result else []
    then = f"resuming from {PurePosixPath(newest).name}" if newest else "no other is complete: the child starts over"
    return f"{trial}: its checkpoint {named.name} named in Tune's experiment state is gone; {then}"


def newest_checkpoint(fs: pyarrow.fs.FileSystem, trial_folder: str) -> str | None:
    """The path of the highest-numbered ``checkpoint_NNNNNN`` folder in ``trial_folder`` that holds a child's
    checkpoint file, or None."""
    try:
        entries = fs.get_file_info(pyarrow.fs.FileSelector(trial_folder, allow_not_found=True))
    except OSError:
        return None
    folders = [e for e in entries if e.type == pyarrow.fs.FileType.Directory and _index(e.base_name) is not None]
    for entry in sorted(folders, key=lambda e: _index(e.base_name), reverse=True):
        if _exists(fs, f"{entry.path}/{CHECKPOINT_FILE}"):
            return entry.path
    return None


def _index(name: str) -> int | None:
    prefix, _, number = name.partition("_")
    return int(number) if prefix == "checkpoint" and number.isdigit() else None


def _exists(fs: pyarrow.fs.FileSystem, path: str) -> bool:
    return fs.get_file_info(path).type != pyarrow.fs.FileType.NotFound
