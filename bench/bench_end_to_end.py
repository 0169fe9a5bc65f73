"""Is a searched cell worth having? The product end to end: search, retrain, and compare with LSTMs of its size.

1. **Two searches** of the default ``nas search`` (its space, children, controller and budget per child), one with
   the default algorithm and one with random search, ``--children`` children each (200: about 30 minutes each on
   2 CPU cores), on the bundled corpus (``--dataset ptb --data-dir DIR`` for Penn Treebank), search seed
   ``--search-seed``. Both run through :func:`bench_search_quality.run_once` (a real ``run_search`` on a local Ray,
   provenance-stamped, continued when interrupted). ``--random-children`` gives random search another number of
   children: under successive halving the default search promotes more of its children to the top rung, so at
   equal children it spends more compute than random search; the table's first lines give each search's work
   (training batches x parameters) and child-training seconds, and random search's share of the default's.
   Each search's top 3 (step 2) are its best children among those it finished within the smaller of the two
   searches' work, so the two are compared at equal compute: give random search children enough to spend at
   least what the default spends (its total is in the table), and it is cut to the default's budget.
2. **Each search's top 3 retrained** under one fixed recipe for every source: ``--epochs`` (3) whole epochs of the
   training split, no early stop, the search's own data, optimiser and learning-rate schedule (SGD, divided by its
   ``lr_decay`` after an epoch without a better validation loss), the whole validation split after each epoch and
   the test split on the best-validation weights, for ``--seeds`` (3) training seeds. This is what
   ``nas train RUN --top 3 --epochs E --patience 0 --seeds S`` runs, split into one training per (child, seed) so
   that a stopped benchmark continues where it stopped. A search's **winner** is its top-3 child with the best mean
   retrained validation perplexity (as ``nas train --top`` picks it).
3. **Two LSTMs** (``torch.nn.LSTM`` through the same model and loop) with the searched winner's layers and
   dropout: one at the hidden size whose parameter count matches the winner's (``--match-params``), one at the
   winner's hidden size; same recipe and seeds.
4. ``--known NAME`` (repeatable; e.g. ``nascell``, Zoph & Le's published cell of this very space): that cell with
   the searched winner's layers, hidden size and dropout (a base-8 cell has the winner's parameter count), same
   recipe and seeds: whether a cell of the space that a far larger search found beats the matched LSTM here.

Reported: test perplexity (and bits per token) mean ± std over seeds for every source; the paired differences
(the other's test perplexity minus the searched winner's on the same training seed: positive means the searched
cell is better) with a 95% t interval over seeds (:mod:`paired`); whether each beats the seed-to-seed std of both
(the target); Kendall's tau between each search's order of its top 3 and the retrained order. Winners are chosen
on validation perplexity and scored on test, so the two searches' winners are a best of three and the LSTMs are not;
every retrained child's row is in the table too. A known cell is compared with the matched LSTM as well (the LSTM's
test perplexity minus the cell's). The search itself is one draw per algorithm (one search seed); the intervals are
over training seeds, so they say how sure the retrained comparison is for *these* two searches.

Writes, under ``--out``: ``searches/`` (the two results folders), ``train/<source>/seed<S>/`` (one ``nas train``
folder per training), ``table.csv``, ``differences.csv``, ``table.md``, ``end_to_end.png`` and ``provenance.json``
(code hash, commit, settings hash: a folder made by other code or settings is refused unless ``--force-reuse``).
Trainings run ``--workers`` (2) at a time, one thread each. The last line is the summary::

    end_to_end: searched=… random_winner=… lstm_matched=… lstm_same_hidden=… searched_vs_lstm_matched=… \
ci95=[…,…] searched_vs_random_winner=… ci95=[…,…]

Usage: ``python bench/bench_end_to_end.py [--children 200] [--random-children N] [--epochs 3] [--seeds 3]
[--known nascell] [--out bench/end_to_end] [--dataset ptb --data-dir DIR] [--stop-after SECONDS] [--report]
[--force-reuse]``
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import shutil
import statistics
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any

os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import paired as stats  # noqa: E402
import provenance  # noqa: E402

from nas import console  # noqa: E402
from nas.config import SearchConfig, config_from_dict  # noqa: E402
from nas.retrain.top import kendall_tau_b  # noqa: E402
from nas.runs.compare import best_so_far  # noqa: E402
from nas.runs.records import json_safe, latest_per_trial, read_records  # noqa: E402
from nas.runs.results import Run  # noqa: E402
from nas.search import ray_session  # noqa: E402
from search_spaces import ChildSpec, HParams, known_cell  # noqa: E402

SEARCHES = {"searched": "reinforce", "random": "random"}
"""Label -> algorithm of the two searches (the default algorithm and the random baseline)."""
TOP = 3
LSTM = "torch-lstm"
KNOWN = "known-"
"""Source-name prefix of a known cell retrained with the searched winner's layers (``--known``)."""


