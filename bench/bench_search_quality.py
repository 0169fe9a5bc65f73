"""Does the search find what random search would not? Search algorithms side by side, with real children.

Every run is a real ``run_search`` on one local Ray (the path users run: Ray Tune, its scheduler, reused worker
processes), training real children through ``train_child`` on the bundled corpus (``--dataset`` for any other);
no surrogate, no lookup table. Each setting (an algorithm and its settings) runs once per seed with ``--children``
children; a seed gives every setting the same children's training seeds, so settings are compared *paired*, seed
by seed, against random search:

- **gain** = random search's final best minus the setting's best (positive: the setting found a better cell), at
  equal children, at equal *work* (the setting's best within random search's total training batches x parameters:
  load-independent) and at equal seconds of child training; the mean gain over seeds with its 95% t interval and
  p-value (:mod:`paired`), and the verdict from the interval;
- **time to target**: the work the setting needed to reach random search's final best divided by the work random
  search itself needed to reach it (same seed); a setting that never reaches it is a miss (inf), and the median
  counts misses as inf;
- the best so far after 25, 50, 100, 150, ... children (mean ± std), early gains, and the controller's policy
  entropy over its first and last 10 updates.

Seeds: settings are chosen on ``TUNING_SEEDS`` (``--seeds tuning``, the first five; pilots) and reported on
``REPORTING_SEEDS`` (``--seeds reporting``, 100-109), which no pilot uses; ``--seeds replication`` (110-119),
``--seeds confirmation`` (120-129) and ``--seeds repeat`` (130-139), also reporting seeds, repeat a headline on ten
seeds no earlier run has seen. A seed list may not mix tuning and reporting seeds.

Writes ``runs.csv`` (every run's best-so-far curve), ``paired.csv`` (per setting and seed: gains, time to target),
``summary.csv``, ``quality.png`` (the curves by children and by compute seconds, mean ± std bands,
:func:`nas.runs.compare.plot_curves`) and every run's results folder under ``--out``, each with a
``<run>.provenance.json`` beside it (code hash, commit, settings hash): a run already there is read back (an
interrupted benchmark continues) only if it was made by the same code and settings, otherwise the benchmark stops
with the reason (``--force-reuse``
overrides). The last line is the summary, e.g. (figures invented for the format)::

    quality: reporting_seeds=100-109 default_gain=+0.50 ci95=[+0.10,+0.90] p=0.020 default_time_to_target=0.70 \
(misses 1/10) evolution_gain=... evolution_ci95=[...] evolution_p=... evolution_time_to_target=...

Children are small so that 3 settings x 10 seeds x 150 children fit in about an hour on 2 CPU cores: base-8
cells, 1 layer, hidden 32 or 64, dropout 0 or 0.1 (the searched layer choices), batch 32, BPTT 35, 60 training
batches, 5,000 validation tokens, Tiny Shakespeare at character level. ``--budget default`` trains them instead
for the default ``nas search``'s child budget (200 batches, 20,000 validation tokens: ``SearchConfig().budget``,
chosen by the proxy study, ``bench_proxy.py``): 3 settings x 10 seeds took 6,421 s on 2 cores (2026-12-07).

Usage: ``python bench/bench_search_quality.py [--children 150] [--seeds tuning|reporting|0,1,2] [--budget default]
[--settings default,random,...] [--out DIR] [--dataset DIR --level word] [--force-reuse]``
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
sys.path.insert(0, str(Path(__file__).resolve().parent))

import paired as stats  # noqa: E402
import pandas as pd  # noqa: E402
import provenance  # noqa: E402

from nas.config import SearchConfig, config_from_dict  # noqa: E402
from nas.runs.compare import best_so_far, compute_to_reach, plot_curves, value_at  # noqa: E402
from nas.runs.records import read_records  # noqa: E402
from nas.search import ray_session  # noqa: E402

TUNING_SEEDS = tuple(range(10))
"""Seeds pilots choose settings on (0-2 were the 2026-11-27 pilots' seeds)."""
REPORTING_SEEDS = tuple(range(100, 140))
"""Seeds the headline is reported on; no pilot uses them. 100-109 (``reporting``) carried the 2026-12-03 headline and
two confirmations; 110-119 (``replication``) its repetition on 2026-12-07; 120-129 (``confirmation``) are for a
headline repeated on seeds none of those runs saw; 130-139 (``repeat``) for the default-budget headline repeated
at the same settings."""

CHILD = {
    "space": {"base": 8, "layers": {"num_layers": [1], "hidden_size": [32, 64], "dropout": [0.0, 0.1]}},
    "model": {"num_layers": 1, "hidden_size": 64, "dropout": 0.0},
    "train": {"lr": 5.0, "batch_size": 32, "eval_batch_size": 32, "bptt": 35},
    "budget": {"epochs": 1, "max_batches": 60, "max_eval_tokens": 5000},
}
"""The children every setting trains (recorded in RESULTS.md with each run)."""

_SHIPPED = SearchConfig().budget
BUDGETS = {"short": CHILD["budget"],
           "default": {**CHILD["budget"], "max_batches": _SHIPPED.max_batches,
                       "max_eval_tokens": _SHIPPED.max_eval_tokens}}
"""``--budget``: the children's training and validation budget (``default``: the default ``nas search``'s)."""

OLD_CONTROLLER = {"lr": 6e-4, "share_heads": True, "normalize_advantage": False, "entropy_weight": 1e-4,
                  "temperature": 5.0, "tanh_constant": 2.5}
"""The controller defaults before issue 10 (Zoph & Le's learning rate, shared heads, raw advantages)."""

SH540 = {"budget": {"max_batches": 540}, "scheduler": {"kind": "asha", "grace_period": 60, "reduction_factor": 3}}
"""Successive halving with a long top rung (rungs at 60 and 180 batches, the top at 540)."""

SETTINGS: dict[str, dict[str, Any]] = {
    "default": {},  # the default `nas search`: its algorithm, controller and scheduler as shipped
    "random": {"algo": "random"},
    "evolution": {"algo": "evolution"},
    "old-default": {"controller": OLD_CONTROLLER, "scheduler": {"kind": "none"}},
    "default-toggled": {"toggle_scheduler": True},  # the default with early stopping switched the other way
    "default-learn-reused": {"controller": {"learn_from_reused": True}},  # reused outcomes teach again (before 12-02)
    # successive halving with a long top rung: every child 60 batches, the best third 180, the best ninth 540
    # (bench_proxy, 2026-12-03: 60 batches screen well but order good cells badly; 600 order them well)
    "default-sh540": {**SH540},
    "random-sh540": {"algo": "random", **SH540},
}
"""Settings by name: overrides of the default search (``toggle_scheduler`` flips the default's scheduler)."""


def config_dict_for(setting: str, seed: int, children: int, root: Path, data: dict[str, Any],
                    concurrency: int, budget: str = "short") -> dict[str, Any]:
    """The TOML-shaped settings of one setting's search on one seed, its children trained for ``BUDGETS[budget]``."""
    over = copy.deepcopy(SETTINGS[setting])
    d: dict[str, Any] = {**copy.deepcopy(CHILD), "name": f"{setting}-s{seed}", "trials": children, "seed": seed,
                         "concurrency": concurrency, "results_dir": str(root), "data": data}
    d["budget"] = copy.deepcopy(BUDGETS[budget])
    default = SearchConfig()
    if over.pop("toggle_scheduler", False):
        d["scheduler"] = {"kind": "none" if default.scheduler.kind == "asha" else "asha"}
    for key, value in over.items():
        d[key] = {**d.get(key, {}), **value} if isinstance(value, dict) else value
    if d.get("scheduler", {}).get("kind", default.scheduler.kind) == "asha":
        d["scheduler"] = {"grace_period": 20, "reduction_factor": 3, **d.get("scheduler", {}), "kind": "asha"}
    return d


def config_for(setting: str, seed: int, children: int, root: Path, data: dict[str, Any],
               concurrency: int, budget: str = "short") -> SearchConfig:
    """The search of one setting and seed."""
    return config_from_dict(config_dict_for(setting, seed, children, root, data, concurrency, budget))


def run_once(d: dict[str, Any], force_reuse: bool = False) -> tuple[pd.DataFrame, list[dict], float]:
    """The run's curve and controller records (running it unless its folder already holds a complete run made by
    the same code and settings), and its wall seconds (0 for a run read back). Raises SystemExit with the reason
    when the folder was made by other code or settings (unless ``force_reuse``)."""
    from nas.search.driver import run_search

    cfg = config_from_dict(d)
    record = provenance.provenance({k: v for k, v in d.items() if k != "results_dir"})
    children = cfg.run_dir / "children.jsonl"
    stamp = cfg.run_dir.with_name(f"{cfg.run_dir.name}.{provenance.PROVENANCE_FILE}")  # beside the run folder
    if cfg.run_dir.exists():
        why = provenance.mismatch(stamp, record, str(cfg.run_dir))
        if why and not force_reuse:
            raise SystemExit(f"bench_search_quality: {why}; give a new --out, delete the folder, or --force-reuse")
    else:
        provenance.write(stamp, record)
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


def parse_seeds(text: str) -> tuple[str, list[int]]:
    """``tuning`` (the first five tuning seeds), ``reporting`` (100-109), ``replication`` (110-119),
    ``confirmation`` (120-129), ``repeat`` (130-139) or a comma-separated list; returns (the kind of seeds, the
    seeds). A list may not mix tuning and reporting seeds."""
    if text == "tuning":
        return "tuning", list(TUNING_SEEDS[:5])
    named = {"reporting": REPORTING_SEEDS[:10], "replication": REPORTING_SEEDS[10:20],
             "confirmation": REPORTING_SEEDS[20:30], "repeat": REPORTING_SEEDS[30:40]}
    if text in named:
        return "reporting", list(named[text])
    try:
        seeds = [int(x) for x in text.split(",")]
    except ValueError:
        raise ValueError(f"--seeds {text!r}: give tuning, reporting, replication, confirmation, repeat or "
                         "comma-separated whole numbers") from None
    reporting = [x for x in seeds if x in REPORTING_SEEDS]
    if reporting and len(reporting) != len(seeds):
        raise ValueError(f"--seeds {text!r} mixes reporting seeds ({', '.join(map(str, reporting))}) with others; "
                         "pilots use tuning seeds, the headline reporting seeds only")
    return ("reporting" if reporting else "tuning"), seeds


def seed_label(kind: str, seeds: list[int]) -> str:
    contiguous = seeds == list(range(seeds[0], seeds[0] + len(seeds)))
    return f"{kind}_seeds=" + (f"{seeds[0]}-{seeds[-1]}" if contiguous and len(seeds) > 2 else
                               ",".join(map(str, seeds)))


def paired_rows(setting: str, curves: dict[int, pd.DataFrame], random: dict[int, pd.DataFrame],
                at: list[int]) -> list[dict[str, Any]]:
    """Per seed (those both ran): the setting's gains over random search and its time-to-target ratios."""
    rows = []
    for seed in sorted(set(curves) & set(random)):
        c, r = curves[seed], random[seed]
        target = float(r["best_val_ppl"].iloc[-1])
        row: dict[str, Any] = {"setting": setting, "seed": seed, "random_best": target,
                               "best": float(c["best_val_ppl"].iloc[-1])}
        row["gain_children"] = target - value_at(c, children=min(len(c), len(r)))
        for by, name in (("compute_work", "work"), ("compute_seconds", "seconds")):
            budget = min(float(r[by].iloc[-1]), float(c[by].iloc[-1]))  # a run that spent less: its final best
            row[f"gain_{name}"] = target - value_at(c, compute=budget, by=by)
            row[f"time_to_target_{name}"] = stats.time_to_target_ratio(compute_to_reach(c, target, by=by),
                                                                       compute_to_reach(r, target, by=by))
        for n in at:
            row[f"gain@{n}"] = value_at(r, children=n) - value_at(c, children=n)
        rows.append(row)
    return rows


def verdicts(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """A setting's paired statistics over its seeds (rows from :func:`paired_rows`)."""
    out: dict[str, Any] = {}
    for key in [k for k in rows[0] if k.startswith("gain")]:
        values = [r[key] for r in rows]
        out[key] = stats.paired(values) if not any(math.isnan(v) for v in values) else None
    for name in ("work", "seconds"):
        ratios = [r[f"time_to_target_{name}"] for r in rows]
        out[f"time_to_target_{name}"] = (stats.median_with_misses(ratios), sum(math.isinf(x) for x in ratios),
                                         len(ratios))
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--children", type=int, default=150, help="children per run")
    p.add_argument("--seeds", default="tuning", help="tuning (seeds 0-4), reporting (100-109), replication (110-119), "
                                                     "confirmation (120-129), repeat (130-139) or a comma-separated "
                                                     "list (each setting runs once per seed)")
    p.add_argument("--budget", default="short", choices=sorted(BUDGETS),
                   help="the children's budget: short (60 batches) or default (the default nas search's)")
    p.add_argument("--settings", default="default,random,evolution",
                   help=f"comma-separated, from {', '.join(SETTINGS)}")
    p.add_argument("--define", action="append", default=[], metavar="NAME=JSON",
                   help='another setting: overrides of the default search, e.g. '
                        'lr2=\'{"controller": {"lr": 0.002}}\' (then name it in --settings)')
    p.add_argument("--reference", default="random", help="the setting every other is paired against (random search "
                                                         "with the same children and scheduler, e.g. random-sh540)")
    p.add_argument("--at", default="25,50,100,150", help="numbers of children for the table")
    p.add_argument("--concurrency", type=int, default=2, help="children training at once (one CPU each)")
    p.add_argument("--dataset", default="shakespeare", help="the bundled corpus, or a directory of split files")
    p.add_argument("--level", default="auto", help="word, char or auto")
    p.add_argument("--out", default="bench/search_quality", help="folder for the runs, CSVs and PNG")
    p.add_argument("--force-reuse", action="store_true", help="read back runs made by other code or settings")
    args = p.parse_args(argv)
    for item in args.define:
        name, _, text = item.partition("=")
        try:
            SETTINGS[name] = json.loads(text)
        except json.JSONDecodeError as e:
            p.error(f"--define {item!r}: not NAME=JSON ({e})")
    try:
        kind, seeds = parse_seeds(args.seeds)
    except ValueError as e:
        p.error(str(e))
    settings = args.settings.split(",")
    unknown = [s for s in settings if s not in SETTINGS]
    if unknown or args.reference not in settings:
        p.error(f"--settings: {', '.join(unknown) or args.reference + ' is missing'}; choose from "
                f"{', '.join(SETTINGS)} (the --reference, {args.reference}, must be one of them)")
    at = [int(a) for a in args.at.split(",")]
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    data = {"dataset": args.dataset, "level": args.level}

    import ray

    cpus = args.concurrency
    ray_session.start_local(num_cpus=cpus)
    commit, dirty = provenance.git_commit()
    print(f"ray {ray.__version__}, {cpus} CPUs; {len(settings)} settings x {kind} seeds {seeds} x {args.children} "
          f"children; code {provenance.source_hash()} (commit {commit[:10]}{', dirty' if dirty else ''}); "
          f"children: {json.dumps({**CHILD, 'budget': BUDGETS[args.budget]})}", flush=True)
    curves: dict[str, dict[int, pd.DataFrame]] = {s: {} for s in settings}
    entropy: dict[str, list[tuple[float, float]]] = {s: [] for s in settings}
    started = time.time()
    for seed in seeds:  # seed-major: an interrupted benchmark has every setting for the seeds it finished
        for setting in settings:
            d = config_dict_for(setting, seed, args.children, out / "runs", data, args.concurrency, args.budget)
            curve, steps, wall = run_once(d, args.force_reuse)
            curves[setting][seed] = curve
            if steps:
                ent = [s["controller/entropy"] for s in steps]
                entropy[setting].append((statistics.fmean(ent[:10]), statistics.fmean(ent[-10:])))
            print(f"{setting:>16} seed {seed}: {len(curve)} children, best {curve['best_val_ppl'].iloc[-1]:.2f}, "
                  f"{curve['compute_seconds'].iloc[-1]:.0f} s of child training, "
                  f"work {curve['compute_work'].iloc[-1]:.3g}"
                  + (f", {wall:.0f} s wall" if wall else " (read back)")
                  + (f", entropy {entropy[setting][-1][0]:.1f} -> {entropy[setting][-1][1]:.1f}" if steps else ""),
                  flush=True)
    ray.shutdown()
    return report(curves, entropy, settings, kind, seeds, at, out, time.time() - started, args.reference)


def report(curves: dict[str, dict[int, pd.DataFrame]], entropy: dict[str, list[tuple[float, float]]],
           settings: list[str], kind: str, seeds: list[int], at: list[int], out: Path, seconds: float,
           reference: str = "random") -> dict[str, Any]:
    """Print and write the tables and the summary line; returns each setting's verdicts."""
    rows = [{"setting": s, "seed": seed, **r} for s in settings for seed, c in curves[s].items()
            for r in c.to_dict("records")]
    pd.DataFrame(rows).to_csv(out / "runs.csv", index=False)
    plot_curves({s: list(curves[s].values()) for s in settings}, out / "quality.png")

    print(f"\nbest-so-far validation perplexity, mean ± std over {kind} seeds {seeds} ({seconds:.0f} s)")
    head = ["setting", *[f"@{n}" for n in at], "final", "child-training s", "work", "entropy first->last 10"]
    print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    summary = []
    for s in settings:
        cs = list(curves[s].values())
        ent = entropy[s]
        cells = [s, *[fmt(*mean_std([value_at(c, children=n) for c in cs])) for n in at],
                 fmt(*mean_std([c["best_val_ppl"].iloc[-1] for c in cs])),
                 fmt(*mean_std([c["compute_seconds"].iloc[-1] for c in cs])),
                 f"{statistics.fmean(c['compute_work'].iloc[-1] for c in cs):.3g}",
                 f"{statistics.fmean(e[0] for e in ent):.1f} -> {statistics.fmean(e[1] for e in ent):.1f}"
                 if ent else "-"]
        print("| " + " | ".join(cells) + " |")
        summary.append(dict(zip(head, cells)))
    pd.DataFrame(summary).to_csv(out / "summary.csv", index=False)

    pairs = {s: paired_rows(s, curves[s], curves[reference], at) for s in settings if s != reference}
    pd.DataFrame([r for rs in pairs.values() for r in rs]).to_csv(out / "paired.csv", index=False)
    results = {s: verdicts(rs) for s, rs in pairs.items() if rs}
    print(f"\npaired against {reference}, same seeds: gain = {reference}'s final best - the setting's best "
          f"(positive = better), mean [95% t interval] p; time to target = work to reach {reference}'s final best / "
          f"the work {reference} needed (median; misses = never reached)")
    head = ["setting", "gain, equal work", "gain, equal children", "gain, equal seconds",
            *[f"gain @{n}" for n in at[:2]], "time to target (work)", "time to target (seconds)"]
    print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    for s, v in results.items():
        def g(key: str, v: dict[str, Any] = v) -> str:
            return v[key].text() if v.get(key) is not None else "-"
        ttt = [f"{m:.2f} (misses {k}/{n})" for m, k, n in (v["time_to_target_work"], v["time_to_target_seconds"])]
        print("| " + " | ".join([s, g("gain_work"), g("gain_children"), g("gain_seconds"),
                                 *[g(f"gain@{n}") for n in at[:2]], *ttt]) + " |")
        per_seed = ", ".join(f"{r['seed']}: {r['gain_work']:+.2f}/{r['time_to_target_work']:.2f}" for r in pairs[s])
        print(f"  {s} per seed (gain at equal work / time to target): {per_seed}")

    line = "quality: " + seed_label(kind, seeds)
    for s, v in results.items():
        name = s.replace("-", "_")
        gain = v["gain_work"]
        m, k, n = v["time_to_target_work"]
        if gain is not None and gain.n > 1:
            line += (f" {name}_gain={gain.mean:+.2f} {'ci95' if s == 'default' else name + '_ci95'}="
                     f"[{gain.low:+.2f},{gain.high:+.2f}] {'p' if s == 'default' else name + '_p'}={gain.p:.3f}")
        line += f" {name}_time_to_target={m:.2f} {name}_misses={k}/{n}"
    print(f"\nwrote {out / 'runs.csv'}, {out / 'paired.csv'}, {out / 'summary.csv'}, {out / 'quality.png'}\n")
    print(line)
    return results


if __name__ == "__main__":
    main()
