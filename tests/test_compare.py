"""Comparing searches: best-so-far curves by children and by compute over hand-made records (checked against hand
computations), `nas compare` on two real tiny searches (random and REINFORCE), and its bad-input cases."""

import json
import math

import numpy as np
import pandas as pd
import pytest

from nas import cli
from nas.console import format_seconds
from nas.runs.compare import (
    _by_children,
    _by_compute,
    best_so_far,
    comparison_table,
    compute_to_reach,
    parse_counts,
    plot_curves,
    value_at,
)
from nas.runs.records import append_record

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
nan = math.nan


def rec(trial, index, status="completed", val_ppl=None, train_seconds=None, **extra):
    r = {"trial_id": trial, "index": index, "status": status, "val_ppl": val_ppl, **extra}
    if train_seconds is not ...:  # ...: no train_seconds key at all
        r["train_seconds"] = train_seconds
    return r


# in finish order (appended as children finished), not in index order
RECORDS = [
    rec("t1", 1, "failed", None, None, error="boom"),          # child 1: null seconds = 0, no perplexity
    rec("t0", 0, "completed", 80.0, 10.0),                     # child 2: first best, 80
    rec("t2", 2, "stopped", 20.0, 4.0, fidelity=50),           # child 3: low-fidelity ppl does not count
    rec("t3", 3, "diverged", None, 6.0),                       # child 4
    rec("t4", 4, "completed", 60.0, 5.0),                      # child 5: best 60
    rec("t5", 5, "completed", 50.0, 0.0, reused_from=4),       # child 6: reused outcome, no compute, best 50
    rec("t6", 6, "completed", 70.0, ...),                      # child 7: no train_seconds key = 0
    rec("t7", 7, "completed", 45.0, 2.5, fidelity=400),        # child 8: best 45
]
# cumulative seconds: 0, 10, 14, 20, 25, 25, 25, 27.5
CHILD = [1, 2, 3, 4, 5, 6, 7, 8]
COMPUTE = [0.0, 10.0, 14.0, 20.0, 25.0, 25.0, 25.0, 27.5]
BEST = [nan, 80.0, 80.0, 80.0, 60.0, 50.0, 50.0, 45.0]


def curve_of(compute, best):
    return pd.DataFrame({"child": np.arange(1, len(best) + 1), "compute_seconds": compute, "best_val_ppl": best})


def test_best_so_far_counts_every_child_and_its_compute_but_only_completed_perplexities():
    c = best_so_far(RECORDS)
    assert list(c.columns) == ["child", "compute_seconds", "compute_work", "best_val_ppl"]
    assert c["child"].tolist() == CHILD
    assert c["compute_seconds"].tolist() == COMPUTE
    np.testing.assert_array_equal(c["best_val_ppl"].to_numpy(), BEST)


def test_best_so_far_edge_cases():
    assert best_so_far([]).empty and list(best_so_far([]).columns) == ["child", "compute_seconds", "compute_work",
                                                                         "best_val_ppl"]
    # a completed child without a usable perplexity (null, NaN, inf) counts as a child, not as a best
    c = best_so_far([rec("a", 0, "completed", None, 1.0), rec("b", 1, "completed", float("nan"), float("nan")),
                     rec("c", 2, "completed", float("inf"), 2.0), rec("d", 3, "completed", 9.0, 1.0)])
    assert c["compute_seconds"].tolist() == [1.0, 1.0, 3.0, 4.0]
    np.testing.assert_array_equal(c["best_val_ppl"].to_numpy(), [nan, nan, nan, 9.0])
    # a trial recorded twice (crash and resume): one child, its last record, in that record's place
    c = best_so_far([rec("a", 0, "completed", 30.0, 5.0), rec("b", 1, "completed", 40.0, 1.0),
                     rec("a", 0, "completed", 20.0, 7.0)])
    assert c["compute_seconds"].tolist() == [1.0, 8.0]
    assert c["best_val_ppl"].tolist() == [40.0, 20.0]
    with pytest.raises(ValueError, match="train_seconds -1.0 of child index 0"):
        best_so_far([rec("a", 0, "completed", 30.0, -1.0)])