# ---- what to train -------------------------------------------------------------------------------------------------


def search_dict(label: str, seed: int, children: int, root: Path, data: dict[str, Any], concurrency: int,
                overrides: dict[str, Any]) -> dict[str, Any]:
    """The default search's TOML-shaped settings with the algorithm of ``label`` (``overrides``: tests, PTB)."""
    d: dict[str, Any] = {"name": f"{label}-s{seed}", "trials": children, "seed": seed, "algo": SEARCHES[label],
                         "concurrency": concurrency, "results_dir": str(root), "data": data}
    for key, value in overrides.items():
        d[key] = {**d.get(key, {}), **value} if isinstance(value, dict) else value
    return d


def job_dir(out: Path, source: str, seed: int) -> Path:
    return out / "train" / source / f"seed{seed}"


def finished(folder: Path) -> dict[str, Any] | None:
    """The run recorded in ``folder``'s train.json, unless it is absent or was interrupted."""
    path = folder / "train.json"
    if not path.exists():
        return None
    runs = json.loads(path.read_text())["runs"]
    return runs[-1] if runs and runs[-1]["status"] != "interrupted" else None


def run_job(job: tuple[str, str, dict[str, Any], int, str]) -> dict[str, Any]:
    """Train one (source, seed) in a worker process (one thread): the recorded run plus the source's name."""
    import torch

    from nas.retrain.trainer import retrain

    source, spec_json, search, seed, folder = job
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)  # speed only (bench_proxy: perplexities unaffected)
    shutil.rmtree(folder, ignore_errors=True)  # an interrupted training starts again
    cfg = retrain_cfg(search, seed)
    if source.startswith(LSTM):
        from nas.retrain.sources import with_rnn

        cfg = with_rnn(cfg, "torch-lstm")
    outcome = retrain(ChildSpec.from_json(spec_json), cfg, folder, source=source, out=lambda line: None)
    return json_safe({"source": source, **outcome.runs[-1], "history": None})  # as train.json holds it


def retrain_cfg(search: dict[str, Any], seed: int):  # -> nas.retrain.RetrainRecipe
    from nas.retrain.trainer import retrain_recipe

    cfg = config_from_dict({k: v for k, v in search.items() if k not in ("epochs",)})
    return retrain_recipe(cfg, epochs=search["epochs"], patience=0, seeds=1, first_seed=seed)


def lstm_specs(winner: ChildSpec, search: dict[str, Any]) -> dict[str, ChildSpec]:
    """The two LSTMs of the winner's layers and dropout: parameter-matched and at the winner's hidden size."""
    from nas.retrain.sources import matched_hidden_size, parameter_count, with_rnn
    from workers.data import load_corpus

    cfg = retrain_cfg(search, 0)
    vocab = load_corpus(cfg.data.source, cfg.data.level).vocab_size
    lstm = ChildSpec(known_cell("lstm"), winner.hparams)
    lstm_cfg = with_rnn(cfg, "torch-lstm")
    hidden = matched_hidden_size(parameter_count(winner, cfg, vocab), lstm, lstm_cfg, vocab)
    matched = ChildSpec(known_cell("lstm"), HParams.of({**winner.hparams.as_dict(), "hidden_size": hidden}))
    return {f"{LSTM}-matched": matched, f"{LSTM}-same-hidden": lstm}


def known_specs(winner: ChildSpec, names: list[str]) -> dict[str, ChildSpec]:
    """Each named known cell with the winner's layer hyperparameters, by source name."""
    return {f"{KNOWN}{name}": ChildSpec(known_cell(name), winner.hparams) for name in names}


# ---- running -------------------------------------------------------------------------------------------------------


