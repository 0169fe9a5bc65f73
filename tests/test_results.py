"""Results: JSONL records → tables, CSV/Parquet, the progress plot, the leaderboard, picking a spec by rank."""

import json
import math

import pandas as pd
import pytest

from nas.runs.records import append_record, read_records
from nas.runs.results import (
    children_table,
    controller_table,
    hparam_columns,
    leaderboard,
    load_cells,
    plot_progress,
    spec_at_rank,
    write_tables,
)
from search_spaces import ChildSpec, HParams, random_cell
from workers.outcome import OUTCOME_TAIL_COLUMNS

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
HP_COLUMNS = ["dropout", "hidden_size", "num_layers"]  # HParams keeps names sorted


def spec(i):
    hp = {"num_layers": 1 + i % 2, "hidden_size": (64, 128)[i % 2], "dropout": (0.0, 0.1, 0.3)[i % 3]}
    return ChildSpec(random_cell(8, i), HParams.of(hp))


def child(i, status="completed", val_ppl=100.0, reward=None, error="", trial_id=None, params=12345):
    s = spec(i)
    return {
        "trial_id": trial_id or f"t{i}", "index": i, "status": status, "val_ppl": val_ppl,
        "reward": reward if reward is not None else (80.0 / val_ppl if val_ppl else 0.0), "params": params,
        "train_seconds": 12.5 + i, "epochs": 2, "seed": 100 + i, "formula": "; ".join(s.cell.formula().splitlines()),
        "spec": s.to_dict(), "error": error, "finished_at": 1.7e9 + i,
    }


def update(step, ids, reward=0.5, entropy=3.0):
    return {
        "step": step, "trial_ids": ids, "controller/reward": reward, "controller/baseline": 0.4,
        "controller/advantage": reward - 0.4, "controller/entropy": entropy, "controller/log_prob": -20.0,
        "controller/loss": 1.5, "controller/grad_norm": 0.7,
    }


def children_records():
    return [
        child(0, val_ppl=150.0),
        child(1, val_ppl=120.0),                                   # superseded by the resumed run below
        child(2, status="diverged", val_ppl=None, reward=0.0, params=None),
        child(5, val_ppl=90.0),                                    # out of order on purpose
        child(3, status="failed", val_ppl=None, reward=0.0, error="RuntimeError: shape mismatch", params=None),
        child(4, val_ppl=float("nan"), reward=float("nan")),      # completed but no usable perplexity
        child(1, val_ppl=110.0),                                   # same trial_id: the last record wins
    ]


@pytest.fixture
def run_dir(tmp_path):
    d = tmp_path / "results" / "demo"
    d.mkdir(parents=True)
    for r in children_records():
        append_record(d / "children.jsonl", r)
    for r in [update(1, ["t0", "t1"], reward=0.6), update(2, ["t2", "t3"], entropy=float("inf")),
              update(1, ["t0", "t1"], reward=0.55)]:
        append_record(d / "controller.jsonl", r)
    with open(d / "children.jsonl", "a") as f:
        f.write('{"trial_id": "t6", "index": 6, "sta')            # torn by a SIGKILL
    return d


# ---- records ---------------------------------------------------------------------------------------------------


def test_append_writes_strict_json_with_null_for_nan_and_inf(tmp_path):
    path = tmp_path / "r.jsonl"
    append_record(path, {"a": float("nan"), "b": [1.0, float("inf")], "c": {"d": -math.inf}, "e": "ok"})

    def reject(token):
        raise AssertionError(f"non-standard JSON token {token}")

    assert json.loads(path.read_text(), parse_constant=reject) == {"a": None, "b": [1.0, None], "c": {"d": None},
                                                                   "e": "ok"}


def test_read_records_missing_file_torn_tail_and_bad_middle_line(tmp_path):
    assert read_records(tmp_path / "nope.jsonl") == []
    path = tmp_path / "r.jsonl"
    path.write_text('{"a": 1}\n{"a": 2}\n{"a": 3, "b')
    with pytest.warns(UserWarning, match="torn last line"):
        assert read_records(path) == [{"a": 1}, {"a": 2}]
    path.write_text('{"a": 1}\nnot json\n{"a": 3}\n')
    with pytest.raises(ValueError, match=r"r\.jsonl:2: not a JSON object"):
        read_records(path)


