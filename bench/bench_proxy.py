"""Does a child's short-budget perplexity (the search's reward) predict the perplexity after real training?

Cells: ``--random-cells`` uniformly random base-8 cells and the ``--found`` best distinct cells of each of two
default searches (:mod:`bench_search_quality`'s children, its tuning seeds 0 and 1, run here first if absent). Each
cell is trained, at a *fixed* model size so that only the cell differs, under:

- ``short``: the search's child exactly (1 layer, hidden 64, batch 32, BPTT 35, SGD lr 5, the first 5,000 validation
  tokens) for 600 batches, measured at 60 batches (the search's reward, identical to a 60-batch child: the
  learning rate is constant inside the first epoch), 200 and 600;
- ``short32``: the same at hidden 32 for 60 batches (how the proxy sees the search's smaller size choice);
- ``long``: the retraining recipe, hidden ``--long-hidden`` (128) for ``--long-epochs`` (1) whole epochs of the
  training split, the whole validation split, test perplexity of the best-validation weights; measured on the way
  at 60, 200 and 600 batches too (the proxy at the larger size);

each for ``--seeds`` training seeds (2). The truth is the long run's validation perplexity, averaged over seeds.
Reported: Kendall's tau-b and Spearman's rho between each proxy and the truth (all cells, found, random), the truth
of the cell each proxy ranks first and the best truth among its top 3 (what a search that trusts the proxy gets,
retraining its top 1 or top 3; a cell's truth is the mean over the seeds that did not diverge),
the long runs' own seed-to-seed tau (the ceiling noise allows), each proxy's cost (training tokens x parameters),
and ``proxy.png`` (search reward vs truth, 600-batch proxy vs truth).

Every job's result is appended to ``results.jsonl`` as it finishes; a re-run skips the jobs there, so the benchmark
can be stopped at any point (Ctrl-C, ``--stop-after``) and continued, also in another session. The folder's
``provenance.json`` (training code, cells, settings) must match, or the run is refused (``--force-reuse``).
Subnormal floats are flushed (``torch.set_flush_denormal``): speed only, perplexities are not affected.

Usage: ``python bench/bench_proxy.py [--out bench/proxy] [--workers 2] [--stop-after SECONDS] [--report]``
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import multiprocessing as mp
import random
import statistics
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import provenance  # noqa: E402

from nas.retrain.top import kendall_tau_b  # noqa: E402
from nas.runs.records import append_record, read_records  # noqa: E402
from nas.search import ray_session  # noqa: E402
from search_spaces.cell import Cell, CellSpace  # noqa: E402

TRAIN = {"lr": 5.0, "batch_size": 32, "eval_batch_size": 32, "bptt": 35}
"""The search-quality benchmark's child optimisation (bench_search_quality.CHILD)."""
SEARCH_EVAL_TOKENS = 5000
PROXY_AT = (60, 200, 600)
"""Training batches at which a proxy is read."""
DIVERGED_PPL = 1e9
"""Rank value of a run that diverged (worse than any measured perplexity)."""


# ---- cells ---------------------------------------------------------------------------------------------------------


def found_cells(out: Path, per_search: int) -> list[dict[str, Any]]:
    """The best ``per_search`` distinct cells (by the search's val_ppl) of default searches on tuning seeds 0, 1."""
    import bench_search_quality as bsq
    import ray

    from nas.search.driver import run_search

    cells: list[dict[str, Any]] = []
    if per_search == 0:
        return cells
    seen: set[str] = set()
    ray_started = False
    for seed in (0, 1):
        cfg = bsq.config_for("default", seed, 150, out / "searches", {"dataset": "shakespeare", "level": "auto"}, 2)
        children = cfg.run_dir / "children.jsonl"
        if len({r["trial_id"] for r in read_records(children)} if children.exists() else set()) < cfg.trials:
            if not ray_started:
                ray_session.start_local(num_cpus=2)
                ray_started = True
            run_search(cfg, resume=(cfg.run_dir / "config.json").exists(), out=lambda line: None)
        done = [r for r in read_records(children) if r.get("status") == "completed" and r.get("reused_from") is None]
        taken = 0
        for r in sorted(done, key=lambda r: r["val_ppl"]):
            key = json.dumps(r["spec"]["cell"], sort_keys=True)
            if key in seen:
                continue
            seen.add(key)
            cells.append({"cell": r["spec"]["cell"], "origin": f"found-s{seed}", "search_val_ppl": r["val_ppl"],
                          "search_hparams": r["spec"].get("hparams", {})})
            taken += 1
            if taken == per_search:
                break
    if ray_started:
        ray.shutdown()
    return cells


