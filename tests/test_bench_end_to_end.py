"""bench/bench_end_to_end.py on a tiny corpus: two real searches, every top-3 child, both LSTMs and a known cell
retrained per seed, the table and its summary line; a second call trains nothing; other settings in the same folder
are refused."""

import json
import math
import sys
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_end_to_end as e2e  # noqa: E402
from test_search_e2e import write_tiny_corpus  # noqa: E402

TINY = {"space": {"layers": {"num_layers": [1], "hidden_size": [16, 24]}},
        "train": {"batch_size": 8, "eval_batch_size": 8}, "budget": {"max_batches": 6}}


def args(tmp_path: Path, corpus: Path, *extra: str) -> list[str]:
    return ["--out", str(tmp_path / "out"), "--dataset", str(corpus), "--children", "4", "--random-children", "8",
            "--epochs", "1", "--seeds", "2", "--search-overrides", json.dumps(TINY), "--known", "nascell", *extra]


def test_end_to_end_bench(tmp_path, capsys):
    corpus = write_tiny_corpus(tmp_path / "corpus")
    text = e2e.main(args(tmp_path, corpus))
    out = tmp_path / "out"
    last = text.splitlines()[-1]
    assert last.startswith("end_to_end: searched=") and "random_winner=" in last and "lstm_matched=" in last
    assert "lstm_same_hidden=" in last and "searched_vs_lstm_matched=" in last and "searched_vs_random_winner=" in last
    table = pd.read_csv(out / "table.csv")
    sources = set(table["source"])
    assert {f"{s}-rank{r}" for s in ("searched", "random") for r in (1, 2, 3)} | {
        "torch-lstm-matched", "torch-lstm-same-hidden", "known-nascell"} == sources
    assert (table["seeds"] == 2).all()  # every source trained on both seeds
    assert table["winner"].sum() == 2  # one per search
    winner = table[table["winner"] & table["source"].str.startswith("searched")].iloc[0]
    matched = table[table["source"] == "torch-lstm-matched"].iloc[0]
    same = table[table["source"] == "torch-lstm-same-hidden"].iloc[0]
    assert same["hidden_size"] == winner["hidden_size"] and same["num_layers"] == winner["num_layers"]
    assert abs(matched["params"] - winner["params"]) / winner["params"] < 0.1  # parameter-matched
    assert matched["hidden_size"] > winner["hidden_size"]  # a base-8 cell has twice an LSTM's recurrent weights
    known = table[table["source"] == "known-nascell"].iloc[0]  # Zoph & Le's cell with the winner's layers
    same_layers = ["num_layers", "hidden_size", "dropout", "params"]  # dropout is NaN here: not a searched choice
    assert known[same_layers].fillna(-1).tolist() == winner[same_layers].fillna(-1).tolist()
    assert not known["winner"]
    # the paired differences are the other's test perplexity minus the searched winner's, seed by seed
    diffs = pd.read_csv(out / "differences.csv").set_index("vs")
    runs = {(d.parent.name, int(d.name[4:])): json.loads((d / "train.json").read_text())["runs"][-1]
            for d in (out / "train").glob("*/seed*")}
    w = winner["source"]
    expect = [runs[("torch-lstm-matched", s)]["test_ppl"] - runs[(w, s)]["test_ppl"] for s in (0, 1)]
    assert math.isclose(diffs.loc["lstm_matched", "mean"], sum(expect) / 2, rel_tol=1e-9)
    assert (out / "end_to_end.png").stat().st_size > 0
    line = next(line for line in text.splitlines() if line.startswith("known-nascell vs torch-lstm-matched"))
    expect = [runs[("torch-lstm-matched", s)]["test_ppl"] - runs[("known-nascell", s)]["test_ppl"] for s in (0, 1)]
    assert f"{sum(expect) / 2:+.3f}" in line
    searches = next(line for line in text.splitlines() if line.startswith("searches: "))
    assert "searched 4 children" in searches and "random 8 children" in searches and "x the searched" in searches
    # random search spent more than the default, so its top 3 come from its first children within the default's work
    held = int(searches.split("random's first ")[1].split()[0])
    assert held < 8 and "searched's first 4" in searches

    capsys.readouterr()
    assert e2e.main(args(tmp_path, corpus)) == text  # read back: nothing trains again
    assert not [line for line in capsys.readouterr().out.splitlines() if line.startswith("training ")]
    with pytest.raises(SystemExit):
        e2e.main(args(tmp_path, corpus, "--epochs", "2"))  # other settings in the same folder
    assert "other settings" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        e2e.main(args(tmp_path, corpus, "--known", "gru"))  # not a known cell: one clear line, nothing trained
    assert "--known: unknown cell name 'gru'; known cells: nascell, lstm, tanh_rnn" in capsys.readouterr().err


def test_top_within_ranks_only_the_children_finished_within_the_work(tmp_path):
    """Equal compute: a search's top children are chosen among those it finished before its work (batches x
    parameters, in finish order) passed the budget."""
    from test_results import child

    from nas.config import config_from_dict
    from nas.runs.records import append_record
    from nas.runs.results import Run

    cfg = config_from_dict({"name": "r", "results_dir": str(tmp_path), "trials": 6})
    cfg.run_dir.mkdir(parents=True)
    ppl = [9.0, 7.0, 8.0, 6.5, 5.0, 4.0]  # the two best come after the budget
    for i, v in enumerate(ppl):
        append_record(cfg.run_dir / "children.jsonl", {**child(i, val_ppl=v), "fidelity": 10, "params": 100})
    top, held = e2e.top_within(Run(cfg.run_dir), work=4 * 1000, k=3)
    assert held == 4
    assert [(c["rank"], c["search_val_ppl"]) for c in top] == [(1, 6.5), (2, 7.0), (3, 8.0)]
    top, held = e2e.top_within(Run(cfg.run_dir), work=6 * 1000, k=2)
    assert held == 6 and [c["search_val_ppl"] for c in top] == [4.0, 5.0]


def test_an_unknown_cell_name_is_refused_before_anything_is_written(tmp_path, capsys):
    with pytest.raises(SystemExit):
        e2e.main(["--out", str(tmp_path / "out"), "--known", "gru"])
    assert "--known: unknown cell name 'gru'" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
