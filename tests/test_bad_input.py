"""Every user-facing input is checked before any work starts: one clear line naming the problem and the fix,
exit code 2, no traceback, nothing written."""

import json
import os

import pytest

from nas.cli import main


@pytest.fixture
def ws(tmp_path, monkeypatch):
    """A workspace: cwd is tmp_path, results go to tmp_path/results, a valid tiny corpus in tmp_path/corpus."""
    monkeypatch.chdir(tmp_path)
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for split in ("train", "valid", "test"):
        (corpus / f"{split}.txt").write_text("a b c d e f\n" * 20)
    return tmp_path


def fails(capsys, argv, *needles):
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err, err
    return err


def search_with(ws, capsys, toml, *needles, extra=()):
    (ws / "c.toml").write_text(toml)
    fails(capsys, ["search", "--config", "c.toml", "--results-dir", "results", *extra], *needles)
    assert not (ws / "results").exists(), "nothing may be written on bad input"


@pytest.mark.parametrize("toml, needles", [
    ("trials = 4\ncolour = 'red'\n", ["colour", "unknown setting", "allowed"]),
    ("[train]\nlearning_rate = 1.0\n", ["train.learning_rate", "unknown setting", "lr"]),
    ("trials = 'many'\n", ["trials", "'many'", "whole number"]),
    ("trials = 0\n", ["trials: 0", "whole number >= 1"]),
    ("concurrency = -1\n", ["concurrency"]),
    ("cpus_per_trial = 0\n", ["cpus_per_trial", "positive"]),
    ("gpus_per_trial = 1.5\n", ["gpus_per_trial", "fraction"]),
    ("algo = 'bayes'\n", ["algo", "reinforce, random, evolution"]),
    ("[scheduler]\nkind = 'hyperband'\n", ["scheduler.kind", "none, asha"]),
    ("[scheduler]\nkind = 'asha'\ngrace_period = 0\n", ["scheduler.grace_period", ">= 1"]),
    ("[scheduler]\nreduction_factor = 1\n", ["scheduler.reduction_factor", ">= 2"]),
    ("[scheduler]\nrungs = [10]\n", ["scheduler.rungs", "unknown setting", "grace_period"]),
    ("[evolution]\npopulation = 4\nsample_size = 5\n", ["evolution.sample_size", "population (4)"]),
    ("[evolution]\npopulation = 0\n", ["evolution.population", ">= 1"]),
    ("[budget]\nreport_at = [10]\n", ["budget.report_at", "unknown setting"]),
    ("[controller]\nnormalize_advantage = 'yes'\n", ["normalize_advantage", "'yes'", "true or false"]),
    ("name = 'a/b'\n", ["name", "plain folder name"]),
    ("[space]\nbase = 3\n", ["base", "power of two"]),
    ("[space.layers]\nhidden_size = []\n", ["hidden_size", "empty"]),
    ("[space.layers]\nwidth = [1, 2]\n", ["width", "unknown child hyperparameter"]),
    ("[space.layers]\ndropout = [0.1, 1.5]\n", ["dropout", "[0, 1)"]),
    ("[space.layers]\nhidden_size = 64\n", ["hidden_size", "list"]),
    ("[model]\ntie_weights = true\nembedding_size = 32\n", ["tie_weights", "embedding_size"]),
    ("[model]\ntie_weights = true\nhidden_size = 64\nembedding_size = 64\n[space.layers]\nhidden_size = [64, 128]\n",
     ["space.layers: a child with hidden_size=128 is invalid", "tie_weights"]),
    ("[budget]\nepochs = 0\n", ["budget.epochs"]),
    ("[train]\noptimizer = 'lbfgs'\n", ["optimizer", "sgd, adam"]),
    ("[controller]\nreward = 'accuracy'\n", ["reward"]),
    ("[controller]\nlstm_units = 0\n", ["lstm_units"]),
    ("[data]\ndataset = 'ptb'\n", ["ptb", "--data-dir", "nas data download"]),
    ("[data]\nlevel = 'byte'\n", ["level", "word"]),
    ("trials = nan\n", ["trials"]),
    ("trials = [\n", ["not valid TOML"]),
    ("[model]\nrnn = 'gru'\n", ["model.rnn", "cell, torch-lstm"]),
    ("[model]\ninit_range = -0.1\n", ["model.init_range", "positive"]),
    ("[train]\nlr_schedule = 'cosine'\n", ["train.lr_schedule", "plateau, step"]),
    ("[train]\nlr_step_after = -1\n", ["train.lr_step_after", ">= 0"]),
    ("[retrain]\nepochs = 0\n", ["retrain.epochs", ">= 1"]),
    ("[retrain]\nlr = 1.0\n", ["retrain.lr", "unknown setting", "epochs, patience"]),
    ("max_params = 0\n", ["max_params", ">= 1"]),
])
def test_bad_config_file(ws, capsys, toml, needles):
    search_with(ws, capsys, toml, *needles)