def random_cells(n: int, seed: int = 12345) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    space = CellSpace(base=8)
    return [{"cell": space.decode([rng.randrange(d.size) for d in space.decisions]).to_dict(), "origin": "random"}
            for _ in range(n)]


# ---- jobs ----------------------------------------------------------------------------------------------------------


def jobs_for(n_cells: int, seeds: int) -> list[tuple[int, str, int]]:
    """(cell index, kind, seed), cheap kinds first within each seed, so a stopped run has whole phases."""
    return [(c, kind, s) for s in range(seeds) for kind in ("short", "short32", "long") for c in range(n_cells)]


def job_key(cell: int, kind: str, seed: int) -> str:
    return f"{cell}:{kind}:{seed}"


def run_job(args: tuple[dict[str, Any], int, str, int, dict[str, Any]]) -> dict[str, Any]:
    """Train one job in this (worker) process; returns its record."""
    import torch

    from workers.child_settings import Budget, ModelConfig, TrainConfig
    from workers.data import load_corpus
    from workers.train import train_child

    cell_d, cell_i, kind, seed, opts = args
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    corpus = load_corpus("shakespeare")
    cell = Cell.from_dict(cell_d)
    train = TrainConfig(**TRAIN)
    if kind == "long":
        hidden, budget, test = opts["long_hidden"], Budget(epochs=opts["long_epochs"], report_at=PROXY_AT), True
    elif kind == "short":
        hidden, test = 64, False
        budget = Budget(epochs=1, max_batches=PROXY_AT[-1], max_eval_tokens=SEARCH_EVAL_TOKENS, report_at=PROXY_AT[:-1])
    else:
        hidden, budget, test = 32, Budget(epochs=1, max_batches=PROXY_AT[0], max_eval_tokens=SEARCH_EVAL_TOKENS), False
    started = time.time()
    r = train_child(cell, corpus, budget=budget, train_config=train, seed=seed * 1_000_003 + cell_i,
                    model_config=ModelConfig(num_layers=1, hidden_size=hidden, dropout=0.0), evaluate_test=test)
    at = {str(x.batches): x.val_ppl for x in r.rungs}
    if kind != "long" and r.status == "completed":
        at[str(r.batches)] = r.val_ppl  # the last measurement is the epoch's own
    return {"key": job_key(cell_i, kind, seed), "cell": cell_i, "kind": kind, "seed": seed, "hidden": hidden,
            "status": r.status, "val_ppl": r.val_ppl, "test_ppl": r.test_ppl, "at": at, "batches": r.batches,
            "params": r.params, "train_seconds": r.train_seconds, "wall_seconds": time.time() - started,
            "tokens": r.batches * train.batch_size * train.bptt}


# ---- analysis ------------------------------------------------------------------------------------------------------


def spearman(x: list[float], y: list[float]) -> float:
    """Spearman's rho: Pearson's correlation of the ranks (ties get their mean rank)."""
    def ranks(v: list[float]) -> list[float]:
        order = sorted(range(len(v)), key=lambda i: v[i])
        r = [0.0] * len(v)
        i = 0
        while i < len(order):
            j = i
            while j + 1 < len(order) and v[order[j + 1]] == v[order[i]]:
                j += 1
            for k in range(i, j + 1):
                r[order[k]] = (i + j) / 2.0
            i = j + 1
        return r
    if len(x) < 3:
        return math.nan
    rx, ry = ranks(x), ranks(y)
    mx, my = statistics.fmean(rx), statistics.fmean(ry)
    sxy = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    sxx, syy = sum((a - mx) ** 2 for a in rx), sum((b - my) ** 2 for b in ry)
    return sxy / math.sqrt(sxx * syy) if sxx and syy else math.nan


def _value(r: dict[str, Any] | None, at: str | None = None) -> float:
    """A job's perplexity (at ``at`` batches, or its final), DIVERGED_PPL for a run that broke before it."""
    if r is None:
        return math.nan
    v = r["at"].get(at) if at else (r["val_ppl"] if r["status"] == "completed" else None)
    return float(v) if isinstance(v, (int, float)) and math.isfinite(v) else DIVERGED_PPL


