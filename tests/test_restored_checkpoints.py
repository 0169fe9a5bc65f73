"""A restored Tune run whose experiment state names a deleted checkpoint resumes from the newest one on storage
(nas.search.restored_checkpoints); the whole path, with a driver SIGKILLed, is in tests/test_resume.py."""

from types import SimpleNamespace

import pyarrow.fs
from ray import tune
from ray.train._internal.checkpoint_manager import _CheckpointManager
from ray.train._internal.session import _TrainingResult
from ray.tune.experiment import Trial

from nas.search.restored_checkpoints import NewestCheckpoint, newest_checkpoint, repoint
from workers.checkpoint import CHECKPOINT_FILE

LOCAL = pyarrow.fs.LocalFileSystem()


def a_trial(named, status=Trial.PENDING):
    """A stand-in for a restored trial: its status and a checkpoint manager whose latest is ``named``."""
    manager = _CheckpointManager(tune.CheckpointConfig(num_to_keep=1))
    manager._latest_checkpoint_result = _TrainingResult(tune.Checkpoint(str(named), filesystem=LOCAL),
                                                        metrics={"fidelity": 10})
    manager._checkpoint_results = [manager._latest_checkpoint_result]
    return SimpleNamespace(status=status, run_metadata=SimpleNamespace(checkpoint_manager=manager))


def checkpoints(folder, *complete, incomplete=()):
    for i in complete:
        (folder / f"checkpoint_{i:06d}").mkdir(parents=True)
        (folder / f"checkpoint_{i:06d}" / CHECKPOINT_FILE).write_bytes(b"x")
    for i in incomplete:
        (folder / f"checkpoint_{i:06d}").mkdir(parents=True)


def latest_path(trial):
    result = trial.run_metadata.checkpoint_manager.latest_checkpoint_result
    return None if result is None else result.checkpoint.path


def test_a_trial_named_at_a_deleted_checkpoint_resumes_from_the_newest_complete_one(tmp_path):
    checkpoints(tmp_path, 3, 12, incomplete=[13])  # 13: a copy the kill interrupted
    (tmp_path / "checkpoint_junk").mkdir()
    trial = a_trial(tmp_path / "checkpoint_000005")
    line = repoint(trial)
    assert latest_path(trial) == str(tmp_path / "checkpoint_000012")
    assert trial.run_metadata.checkpoint_manager.latest_checkpoint_result.metrics == {"fidelity": 10}
    assert "checkpoint_000005" in line and "resuming from checkpoint_000012" in line


def test_a_trial_whose_checkpoint_exists_is_left_alone(tmp_path):
    checkpoints(tmp_path, 5, 6)
    trial = a_trial(tmp_path / "checkpoint_000005")
    assert repoint(trial) is None
    assert latest_path(trial) == str(tmp_path / "checkpoint_000005")


def test_with_no_complete_checkpoint_left_the_child_starts_over(tmp_path):
    checkpoints(tmp_path, incomplete=[7])
    trial = a_trial(tmp_path / "checkpoint_000005")
    assert "starts over" in repoint(trial)
    assert latest_path(trial) is None and trial.run_metadata.checkpoint_manager._checkpoint_results == []
    assert newest_checkpoint(LOCAL, str(tmp_path / "no-such-folder")) is None


def test_the_callback_repoints_unfinished_trials_once_before_any_starts(tmp_path):
    checkpoints(tmp_path, 9)
    unfinished, finished = a_trial(tmp_path / "checkpoint_000005"), a_trial(tmp_path / "gone", Trial.TERMINATED)
    said = []
    callback = NewestCheckpoint(said.append)
    callback.on_step_begin(iteration=0, trials=[unfinished, finished])
    assert latest_path(unfinished) == str(tmp_path / "checkpoint_000009")
    assert latest_path(finished) == str(tmp_path / "gone")  # a finished child is not resumed: nothing to do
    assert len(said) == 1
    (tmp_path / "checkpoint_000009" / CHECKPOINT_FILE).unlink()
    (tmp_path / "checkpoint_000009").rmdir()
    callback.on_step_begin(iteration=1, trials=[unfinished])  # later steps: Tune's own view is current
    assert latest_path(unfinished) == str(tmp_path / "checkpoint_000009") and len(said) == 1