def test_append_after_a_torn_tail_starts_a_clean_line(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text('{"a": 1}\n{"a": 2, "b')
    append_record(path, {"a": 3})
    assert read_records(path) == [{"a": 1}, {"a": 3}]
    path.write_text('{"a": 1}')  # a whole record missing only its newline is kept
    append_record(path, {"a": 2})
    assert read_records(path) == [{"a": 1}, {"a": 2}]


# ---- tables ----------------------------------------------------------------------------------------------------


def test_children_table_dedupes_ranks_and_keeps_missing_values_missing():
    df = children_table(children_records())
    assert list(df.columns) == ["rank", "pareto", "trial_id", "index", "status", "val_ppl", "reward", "params",
                                "train_seconds", "epochs", "fidelity", "reused_from", *HP_COLUMNS, "formula", "spec",
                                "error", "seed", *OUTCOME_TAIL_COLUMNS]
    assert df["index"].tolist() == [0, 1, 2, 3, 4, 5]
    assert df["trial_id"].is_unique and len(df) == 6
    assert df.loc[df["trial_id"] == "t1", "val_ppl"].item() == 110.0
    assert df["rank"].tolist() == [3, 2, pd.NA, pd.NA, pd.NA, 1]
    assert df["val_ppl"].isna().tolist() == [False, False, True, True, True, False]  # NaN is NA, not a number
    assert df["reward"].isna().tolist() == [False, False, False, False, True, False]
    assert df["params"].isna().tolist() == [False, False, True, True, False, False]
    assert {c: str(df[c].dtype) for c in ["rank", "index", "val_ppl", "params", "seed", *HP_COLUMNS]} == {
        "rank": "Int64", "index": "Int64", "val_ppl": "Float64", "params": "Int64", "seed": "Int64",
        "dropout": "Float64", "hidden_size": "Int64", "num_layers": "Int64"}
    assert isinstance(df["trial_id"].dtype, pd.StringDtype) and df["trial_id"].dtype.na_value is pd.NA
    assert df["hidden_size"].tolist() == [64, 128, 64, 128, 64, 128]
    assert df.loc[3, "error"] == "RuntimeError: shape mismatch" and df.loc[0, "error"] == ""
    assert ChildSpec.from_json(df.loc[5, "spec"]) == spec(5)
    assert " " not in df.loc[5, "spec"].split('"hparams"')[1]  # compact JSON
    assert df.loc[5, "formula"].startswith("n0 = ") and "h_t = " in df.loc[5, "formula"]


def test_empty_tables_have_their_columns():
    df = children_table([])
    assert len(df) == 0 and list(df.columns)[:4] == ["rank", "pareto", "trial_id", "index"] and "formula" in df
    assert list(controller_table([]).columns) == ["step", "reward", "baseline", "advantage", "entropy", "log_prob",
                                                  "loss", "grad_norm", "trial_ids"]


def test_controller_table_dedupes_by_step_and_strips_the_prefix():
    df = controller_table([update(2, ["t2", "t3"], entropy=float("nan")), update(1, ["t0"], reward=0.6),
                           update(1, ["t0", "t1"], reward=0.55)])
    assert df["step"].tolist() == [1, 2]
    assert df["reward"].tolist() == [0.55, 0.5]
    assert df["trial_ids"].tolist() == ["t0;t1", "t2;t3"]
    assert df["entropy"].isna().tolist() == [False, True]
    assert str(df["step"].dtype) == "Int64" and str(df["grad_norm"].dtype) == "Float64"


def test_hyperparameters_named_like_a_column_get_a_prefix_and_mixed_types_become_text(tmp_path):
    records = [child(0), child(1)]
    records[0]["spec"]["hparams"] = {"seed": 7, "size": 64}
    records[1]["spec"]["hparams"] = {"seed": 8, "size": "auto"}
    (tmp_path / "children.jsonl").touch()
    for r in records:
        append_record(tmp_path / "children.jsonl", r)
    df = load_cells(tmp_path)
    assert list(df.columns)[12:14] == ["hp.seed", "size"] and df["seed"].tolist() == [100, 101]
    assert df["size"].tolist() == ["64", "auto"]
    write_tables(tmp_path)
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "cells.parquet"), df)


def test_records_without_their_key_are_errors():
    with pytest.raises(ValueError, match="trial_id"):
        children_table([{"index": 0, "status": "completed"}])
    with pytest.raises(ValueError, match="step"):
        controller_table([{"controller/reward": 1.0}])


# ---- run folders -------------------------------------------------------------------------------------------------