PROXIES = {  # name -> (job kind, batches); None = the job's final value
    "h64@60 (search reward)": ("short", "60"), "h64@200": ("short", "200"), "h64@600": ("short", "600"),
    "h32@60": ("short32", "60"), "h128@60": ("long", "60"), "h128@200": ("long", "200"),
    "h128@600": ("long", "600"),
}


def table(cells: list[dict[str, Any]], results: dict[str, dict[str, Any]], seeds: int) -> dict[str, Any]:
    """Per proxy and group: tau, rho, the truth of the proxy's top-1 and top-3, its cost; the long runs' seed tau."""
    def mean_over_seeds(cell: int, kind: str, at: str | None) -> float:
        vals = [_value(results.get(job_key(cell, kind, s)), at) for s in range(seeds)]
        vals = [v for v in vals if not math.isnan(v)]
        measured = [v for v in vals if v < DIVERGED_PPL]  # a seed that diverged does not count if another did not
        return statistics.fmean(measured) if measured else DIVERGED_PPL if vals else math.nan

    truth = {c: mean_over_seeds(c, "long", None) for c in range(len(cells))}
    groups = {"all": list(range(len(cells))),
              "found": [c for c, d in enumerate(cells) if d["origin"].startswith("found")],
              "random": [c for c, d in enumerate(cells) if d["origin"] == "random"]}
    rows = []
    for name, (kind, at) in PROXIES.items():
        proxy = {c: mean_over_seeds(c, kind, at) for c in range(len(cells))}
        cost = [r["params"] * int(at) * TRAIN["batch_size"] * TRAIN["bptt"] for r in results.values()
                if r["kind"] == kind]
        row: dict[str, Any] = {"proxy": name, "cost": statistics.fmean(cost) if cost else math.nan}
        for g, members in groups.items():
            both = [c for c in members if not math.isnan(proxy[c]) and not math.isnan(truth[c])]
            x, y = [proxy[c] for c in both], [truth[c] for c in both]
            ranked = sorted(both, key=lambda c: proxy[c])
            row[g] = {"n": len(both), "tau": kendall_tau_b(x, y) if len(both) > 1 else math.nan,
                      "rho": spearman(x, y),
                      "top1": truth[ranked[0]] if ranked else math.nan,
                      "top3": min(truth[c] for c in ranked[:3]) if ranked else math.nan,
                      "best": min(y) if y else math.nan}
        rows.append(row)
    seed_tau = math.nan
    if seeds >= 2:
        pairs = [(c, _value(results.get(job_key(c, "long", 0))), _value(results.get(job_key(c, "long", 1))))
                 for c in range(len(cells))]
        pairs = [p for p in pairs if not math.isnan(p[1]) and not math.isnan(p[2])]
        if len(pairs) > 1:
            seed_tau = kendall_tau_b([p[1] for p in pairs], [p[2] for p in pairs])
    return {"rows": rows, "truth": truth, "seed_tau": seed_tau, "groups": groups}


def selection_at_equal_compute(t: dict[str, Any], cells: list[dict[str, Any]], results: dict[str, dict[str, Any]],
                               seeds: int, budgets: tuple[int, ...] = (3, 6, 12, 24)) -> list[dict[str, Any]]:
    """What a random search gets from each proxy at equal compute: with the compute of ``n`` children at h64@60
    batches, a proxy of ``k`` times that cost screens ``n // k`` uniformly drawn random cells (without replacement)
    and keeps the one it ranks first; the expected truth of that cell, exactly (over all subsets: the cell ranked
    ``r`` of ``N`` is the subset's first with probability C(N - r, m - 1) / C(N, m)). Reported as the pick's
    expected place in the truth's order (1 = the best of the random cells; a mean of perplexities would be decided by
    the few cells that diverge in the long run) and the probability that it is one of the truth's best three. Random
    cells only, at fixed hidden 64 (h64 proxies) so that only the cell and the budget differ."""
    random_cells = t["groups"]["random"]
    truth = t["truth"]
    rows = []
    for name in ("h64@60 (search reward)", "h64@200", "h64@600"):
        kind, at = PROXIES[name]
        ratio = int(at) // 60
        proxy = {}
        for c in random_cells:
            vals = [_value(results.get(job_key(c, kind, s)), at) for s in range(seeds)]
            vals = [v for v in vals if not math.isnan(v)]
            if vals and not math.isnan(truth[c]):
                proxy[c] = statistics.fmean(vals)
        ranked = sorted(proxy, key=lambda c: proxy[c])
        place = {c: i for i, c in enumerate(sorted(ranked, key=lambda c: truth[c]), 1)}
        big = len(ranked)
        for n in budgets:
            m = n // ratio
            if m < 1 or m > big:
                continue
            chance = {c: math.comb(big - r, m - 1) / math.comb(big, m) for r, c in enumerate(ranked, 1)}
            rows.append({"proxy": name, "budget_children_at_60": n, "cells_screened": m, "of": big,
                         "expected_place": sum(place[c] * p for c, p in chance.items()),
                         "p_top3": sum(p for c, p in chance.items() if place[c] <= 3)})
    return rows


