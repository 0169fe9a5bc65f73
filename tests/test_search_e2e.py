"""End to end through the CLI, as a user runs it: `nas search` on a tiny corpus, then `nas results` and
`nas export`; and fake-GPU packing (four children sharing one GPU)."""

import dataclasses
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from search_spaces import ChildSpec

NAS = [sys.executable, "-m", "nas.cli"]
ENV = {**os.environ, "RAY_AIR_NEW_OUTPUT": "0"}

WORDS = "the cat sat on the mat . a dog ran to the log . the dog and the cat sat .".split()


def write_tiny_corpus(d: Path) -> Path:
    d.mkdir()
    lines = [" ".join(WORDS[i % len(WORDS):] + WORDS[: i % len(WORDS)]) for i in range(300)]
    (d / "train.txt").write_text("\n".join(lines[:240]) + "\n")
    (d / "valid.txt").write_text("\n".join(lines[240:270]) + "\n")
    (d / "test.txt").write_text("\n".join(lines[270:]) + "\n")
    return d


TINY_TOML = """
name = "tiny"
trials = 4
concurrency = 2
seed = 1
[data]
dataset = "{data}"
[space]
base = 8
[space.layers]
num_layers = [1, 2]
hidden_size = [16]
[train]
batch_size = 8
eval_batch_size = 8
[budget]
max_batches = 6
"""


