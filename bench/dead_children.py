"""Would stopping dead children early help the search against random search? An analysis, no new searches.

About 60% of random cells at the default child budget never beat a unigram model (validation perplexity ≈ 28 on the
bundled corpus: the cell passes nothing useful from its inputs) or end worse than it. Two steps:

- ``curves``: trains ``--cells`` uniformly random children per seed (the search-quality benchmark's children at
  ``--budget default``: 200 batches) with validation measured after 10, 20, 40 and 80 batches, appending one JSON
  line per cell to ``--out`` (a stopped run continues), then prints, for each checkpoint and threshold, the share of
  children a rule "stop if the validation perplexity there is at or above the threshold" would stop, and how many
  of the live children (final ≤ 20) and of the best tenth it would wrongly stop.
- ``simulate``: replays the recorded runs of a search-quality folder as if every dead child (diverged, or a final
  validation perplexity above ``--dead``) had been stopped after ``--stop-at`` of its batches (its work and seconds
  cut to that share; the proposals are taken unchanged, which the controller's would not quite be: a stopped child
  teaches at its rung) and prints the benchmark's paired statistics (:func:`bench_search_quality.paired_rows`)
  against random search with and without the same stop.

Usage: ``python bench/dead_children.py curves --seeds 0,1,2,3 --cells 60 --out curves.jsonl`` and
``python bench/dead_children.py simulate bench/search_quality_default_budget --seeds 120-129 [--stop-at 0.4]
[--dead 20]``
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_search_quality as bsq  # noqa: E402

from nas.runs.compare import best_so_far  # noqa: E402
from nas.runs.records import read_records  # noqa: E402

CHECKS = (10, 20, 40, 80)
THRESHOLDS = (28.0, 30.0, 35.0, 40.0)
LIVE = 20.0
"""A final validation perplexity at or below this counts as a live cell (the unigram level is about 28)."""


def curves(seeds: list[int], cells: int, out: Path) -> None:
    import torch

    from nas.config import config_from_dict
    from workers.data import load_corpus
    from workers.train import train_child

    torch.set_num_threads(1)
    done = {(r["seed"], r["i"]) for r in map(json.loads, out.read_text().splitlines())} if out.exists() else set()
    corpus = None
    with out.open("a") as f:
        for seed in seeds:
            cfg = config_from_dict(bsq.config_dict_for("random", seed, cells, Path("unused"), {}, 1, "default"))
            corpus = corpus or load_corpus(cfg.data.source, cfg.data.level)  # the same corpus for every seed
            child = cfg.child_settings()
            budget = replace(child.budget, report_at=CHECKS)
            space, rng = cfg.space.search_space(), random.Random(seed)
            for i in range(cells):
                spec = space.decode([rng.randrange(d.size) for d in space.decisions])
                if (seed, i) in done:
                    continue
                started = time.time()
                r = train_child(spec.cell, corpus, spec.hparams.as_dict(), budget, child.model, child.train,
                                seed=seed * 1000 + i)
                f.write(json.dumps({"seed": seed, "i": i, "status": r.status, "val_ppl": r.val_ppl,
                                    "rungs": {str(x.batches): x.val_ppl for x in r.rungs},
                                    "seconds": time.time() - started}) + "\n")
                f.flush()
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    final = [r["val_ppl"] if r["status"] == "completed" and r["val_ppl"] is not None else math.inf for r in rows]
    finite = sorted(v for v in final if math.isfinite(v))
    best_tenth = finite[max(0, len(finite) // 10 - 1)]
    print(f"{len(rows)} random cells: {sum(v <= LIVE for v in final)} live (final <= {LIVE:g}); "
          f"best tenth <= {best_tenth:.2f}")
    print("| check (batches) | stop if >= | stopped | of the live | of the best tenth | of the dead |")
    print("|---|---|---|---|---|---|")
    for k in CHECKS:
        at = [r["rungs"].get(str(k), math.inf) for r in rows]
        for th in THRESHOLDS:
            def share(keep, at=at, th=th):
                picked = [a >= th for a, v in zip(at, final) if keep(v)]
                return f"{sum(picked) / len(picked):.2f}" if picked else "-"
            print(f"| {k} | {th:g} | {share(lambda v: True)} | {share(lambda v: v <= LIVE)} | "
                  f"{share(lambda v: v <= best_tenth)} | {share(lambda v: v > LIVE)} |")


def stopped(records: list[dict], stop_at: float, dead: float) -> list[dict]:
    """The records as if each dead child had been stopped after ``stop_at`` of its training."""
    out = []
    for r in records:
        ppl = r.get("val_ppl")
        if r["status"] == "diverged" or (r["status"] == "completed" and (ppl is None or ppl > dead)):
            r = {**r, "status": "stopped", "val_ppl": None}
            if r.get("reused_from") is None:
                r["fidelity"] = int(r["fidelity"] * stop_at)
                r["train_seconds"] = r["train_seconds"] * stop_at
        out.append(r)
    return out


def simulate(folder: Path, seeds: list[int], stop_at: float, dead: float) -> None:
    def curve(setting: str, seed: int, stop: bool):
        records = read_records(folder / "runs" / f"{setting}-s{seed}" / "children.jsonl")  # stopped() copies
        return best_so_far(stopped(records, stop_at, dead) if stop else records)

    settings = sorted({p.name.rsplit("-s", 1)[0] for p in (folder / "runs").iterdir() if p.is_dir()} - {"random"})
    print(f"{folder.name}, seeds {seeds[0]}-{seeds[-1]}: dead children (diverged or final > {dead:g}) stopped "
          f"after {stop_at:g} of their batches")
    print("| setting | against random search | gain, equal work | time to target (work): median, misses |")
    print("|---|---|---|---|")
    for setting in settings:
        for stop_setting, stop_random in ((False, False), (True, True), (True, False)):
            rows = bsq.paired_rows(setting, {s: curve(setting, s, stop_setting) for s in seeds},
                                   {s: curve("random", s, stop_random) for s in seeds}, [])
            v = bsq.verdicts(rows)
            median, misses, n = v["time_to_target_work"]
            name = setting + (" with the stop" if stop_setting else "")
            print(f"| {name} | {'with the stop' if stop_random else 'as run'} | {v['gain_work'].text(2)} | "
                  f"{median:.2f}, {misses}/{n} |")


def seed_list(text: str) -> list[int]:
    if "-" in text:
        first, last = map(int, text.split("-"))
        return list(range(first, last + 1))
    return [int(s) for s in text.split(",")]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("curves")
    c.add_argument("--seeds", type=seed_list, default=[0, 1, 2, 3])
    c.add_argument("--cells", type=int, default=60)
    c.add_argument("--out", type=Path, required=True)
    s = sub.add_parser("simulate")
    s.add_argument("folder", type=Path)
    s.add_argument("--seeds", type=seed_list, required=True)
    s.add_argument("--stop-at", type=float, default=0.4)
    s.add_argument("--dead", type=float, default=LIVE)
    args = p.parse_args(argv)
    if args.command == "curves":
        curves(args.seeds, args.cells, args.out)
    else:
        simulate(args.folder, args.seeds, args.stop_at, args.dead)


if __name__ == "__main__":
    main()