def test_work_counts_batches_times_parameters_of_trained_children_only():
    records = [rec("a", 0, "completed", 30.0, 5.0, fidelity=60, params=1000),
               rec("b", 1, "completed", 30.0, 0.0, fidelity=60, params=1000, reused_from=0),  # reused: no work
               rec("c", 2, "stopped", 40.0, 1.0, fidelity=20, params=500),  # stopped at a rung: its 20 batches
               rec("d", 3, "over_budget", None, None, params=10**9),  # never trained
               rec("e", 4, "completed", 25.0, 9.0, fidelity=60, params=3000)]
    c = best_so_far(records)
    assert c["compute_work"].tolist() == [60_000.0, 60_000.0, 70_000.0, 70_000.0, 250_000.0]
    assert value_at(c, compute=69_999.0, by="compute_work") == 30.0
    assert value_at(c, compute=250_000.0, by="compute_work") == 25.0
    assert compute_to_reach(c, 26.0, by="compute_work") == 250_000.0
    assert compute_to_reach(c, 26.0) == 15.0  # seconds, the default


def test_value_at_children_and_compute():
    c = best_so_far(RECORDS)
    assert math.isnan(value_at(c, children=0)) and math.isnan(value_at(c, children=1))  # before any completed
    assert value_at(c, children=2) == 80.0 and value_at(c, children=6) == 50.0 and value_at(c, children=8) == 45.0
    assert math.isnan(value_at(c, children=9))  # beyond the run
    assert math.isnan(value_at(c, compute=0.0))  # child 1 (0 s) failed
    assert math.isnan(value_at(c, compute=9.99))
    assert value_at(c, compute=10.0) == 80.0  # child 2 finished at exactly 10 s
    assert value_at(c, compute=24.9) == 80.0
    assert value_at(c, compute=25.0) == 50.0  # children 5, 6 and 7 all finished by 25 s
    assert value_at(c, compute=27.5) == 45.0
    assert math.isnan(value_at(c, compute=27.6))  # more than the run spent
    assert math.isnan(value_at(best_so_far([]), children=1)) and math.isnan(value_at(best_so_far([]), compute=0))
    for bad in [{}, {"children": 1, "compute": 1.0}, {"children": -1}, {"children": 1.5}, {"compute": -1.0},
                {"compute": nan}]:
        with pytest.raises(ValueError, match="value_at"):
            value_at(c, **bad)


def test_compute_to_reach():
    c = best_so_far(RECORDS)
    assert compute_to_reach(c, 80.0) == 10.0
    assert compute_to_reach(c, 55.0) == 25.0  # child 6 (reused, 0 s) reaches 50 at 25 s
    assert compute_to_reach(c, 45.0) == 27.5
    assert compute_to_reach(c, 44.9) == math.inf
    assert compute_to_reach(c, 20.0) == math.inf  # the stopped child's 20 does not count
    assert compute_to_reach(best_so_far([]), 10.0) == math.inf
    with pytest.raises(ValueError, match="target"):
        compute_to_reach(c, nan)


def test_parse_counts_and_format_seconds():
    assert parse_counts("20,10,20") == (10, 20)
    assert parse_counts(" 5 ") == (5,)
    for bad in ["", "a,b", "10,,20", "0,10", "-5", "1.5"]:
        with pytest.raises(ValueError, match="--at"):
            parse_counts(bad)
    assert [format_seconds(s) for s in (0.0, 0.278, 9.994, 12.34, 59.9, 193.4, 7500.0, math.inf, nan)] == [
        "0.00 s", "0.28 s", "9.99 s", "12.3 s", "59.9 s", "3m13s", "2h05m", "never", "-"]