def run(args, cwd, check=True, timeout=600):
    p = subprocess.run(NAS + args, cwd=cwd, env=ENV, capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"nas {' '.join(args)} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
    return p


@pytest.fixture(scope="module")
def search(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    data = write_tiny_corpus(root / "corpus")
    (root / "tiny.toml").write_text(TINY_TOML.format(data=data))
    p = run(["search", "--config", "tiny.toml"], cwd=root)
    return root, root / "results" / "tiny", p


def test_search_prints_progress_leaderboard_and_export(search):
    root, run_dir, p = search
    out = p.stdout
    assert "search tiny: 4 children" in out
    assert out.count("] child ") == 4  # one progress line per child
    assert "[  4/4]" in out and "best" in out
    assert "rank" in out and "val_ppl" in out  # the top-5 table
    assert "best cell exported to results/tiny/best_cell.py" in out  # shown relative to the working folder
    assert "`nas train results/tiny`" in out
    assert len(p.stderr.strip().splitlines()) < 5, p.stderr  # Ray's console noise is kept down


def test_search_writes_tables_plot_and_ray_trial_folders(search):
    _, run_dir, _ = search
    cells = pd.read_csv(run_dir / "cells.csv")
    assert len(cells) == 4 and sorted(cells["index"]) == [0, 1, 2, 3]
    for col in ["trial_id", "index", "status", "val_ppl", "reward", "params", "train_seconds", "formula", "spec",
                "num_layers", "hidden_size"]:
        assert col in cells.columns
    assert set(cells["status"]) <= {"completed", "diverged", "failed"}
    assert (cells["status"] == "completed").any()
    pq = pd.read_parquet(run_dir / "cells.parquet")
    assert list(pq["trial_id"]) == list(cells["trial_id"])
    for spec in cells["spec"]:
        ChildSpec.from_json(spec)
    controller = pd.read_csv(run_dir / "controller.csv")
    assert list(controller["step"]) == [1, 2, 3, 4]  # one asynchronous update per finished child
    for col in ["reward", "baseline", "advantage", "entropy", "loss"]:
        assert col in controller.columns
    assert (run_dir / "progress.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((run_dir / "config.json").read_text())["trials"] == 4
    trial_dirs = [d for d in run_dir.iterdir() if d.is_dir() and d.name.startswith("child_")]
    assert len(trial_dirs) == 4 and all(list(d.glob("events.out.tfevents*")) for d in trial_dirs)


def test_exported_best_cell_imports_and_runs(search):
    _, run_dir, _ = search
    path = run_dir / "best_cell.py"
    spec = importlib.util.spec_from_file_location("best_cell_e2e", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    rnn = mod.SearchedCellRNN(5, 7, num_layers=2)
    out, (h, c) = rnn(torch.randn(3, 2, 5))
    assert out.shape == (3, 2, 7) and h.shape == (2, 2, 7)
    best = pd.read_csv(run_dir / "cells.csv").sort_values("val_ppl").iloc[0]
    assert ChildSpec.from_dict(mod.SPEC) == ChildSpec.from_json(best["spec"])
    assert ChildSpec.from_json((run_dir / "best_cell.json").read_text()) == ChildSpec.from_dict(mod.SPEC)


def test_results_and_export_commands(search):
    root, run_dir, _ = search
    p = run(["results", str(run_dir), "--top", "2", "--sort", "reward"], cwd=root)
    assert "4 children" in p.stdout and "reward" in p.stdout
    p = run(["export", str(run_dir), "--rank", "2", "--out", str(root / "second.py"), "--class-name", "Second"],
            cwd=root)
    assert (root / "second.py").exists() and (root / "second.json").exists()
    assert "class Second(" in (root / "second.py").read_text()
    p = run(["export", "nascell", "--out", str(root / "nas_cell.py")], cwd=root)
    assert "n14" in (root / "nas_cell.py").read_text()
    p = run(["results", str(root / "corpus")], cwd=root, check=False)
    assert p.returncode == 2 and "not a results folder" in p.stderr and "Traceback" not in p.stderr


def test_existing_name_without_resume_is_refused(search):
    root, run_dir, _ = search
    before = sorted(os.listdir(run_dir))
    p = run(["search", "--config", "tiny.toml"], cwd=root, check=False)
    assert p.returncode == 2 and "already exists" in p.stderr and "--resume tiny" in p.stderr
    assert sorted(os.listdir(run_dir)) == before


def test_fake_gpu_packing_runs_four_children_at_once(tmp_path):
    """Ray started with one (fake) GPU and --gpus-per-trial 0.25: four children share it, at the same time."""
    import ray

    from nas.config import config_from_dict
    from nas.runs.records import read_records
    from nas.search import ray_session
    from nas.search.driver import run_search

    data = write_tiny_corpus(tmp_path / "corpus")
    cfg = config_from_dict({
        "name": "gpu", "trials": 4, "concurrency": 4, "cpus_per_trial": 0.5, "gpus_per_trial": 0.25,
        "results_dir": str(tmp_path / "results"), "algo": "random",
        "data": {"dataset": str(data)},
        "space": {"base": 2, "layers": {"hidden_size": [16]}},
        "model": {"num_layers": 1},
        "train": {"batch_size": 4, "eval_batch_size": 4},
        "budget": {"epochs": 3},
    })
    ray_session.start_local(num_cpus=2, num_gpus=1)
    try:
        outcome = run_search(cfg, out=lambda line: None)
    finally:
        ray.shutdown()
    rows = read_records(outcome.run_dir / "children.jsonl")
    assert len(rows) == 4 and all(r["gpus"] == 0.25 for r in rows)
    # all four were training at one moment: the latest start precedes the earliest finish
    assert max(r["started_at"] for r in rows) < min(r["finished_at"] for r in rows)


def test_train_retrains_a_child_of_the_search_with_its_settings(search, tmp_path):
    """`nas train results/tiny --rank 2`: the rank-2 spec, the search's data/model/train settings, one full
    training per seed, test perplexity reported; the saved weights give that perplexity again and load into the
    exported module."""
    from nas.config import config_from_dict
    from nas.retrain.trainer import load_checkpoint
    from nas.runs.export import write_export
    from nas.runs.results import spec_at_rank
    from workers.child_settings import split_hparams
    from workers.data import batchify, load_corpus
    from workers.train import evaluate, perplexity

    root, run_dir, _ = search
    p = run(["train", "results/tiny", "--rank", "2", "--epochs", "2", "--seeds", "2"], cwd=root)
    out_dir = run_dir / "train-rank2"
    assert "training results/tiny (rank 2)" in p.stdout and "seed(s) 1, 2" in p.stdout  # the search's seed first
    assert p.stdout.count(" · epoch ") == 4 and "test perplexity" in p.stdout and " ± " in p.stdout
    doc = json.loads((out_dir / "train.json").read_text())
    spec = spec_at_rank(run_dir, 2)
    assert ChildSpec.from_dict(doc["spec"]) == spec == ChildSpec.from_json((out_dir / "spec.json").read_text())
    config = json.loads((run_dir / "config.json").read_text())
    assert doc["settings"]["model"] == config["model"] and doc["settings"]["train"] == config["train"]
    assert doc["settings"]["budget"]["max_batches"] is None  # whole epochs, not the search's short budget
    assert [r["seed"] for r in doc["runs"]] == [1, 2]
    ppls = [r["test_ppl"] for r in doc["runs"]]
    assert all(r["status"] == "completed" and r["epochs"] == 2 and len(r["history"]) == 2 for r in doc["runs"])
    assert doc["test_ppl_mean"] == pytest.approx(sum(ppls) / 2)
    p = run(["train", "results/tiny", "--rank", "2", "--epochs", "1"], cwd=root)  # the default folder is taken
    assert (run_dir / "train-rank2-2" / "train.json").is_file() and "train-rank2-2" in p.stdout

    corpus = load_corpus(str(root / "corpus"))
    searched = config_from_dict(config)
    model_cfg, train_cfg = split_hparams(spec.hparams.as_dict(), searched.model, searched.train)
    model, ckpt = load_checkpoint(out_dir / "model-seed2.pt")
    assert ckpt["model"] == dataclasses.asdict(model_cfg) and ckpt["vocab"] == list(corpus.vocab)
    test = batchify(corpus.test, train_cfg.eval_batch_size)
    assert perplexity(evaluate(model, test, train_cfg.bptt)) == pytest.approx(ppls[1], rel=1e-5)

    py, _ = write_export(spec, tmp_path / "retrained.py")
    mod_spec = importlib.util.spec_from_file_location("retrained_e2e", py)
    mod = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(mod)
    exported = mod.SearchedCellRNN(model_cfg.embedding_dim, model_cfg.hidden_size, model_cfg.num_layers).eval()
    exported.load_state_dict({k[len("rnn."):]: v for k, v in model.state_dict().items() if k.startswith("rnn.")})
    x = torch.randn(5, 3, model_cfg.embedding_dim)
    torch.testing.assert_close(exported(x)[0], model.rnn.eval()(x)[0])



def test_top_k_retrains_the_best_children_and_picks_the_winner_by_validation(search):
    """`nas train results/tiny --top 3`: the search's three best retrained, tau against a hand count, the winner
    by retrained validation perplexity, exported."""
    from nas.runs.results import load_cells, spec_at_rank

    root, run_dir, _ = search
    p = run(["train", "results/tiny", "--top", "3", "--epochs", "1"], cwd=root)
    out = run_dir / "train-top3"
    doc = json.loads((out / "top.json").read_text())
    rows = doc["rows"]
    cells = load_cells(run_dir).set_index("rank")
    assert [r["search_rank"] for r in rows] == [1, 2, 3]
    for r in rows:
        assert r["search_val_ppl"] == pytest.approx(cells.loc[r["search_rank"], "val_ppl"])
        retrained = json.loads((out / f"rank{r['search_rank']}" / "train.json").read_text())
        assert ChildSpec.from_dict(retrained["spec"]) == spec_at_rank(run_dir, r["search_rank"])
        assert r["val_ppl"] == pytest.approx(retrained["runs"][0]["val_ppl"])
        assert r["test_ppl"] == pytest.approx(retrained["runs"][0]["test_ppl"])
    search_ppl, val = [r["search_val_ppl"] for r in rows], [r["val_ppl"] for r in rows]
    signs = [(search_ppl[i] - search_ppl[j]) * (val[i] - val[j]) for i, j in ((0, 1), (0, 2), (1, 2))]
    assert doc["kendall_tau_b"] == pytest.approx(sum(1 if s > 0 else -1 for s in signs) / 3)  # no ties
    winner = min(rows, key=lambda r: r["val_ppl"])["search_rank"]
    assert doc["winner_search_rank"] == winner
    assert ChildSpec.from_json((out / "spec.json").read_text()) == spec_at_rank(run_dir, winner)
    assert (out / "winner.py").is_file() and (out / "top.csv").is_file()
    assert "Kendall tau-b" in p.stdout and f"search rank {winner}" in p.stdout
    p = run(["export", "results/tiny/train-top3/spec.json", "--out", "winner_again.py"], cwd=root)
    assert (root / "winner_again.py").is_file()


def test_show_prints_a_child_of_the_search_and_draws_it(search):
    from nas.runs.results import child_at_rank

    root, run_dir, _ = search
    p = run(["show", "results/tiny", "--rank", "2", "--plot", "cell.png"], cwd=root)
    child = child_at_rank(run_dir, 2)
    spec = ChildSpec.from_json(child["spec"])
    lines = p.stdout.splitlines()
    assert lines[0].startswith(f"results/tiny rank 2 (child {child['index']}): base 8")
    assert [line.strip() for line in lines[2:2 + len(spec.cell.formula().splitlines())]] == \
        spec.cell.formula().splitlines()  # the whole formula, not cut to one line
    assert "hyperparameters: " + ", ".join(f"{k}={v}" for k, v in spec.hparams.as_dict().items()) in lines
    assert f"outcome: completed, val ppl {child['val_ppl']:.2f}" in p.stdout
    assert (root / "cell.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and "wrote cell.png" in p.stdout


def test_progress_prints_a_line_for_each_reused_child(tmp_path):
    """Reused children run no trial, so the searcher hands their records to the progress callback as it writes
    them (while it suggests); the callback prints them when a trial starts and at the end. Children recorded before
    a resume are counted from children.jsonl."""
    from nas.runs.records import ChildRecord, append_record
    from nas.search.driver import SearchProgress
    from workers.outcome import ChildOutcome

    lines = []
    progress = SearchProgress(4, lines.append, tmp_path)
    append_record(tmp_path / "children.jsonl", {"trial_id": "t0", "index": 0, "status": "completed", "val_ppl": 12.5})
    progress.setup()
    assert progress.done == 1 and progress.best == (12.5, 0)
    progress.child_recorded(ChildRecord("t2", 2, ChildOutcome("completed", 13.0)))  # trained: its trial prints it
    progress.child_recorded(ChildRecord("reused-1", 1, ChildOutcome("completed", 12.5), reused_from=0))
    progress.on_trial_start(0, [], None)
    progress.on_experiment_end([])  # nothing new: no second line
    assert lines == ["[  2/4] child   1 val_ppl    12.50 = child 0   running 0   best 12.50 (child 0)"]
