"""Does the search find what random search would not? Search algorithms side by side, with real children.

Every run is a real ``run_search`` on one local Ray (the path users run: Ray Tune, its scheduler, reused worker
processes), training real children through ``train_child`` on the bundled corpus (``--dataset`` for any other);
no surrogate, no lookup table. For each setting (an algorithm and its settings) and each seed, ``--children``
children; then, per setting over its seeds:

- the best validation perplexity found so far after 25, 50, 100, 150, ... children (mean ± std over seeds), and at
  random search's total compute (child training seconds) of the same seed;
- the fraction of random search's compute (same seed) the setting needed to reach random search's final best
  (``inf`` when it never did), averaged over seeds;
- the controller's policy entropy over its first and last 10 updates (REINFORCE settings).

Writes ``runs.csv`` (every run's best-so-far curve), ``summary.csv`` (one row per setting), ``quality.png``
(the curves by children and by compute with mean ± std bands over seeds, :func:`nas.compare.plot_curves`) and
every run's results folder under ``--out``; a run already complete there is read, not run again (an interrupted
benchmark continues). The last line is the summary, e.g.::

    quality: default_best=9.41±0.21 random_best=9.95±0.30 evolution_best=9.50±0.12 ... default_reaches_random_at=0.42

Children are small so that the default benchmark (5 settings x 3 seeds x 150 children) fits in about an hour on 2
CPU cores: base-8 cells, 1 layer, hidden 32 or 64, dropout 0 or 0.1 (the searched layer choices), batch 32, BPTT
35, 60 training batches, 5,000 validation tokens, Tiny Shakespeare at character level.

Usage: ``python bench/bench_search_quality.py [--children 150] [--seeds 0,1,2] [--settings default,random,...]
[--out DIR] [--dataset DIR --level word]``
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")

import pandas as pd  # noqa: E402
import ray  # noqa: E402

from nas.compare import best_so_far, compute_to_reach, plot_curves, value_at  # noqa: E402
from nas.config import SearchConfig, config_from_dict  # noqa: E402
from nas.records import read_records  # noqa: E402
from nas.search import run_search  # noqa: E402

CHILD = {
    "space": {"base": 8, "layers": {"num_layers": [1], "hidden_size": [32, 64], "dropout": [0.0, 0.1]}},
    "model": {"num_layers": 1, "hidden_size": 64, "dropout": 0.0},
    "train": {"lr": 5.0, "batch_size": 32, "eval_batch_size": 32, "bptt": 35},
    "budget": {"epochs": 1, "max_batches": 60, "max_eval_tokens": 5000},
}
"""The children every setting trains (recorded in RESULTS.md with each run)."""

OLD_CONTROLLER = {"lr": 6e-4, "share_heads": True, "normalize_advantage": False, "entropy_weight": 1e-4,
                  "temperature": 5.0, "tanh_constant": 2.5}
"""The controller defaults before issue 10 (Zoph & Le's learning rate, shared heads, raw advantages)."""

SETTINGS: dict[str, dict[str, Any]] = {
    "default": {},  # the default `nas search`: its algorithm, controller and scheduler as shipped
    "random": {"algo": "random"},
    "evolution": {"algo": "evolution"},
    "old-default": {"controller": OLD_CONTROLLER, "scheduler": {"kind": "none"}},
    "default-toggled": {"toggle_scheduler": True},  # the default with early stopping switched the other way
}
"""Settings by name: overrides of the default search (``toggle_scheduler`` flips the default's scheduler)."""


def config_for(setting: str, seed: int, children: int, root: Path, data: dict[str, Any],
               concurrency: int) -> SearchConfig:
    """The search of one setting and seed."""
    over = copy.deepcopy(SETTINGS[setting])
    d: dict[str, Any] = {**copy.deepcopy(CHILD), "name": f"{setting}-s{seed}", "trials": children, "seed": seed,
                         "concurrency": concurrency, "results_dir": str(root), "data": data}
    default = SearchConfig()
    if over.pop("toggle_scheduler", False):
        d["scheduler"] = {"kind": "none" if default.scheduler.kind == "asha" else "asha"}
    for key, value in over.items():
        d[key] = {**d.get(key, {}), **value} if isinstance(value, dict) else value
    if d.get("scheduler", {}).get("kind", default.scheduler.kind) == "asha":
        d["scheduler"] = {"grace_period": 20, "reduction_factor": 3, **d.get("scheduler", {}), "kind": "asha"}
    return config_from_dict(d)


def run_once(cfg: SearchConfig) -> tuple[pd.DataFrame, list[dict], float]:
    """The run's curve and controller records (running it unless its folder already holds a complete run), and its
    wall seconds (0 for a run read back)."""
    children = cfg.run_dir / "children.jsonl"
    done = {r["trial_id"] for r in read_records(children)} if children.exists() else set()
    started = time.time()
    wall = 0.0
    if len(done) < cfg.trials:
        resume = (cfg.run_dir / "config.json").exists()
        run_search(cfg, resume=resume, out=lambda line: None)
        wall = time.time() - started
    return (best_so_far(read_records(children)), read_records(cfg.run_dir / "controller.jsonl"), wall)


def mean_std(values: list[float]) -> tuple[float, float]:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return math.nan, math.nan
    return statistics.fmean(finite), statistics.stdev(finite) if len(finite) > 1 else 0.0


def fmt(m: float, s: float) -> str:
    return "-" if math.isnan(m) else f"{m:.2f}±{s:.2f}"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--children", type=int, default=150, help="children per run")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (each setting runs once per seed)")
    p.add_argument("--settings", default=",".join(SETTINGS), help=f"comma-separated, from {', '.join(SETTINGS)}")
    p.add_argument("--define", action="append", default=[], metavar="NAME=JSON",
                   help='another setting: overrides of the default search, e.g. '
                        'lr2=\'{"controller": {"lr": 0.002}}\' (then name it in --settings)')
    p.add_argument("--at", default="25,50,100,150", help="numbers of children for the table")
    p.add_argument("--concurrency", type=int, default=2, help="children training at once (one CPU each)")
    p.add_argument("--dataset", default="shakespeare", help="the bundled corpus, or a directory of split files")
    p.add_argument("--level", default="auto", help="word, char or auto")
    p.add_argument("--out", default="bench/search_quality", help="folder for the runs, CSVs and PNG")
    args = p.parse_args(argv)
    for item in args.define:
        name, _, text = item.partition("=")
        try:
            SETTINGS[name] = json.loads(text)
        except json.JSONDecodeError as e:
            p.error(f"--define {item!r}: not NAME=JSON ({e})")
    seeds = [int(s) for s in args.seeds.split(",")]
    settings = args.settings.split(",")
    unknown = [s for s in settings if s not in SETTINGS]
    if unknown or "random" not in settings:
        p.error(f"--settings: {', '.join(unknown) or 'random is missing'}; choose from {', '.join(SETTINGS)} "
                "(random is the reference and must be one of them)")
    at = [int(a) for a in args.at.split(",")]
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    data = {"dataset": args.dataset, "level": args.level}

    cpus = args.concurrency
    ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    print(f"ray {ray.__version__}, {cpus} CPUs; {len(settings)} settings x {len(seeds)} seeds x {args.children} "
          f"children; children: {json.dumps(CHILD)}", flush=True)
    curves: dict[str, dict[int, pd.DataFrame]] = {s: {} for s in settings}
    entropy: dict[str, list[tuple[float, float]]] = {s: [] for s in settings}
    started = time.time()
    for seed in seeds:  # seed-major: an interrupted benchmark has every setting for the seeds it finished
        for setting in settings:
            cfg = config_for(setting, seed, args.children, out / "runs", data, args.concurrency)
            curve, steps, wall = run_once(cfg)
            curves[setting][seed] = curve
            if steps:
                ent = [s["controller/entropy"] for s in steps]
                entropy[setting].append((statistics.fmean(ent[:10]), statistics.fmean(ent[-10:])))
            print(f"{setting:>16} seed {seed}: {len(curve)} children, best {curve['best_val_ppl'].iloc[-1]:.2f}, "
                  f"{curve['compute_seconds'].iloc[-1]:.0f} s of child training"
                  + (f", {wall:.0f} s wall" if wall else " (read back)")
                  + (f", entropy {entropy[setting][-1][0]:.1f} -> {entropy[setting][-1][1]:.1f}" if steps else ""),
                  flush=True)
    ray.shutdown()

    rows = [{"setting": s, "seed": seed, **r} for s in settings for seed, c in curves[s].items()
            for r in c.to_dict("records")]
    pd.DataFrame(rows).to_csv(out / "runs.csv", index=False)
    plot_curves({s: list(curves[s].values()) for s in settings}, out / "quality.png")

    random_total = {seed: c["compute_seconds"].iloc[-1] for seed, c in curves["random"].items()}
    random_best = {seed: c["best_val_ppl"].iloc[-1] for seed, c in curves["random"].items()}
    summary = []
    for s in settings:
        row: dict[str, Any] = {"setting": s}
        for n in at:
            row[f"best@{n}"] = mean_std([value_at(c, children=n) for c in curves[s].values()])
        finals = [c["best_val_ppl"].iloc[-1] for c in curves[s].values()]
        row["final"] = mean_std(finals)
        # at random search's total compute (same seed); a run that spent less in all has its final best there
        row["at_random_compute"] = mean_std([
            value_at(c, compute=min(random_total[seed], c["compute_seconds"].iloc[-1])) for seed, c in
            curves[s].items()])
        fractions = [compute_to_reach(c, random_best[seed]) / random_total[seed] for seed, c in curves[s].items()]
        row["reaches_random_at"] = statistics.fmean(fractions) if fractions else math.nan
        row["reached"] = f"{sum(math.isfinite(f) for f in fractions)}/{len(fractions)}"
        row["compute"] = mean_std([c["compute_seconds"].iloc[-1] for c in curves[s].values()])
        row["entropy"] = ((statistics.fmean(e[0] for e in entropy[s]), statistics.fmean(e[1] for e in entropy[s]))
                          if entropy[s] else (math.nan, math.nan))
        summary.append(row)

    print(f"\nbest-so-far validation perplexity, mean ± std over seeds {seeds} ({time.time() - started:.0f} s)")
    head = ["setting", *[f"@{n}" for n in at], "final", "@random's compute", "compute s", "reaches random's best at",
            "entropy first->last 10"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in summary:
        cells = [r["setting"], *[fmt(*r[f"best@{n}"]) for n in at], fmt(*r["final"]), fmt(*r["at_random_compute"]),
                 fmt(*r["compute"]), f"{r['reaches_random_at']:.2f} ({r['reached']})",
                 "-" if math.isnan(r["entropy"][0]) else f"{r['entropy'][0]:.1f} -> {r['entropy'][1]:.1f}"]
        print("| " + " | ".join(cells) + " |")
    pd.DataFrame([{k: (v if not isinstance(v, tuple) else f"{v[0]:.4f}±{v[1]:.4f}") for k, v in r.items()}
                  for r in summary]).to_csv(out / "summary.csv", index=False)

    by = {r["setting"]: r for r in summary}
    rnd = by["random"]
    pooled = math.sqrt((rnd["final"][1] ** 2 + by.get("default", rnd)["at_random_compute"][1] ** 2) / 2)
    line = "quality: " + " ".join(f"{s.replace('-', '_')}_best={fmt(*by[s]['final'])}" for s in settings)
    if "default" in by:
        gain = rnd["final"][0] - by["default"]["at_random_compute"][0]
        line += (f" default_at_random_compute={fmt(*by['default']['at_random_compute'])} "
                 f"default_gain={gain:.2f} pooled_std={pooled:.2f} "
                 f"default_reaches_random_at={by['default']['reaches_random_at']:.2f}")
        if not math.isnan(by["default"]["entropy"][0]):
            line += f" default_entropy={by['default']['entropy'][0]:.1f}->{by['default']['entropy'][1]:.1f}"
    print(f"\nwrote {out / 'runs.csv'}, {out / 'summary.csv'}, {out / 'quality.png'}\n")
    print(line)
    return {r["setting"]: r for r in summary}


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main()