def run_searches(args: argparse.Namespace, out: Path, data: dict[str, Any], overrides: dict[str, Any]
                 ) -> dict[str, SearchConfig]:
    import bench_search_quality as bsq
    import ray

    children = {"searched": args.children, "random": args.random_children}
    dicts = {label: search_dict(label, args.search_seed, children[label], out / "searches", data, args.concurrency,
                                overrides) for label in SEARCHES}
    configs = {label: config_from_dict(d) for label, d in dicts.items()}
    todo = [label for label, cfg in configs.items() if not complete(cfg)]
    if todo and not args.report:
        ray_session.start_local(num_cpus=args.concurrency)
        for label in todo:
            started = time.time()
            curve, _, _ = bsq.run_once(dicts[label], args.force_reuse)
            print(f"search {label}: {len(curve)} children, best {curve['best_val_ppl'].iloc[-1]:.3f}, "
                  f"{curve['compute_seconds'].iloc[-1]:.0f} s of child training, {time.time() - started:.0f} s wall",
                  flush=True)
        ray.shutdown()
    return configs


def complete(cfg: SearchConfig) -> bool:
    children = cfg.run_dir / "children.jsonl"
    return children.exists() and len({r["trial_id"] for r in read_records(children)}) >= cfg.trials


def train_all(jobs: list[tuple[str, str, dict[str, Any], int, str]], workers: int, deadline: float
              ) -> dict[tuple[str, int], dict[str, Any]]:
    """Run the jobs not finished yet (starting none after ``deadline``); every job's run by (source, seed)."""
    runs: dict[tuple[str, int], dict[str, Any]] = {}
    todo = []
    for job in jobs:
        run = finished(Path(job[4]))
        if run is None:
            todo.append(job)
        else:
            runs[(job[0], job[3])] = run
    if not todo or time.time() > deadline:
        return runs
    print(f"training {len(todo)} of {len(jobs)} (source, seed) pairs, {workers} at a time", flush=True)
    with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), max_tasks_per_child=1) as pool:
        pending = iter(todo)
        live = {pool.submit(run_job, j) for j in (next(pending, None) for _ in range(workers)) if j is not None}
        while live:
            done, live = wait(live, return_when=FIRST_COMPLETED)
            for future in done:
                run = future.result()
                runs[(run["source"], run["seed"])] = run
                print(f"  {run['source']} seed {run['seed']}: {run['status']}, val {num(run['val_ppl']):.3f}, "
                      f"test {num(run['test_ppl']):.3f}, {run['params'] or 0:,} parameters, "
                      f"{run['train_seconds']:.0f} s", flush=True)
                if time.time() < deadline and (j := next(pending, None)) is not None:
                    live.add(pool.submit(run_job, j))
    return runs


# ---- the table -----------------------------------------------------------------------------------------------------


def num(value: float | None) -> float:
    """A recorded perplexity as a float (train.json writes NaN as null)."""
    return math.nan if value is None else float(value)


def test_values(runs: dict[tuple[str, int], dict[str, Any]], source: str, seeds: list[int]) -> list[float]:
    """The source's test perplexity per seed (NaN where a seed is missing, failed or diverged)."""
    out = []
    for s in seeds:
        r = runs.get((source, s))
        out.append(num(r["test_ppl"]) if r and r["status"] == "completed" else math.nan)
    return out


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and std of the finite values (a failed or missing training is NaN and left out)."""
    return console.mean_std([v for v in values if math.isfinite(v)])


def winner_of(label: str, top: list[dict[str, Any]], runs: dict[tuple[str, int], dict[str, Any]],
              seeds: list[int]) -> dict[str, Any] | None:
    """The top-3 child with the best mean retrained validation perplexity, once all its seeds are in."""
    scored = []
    for child in top:
        vals = [runs.get((child["source"], s)) for s in seeds]
        if any(v is None for v in vals):
            return None
        ok = [num(v["val_ppl"]) for v in vals if v["status"] == "completed" and math.isfinite(num(v["val_ppl"]))]
        if ok:
            scored.append((statistics.fmean(ok), child["rank"], child))
    return min(scored, key=lambda t: t[:2])[2] if scored else None


def top_within(run: Run, work: float, k: int) -> tuple[list[dict[str, Any]], int]:
    """The search's ``k`` best completed children among those it finished within ``work`` (training batches x
    parameters, counted in finish order), best first as ``{rank, spec, search_val_ppl}``; and how many children
    that budget held. Ranks are the cells table's (a reused outcome ranks once, as its first child)."""
    records = latest_per_trial(run.children)
    cumulative = best_so_far(records)["compute_work"].to_numpy()
    within = [r.trial_id for r, w in zip(records, cumulative) if w <= work]
    cells = run.cells
    ranked = cells[cells["rank"].notna() & cells["trial_id"].isin(within)].sort_values("rank").head(k)
    return ([{"rank": i, "spec": c["spec"], "search_val_ppl": float(c["val_ppl"])}
             for i, (_, c) in enumerate(ranked.iterrows(), start=1)], len(within))