def test_missing_config_file(ws, capsys):
    fails(capsys, ["search", "--config", "nope.toml"], "nope.toml", "does not exist", "--config")


def test_bad_flags(ws, capsys):
    fails(capsys, ["search", "--trials", "many"], "--trials", "invalid int")
    fails(capsys, ["search", "--algo", "bayes"], "--algo", "evolution")
    fails(capsys, ["search", "--gpus-per-trial", "-1"], "gpus_per_trial")
    fails(capsys, ["search", "--resume", "x", "--seed", "5"], "--resume", "drop --seed")
    fails(capsys, ["bogus"], "invalid choice")
    assert not (ws / "results").exists()


def test_data_paths(ws, capsys):
    fails(capsys, ["search", "--dataset", str(ws / "missing")], "missing")
    (ws / "empty_dir").mkdir()
    fails(capsys, ["search", "--dataset", str(ws / "empty_dir")], "train.txt")
    (ws / "corpus" / "valid.txt").write_text("")
    fails(capsys, ["search", "--dataset", str(ws / "corpus")], "valid.txt", "empty")
    ptb = ws / "ptb"
    ptb.mkdir()
    for split in ("train", "valid", "test"):
        (ptb / f"ptb.{split}.txt").write_text(" a b c\n")
    fails(capsys, ["search", "--dataset", "ptb", "--data-dir", str(ptb)], "sha256", "nas data download ptb")
    assert not (ws / "results").exists()


def test_experiment_names(ws, capsys):
    fails(capsys, ["search", "--resume", "never-ran"], "never-ran", "--resume")
    run = ws / "results" / "taken"
    run.mkdir(parents=True)
    before = sorted(os.listdir(run))
    fails(capsys, ["search", "--name", "taken", "--dataset", str(ws / "corpus")], "already exists", "--resume taken")
    assert sorted(os.listdir(run)) == before


def test_a_resume_cannot_shrink_the_budget(ws, capsys):
    from nas.config import config_from_dict

    run = ws / "results" / "small"
    run.mkdir(parents=True)
    cfg = config_from_dict({"name": "small", "trials": 8, "data": {"dataset": str(ws / "corpus")}})
    (run / "config.json").write_text(json.dumps(cfg.to_dict()))
    before = sorted(os.listdir(run))
    fails(capsys, ["search", "--resume", "small", "--trials", "4"], "--trials 4", "below the 8 children",
          "leave --trials out")
    assert sorted(os.listdir(run)) == before


def test_an_asha_grace_period_beyond_the_budget_is_one_clear_error(ws, capsys):
    (ws / "c.toml").write_text("[scheduler]\nkind = 'asha'\ngrace_period = 5000\n")
    fails(capsys, ["search", "--config", "c.toml", "--dataset", str(ws / "corpus")], "scheduler.grace_period: 5000",
          "no rung", "lower the grace period")
    assert not (ws / "results").exists()


def test_unreachable_cluster(ws, capsys):
    fails(capsys, ["search", "--address", "127.0.0.1:1", "--dataset", str(ws / "corpus")],
          "cannot reach", "127.0.0.1:1")
    fails(capsys, ["search", "--address", "nonsense", "--dataset", str(ws / "corpus")], "host:port")
    assert not (ws / "results").exists()


def test_spec_files(ws, capsys):
    (ws / "bad.json").write_text("{not json")
    fails(capsys, ["show", "bad.json"], "bad.json", "malformed JSON")
    (ws / "invalid.json").write_text(json.dumps({"base": 8, "nodes": [["add", "gelu"]] * 15, "memory": None}))
    fails(capsys, ["show", "invalid.json"], "cell.nodes[0].act", "gelu")
    fails(capsys, ["export", "invalid.json", "--out", "x.py"], "gelu")
    fails(capsys, ["export", "nascell", "--out", "x.txt"], ".py")
    fails(capsys, ["export", "nascell", "--out", "x.py", "--class-name", "class"], "class")
    fails(capsys, ["show", "nocell"], "nocell", "nascell")
    assert not (ws / "x.py").exists() and not (ws / "x.txt").exists()


def test_results_and_data_commands(ws, capsys):
    fails(capsys, ["results", str(ws / "corpus")], "not a results folder")
    fails(capsys, ["export", str(ws / "corpus"), "--out", "x.py"], "not a results folder")
    fails(capsys, ["data", "download", "imagenet", str(ws / "d")], "imagenet", "ptb")
    fails(capsys, ["data", "info", str(ws / "missing")], "missing")
    assert not (ws / "d").exists()