def test_write_tables_writes_csv_parquet_and_png_with_identical_content(run_dir):
    with pytest.warns(UserWarning, match="torn"):
        paths = write_tables(run_dir)
    assert sorted(p.name for p in paths) == ["cells.csv", "cells.parquet", "controller.csv", "progress.png"]
    assert not [p for p in run_dir.iterdir() if p.name.endswith(".tmp")]
    with pytest.warns(UserWarning, match="torn"):
        expected = load_cells(run_dir)
    (run_dir / "children.jsonl").unlink()  # now load_cells falls back to the written tables
    from_parquet = load_cells(run_dir)
    pd.testing.assert_frame_equal(from_parquet, expected)
    (run_dir / "cells.parquet").unlink()
    pd.testing.assert_frame_equal(load_cells(run_dir), expected)  # from cells.csv
    ctl = pd.read_csv(run_dir / "controller.csv")
    assert ctl["step"].tolist() == [1, 2] and ctl["reward"].tolist() == [0.55, 0.5]
    assert ctl["entropy"].isna().tolist() == [False, True]
    assert (run_dir / "progress.png").read_bytes()[:8] == PNG_MAGIC


@pytest.mark.parametrize("case", ["empty", "one child", "one diverged child", "random search", "wide range"])
def test_progress_png_for_small_and_odd_runs(tmp_path, case):
    children = {"empty": [], "one child": [child(0)], "one diverged child": [child(0, status="diverged",
                val_ppl=None)], "random search": [child(i, val_ppl=200.0 - i) for i in range(4)],
                "wide range": [child(0, val_ppl=5000.0), child(1, val_ppl=80.0), child(2, status="stopped")]}[case]
    (tmp_path / "children.jsonl").touch()
    for r in children:
        append_record(tmp_path / "children.jsonl", r)
    if case != "random search":
        append_record(tmp_path / "controller.jsonl", update(1, ["t0"]))
    path = plot_progress(tmp_path)
    assert path == tmp_path / "progress.png" and path.read_bytes()[:8] == PNG_MAGIC
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_a_folder_that_is_not_a_results_folder(tmp_path):
    for call in (load_cells, plot_progress, write_tables, spec_at_rank):
        with pytest.raises(ValueError, match=r"is not a results folder of `nas search`.*e\.g\. results/<name>"):
            call(tmp_path / "missing")
    with pytest.raises(ValueError, match="no children.jsonl or cells.csv"):
        load_cells(tmp_path)


def test_spec_at_rank(run_dir):
    with pytest.warns(UserWarning):
        assert spec_at_rank(run_dir) == spec(5)
    with pytest.warns(UserWarning):
        assert spec_at_rank(run_dir, 3) == spec(0)
    with pytest.warns(UserWarning), pytest.raises(ValueError, match="has 3 completed children.*from 1 to 3"):
        spec_at_rank(run_dir, 4)


# ---- leaderboard -------------------------------------------------------------------------------------------------


def rows_of(text):
    return [line.split() for line in text.splitlines()[2:]]


def test_leaderboard_header_sorting_and_width():
    df = children_table(children_records())
    text = leaderboard(df, top=10)
    header, columns = text.splitlines()[:2]
    assert header == "6 children: 4 completed, 1 diverged, 1 failed; best val_ppl 90.00 (index 5)"
    assert columns.split()[:7] == ["rank", "index", "status", "val_ppl", "reward", "params", "train_seconds"]
    assert columns.split()[7:] == [*HP_COLUMNS, "formula"]
    assert [r[1] for r in rows_of(text)] == ["5", "1", "0", "4", "2", "3"]  # completed by val_ppl, NA, then others
    assert rows_of(text)[0][:7] == ["1", "5", "completed", "90.00", "0.8889", "12,345", "17.5"]
    assert max(len(line) for line in text.splitlines()) <= 150
    assert [r[1] for r in rows_of(leaderboard(df, top=2, sort="reward"))] == ["5", "1"]
    assert [r[1] for r in rows_of(leaderboard(df, sort="index"))] == ["0", "1", "4", "5", "2"]


def test_leaderboard_unknown_sort_column_lists_the_choices():
    with pytest.raises(ValueError, match="'loss' is not a sortable column; choose from val_ppl, reward.*dropout"):
        leaderboard(children_table(children_records()), sort="loss")


def test_leaderboard_of_no_children():
    assert leaderboard(children_table([])).splitlines()[0] == (
        "0 children: 0 completed, 0 diverged, 0 failed; no ranked child yet")


def test_a_table_written_before_fidelity_and_reuse_reads_with_those_columns_missing(tmp_path):
    df = children_table(children_records()).drop(columns=["fidelity", "reused_from", *OUTCOME_TAIL_COLUMNS])
    df.to_csv(tmp_path / "cells.csv", index=False)
    old = load_cells(tmp_path)
    assert list(old.columns) == list(children_table(children_records()).columns)
    assert old["fidelity"].isna().all() and hparam_columns(old) == HP_COLUMNS
    assert "rank" in leaderboard(old).splitlines()[1]