def size_bias(cells: list[dict[str, Any]], results: dict[str, dict[str, Any]], seeds: int) -> tuple[int, int]:
    """(cells whose 60-batch perplexity is lower at hidden 32 than at hidden 64, cells with both measured): how
    often the search's reward prefers the smaller of its two size choices for the same cell."""
    smaller = both = 0
    for c in range(len(cells)):
        a = [_value(results.get(job_key(c, "short32", s)), "60") for s in range(seeds)]
        b = [_value(results.get(job_key(c, "short", s)), "60") for s in range(seeds)]
        a, b = [v for v in a if not math.isnan(v)], [v for v in b if not math.isnan(v)]
        if a and b:
            both += 1
            smaller += statistics.fmean(a) < statistics.fmean(b)
    return smaller, both


def _fmt(v: float) -> str:
    return "-" if math.isnan(v) else "diverged" if v >= DIVERGED_PPL else f"{v:.3f}"


def report(cells: list[dict[str, Any]], results: dict[str, dict[str, Any]], seeds: int, out: Path) -> str:
    t = table(cells, results, seeds)
    lines = [f"{len(results)} jobs of {3 * len(cells) * seeds}; truth = long-run validation perplexity, mean over "
             f"the seeds that ran; long runs' seed-0 vs seed-1 tau = {_fmt(t['seed_tau'])}",
             "| proxy | cost (tokens x params) | tau all | rho all | tau found | tau random | top-1 truth (all) | "
             "best truth of top 3 (all) | top-1 truth (found) | best truth (all) |", "|" + "---|" * 10]
    for r in t["rows"]:
        a, f, rd = r["all"], r["found"], r["random"]
        lines.append(f"| {r['proxy']} | {r['cost']:.3g} | {_fmt(a['tau'])} (n={a['n']}) | {_fmt(a['rho'])} | "
                     f"{_fmt(f['tau'])} (n={f['n']}) | {_fmt(rd['tau'])} (n={rd['n']}) | {_fmt(a['top1'])} | "
                     f"{_fmt(a['top3'])} | {_fmt(f['top1'])} | {_fmt(a['best'])} |")
    lines += ["", "Random search at equal compute (random cells, hidden 64): the expected truth of the cell a proxy "
              "ranks first among the cells the compute lets it screen", "",
              "| compute (children at h64@60) | proxy | cells screened | expected place of its pick in the truth "
              "(1 = best) | P(pick is one of the truth's best 3) |", "|---|---|---|---|---|"]
    for r in selection_at_equal_compute(t, cells, results, seeds):
        lines.append(f"| {r['budget_children_at_60']} | {r['proxy']} | {r['cells_screened']} | "
                     f"{r['expected_place']:.1f} of {r['of']} | {r['p_top3']:.2f} |")
    smaller, both = size_bias(cells, results, seeds)
    lines.append(f"\nSize: at 60 batches the same cell scores better at hidden 32 than at hidden 64 in {smaller} of "
                 f"{both} cells.")
    _plot(cells, results, seeds, t, out / "proxy.png")
    search = next(r for r in t["rows"] if r["proxy"].startswith("h64@60"))
    best600 = next(r for r in t["rows"] if r["proxy"] == "h64@600")
    lines.append(f"\nproxy: cells={len(cells)} jobs={len(results)} search_reward_tau={_fmt(search['all']['tau'])} "
                 f"tau_found={_fmt(search['found']['tau'])} h64_600_tau={_fmt(best600['all']['tau'])} "
                 f"seed_tau={_fmt(t['seed_tau'])}")
    return "\n".join(lines)


