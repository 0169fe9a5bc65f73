"""The benchmarks' statistics and bookkeeping: the paired t interval and p-value (against values computed with
scipy.stats), time-to-target ratios with misses, the per-seed comparison of two searches built from hand-made
records, the seed sets, and the provenance check that refuses to mix runs of other code or settings."""

import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

import bench_search_quality as bsq  # noqa: E402
import paired  # noqa: E402
import provenance  # noqa: E402

from nas.runs.compare import best_so_far  # noqa: E402


def test_t_quantiles_and_p_values_match_scipy():
    # scipy.stats.t.ppf(0.975, df) and 2 * scipy.stats.t.sf(1.8, df)
    for df, q, p in [(1, 12.706204736174694, 0.32282893443419053), (2, 4.302652729749462, 0.21366634900506581),
                     (9, 2.262157162798205, 0.10539067158640895), (30, 2.0422724563012378, 0.08192506860874028)]:
        assert paired.t_quantile(0.975, df) == pytest.approx(q, rel=1e-9)
        assert paired.t_two_sided_p(1.8, df) == pytest.approx(p, rel=1e-9)


def test_paired_interval_p_and_verdict():
    got = paired.paired([0.45, 0.27, 1.64])  # the 2026-11-27 headline's per-seed gains
    assert got.mean == pytest.approx(0.7867, abs=1e-4)
    assert got.p == pytest.approx(0.20870389726507232, rel=1e-9)  # scipy.stats.ttest_1samp
    # scipy.stats.t.interval(0.95, 2, loc=mean, scale=sem)
    assert (got.low, got.high) == pytest.approx((-1.0626955857708427, 2.636028919104176), rel=1e-9)
    assert got.low < 0 < got.high and got.verdict == "within noise" and got.wins == 3
    assert paired.paired([1.0, 1.2, 0.9, 1.1]).verdict == "better"
    assert paired.paired([-1.0, -1.2, -0.9, -1.1]).verdict == "worse"
    assert paired.paired([0.5]).verdict == "too few seeds"
    with pytest.raises(ValueError, match="NaN"):
        paired.paired([1.0, math.nan])


def test_time_to_target_and_the_median_with_misses():
    assert paired.time_to_target_ratio(30.0, 60.0) == 0.5
    assert paired.time_to_target_ratio(math.inf, 60.0) == math.inf  # a miss
    with pytest.raises(ValueError, match="reference"):
        paired.time_to_target_ratio(1.0, math.inf)
    assert paired.median_with_misses([0.2, math.inf, 0.4]) == 0.4
    assert paired.median_with_misses([0.2, 0.6, math.inf, 0.4]) == 0.5
    assert paired.median_with_misses([0.2, math.inf, math.inf, 0.4]) == math.inf  # half missed


def rec(i, ppl, seconds, batches=60, params=1000, status="completed", **extra):
    return {"trial_id": f"t{i}", "index": i, "status": status, "val_ppl": ppl, "train_seconds": seconds,
            "fidelity": batches, "params": params, **extra}


def test_paired_rows_compare_at_equal_children_work_and_seconds():
    random = best_so_far([rec(0, 20.0, 1.0), rec(1, 15.0, 1.0), rec(2, 18.0, 1.0), rec(3, 12.0, 1.0)])
    # the setting: reaches 12 at child 2 with a reused child costing nothing, then finds 10 at child 4
    setting = best_so_far([rec(0, 14.0, 2.0), rec(1, 14.0, 0.0, reused_from=0), rec(2, 12.0, 1.0),
                           rec(3, 10.0, 1.0, params=3000)])
    (row,) = bsq.paired_rows("s", {7: setting}, {7: random}, at=[2])
    assert row["seed"] == 7 and row["random_best"] == 12.0 and row["best"] == 10.0
    assert row["gain_children"] == 2.0
    # random's total work is 4 x 60 x 1000 = 240,000; the setting spent 60,000 x 2 + 180,000 = 300,000: within
    # random's work it had found 12
    assert row["gain_work"] == 0.0
    assert row["gain_seconds"] == 2.0  # random's 4 s: the setting's four children (4 s) found 10
    # random needed all 240,000 of work to reach 12; the setting needed 120,000
    assert row["time_to_target_work"] == 0.5
    assert row["time_to_target_seconds"] == pytest.approx(3.0 / 4.0)
    assert row["gain@2"] == 15.0 - 14.0
    v = bsq.verdicts([row, {**row, "seed": 8, "gain_work": 1.0, "time_to_target_work": math.inf}])
    assert v["gain_work"].mean == 0.5 and v["time_to_target_work"] == (math.inf, 1, 2)


def test_seed_sets_never_mix():
    assert bsq.parse_seeds("tuning") == ("tuning", [0, 1, 2, 3, 4])
    assert bsq.parse_seeds("reporting") == ("reporting", list(range(100, 110)))
    assert bsq.parse_seeds("replication") == ("reporting", list(range(110, 120)))
    assert bsq.parse_seeds("confirmation") == ("reporting", list(range(120, 130)))
    assert bsq.parse_seeds("repeat") == ("reporting", list(range(130, 140)))
    assert bsq.parse_seeds("110,111") == ("reporting", [110, 111])
    assert bsq.parse_seeds("3,4") == ("tuning", [3, 4])
    assert not set(bsq.TUNING_SEEDS) & set(bsq.REPORTING_SEEDS)
    with pytest.raises(ValueError, match="mixes reporting seeds"):
        bsq.parse_seeds("1,100")
    with pytest.raises(ValueError, match="mixes reporting seeds"):
        bsq.parse_seeds("9,119")
    assert bsq.seed_label("reporting", list(range(100, 110))) == "reporting_seeds=100-109"


