"""The Pareto front of validation perplexity against parameters: hand-made points with a known front, the cells
table's `pareto` column (also for a table written before it existed), `nas results --pareto` and the plots."""

import json
import math

import pandas as pd

from nas.cli import main
from nas.runs.pareto import front, front_mask
from nas.runs.records import append_record
from nas.runs.results import children_table, load_cells
from search_spaces import ChildSpec, random_cell

# (val_ppl, params): the front is A (small, worst), C, E (largest, best); B is beaten by C, D by C and E
POINTS = {"A": (20.0, 100), "B": (18.0, 300), "C": (15.0, 200), "D": (16.0, 400), "E": (12.0, 500)}


def test_the_front_of_hand_made_points():
    names = list(POINTS)
    got = front_mask([POINTS[n][0] for n in names], [POINTS[n][1] for n in names])
    assert [n for n, on in zip(names, got) if on] == ["A", "C", "E"]
    # ties: equal points are both on it; a point equal in size and worse is not; missing values and ineligible are off
    assert front_mask([5.0, 5.0, 6.0], [10, 10, 10]) == [True, True, False]
    assert front_mask([5.0, math.nan, 4.0, None], [10, 5, 20, 1], [True, True, False, True]) == [True, False, False,
                                                                                                   False]
    assert front_mask([], []) == []


def record(i, ppl, params, status="completed", **extra):
    spec = ChildSpec(random_cell(2, i))
    return {"trial_id": f"t{i}", "index": i, "status": status, "val_ppl": ppl, "reward": 1.0, "params": params,
            "train_seconds": 1.0, "epochs": 1, "fidelity": 10, "seed": i, "formula": f"cell {i}",
            "spec": spec.to_dict(), **extra}


def run_with_points(path):
    for i, (ppl, params) in enumerate(POINTS.values()):
        append_record(path / "children.jsonl", record(i, ppl, params))
    append_record(path / "children.jsonl", record(5, None, 50, status="diverged"))  # smallest, but no perplexity
    append_record(path / "children.jsonl", record(6, 12.0, 500, reused_from=4))  # a reuse of E: ranked once, as E
    (path / "config.json").write_text(json.dumps({"algo": "random", "data": {"dataset": "shakespeare"}}))
    return path


def test_the_cells_table_marks_the_front_and_old_tables_get_it_too(tmp_path):
    run = run_with_points(tmp_path / "run")
    cells = children_table(json.loads(line) for line in (run / "children.jsonl").read_text().splitlines())
    assert cells["pareto"].tolist() == [True, False, True, False, True, False, False]
    assert front(cells)["index"].tolist() == [0, 2, 4]  # smallest first
    old = tmp_path / "old"
    old.mkdir()
    cells.drop(columns=["pareto"]).to_csv(old / "cells.csv", index=False)  # a table written before the column
    assert load_cells(old)["pareto"].tolist() == cells["pareto"].tolist()
    assert list(load_cells(old).columns) == list(cells.columns)


def test_nas_results_pareto_lists_the_front_smallest_first(tmp_path, capsys):
    run = run_with_points(tmp_path / "run")
    assert main(["results", str(run), "--pareto"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == ("Pareto front: 3 of 5 ranked children; no other child has both fewer or as many parameters "
                      "and a lower or equal val_ppl")
    rows = [line.split() for line in out[3:]]
    assert [r[1] for r in rows] == ["0", "2", "4"] and [r[6] for r in rows] == ["100", "200", "500"]  # index, params


def test_the_plots_draw_the_fronts(tmp_path, capsys):
    a = run_with_points(tmp_path / "results" / "a")
    b = tmp_path / "results" / "b"
    for i, (ppl, params) in enumerate([(19.0, 150), (14.0, 600)]):
        append_record(b / "children.jsonl", record(i, ppl, params))
    (b / "config.json").write_text(json.dumps({"algo": "reinforce", "data": {"dataset": "shakespeare"}}))
    assert main(["results", str(a), "--plot"]) == 0
    assert (a / "progress.png").stat().st_size > 0
    png = tmp_path / "fronts.png"
    assert main(["compare", "a", "b", "--results-dir", str(tmp_path / "results"), "--pareto", str(png)]) == 0
    assert f"Pareto fronts written to {png}" in capsys.readouterr().out and png.stat().st_size > 0
    assert main(["compare", "a", "b", "--results-dir", str(tmp_path / "results"), "--pareto", "x.txt"]) == 2
    assert "--pareto x.txt: give a .png file" in capsys.readouterr().err
    assert isinstance(load_cells(a)["pareto"].dtype, pd.BooleanDtype)