def test_train_inputs(ws, capsys):
    """`nas train`: each bad input is one line, and no output folder is created or touched."""
    (ws / "c.toml").write_text('[data]\ndataset = "corpus"\n[model]\nhidden_size = 8\nnum_layers = 1\n')
    base = ["train", "nascell", "--config", "c.toml", "--epochs", "1"]
    fails(capsys, base + ["--rank", "2"], "--rank applies to a results folder")
    fails(capsys, base + ["--seeds", "0"], "seeds: 0", "use a whole number >= 1")
    fails(capsys, base + ["--epochs", "0"], "retrain.epochs: 0")
    fails(capsys, base + ["--patience", "-1"], "patience: -1", "0: never stop early")
    fails(capsys, base + ["--top", "2"], "--top K retrains the K best children of one results folder")
    fails(capsys, base + ["--match-params", "nascell"], "--match-params sizes the torch-lstm or torch-gru sources")
    fails(capsys, base[:2] + ["torch-lstm"] + base[2:] + ["--match-params", "torch-lstm"], "name the model to match")
    fails(capsys, ["train", "nascell", "nascell"], "given twice")
    fails(capsys, base + ["--device", "gpu"], "'gpu' is not supported", "use cpu")
    fails(capsys, base + ["--device", "meta"], "'meta' is not supported")
    fails(capsys, base + ["--device", "cuda:7"], "CUDA device(s)")
    fails(capsys, ["train", "no-such-cell"], "neither a known cell")
    fails(capsys, base + ["--dataset", "missing-dir"], "missing-dir")
    from search_spaces import ChildSpec, HParams, known_cell

    (ws / "bad_hp.json").write_text(ChildSpec(known_cell("nascell"), HParams.of({"hiden_size": 8})).to_json())
    fails(capsys, ["train", "bad_hp.json", "--config", "c.toml", "--out", "o"], "hiden_size")
    assert not (ws / "o").exists() and not (ws / "results").exists()
    (ws / "full").mkdir()
    (ws / "full" / "keep.txt").write_text("mine")
    fails(capsys, base + ["--out", "full"], "--out full already exists", "choose another --out")
    assert os.listdir(ws / "full") == ["keep.txt"]
    fails(capsys, ["train", "corpus"], "corpus has no config.json")
    (ws / "corpus" / "config.json").write_text("{}")
    fails(capsys, ["train", "corpus", "--config", "c.toml"], "--config applies to a cell name or spec file")


def test_results_show_and_top_inputs(ws, capsys):
    """`nas train --top K`, `nas results --max-params`, `nas show --rank`: one line each, nothing written."""
    from nas.runs.records import append_record
    from search_spaces import ChildSpec, known_cell

    spec = ChildSpec(known_cell("nascell"))
    for i in range(2):
        append_record(ws / "run" / "children.jsonl", {"trial_id": f"t{i}", "index": i, "status": "completed",
                                                     "val_ppl": 10.0 + i, "params": 100, "spec": spec.to_dict(),
                                                     "formula": "x"})
    (ws / "run" / "config.json").write_text(json.dumps({"name": "run", "data": {"dataset": str(ws / "corpus")}}))
    before = sorted(os.listdir(ws / "run"))
    fails(capsys, ["train", "run", "--top", "3"], "--top 3", "only 2 completed children", "--top 2 or less")
    fails(capsys, ["train", "run", "--top", "0"], "--top 0", ">= 1")
    fails(capsys, ["train", "run", "nascell", "--top", "2"], "give just that folder")
    fails(capsys, ["results", "run", "--max-params", "0"], "--max-params 0", ">= 1")
    fails(capsys, ["show", "run", "--rank", "3"], "rank 3", "from 1 to 2")
    fails(capsys, ["show", "nascell", "--rank", "2"], "--rank applies to a results folder")
    assert sorted(os.listdir(ws / "run")) == before


def test_train_a_named_cell_with_a_config_and_seeds(ws, capsys):
    """A known cell with a search TOML's settings: the given seeds in order, the default output folder under
    results/, a summary over seeds, and the same seed trains to the same numbers."""
    (ws / "c.toml").write_text('[data]\ndataset = "corpus"\n[model]\nhidden_size = 8\nnum_layers = 1\n'
                               '[train]\nbatch_size = 4\neval_batch_size = 4\nbptt = 5\n')
    assert main(["train", "tanh_rnn", "--config", "c.toml", "--epochs", "2", "--seeds", "2", "--seed", "7"]) == 0
    out = capsys.readouterr().out
    (folder,) = (ws / "results").iterdir()
    assert folder.name.startswith("train-tanh_rnn-")
    assert sorted(p.name for p in folder.iterdir()) == ["model-seed7.pt", "model-seed8.pt", "spec.json", "train.json"]
    doc = json.loads((folder / "train.json").read_text())
    assert [r["seed"] for r in doc["runs"]] == [7, 8] and doc["settings"]["model"]["hidden_size"] == 8
    assert "test perplexity" in out and "over 2 seeds" in out
    assert main(["train", "tanh_rnn", "--config", "c.toml", "--epochs", "2", "--seed", "8", "--out", "again"]) == 0
    again = json.loads((ws / "again" / "train.json").read_text())
    assert again["runs"][0]["test_ppl"] == doc["runs"][1]["test_ppl"]  # deterministic on CPU for a seed