def test_provenance_refuses_other_settings_other_code_and_unknown_folders(tmp_path, monkeypatch):
    record, stamp = provenance.provenance({"a": 1}), tmp_path / "run.provenance.json"
    assert "no run.provenance.json" in provenance.mismatch(stamp, record)
    provenance.write(stamp, record)
    assert provenance.mismatch(stamp, record) == ""
    assert "other settings" in provenance.mismatch(stamp, provenance.provenance({"a": 2}))
    monkeypatch.setattr(provenance, "source_hash", lambda *a, **k: "0123456789abcdef")
    assert "other code" in provenance.mismatch(stamp, provenance.provenance({"a": 1}))


def test_the_report_writes_its_tables_and_ends_with_the_summary_line(tmp_path, capsys):
    random = {100: best_so_far([rec(0, 20.0, 1.0), rec(1, 15.0, 1.0), rec(2, 14.0, 1.0)]),
              101: best_so_far([rec(0, 21.0, 1.0), rec(1, 15.0, 1.0), rec(2, 16.0, 1.0)])}
    default = {100: best_so_far([rec(0, 16.0, 1.0), rec(1, 13.0, 1.0), rec(2, 12.0, 1.0)]),
               101: best_so_far([rec(0, 18.0, 1.0), rec(1, 14.0, 1.0), rec(2, 13.5, 1.0)])}
    curves = {"default": default, "random": random}
    entropy = {"default": [(40.0, 20.0), (39.0, 25.0)], "random": []}
    got = bsq.report(curves, entropy, ["default", "random"], "reporting", [100, 101], [2], tmp_path, 1.0)
    last = capsys.readouterr().out.strip().splitlines()[-1]
    # gains at equal work: random's final bests 14 and 15 against 12 and 13.5
    assert got["default"]["gain_work"].mean == pytest.approx(((14 - 12) + (15 - 13.5)) / 2)
    assert last.startswith("quality: reporting_seeds=100,101 default_gain=+")
    assert " ci95=[" in last and " p=" in last and "default_time_to_target=" in last and "default_misses=0/2" in last
    for name in ("runs.csv", "paired.csv", "summary.csv", "quality.png"):
        assert (tmp_path / name).stat().st_size > 0


def test_the_reference_setting_must_be_run_and_successive_halving_pairs_with_its_own_random(capsys):
    with pytest.raises(SystemExit):
        bsq.main(["--settings", "default-sh540", "--reference", "random-sh540"])  # before any search starts
    assert "random-sh540 is missing" in capsys.readouterr().err
    a, b = (bsq.config_for(s, 0, 150, Path("/tmp/unused"), {"dataset": "shakespeare"}, 2)
            for s in ("default-sh540", "random-sh540"))
    assert (a.algo, b.algo) == ("reinforce", "random")
    assert a.budget == b.budget and a.scheduler == b.scheduler  # the same children and rungs, only the algorithm
    assert a.budget.max_batches == 540 and a.scheduler.rungs(540) == (60, 180)


def test_the_default_budget_trains_children_like_the_default_search():
    short, default = (bsq.config_for("random", 0, 150, Path("/tmp/unused"), {"dataset": "shakespeare"}, 2, budget)
                      for budget in ("short", "default"))
    shipped = bsq.SearchConfig().budget
    assert (short.budget.max_batches, short.budget.max_eval_tokens) == (60, 5000)
    assert (default.budget.max_batches, default.budget.max_eval_tokens) == (shipped.max_batches,
                                                                            shipped.max_eval_tokens)
    assert default.space == short.space and default.train == short.train  # only the budget differs


def test_the_dead_children_analysis_cuts_only_dead_trained_children():
    """bench/dead_children.py's replay: a diverged child or one that ended above the live threshold costs
    ``stop_at`` of its work and no longer counts as completed; a live child and a reused outcome cost as before."""
    import dead_children

    def rec(i, status, ppl, reused=None):
        return {"trial_id": f"t{i}", "index": i, "status": status, "val_ppl": ppl, "fidelity": 200, "params": 10,
                "train_seconds": 2.0, "reused_from": reused}

    records = [rec(0, "completed", 27.98), rec(1, "completed", 9.5), rec(2, "diverged", None),
               rec(3, "completed", 27.98, reused=0)]
    out = dead_children.stopped(records, stop_at=0.4, dead=20.0)
    assert [r["status"] for r in out] == ["stopped", "completed", "stopped", "stopped"]
    assert [r["fidelity"] for r in out] == [80, 200, 80, 200] and out[0]["train_seconds"] == pytest.approx(0.8)
    assert records[0]["status"] == "completed"  # the records themselves are left as they were
    curve = best_so_far(out)
    assert curve["compute_work"].tolist() == [800.0, 2800.0, 3600.0, 3600.0]  # the reused outcome costs nothing
    assert curve["best_val_ppl"].iloc[-1] == 9.5