def spent(run: Run) -> dict[str, float]:
    """A finished search's children, work (training batches x parameters) and seconds of child training."""
    curve = best_so_far(run.children)
    return {"children": len(curve), "work": float(curve["compute_work"].iloc[-1]),
            "seconds": float(curve["compute_seconds"].iloc[-1])}


def spent_line(searches: dict[str, dict[str, float]]) -> str:
    """One line: each search's children, work and child-training seconds, random's as a share of the default's."""
    parts = []
    base = searches.get("searched")
    for label, s in searches.items():
        share = (f" ({s['work'] / base['work']:.2f}x the searched search's work, "
                 f"{s['seconds'] / base['seconds']:.2f}x its seconds)" if base and label != "searched" else "")
        parts.append(f"{label} {s['children']:.0f} children, work {s['work']:.3g} batch-parameters, "
                     f"{s['seconds']:.0f} s of child training{share}")
    cut = [f"{label}'s first {s['within']:.0f}" for label, s in searches.items() if "within" in s]
    return ("searches: " + "; ".join(parts)
            + (f"; top {TOP} of each within the smaller work: {', '.join(cut)} children" if cut else ""))


def report(out: Path, tops: dict[str, list[dict[str, Any]]], winners: dict[str, dict[str, Any] | None],
           lstms: dict[str, ChildSpec], runs: dict[tuple[str, int], dict[str, Any]], seeds: list[int],
           level: str, searches: dict[str, dict[str, float]], known: dict[str, ChildSpec] | None = None) -> str:
    import pandas as pd

    rows = []
    roles = {}
    for label in SEARCHES:
        for child in tops.get(label, []):
            roles[child["source"]] = (f"{label} rank {child['rank']}", child)
    for source, spec in (lstms | (known or {})).items():
        roles[source] = (source, {"spec": spec.to_json(), "search_val_ppl": math.nan})
    for source, (role, child) in roles.items():
        vals = test_values(runs, source, seeds)
        val_ppl = [num(runs[(source, s)]["val_ppl"]) for s in seeds if (source, s) in runs]
        hp = ChildSpec.from_json(child["spec"]).hparams.as_dict()
        params = next((runs[(source, s)]["params"] for s in seeds if (source, s) in runs), None)
        m, s = mean_std(vals)
        vm, vs = mean_std(val_ppl)
        rows.append({"source": source, "role": role, "num_layers": hp.get("num_layers"),
                     "hidden_size": hp.get("hidden_size"), "dropout": hp.get("dropout"), "params": params,
                     "search_val_ppl": child["search_val_ppl"], "val_ppl": vm, "val_ppl_std": vs, "test_ppl": m,
                     "test_ppl_std": s, "bits_per_token": math.log2(m) if math.isfinite(m) else math.nan,
                     "seeds": sum(math.isfinite(v) for v in vals),
                     "winner": any(w is not None and w["source"] == source for w in winners.values())})
    table = pd.DataFrame(rows)
    table.to_csv(out / "table.csv", index=False)
    named = {"searched": winners.get("searched"), "random_winner": winners.get("random")}
    series = {name: test_values(runs, w["source"], seeds) if w else [math.nan] * len(seeds)
              for name, w in named.items()}
    for source in lstms:
        series["lstm_matched" if source.endswith("matched") else "lstm_same_hidden"] = test_values(runs, source, seeds)
    diffs = []
    for other in ("lstm_matched", "random_winner", "lstm_same_hidden"):
        d = [o - s for o, s in zip(series.get(other, []), series["searched"])]
        if d and all(math.isfinite(x) for x in d):
            p = stats.paired(d)
            std_s, std_o = mean_std(series["searched"])[1], mean_std(series[other])[1]
            beats = p.mean > max(std_s, std_o) if math.isfinite(std_s) and math.isfinite(std_o) else False
            diffs.append({"vs": other, "mean": p.mean, "ci_low": p.low, "ci_high": p.high, "p": p.p,
                          "seeds_better": p.wins, "seeds": p.n, "verdict": p.verdict,
                          "beats_seed_std_of_both": beats, "text": p.text(3)})
    pd.DataFrame(diffs).to_csv(out / "differences.csv", index=False)
    lines = [f"end-to-end: retrained test perplexity over seeds {seeds} ({level} level)", "",
             spent_line(searches), "",
             "| source | role | layers | hidden | dropout | params | search val | retrained val | test | bits |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['source']} | {r['role']}{' (winner)' if r['winner'] else ''} | {r['num_layers']} | "
                     f"{r['hidden_size']} | {r['dropout']} | {r['params'] or '-'} | {r['search_val_ppl']:.3f} | "
                     f"{fmt(r['val_ppl'], r['val_ppl_std'])} | {fmt(r['test_ppl'], r['test_ppl_std'])} "
                     f"(n={r['seeds']}) | {r['bits_per_token']:.4f} |")
    lines += ["", "| searched winner vs | mean difference (other - searched) [95% CI] | beats both seed stds |",
              "|---|---|---|"]
    lines += [f"| {d['vs']} | {d['text']} | {'yes' if d['beats_seed_std_of_both'] else 'no'} |" for d in diffs]
    for source in known or {}:  # a known cell against the matched LSTM: positive means the known cell is better
        d = [m - k for m, k in zip(series.get("lstm_matched", []), test_values(runs, source, seeds))]
        if d and all(math.isfinite(x) for x in d):
            lines.append(f"\n{source} vs torch-lstm-matched (LSTM minus cell): {stats.paired(d).text(3)}")
    for label in SEARCHES:
        top = [c for c in tops.get(label, []) if all((c["source"], s) in runs for s in seeds)]
        if len(top) >= 2:
            retrained = [mean_std([num(runs[(c["source"], s)]["val_ppl"]) for s in seeds])[0] for c in top]
            tau = kendall_tau_b([c["search_val_ppl"] for c in top], retrained)
            lines.append(f"\n{label} search: Kendall tau-b of its top {len(top)} (search vs retrained val): {tau:+.2f}")
    plot(out / "end_to_end.png", series, seeds)
    summary = " ".join(f"{name}={fmt(*mean_std(v))}" for name, v in series.items())
    for d in diffs:
        if d["vs"] in ("lstm_matched", "random_winner"):
            summary += f" searched_vs_{d['vs']}={d['mean']:+.3f} ci95=[{d['ci_low']:+.3f},{d['ci_high']:+.3f}]"
    lines += ["", f"end_to_end: {summary}"]
    text = "\n".join(lines)
    (out / "table.md").write_text(text + "\n")
    return text


