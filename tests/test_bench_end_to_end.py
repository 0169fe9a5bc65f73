"""bench/bench_end_to_end.py on a tiny corpus: two real searches, every top-3 child and both LSTMs retrained per
seed, the table and its summary line; a second call trains nothing; other settings in the same folder are refused."""

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
    return ["--out", str(tmp_path / "out"), "--dataset", str(corpus), "--children", "4", "--epochs", "1",
            "--seeds", "2", "--search-overrides", json.dumps(TINY), *extra]


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
        "torch-lstm-matched", "torch-lstm-same-hidden"} == sources
    assert (table["seeds"] == 2).all()  # every source trained on both seeds
    assert table["winner"].sum() == 2  # one per search
    winner = table[table["winner"] & table["source"].str.startswith("searched")].iloc[0]
    matched = table[table["source"] == "torch-lstm-matched"].iloc[0]
    same = table[table["source"] == "torch-lstm-same-hidden"].iloc[0]
    assert same["hidden_size"] == winner["hidden_size"] and same["num_layers"] == winner["num_layers"]
    assert abs(matched["params"] - winner["params"]) / winner["params"] < 0.1  # parameter-matched
    assert matched["hidden_size"] > winner["hidden_size"]  # a base-8 cell has twice an LSTM's recurrent weights
    # the paired differences are the other's test perplexity minus the searched winner's, seed by seed
    diffs = pd.read_csv(out / "differences.csv").set_index("vs")
    runs = {(d.parent.name, int(d.name[4:])): json.loads((d / "train.json").read_text())["runs"][-1]
            for d in (out / "train").glob("*/seed*")}
    w = winner["source"]
    expect = [runs[("torch-lstm-matched", s)]["test_ppl"] - runs[(w, s)]["test_ppl"] for s in (0, 1)]
    assert math.isclose(diffs.loc["lstm_matched", "mean"], sum(expect) / 2, rel_tol=1e-9)
    assert (out / "end_to_end.png").stat().st_size > 0
    searches = next(line for line in text.splitlines() if line.startswith("searches: "))
    assert "searched 4 children" in searches and "random 4 children" in searches and "x the searched" in searches

    capsys.readouterr()
    assert e2e.main(args(tmp_path, corpus)) == text  # read back: nothing trains again
    assert not [line for line in capsys.readouterr().out.splitlines() if line.startswith("training ")]
    with pytest.raises(SystemExit):
        e2e.main(args(tmp_path, corpus, "--epochs", "2"))  # other settings in the same folder
    assert "other settings" in capsys.readouterr().err


def test_random_search_can_have_its_own_number_of_children(tmp_path):
    """--random-children: random search runs that many children (to match the default's work), the default its
    --children; the searches line says what each spent."""
    corpus = write_tiny_corpus(tmp_path / "corpus")
    text = e2e.main(args(tmp_path, corpus, "--random-children", "6", "--seeds", "1"))
    assert "searched 4 children" in text and "random 6 children" in text
    records = tmp_path / "out" / "searches" / "random-s100" / "children.jsonl"
    assert len({json.loads(line)["trial_id"] for line in records.read_text().splitlines()}) == 6