def test_comparison_table_text():
    ref = best_so_far(RECORDS)  # final best 45 after 27.5 s; first <= 45 at 27.5 s
    other = best_so_far([rec("a", 0, "completed", 90.0, 3.0), rec("b", 1, "completed", 44.0, 8.0),
                         rec("c", 2, "failed", None, 2.0)])  # reaches 44 <= 45 at 11 s of 13 s
    empty = best_so_far([])
    text = comparison_table([("ref (reinforce)", ref), ("other (random)", other), ("none (random)", empty)], (2, 5))
    assert text.splitlines() == [
        "reference: ref (reinforce), final best val_ppl 45.00; best@N: the best val_ppl of a completed child among "
        "the first N; compute: seconds of child training",
        "run              children  best@2  best@5  final best  compute  to reach 45.00  of ref compute",
        "ref (reinforce)         8   80.00   60.00       45.00   27.5 s          27.5 s            1.00",
        "other (random)          3   44.00       -       44.00   13.0 s          11.0 s            0.40",
        "none (random)           0       -       -           -   0.00 s           never               -",
    ]
    with pytest.raises(ValueError, match="no completed child"):
        comparison_table([("none (random)", empty), ("ref", ref)])


def test_mean_and_std_over_runs_by_children_and_by_compute():
    a = curve_of([1.0, 3.0, 6.0], [nan, 10.0, 8.0])
    b = curve_of([2.0, 4.0, 5.0, 9.0], [12.0, 11.0, 6.0, 5.0])
    # by children: up to the shorter run (3), where both have a value (children 2 and 3)
    x, mean, std = _by_children([a, b])
    assert x.tolist() == [2.0, 3.0]
    assert mean.tolist() == [10.5, 7.0]
    np.testing.assert_allclose(std, [np.std([10, 11], ddof=1), np.std([8, 6], ddof=1)])
    # by compute: the union of both runs' steps up to the smaller total (6 s), where both have a value
    x, mean, std = _by_compute([a, b])
    assert x.tolist() == [3.0, 4.0, 5.0, 6.0]  # at 1 s and 2 s, run a has no completed child yet
    assert mean.tolist() == [(10 + 12) / 2, (10 + 11) / 2, (10 + 6) / 2, (8 + 6) / 2]
    x, mean, std = _by_children([b])  # one run: its curve, no spread
    assert x.tolist() == [1.0, 2.0, 3.0, 4.0] and mean.tolist() == [12.0, 11.0, 6.0, 5.0] and not std.any()


def test_plot_curves_writes_a_png(tmp_path):
    a, b = best_so_far(RECORDS), curve_of([2.0, 4.0, 5.0, 9.0], [120.0, 11.0, 6.0, 5.0])  # > 10x: log scale
    path = plot_curves({"reinforce": [a, b], "random": [b], "empty": [best_so_far([])]}, tmp_path / "c.png")
    assert path == tmp_path / "c.png" and path.read_bytes()[:8] == PNG_MAGIC
    assert [p.name for p in tmp_path.iterdir()] == ["c.png"]  # no temporary file left behind
    with pytest.raises(ValueError, match="at least one run"):
        plot_curves({"random": []}, tmp_path / "d.png")


# ---- the command on two real tiny searches -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    from test_faults import search_on_local_ray, tiny_config

    root = tmp_path_factory.mktemp("compare")
    results = str(root / "results")
    runs = {}
    with pytest.MonkeyPatch.context() as mp:
        # a fresh local Ray each time, even while another process's test cluster is registered as the machine's
        # current one (ray.init() without an address would join that cluster and refuse num_cpus)
        mp.setenv("RAY_ADDRESS", "local")
        for name, algo in [("rl", "reinforce"), ("rand", "random")]:
            (root / f"corpus-{name}").mkdir()
            cfg = tiny_config(root / f"corpus-{name}", name=name, algo=algo, trials=4, results_dir=results)
            outcome, records = search_on_local_ray(cfg)
            assert len(records) == 4 and any(r["status"] == "completed" for r in records)
            runs[name] = (outcome.run_dir, records)
    return root, runs


def by_hand(records, target):
    """From the records in finish order: best after 2 and 4 children, final best, total seconds, seconds to reach
    ``target``."""
    best, spent, at, reach = math.inf, 0.0, {}, math.inf
    for n, r in enumerate(records, 1):
        spent += r["train_seconds"] or 0.0
        if r["status"] == "completed":
            best = min(best, r["val_ppl"])
        if best <= target and reach == math.inf:
            reach = spent
        at[n] = best
    return at, best, spent, reach


