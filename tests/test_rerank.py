"""Results people can trust: Kendall's tau, the winner of `--top K` picked by retrained validation (never test),
the reference LSTM through the same loop, the step schedule, the parameter budget, bits per character."""

import dataclasses
import json
import math

import pytest
import torch

import nas.retrain.top as top_module
from nas.cli import main
from nas.config import config_from_dict
from nas.console import bits_per_token
from nas.retrain.sources import matched_hidden_size, parameter_count, with_rnn
from nas.retrain.top import kendall_tau_b, retrain_top
from nas.retrain.trainer import RetrainOutcome, load_checkpoint, retrain, retrain_recipe
from nas.runs.records import append_record
from nas.search.searcher import RandomSearcher
from search_spaces import ChildSpec, HParams, known_cell, random_cell
from search_spaces.cell import CellSpace
from search_spaces.hparams import LayerSpace
from search_spaces.space import SearchSpace
from workers.child_settings import Budget, TrainConfig
from workers.data import batchify, load_corpus
from workers.train import child_parameters, evaluate, lr_at, perplexity, train_child


def test_kendall_tau_b_against_hand_computations():
    # 4 items, one swapped pair: 5 concordant, 1 discordant of 6 pairs
    assert kendall_tau_b([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(4 / 6)
    assert kendall_tau_b([1, 2, 3], [30, 20, 10]) == pytest.approx(-1.0)
    # ties: x ties pair (2,3), y ties pair (3,4); the other 4 pairs concordant: 4 / sqrt((6-1)(6-1)) = 0.8
    assert kendall_tau_b([1, 2, 2, 3], [1, 2, 3, 3]) == pytest.approx(0.8)
    assert math.isnan(kendall_tau_b([1.0], [2.0])) and math.isnan(kendall_tau_b([1, 1], [1, 2]))
    with pytest.raises(ValueError, match="equally many"):
        kendall_tau_b([1, 2], [1])


def child_record(index, ppl, spec):
    return {"trial_id": f"t{index}", "index": index, "status": "completed", "val_ppl": ppl, "reward": 1 / ppl ** 2,
            "params": 1000 + index, "train_seconds": 1.0, "epochs": 1, "fidelity": 10, "seed": index,
            "formula": "; ".join(spec.cell.formula().splitlines()), "spec": spec.to_dict()}


def test_the_winner_is_the_best_retrained_validation_not_test(tmp_path, monkeypatch):
    specs = [ChildSpec(random_cell(2, seed)) for seed in range(4)]
    for i, (spec, ppl) in enumerate(zip(specs, [10.0, 11.0, 12.0, 13.0])):
        append_record(tmp_path / "run" / "children.jsonl", child_record(i, ppl, spec))
    # retrained: validation ranks search rank 2 best, test ranks search rank 3 best
    retrained = {specs[0]: (30.0, 20.0), specs[1]: (25.0, 29.0), specs[2]: (28.0, 15.0)}

    def fake_retrain(spec, cfg, out_dir, source="", out=print):
        val, test = retrained[spec]
        runs = ({"seed": 0, "status": "completed", "val_ppl": val, "test_ppl": test},)
        return RetrainOutcome(out_dir, runs, test, math.nan)

    monkeypatch.setattr(top_module, "retrain", fake_retrain)
    cfg = retrain_recipe(config_from_dict({}), epochs=1)
    top = retrain_top(tmp_path / "run", 3, cfg, tmp_path / "top", out=lambda line: None)
    assert [r.search_rank for r in top.rows] == [1, 2, 3] and top.winner == 2
    assert [r.retrained_rank for r in top.rows] == [3, 1, 2]
    # search 10 < 11 < 12 against retrained 30, 25, 28: pairs (1,2) discordant, (1,3) discordant, (2,3) concordant
    assert top.tau == pytest.approx((1 - 2) / 3)
    doc = json.loads((tmp_path / "top" / "top.json").read_text())
    assert doc["winner_search_rank"] == 2 and doc["kendall_tau_b"] == pytest.approx(top.tau)
    assert ChildSpec.from_json((tmp_path / "top" / "spec.json").read_text()) == specs[1]
    assert "class SearchedCell" in (tmp_path / "top" / "winner.py").read_text()
    with pytest.raises(ValueError, match="only 4 completed children"):
        retrain_top(tmp_path / "run", 5, cfg, tmp_path / "top5", out=lambda line: None)
    assert not (tmp_path / "top5").exists()


@pytest.fixture
def tiny(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for split, n in (("train", 40), ("valid", 8), ("test", 8)):
        (corpus / f"{split}.txt").write_text("the cat sat on the mat and the dog sat on the log\n" * n)
    search = config_from_dict({"seed": 1, "data": {"dataset": str(corpus)},
                               "model": {"hidden_size": 8, "num_layers": 2, "dropout": 0.0, "init_range": 0.1},
                               "train": {"batch_size": 4, "eval_batch_size": 4, "bptt": 6}})
    return tmp_path, search


def test_the_torch_lstm_source_trains_through_the_same_loop_and_loads_from_its_checkpoint(tiny):
    tmp, search = tiny
    cfg = with_rnn(retrain_recipe(search, epochs=2), "torch-lstm")
    outcome = retrain(ChildSpec(known_cell("lstm")), cfg, tmp / "lstm", source="torch-lstm", out=lambda line: None)
    (run,) = outcome.runs
    assert run["status"] == "completed" and run["epochs"] == 2
    model, ckpt = load_checkpoint(tmp / "lstm" / run["model"])
    assert isinstance(model.rnn, torch.nn.LSTM) and ckpt["model"]["rnn"] == "torch-lstm"
    assert model.rnn.num_layers == 2 and model.rnn.hidden_size == 8
    # every weight uniform in ±init_range at the start: the trained ones moved, but the init is the recipe's
    corpus = load_corpus(search.data.source)
    assert run["params"] == child_parameters(known_cell("lstm"), corpus.vocab_size, {}, cfg.model, cfg.train)
    test = batchify(corpus.test, search.train.eval_batch_size)
    assert perplexity(evaluate(model, test, search.train.bptt)) == pytest.approx(run["test_ppl"], rel=1e-6)
    # matching a cell's size: the nascell (base 8) has twice an LSTM's recurrent weights, so a larger LSTM
    nascell = ChildSpec(known_cell("nascell"))
    target = parameter_count(nascell, retrain_recipe(search), corpus.vocab_size)
    h = matched_hidden_size(target, ChildSpec(known_cell("lstm")), cfg, corpus.vocab_size)
    sized = parameter_count(ChildSpec(known_cell("lstm")), with_rnn(cfg, "torch-lstm", h), corpus.vocab_size)
    below = parameter_count(ChildSpec(known_cell("lstm")), with_rnn(cfg, "torch-lstm", h - 1), corpus.vocab_size)
    above = parameter_count(ChildSpec(known_cell("lstm")), with_rnn(cfg, "torch-lstm", h + 1), corpus.vocab_size)
    assert h > 8 and abs(sized - target) <= min(abs(below - target), abs(above - target))


def test_init_range_draws_every_weight_in_range(tiny):
    from workers.child_settings import ModelConfig
    from workers.model import build_child

    torch.manual_seed(0)
    for rnn in ("cell", "torch-lstm"):
        model = build_child(known_cell("nascell"), 50, ModelConfig(hidden_size=16, init_range=0.05, rnn=rnn))
        assert all(p.abs().max() <= 0.05 for p in model.parameters())
        assert min(p.abs().max() for p in model.parameters() if p.numel() > 100) > 0.04


def test_the_step_schedule_keeps_the_rate_then_divides_it_every_epoch(tiny):
    zaremba = TrainConfig(lr=1.0, lr_schedule="step", lr_step_after=4, lr_decay=2.0)
    assert [lr_at(zaremba, e) for e in range(1, 8)] == [1.0, 1.0, 1.0, 1.0, 0.5, 0.25, 0.125]
    plateau = TrainConfig(lr=20.0, lr_decay=4.0)
    assert [lr_at(plateau, 3, stale) for stale in (0, 1, 2)] == [20.0, 5.0, 1.25]
    assert lr_at(TrainConfig(lr=0.01, optimizer="adam", lr_schedule="step", lr_step_after=0), 5) == 0.01
    # and train_child trains each epoch at that rate
    tmp, search = tiny
    corpus = load_corpus(search.data.source)
    train = TrainConfig(lr=4.0, lr_schedule="step", lr_step_after=2, lr_decay=2.0, batch_size=4, bptt=6,
                        eval_batch_size=4)
    result = train_child(known_cell("nascell"), corpus, {}, Budget(epochs=5), search.model, train)
    assert [h.lr for h in result.history] == [4.0, 4.0, 2.0, 1.0, 0.5]


def test_over_budget_children_are_recorded_untrained_with_reward_zero(tmp_path):
    space = SearchSpace(CellSpace(2), LayerSpace.of({"hidden_size": [8, 64]}))
    counted = []

    def count(spec):
        counted.append(spec)
        return spec.hparams["hidden_size"] * 100

    s = RandomSearcher(space, tmp_path, seed=0, max_children=12, max_params=1000, count_params=count)
    suggested = []
    while (config := s.suggest(f"t{len(suggested)}")) not in (None, "FINISHED"):
        suggested.append(config)
        assert config["spec"]["hparams"]["hidden_size"] == 8  # only children within the budget reach a trial
        s.on_trial_complete(f"t{len(suggested) - 1}", {"status": "completed", "val_ppl": 20.0, "params": 800,
                                                     "train_seconds": 1.0, "fidelity": 5})
    records = [json.loads(line) for line in (tmp_path / "children.jsonl").read_text().splitlines()]
    over = [r for r in records if r["status"] == "over_budget"]
    assert over and len(records) == 12 and len(suggested) + len(over) <= 12
    assert all(r["params"] == 6400 and r["reward"] == 0.0 and r["train_seconds"] is None and r["epochs"] == 0
               and r["trial_id"].startswith("over-budget-") and "max_params 1,000" in r["error"] for r in over)


def test_bits_per_character_is_log2_of_perplexity(tmp_path, capsys):
    assert bits_per_token(2.0) == 1.0 and bits_per_token(math.e) == pytest.approx(1 / math.log(2))
    corpus = tmp_path / "chars"
    corpus.mkdir()
    for split, n in (("train", 30), ("valid", 6), ("test", 6)):
        (corpus / f"{split}.txt").write_text("abcab cabba\n" * n)
    assert main(["train", "nascell", "--dataset", str(corpus), "--level", "char", "--epochs", "1",
                 "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    doc = json.loads((tmp_path / "out" / "train.json").read_text())
    (run,) = doc["runs"]
    assert f"val ppl {run['val_ppl']:.2f} = {math.log2(run['val_ppl']):.3f} bits/char" in out
    assert f"test perplexity {run['test_ppl']:.2f}, {math.log2(run['test_ppl']):.3f} bits/char" in out


def test_several_sources_train_under_one_recipe_side_by_side(tiny, capsys, monkeypatch):
    tmp, _ = tiny
    monkeypatch.chdir(tmp)
    (tmp / "c.toml").write_text('[data]\ndataset = "corpus"\n[model]\nhidden_size = 8\nnum_layers = 1\n'
                                '[train]\nbatch_size = 4\neval_batch_size = 4\nbptt = 6\n[retrain]\nepochs = 1\n')
    assert main(["train", "nascell", "torch-lstm", "--match-params", "nascell", "--config", "c.toml",
                 "--out", "side"]) == 0
    out = capsys.readouterr().out.splitlines()
    nascell = json.loads((tmp / "side" / "nascell" / "train.json").read_text())
    lstm = json.loads((tmp / "side" / "torch-lstm" / "train.json").read_text())
    assert nascell["settings"]["model"]["rnn"] == "cell" and lstm["settings"]["model"]["rnn"] == "torch-lstm"
    assert nascell["settings"]["train"] == lstm["settings"]["train"]  # one recipe
    assert nascell["settings"]["budget"]["epochs"] == 1  # from [retrain]
    h = lstm["settings"]["model"]["hidden_size"]
    (matched,) = [line for line in out if line.startswith("torch-lstm: hidden size")]
    assert matched.startswith(f"torch-lstm: hidden size {h}, {lstm['runs'][0]['params']:,} parameters, matching "
                              f"nascell ({nascell['runs'][0]['params']:,} parameters)") and h > 8
    header = out.index(next(line for line in out if line.startswith("source ")))
    assert out[header].split() == ["source", "parameters", "val", "ppl", "test", "ppl"]
    for line, doc, name in ((out[header + 1], nascell, "nascell"), (out[header + 2], lstm, "torch-lstm")):
        run = doc["runs"][0]
        assert line.split() == [name, f"{run['params']:,}", f"{run['val_ppl']:.2f}", f"{run['test_ppl']:.2f}"]
    rows = (tmp / "side" / "compare.csv").read_text().splitlines()
    assert rows[0].startswith("source,params,seeds,val_ppl") and len(rows) == 3


def test_character_level_leaderboards_show_bits_per_character(tmp_path):
    from nas.runs.results import children_table, leaderboard
    from workers.data import resolved_level

    spec = ChildSpec(random_cell(2, 0))
    table = children_table([child_record(0, 5.0, spec), child_record(1, 8.0, spec)])
    char = leaderboard(table, level="char").splitlines()
    assert char[1].split()[3:5] == ["val_ppl", "bits/char"]
    assert char[2].split()[3:5] == ["5.00", f"{math.log2(5.0):.3f}"] and char[3].split()[4] == "3.000"
    assert "bits/char" not in leaderboard(table)  # word level: perplexity only
    assert resolved_level("shakespeare") == "char" and resolved_level(str(tmp_path)) == "word"
    assert resolved_level("shakespeare", "word") == "word"


def test_a_search_config_with_max_params_gives_its_searcher_the_budget_and_the_count(tmp_path):
    from nas.search.driver import _make_searcher

    cfg = config_from_dict({"max_params": 5000, "results_dir": str(tmp_path), "model": {"hidden_size": 8},
                            "space": {"base": 2, "layers": {"hidden_size": [8, 16], "num_layers": [1, 2]}}})
    for algo in ("reinforce", "random", "evolution"):
        searcher = _make_searcher(dataclasses.replace(cfg, algo=algo), (), 50)
        spec = ChildSpec(random_cell(2, 1), HParams.of({"hidden_size": 16, "num_layers": 2}))
        assert searcher.max_params == 5000
        assert searcher.count_params(spec) == child_parameters(spec.cell, 50, spec.hparams.as_dict(), cfg.model,
                                                               cfg.train)
