"""Early stopping (multi-fidelity) through Ray Tune's ASHA: children report at rungs inside an epoch, a stopped
child is recorded with the fidelity it reached and its perplexity there, and it still teaches the controller."""

import pandas as pd
from test_faults import search_on_local_ray, tiny_config

from nas.config import SchedulerConfig
from nas.runs.records import read_records
from nas.runs.results import leaderboard, load_cells


def test_rungs_are_the_ones_ray_asha_uses_below_the_max_fidelity():
    asha = SchedulerConfig(kind="asha", grace_period=3, reduction_factor=2)
    assert asha.rungs(12) == (3, 6)  # 12 itself is the end of the budget, never a rung
    assert asha.rungs(13) == (3, 6, 12)
    assert SchedulerConfig(kind="asha", grace_period=50, reduction_factor=3).rungs(200) == (50, 150)
    assert SchedulerConfig(kind="asha", grace_period=50).rungs(40) == ()  # a budget shorter than the grace period
    assert SchedulerConfig(kind="none").rungs(1000) == ()


def test_asha_stops_children_at_rungs_and_they_teach_the_controller(tmp_path):
    # one child at a time: ASHA sees the children in a fixed order, so which ones it stops is reproducible
    cfg = tiny_config(tmp_path, name="asha", trials=8, concurrency=1, budget={"max_batches": 12},
                      scheduler={"kind": "asha", "grace_period": 3, "reduction_factor": 2})
    lines = []
    outcome, rows = search_on_local_ray(cfg, out=lines.append)
    assert len(rows) == 8 and not outcome.interrupted
    stopped = [r for r in rows if r["status"] == "stopped"]
    completed = [r for r in rows if r["status"] == "completed"]
    assert stopped, "ASHA keeps the best half at each rung: some of 8 children must stop"
    assert all(r["fidelity"] in (3, 6) and r["val_ppl"] > 0 and r["reward"] > 0 for r in stopped)
    assert all(r["fidelity"] == 12 for r in completed)
    assert all(set(r["rung_ppl"]) == {"3", "6"} for r in completed)  # each reports every rung it passed
    assert all(r["params"] for r in rows)  # stopped children know their size too
    assert sum(r["train_seconds"] for r in stopped) < sum(r["train_seconds"] for r in completed) * len(stopped)
    # every child taught the controller, the stopped ones at their rung's baseline
    steps = read_records(outcome.run_dir / "controller.jsonl")
    assert sorted(t for s in steps for t in s["trial_ids"]) == sorted(r["trial_id"] for r in rows)
    cells = load_cells(outcome.run_dir)
    assert cells.loc[cells["status"] == "stopped", "fidelity"].isin([3, 6]).all()
    assert pd.isna(cells.loc[cells["status"] == "stopped", "rank"]).all()  # a lower fidelity is not ranked
    board = leaderboard(cells, top=8)
    assert "fidelity" in board.splitlines()[1]
    assert any("early stopping at 3/6 of 12 batches" in line for line in lines)
    assert any("stopped@" in line for line in lines)