def test_compare_prints_the_table_of_two_real_runs_and_writes_the_plot(two_runs, capsys, monkeypatch):
    root, runs = two_runs
    monkeypatch.chdir(root)  # names resolve under ./results
    (_, rl), (rand_dir, rand) = runs["rl"], runs["rand"]
    assert cli.main(["compare", "rl", str(rand_dir), "--at", "2,4,10", "--plot", "cmp.png"]) == 0
    out = capsys.readouterr().out.splitlines()
    target = min(r["val_ppl"] for r in rl if r["status"] == "completed")
    assert out[0].startswith(f"reference: rl (reinforce), final best val_ppl {target:.2f}; best@N: ")
    assert out[1].split() == ["run", "children", "best@2", "best@4", "best@10", "final", "best", "compute", "to",
                              "reach", f"{target:.2f}", "of", "ref", "compute"]
    ref_seconds = by_hand(rl, target)[2]
    for line, label, records in [(out[2], "rl (reinforce)", rl), (out[3], "rand (random)", rand)]:
        at, best, spent, reach = by_hand(records, target)
        ppl = ["-" if math.isinf(at[n]) else f"{at[n]:.2f}" for n in (2, 4)]
        fraction = "-" if math.isinf(reach) else f"{reach / ref_seconds:.2f}"
        cells = [label, "4", *ppl, "-", f"{best:.2f}", format_seconds(spent), format_seconds(reach), fraction]
        assert line.split() == " ".join(cells).split(), (line, cells)
    assert out[4] == "plot written to cmp.png" and len(out) == 5
    assert (root / "cmp.png").read_bytes()[:8] == PNG_MAGIC


def test_compare_defaults_and_the_plot_grouped_by_algo(two_runs, capsys, tmp_path):
    root, runs = two_runs
    paths = [str(runs[n][0]) for n in ("rand", "rl", "rand")]
    assert cli.main(["compare", *paths, "--plot", str(tmp_path / "by_algo.png"), "--group", "algo"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1].split()[:6] == ["run", "children", "best@25", "best@50", "best@100", "best@150"]
    assert len(out) == 6 and out[2].split()[3:7] == ["-", "-", "-", "-"]  # a 4-child run has none of the defaults
    assert (tmp_path / "by_algo.png").read_bytes()[:8] == PNG_MAGIC


# ---- bad input: one line, exit code 2, nothing written -------------------------------------------------------------


@pytest.fixture
def hand_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name, records in [("good", RECORDS), ("none", [rec("x", 0, "failed", None, 1.0)])]:
        for r in records:
            append_record(tmp_path / "results" / name / "children.jsonl", r)
        (tmp_path / "results" / name / "config.json").write_text(json.dumps({"name": name, "algo": "random"}))
    (tmp_path / "empty").mkdir()
    return tmp_path


def test_compare_of_hand_made_runs_by_name(hand_runs, capsys):
    assert cli.main(["compare", "good", "none", "--at", "2"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[2].split() == ["good", "(random)", "8", "80.00", "45.00", "27.5", "s", "27.5", "s", "1.00"]
    assert out[3].split() == ["none", "(random)", "1", "-", "-", "1.00", "s", "never", "-"]


@pytest.mark.parametrize("argv, message", [
    (["compare", "empty"], "empty has no children.jsonl, so it is not a results folder"),
    (["compare", "missing"], "'missing' is neither a results folder nor an experiment in results"),
    (["compare", "none", "good"], "has no completed child, so it has no best val_ppl"),
    (["compare", "good", "--at", "ten"], "--at 'ten': give comma-separated whole numbers"),
    (["compare", "good", "--at", "0,5"], "numbers of children start at 1"),
    (["compare", "good", "--plot", "no/such/dir/c.png"], "--plot no/such/dir/c.png: give a .png file"),
    (["compare", "good", "--plot", "c.pdf"], "give a .png file in an existing folder"),
    (["compare"], "the following arguments are required: RUN"),
])
def test_bad_input_is_one_line_and_exit_code_2(hand_runs, capsys, argv, message):
    before = sorted(p for p in hand_runs.rglob("*"))
    assert cli.main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert len(captured.err.strip().splitlines()) == 1 and message in captured.err, captured.err
    assert sorted(p for p in hand_runs.rglob("*")) == before  # nothing written
