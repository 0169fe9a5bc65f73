"""A child's own checkpoints (workers/train.py, workers/checkpoint.py): taking them does not change training, and a
training resumed from one, mid-epoch or at an epoch's end, ends exactly as the uninterrupted one."""

import math
import pickle

import pytest
import torch

from nas.config import config_from_dict
from search_spaces import known_cell, random_cell
from workers.checkpoint import CHECKPOINT_FILE, read_checkpoint, write_checkpoint
from workers.child_settings import Budget, ModelConfig, TrainConfig
from workers.data import Corpus
from workers.train import train_child

IDS = torch.arange(4000) * 7 % 23
CORPUS = Corpus("tiny", "char", tuple("abcdefghijklmnopqrstuvw"), IDS[:3200], IDS[3200:], IDS[3200:])
MODEL = ModelConfig(num_layers=2, hidden_size=12, dropout=0.3)  # dropout: the random state matters
TRAIN = TrainConfig(batch_size=4, bptt=9, lr=3.0)


def _train(cell, budget, **kw):
    return train_child(cell, CORPUS, {"lr": 2.0}, budget, MODEL, TRAIN, seed=5, device="cpu", **kw)


def _same(a, b):
    assert (a.status, a.epochs, a.batches, a.val_ppl) == (b.status, b.epochs, b.batches, b.val_ppl)
    assert [(h.train_loss, h.val_loss, h.lr, h.train_tokens, h.batches) for h in a.history] == [
        (h.train_loss, h.val_loss, h.lr, h.train_tokens, h.batches) for h in b.history]
    assert [(r.batches, r.val_ppl) for r in a.rungs] == [(r.batches, r.val_ppl) for r in b.rungs]


@pytest.mark.parametrize("cell", [known_cell("nascell"), random_cell(4, 3)], ids=["nascell", "random4"])
def test_a_training_resumed_from_any_of_its_checkpoints_ends_as_the_uninterrupted_one(cell, tmp_path):
    budget = Budget(epochs=3, max_batches=12, report_at=(5, 18), checkpoint_every=1e-9)  # a checkpoint every step
    plain = _train(cell, Budget(epochs=3, max_batches=12, report_at=(5, 18), checkpoint_every=None))
    taken = []
    watched = _train(cell, budget, on_checkpoint=taken.append)
    _same(watched, plain)  # checkpointing changes nothing
    dones = [p["position"]["done"] for p in taken]
    assert dones == [d for d in range(1, 36) if d != 36]  # after every step but the last (epoch ends included)
    for payload in (taken[2], taken[11], taken[20]):  # mid-epoch 1 (before a rung), epoch 1's end, mid-epoch 2
        write_checkpoint(payload, tmp_path / "c")
        resumed = _train(cell, budget, resume=read_checkpoint(tmp_path / "c"))
        _same(resumed, plain)
        assert resumed.resumed_from == payload["position"]["done"] and plain.resumed_from == 0
        before = payload["position"]["train_seconds"] + payload["position"]["epoch_seconds"]
        assert resumed.train_seconds > before > 0  # the seconds before the checkpoint count


def test_patience_and_the_learning_rate_schedule_carry_over_a_resume(tmp_path):
    budget = Budget(epochs=5, max_batches=4, patience=2, checkpoint_every=1e-9)
    cell = known_cell("lstm")
    plain = _train(cell, Budget(epochs=5, max_batches=4, patience=2, checkpoint_every=None))
    taken = []
    _train(cell, budget, on_checkpoint=taken.append)
    resumed = _train(cell, budget, resume=taken[-1])
    _same(resumed, plain)
    assert resumed.stopped_early == plain.stopped_early


def test_no_checkpoint_without_a_taker_or_with_checkpoint_every_none():
    taken = []
    _train(known_cell("nascell"), Budget(epochs=2, max_batches=3, checkpoint_every=None), on_checkpoint=taken.append)
    assert taken == []
    _train(known_cell("nascell"), Budget(epochs=2, max_batches=3), on_checkpoint=taken.append)  # 60 s: epoch end only
    assert [p["position"]["done"] for p in taken] == [3]


def test_a_checkpoint_of_another_child_is_refused():
    taken = []
    _train(known_cell("nascell"), Budget(epochs=2, max_batches=3), on_checkpoint=taken.append)
    with pytest.raises(ValueError, match="the checkpoint is of another child"):
        _train(known_cell("lstm"), Budget(epochs=2, max_batches=3), resume=taken[0])


class Trap:
    def __reduce__(self):
        return (print, ("unpickled!",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_an_unreadable_or_foreign_checkpoint_file_is_one_clear_error_and_never_unpickled(tmp_path, capsys):
    with pytest.raises(ValueError, match="cannot be read"):
        read_checkpoint(tmp_path)  # missing
    (tmp_path / CHECKPOINT_FILE).write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="cannot be read"):
        read_checkpoint(tmp_path)
    (tmp_path / CHECKPOINT_FILE).write_bytes(pickle.dumps({"format": 1, "x": Trap()}))
    with pytest.raises(ValueError, match="cannot be read"):
        read_checkpoint(tmp_path)
    assert "unpickled!" not in capsys.readouterr().out
    torch.save({"format": 99}, tmp_path / CHECKPOINT_FILE)
    with pytest.raises(ValueError, match="of format 99, not 1"):
        read_checkpoint(tmp_path)


@pytest.mark.parametrize("bad", [0, -1.0, True, "often", math.inf])
def test_checkpoint_every_must_be_positive_seconds_or_none(bad):
    with pytest.raises(ValueError, match="budget.checkpoint_every"):
        Budget(checkpoint_every=bad)


def test_checkpoint_settings_read_from_toml_shaped_settings():
    cfg = config_from_dict({"budget": {"checkpoint_every": "none", "keep_checkpoints": True}})
    assert cfg.budget.checkpoint_every is None and cfg.budget.keep_checkpoints
    assert config_from_dict({}).budget.checkpoint_every == 60.0
    with pytest.raises(ValueError, match="budget.keep_checkpoints"):
        config_from_dict({"budget": {"keep_checkpoints": "yes"}})


def test_a_child_whose_checkpoint_cannot_be_read_starts_over_with_one_line(tmp_path, monkeypatch, capsys):
    from ray import tune

    from workers import trainable

    (tmp_path / CHECKPOINT_FILE).write_bytes(b"truncated")
    monkeypatch.setattr(trainable.tune, "get_checkpoint", lambda: tune.Checkpoint.from_directory(str(tmp_path)))
    assert trainable._latest_checkpoint() is None
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot be read" in err and "this child trains from the start" in err
    good = tmp_path / "good"
    write_checkpoint({"position": {"done": 3}}, good)
    monkeypatch.setattr(trainable.tune, "get_checkpoint", lambda: tune.Checkpoint.from_directory(str(good)))
    assert trainable._latest_checkpoint()["position"] == {"done": 3}
    monkeypatch.setattr(trainable.tune, "get_checkpoint", lambda: None)
    assert trainable._latest_checkpoint() is None
