"""`nas train`'s library side (nas.retrain.trainer): checkpoints that rebuild the model, a failing seed that does not
stop the others, Ctrl-C that keeps the finished seeds, and patience 0 meaning no early stop."""

import json
import math

import pytest
import torch

import nas.retrain.trainer as retrain_module
from nas.cli import main
from nas.config import config_from_dict
from nas.retrain.trainer import load_checkpoint, retrain, retrain_recipe
from search_spaces import ChildSpec, HParams, known_cell
from workers.data import batchify, load_corpus
from workers.train import evaluate, perplexity


@pytest.fixture
def setup(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for split, n in (("train", 60), ("valid", 10), ("test", 10)):
        (corpus / f"{split}.txt").write_text("the cat sat on the mat and the dog sat on the log\n" * n)
    search = config_from_dict({"seed": 3, "data": {"dataset": str(corpus)},
                               "model": {"hidden_size": 8, "num_layers": 1},
                               "train": {"batch_size": 4, "eval_batch_size": 4, "bptt": 6}})
    spec = ChildSpec(known_cell("nascell"), HParams.of({"dropout": 0.0}))
    return tmp_path, spec, search


def test_checkpoint_rebuilds_the_model_with_its_test_perplexity(setup):
    tmp, spec, search = setup
    outcome = retrain(spec, retrain_recipe(search, epochs=2, seeds=1), tmp / "out", out=lambda line: None)
    (run,) = outcome.runs
    assert run["seed"] == 3 and run["status"] == "completed" and run["best_epoch"] in (1, 2)
    model, ckpt = load_checkpoint(tmp / "out" / run["model"])
    assert ckpt["format"] == 1 and ChildSpec.from_dict(ckpt["spec"]) == spec and ckpt["model"]["dropout"] == 0.0
    corpus = load_corpus(search.data.source)
    assert ckpt["vocab"] == list(corpus.vocab)
    test = batchify(corpus.test, search.train.eval_batch_size)
    assert perplexity(evaluate(model, test, search.train.bptt)) == pytest.approx(run["test_ppl"], rel=1e-6)
    doc = json.loads((tmp / "out" / "train.json").read_text())
    assert doc["device"] == "cpu" and doc["threads"] == torch.get_num_threads() and doc["settings"]["seeds"] == [3]
    with pytest.raises(ValueError, match="not a `nas train` checkpoint"):
        torch.save({"weights": torch.zeros(1)}, tmp / "other.pt")
        load_checkpoint(tmp / "other.pt")


def test_a_failing_seed_is_recorded_and_the_next_seed_runs(setup, monkeypatch):
    tmp, spec, search = setup
    real = retrain_module.train_child

    def flaky(*args, seed, **kwargs):
        if seed == 3:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(*args, seed=seed, **kwargs)

    monkeypatch.setattr(retrain_module, "train_child", flaky)
    lines = []
    outcome = retrain(spec, retrain_recipe(search, epochs=1, seeds=2), tmp / "out", out=lines.append)
    failed, done = outcome.runs
    assert failed["status"] == "failed" and failed["message"].startswith("out of memory") and failed["model"] is None
    assert done["status"] == "completed" and (tmp / "out" / done["model"]).is_file()
    assert outcome.test_ppl_mean == done["test_ppl"] and math.isnan(outcome.test_ppl_std)
    assert any(line.startswith("seed 3: failed after 0 epoch(s): out of memory") for line in lines)
    assert sorted(p.name for p in (tmp / "out").iterdir()) == ["model-seed4.pt", "spec.json", "train.json"]


def test_ctrl_c_keeps_finished_seeds_and_records_the_interrupted_one(setup, monkeypatch, capsys):
    tmp, spec, search = setup
    real = retrain_module.train_child

    def interrupted_in_seed_4(*args, seed, on_epoch, **kwargs):
        def report(r):
            on_epoch(r)
            if seed == 4 and r.epoch == 1:
                raise KeyboardInterrupt
        return real(*args, seed=seed, on_epoch=report, **kwargs)

    monkeypatch.setattr(retrain_module, "train_child", interrupted_in_seed_4)
    (tmp / "c.toml").write_text(f'seed = 3\n[data]\ndataset = "{search.data.source}"\n'
                                '[model]\nhidden_size = 8\nnum_layers = 1\n[train]\nbatch_size = 4\n'
                                'eval_batch_size = 4\nbptt = 6\n')
    code = main(["train", "nascell", "--config", str(tmp / "c.toml"), "--epochs", "2", "--seeds", "3",
                 "--out", str(tmp / "out")])
    assert code == 130
    assert "interrupted in seed 4 after 1 epoch(s)" in capsys.readouterr().out
    doc = json.loads((tmp / "out" / "train.json").read_text())
    assert [(r["seed"], r["status"], r["epochs"]) for r in doc["runs"]] == [(3, "completed", 2), (4, "interrupted", 1)]
    assert doc["test_ppl_mean"] == doc["runs"][0]["test_ppl"]
    assert not (tmp / "out" / "model-seed4.pt").exists()


def test_patience_zero_never_stops_early(setup):
    _, _, search = setup
    assert retrain_recipe(search, patience=0).budget.patience is None
    assert retrain_recipe(search).budget.patience == 3 and retrain_recipe(search).budget.epochs == 40


def test_nas_train_and_the_config_do_not_import_ray():
    """Only the search driver and the trainable import Ray: retraining and reading configs stay light."""
    import subprocess
    import sys

    code = "import sys, nas.retrain.trainer, nas.config, nas.runs.compare; print('ray' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() \
        == "False"