def fmt(m: float, s: float) -> str:
    if not math.isfinite(m):
        return "-"
    return f"{m:.3f}" if not math.isfinite(s) else f"{m:.3f}±{s:.3f}"


def plot(path: Path, series: dict[str, list[float]], seeds: list[int]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    names = list(series)
    for i, name in enumerate(names):
        values = series[name]
        ax.scatter([i] * len(values), values, s=18, alpha=0.7)
        m, _ = mean_std(values)
        if math.isfinite(m):
            ax.hlines(m, i - 0.25, i + 0.25, color="k")
    ax.set_xticks(range(len(names)), names)
    ax.set_ylabel("test perplexity (lower is better)")
    ax.set_title(f"retrained under one recipe, seeds {seeds}")
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---- main ----------------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> str:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--children", type=int, default=200, help="children per search")
    p.add_argument("--random-children", type=int, default=None,
                   help="children of the random search (default: --children), e.g. to match the default's work")
    p.add_argument("--search-seed", type=int, default=100)
    p.add_argument("--epochs", type=int, default=3, help="whole epochs per retraining (no early stop)")
    p.add_argument("--seeds", type=int, default=3, help="training seeds 0 .. N-1 of every source")
    p.add_argument("--concurrency", type=int, default=2, help="children training at once in a search")
    p.add_argument("--workers", type=int, default=2, help="retrainings at once (one thread each)")
    p.add_argument("--dataset", default="shakespeare")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--level", default="auto")
    p.add_argument("--search-overrides", default="{}", help="JSON merged into both searches' settings")
    p.add_argument("--known", action="append", default=[], metavar="NAME",
                   help="also retrain this known cell with the searched winner's layers (repeatable; e.g. nascell)")
    p.add_argument("--out", default="bench/end_to_end")
    p.add_argument("--stop-after", type=float, default=math.inf, help="start no new training after this many seconds")
    p.add_argument("--report", action="store_true", help="only print the table of what is done")
    p.add_argument("--force-reuse", action="store_true", help="read back a folder made by other code or settings")
    args = p.parse_args(argv)
    deadline = time.time() + args.stop_after
    try:
        overrides = json.loads(args.search_overrides)
    except json.JSONDecodeError as e:
        p.error(f"--search-overrides: not JSON ({e})")
    for name in args.known:
        try:
            known_cell(name)
        except ValueError as e:
            p.error(f"--known: {e}")
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    data = {"dataset": args.dataset, "level": args.level, **({"data_dir": args.data_dir} if args.data_dir else {})}
    seeds = list(range(args.seeds))
    if args.random_children is None:
        args.random_children = args.children
    settings = {"children": args.children, "random_children": args.random_children, "search_seed": args.search_seed,
                "epochs": args.epochs, "seeds": seeds,
                "data": data, "overrides": overrides, "top": TOP, "concurrency": args.concurrency,
                **({"known": args.known} if args.known else {})}
    record = provenance.provenance(settings, extra=("bench/bench_end_to_end.py",))
    stamp = out / provenance.PROVENANCE_FILE
    if (out / "train").exists() or (out / "searches").exists():
        why = provenance.mismatch(stamp, record, str(out))
        if why and not args.force_reuse:
            p.error(f"{why}; use a new --out, or --force-reuse to read it back anyway")
    if not stamp.exists():
        provenance.write(stamp, record)

    configs = run_searches(args, out, data, overrides)
    tops: dict[str, list[dict[str, Any]]] = {}
    finished_runs = {label: Run(cfg.run_dir) for label, cfg in configs.items() if complete(cfg)}  # read once each
    searches_spent = {label: spent(run) for label, run in finished_runs.items()}
    if len(searches_spent) == len(SEARCHES):  # each search's top 3 from what it found within equal work
        budget = min(s["work"] for s in searches_spent.values())
        for label, run in finished_runs.items():
            best, searches_spent[label]["within"] = top_within(run, budget, TOP)
            tops[label] = [{"source": f"{label}-rank{c['rank']}", **c} for c in best]
    from workers.corpora import resolved_level

    level = resolved_level(configs["searched"].data.source, configs["searched"].data.level)
    searches = {label: {**json.loads(json.dumps(cfg.to_dict(), default=str)), "epochs": args.epochs}
                for label, cfg in configs.items()}
    jobs = [(c["source"], c["spec"], searches[label], s, str(job_dir(out, c["source"], s)))
            for s in seeds for label in SEARCHES for c in tops.get(label, [])]
    if args.report:
        deadline = -math.inf  # train_all then only reads back what finished
    runs = train_all(jobs, args.workers, deadline)
    winners = {label: winner_of(label, tops.get(label, []), runs, seeds) for label in SEARCHES}
    lstms: dict[str, ChildSpec] = {}
    known: dict[str, ChildSpec] = {}
    if winners["searched"] is not None:
        winner = ChildSpec.from_json(winners["searched"]["spec"])
        lstms = lstm_specs(winner, searches["searched"])
        known = known_specs(winner, args.known)
        more = [(source, spec.to_json(), searches["searched"], s, str(job_dir(out, source, s)))
                for s in seeds for source, spec in (lstms | known).items()]
        runs |= train_all(more, args.workers, deadline)
    text = report(out, tops, winners, lstms, runs, seeds, level, searches_spent, known)
    print(text)
    return text


if __name__ == "__main__":
    main()