def _plot(cells: list[dict[str, Any]], results: dict[str, dict[str, Any]], seeds: int, t: dict[str, Any],
          path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4.5), layout="constrained")
    FigureCanvasAgg(fig)
    shown = ["h64@60 (search reward)", "h64@600"]
    for ax, (name, (kind, at)) in zip(fig.subplots(1, 2), [(n, PROXIES[n]) for n in shown]):
        for origin, color in (("random", "C0"), ("found", "C1")):
            xs, ys = [], []
            for c, d in enumerate(cells):
                if not d["origin"].startswith(origin):
                    continue
                vals = [_value(results.get(job_key(c, kind, s)), at) for s in range(seeds)]
                vals = [v for v in vals if not math.isnan(v) and v < DIVERGED_PPL]
                if vals and t["truth"][c] < DIVERGED_PPL and not math.isnan(t["truth"][c]):
                    xs.append(statistics.fmean(vals))
                    ys.append(t["truth"][c])
            ax.scatter(xs, ys, s=14, color=color, label=f"{origin} cells")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(f"proxy: {name} validation perplexity")
        ax.set_ylabel("truth: long-run validation perplexity")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    fig.savefig(path, dpi=110)


# ---- main ----------------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> str:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="bench/proxy")
    p.add_argument("--random-cells", type=int, default=24)
    p.add_argument("--found", type=int, default=8, help="best distinct cells taken from each of the two searches")
    p.add_argument("--seeds", type=int, default=2, help="training seeds per job")
    p.add_argument("--long-hidden", type=int, default=128)
    p.add_argument("--long-epochs", type=int, default=1)
    p.add_argument("--workers", type=int, default=2, help="jobs training at once (one thread each)")
    p.add_argument("--stop-after", type=float, default=math.inf, help="start no new job after this many seconds")
    p.add_argument("--report", action="store_true", help="only print the table of the jobs done so far")
    p.add_argument("--force-reuse", action="store_true", help="read back a folder made by other code or settings")
    args = p.parse_args(argv)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    opts = {"long_hidden": args.long_hidden, "long_epochs": args.long_epochs}
    cells_file = out / "cells.json"
    if cells_file.exists():
        cells = json.loads(cells_file.read_text())
    else:
        cells = random_cells(args.random_cells) + found_cells(out, args.found)
        cells_file.write_text(json.dumps(cells, indent=1) + "\n")
    settings = {**opts, "seeds": args.seeds, "train": TRAIN, "proxy_at": PROXY_AT, "cells": cells}
    record = provenance.provenance(settings, extra=("bench/bench_proxy.py",), code_dirs=("workers", "search_spaces"))
    results_file = out / "results.jsonl"
    if results_file.exists():
        why = provenance.mismatch(out / provenance.PROVENANCE_FILE, record)
        if why and not args.force_reuse:
            p.error(f"{why}; use a new --out, or --force-reuse to read it back anyway")
        forced = why
    else:
        forced = ""
    if not results_file.exists() or not provenance.mismatch(out / provenance.PROVENANCE_FILE, record):
        provenance.write(out / provenance.PROVENANCE_FILE, record)  # a forced read-back keeps the producer's record
    results = {r["key"]: r for r in read_records(results_file)} if results_file.exists() else {}
    todo = [j for j in jobs_for(len(cells), args.seeds) if job_key(*j) not in results]
    if todo and not args.report:
        print(f"{len(cells)} cells, {len(results)} jobs done, {len(todo)} to run with {args.workers} workers",
              flush=True)
        started = time.time()
        with ProcessPoolExecutor(args.workers, mp_context=mp.get_context("spawn"), max_tasks_per_child=20) as pool:
            pending = iter(todo)
            live = set()
            for j in itertools.islice(pending, args.workers):
                live.add(pool.submit(run_job, (cells[j[0]]["cell"], *j, opts)))
            while live:
                finished, live = wait(live, return_when=FIRST_COMPLETED)
                for future in finished:
                    res = future.result()
                    append_record(results_file, res)
                    results[res["key"]] = res
                    print(f"[{len(results)}/{3 * len(cells) * args.seeds}] {res['key']:>12} {res['status']:>9} "
                          f"val {res['val_ppl']:.3f} at {res['at']} {res['train_seconds']:.0f} s "
                          f"({time.time() - started:.0f} s)", flush=True)
                    if time.time() - started < args.stop_after and (j := next(pending, None)) is not None:
                        live.add(pool.submit(run_job, (cells[j[0]]["cell"], *j, opts)))
    text = report(cells, results, args.seeds, out)
    if forced:
        text = f"read back with --force-reuse: {forced}\n" + text
    (out / "report.md").write_text(text + "\n")
    print(text)
    return text


if __name__ == "__main__":
    main()
