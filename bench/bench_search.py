"""Search-level speed: per-child overhead and children per hour against children running at once.

Two measurements, each a real ``run_search`` on a local Ray started once for the whole run (start-up is not
counted) and on the bundled Tiny Shakespeare corpus, so it needs no data files:

1. **Overhead**: 16 tiny children (1 layer, hidden 16, 5 training batches), 2 at a time. Reported per child:
   - *outside the trainable*: ``(Tune wall time x children at once - sum of time inside the trainable) / children``
     -- process start or actor reuse, imports, shipping the corpus, scheduling, the searcher's suggest/update,
     and (an overestimate) a slot left idle while the last child finishes;
   - *inside the trainable, outside the training loop*: model build, evaluation and reporting.
2. **Packing**: the same ``--pack-trials`` children of the default search (random search, so every setting trains
   the very same children) with 1, 2 and 4 children at once, splitting the machine's CPUs among them (on a GPU
   machine: 1, 2 and 4 children per GPU). Reported as children per hour.
3. **Kernels** (on a CPU with a C compiler): the same children, 2 at a time, with the cells' element-wise steps as
   torch operations (``[train] cell_kernels = "torch"``) and on the default path (generated C kernels,
   :mod:`workers.native_cell`), children of search seed 1 (cells no earlier measurement used; the whole bench
   runs with an empty kernel cache of its own, so each of them is compiled once, inside its child's time).
   Reported as children per hour each.

The last line is a one-line summary::

    overhead=0.41s inside=0.62s best_concurrency=2 children_per_hour=480 torch_ops_per_hour=300 native_per_hour=420

Usage: ``python bench/bench_search.py [--pack-trials N] [--skip-packing] [--skip-kernels]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from dataclasses import dataclass

os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")

import ray  # noqa: E402
import torch  # noqa: E402

from nas.config import config_from_dict  # noqa: E402
from nas.runs.records import read_records  # noqa: E402
from nas.search import ray_session  # noqa: E402
from nas.search.driver import run_search  # noqa: E402
from search_spaces import known_cell  # noqa: E402
from workers.cell_rnn import kernel_path  # noqa: E402

TINY = {"space": {"base": 8, "layers": {"hidden_size": [16], "num_layers": [1]}},
        "model": {"num_layers": 1, "hidden_size": 16},
        "budget": {"max_batches": 5, "max_eval_tokens": 1000}}


@dataclass(frozen=True)
class SearchTiming:
    children: int
    concurrency: int
    wall: float
    """Seconds Tune ran (tuner.fit)."""
    inside: list[float]
    """Per child: seconds inside the trainable (finished_at - started_at)."""
    train: list[float]
    """Per child: seconds in the training loop."""

    @property
    def outside_per_child(self) -> float:
        return (self.wall * self.concurrency - sum(self.inside)) / self.children

    @property
    def inside_not_training(self) -> float:
        return statistics.mean(i - t for i, t in zip(self.inside, self.train))

    @property
    def per_hour(self) -> float:
        return self.children / self.wall * 3600


def timed_search(root: str, name: str, trials: int, concurrency: int, cpus: float, gpus: float,
                 extra: dict | None = None) -> SearchTiming:
    d = {"name": name, "trials": trials, "concurrency": concurrency, "cpus_per_trial": cpus, "gpus_per_trial": gpus,
         "algo": "random", "seed": 0, "results_dir": root, **(extra or {})}
    outcome = run_search(config_from_dict(d), out=lambda line: None)
    rows = read_records(outcome.run_dir / "children.jsonl")
    done = [r for r in rows if r.get("started_at") and r.get("finished_at")]
    return SearchTiming(len(rows), concurrency, outcome.seconds,
                        [r["finished_at"] - r["started_at"] for r in done],
                        [r["train_seconds"] or 0.0 for r in done])


def main(argv: list[str] | None = None) -> dict[str, float]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--trials", type=int, default=16, help="tiny children for the overhead measurement")
    p.add_argument("--pack-trials", type=int, default=8, help="default-search children per packing setting")
    p.add_argument("--skip-packing", action="store_true", help="do not measure packing")
    p.add_argument("--skip-kernels", action="store_true", help="do not compare the kernel paths")
    args = p.parse_args(argv)

    cpus = os.cpu_count() or 1
    gpus = torch.cuda.device_count()
    kernel_cache = tempfile.TemporaryDirectory(prefix="bench-search-kernels-")
    os.environ["NAS_KERNEL_CACHE"] = kernel_cache.name  # before Ray starts: its workers inherit it
    ray_session.start_local(num_cpus=cpus, num_gpus=gpus)
    print(f"torch {torch.__version__}, ray {ray.__version__}, python {sys.version.split()[0]}, CPUs {cpus}, "
          f"GPUs {gpus}, load average {'/'.join(f'{x:.2f}' for x in os.getloadavg())}")
    summary: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as root:
        t = timed_search(root, "overhead", args.trials, 2, max(1.0, cpus / 2), 0.0, TINY)
        print(f"overhead: {t.children} tiny children, 2 at a time, in {t.wall:.1f} s; per child "
              f"{statistics.mean(t.train):.2f} s training, {t.inside_not_training:.2f} s in the trainable outside "
              f"training (model build, evaluation), {t.outside_per_child:.2f} s outside the trainable")
        summary.update(overhead=t.outside_per_child, inside=t.inside_not_training)

        if not args.skip_packing:
            settings = ([(k, cpus / k, 0.0) for k in (1, 2, 4)] if gpus == 0
                        else [(min(k * gpus, cpus), cpus / min(k * gpus, cpus), 1.0 / k) for k in (1, 2, 4)])
            print(f"\npacking: {args.pack_trials} children of the default search per setting\n")
            print("| children at once | CPUs per child | GPUs per child | children/hour | wall s | training s/child |")
            print("|---:|---:|---:|---:|---:|---:|")
            best = None
            for k, c, g in settings:
                t = timed_search(root, f"pack-{k}", args.pack_trials, k, c, g)
                print(f"| {k} | {c:g} | {g:g} | {t.per_hour:,.0f} | {t.wall:.1f} | {statistics.mean(t.train):.2f} |",
                      flush=True)
                if best is None or t.per_hour > best[1]:
                    best = (k, t.per_hour)
            summary.update(best_concurrency=best[0], children_per_hour=best[1])

        native = kernel_path("auto", known_cell("nascell"), torch.empty(0)) == "native"
        if not args.skip_kernels and gpus == 0 and native:
            print(f"\nkernels: {args.pack_trials} children of the default search, 2 at a time\n")
            print("| cells' element-wise steps | children/hour | wall s | training s/child |")
            print("|---|---:|---:|---:|")
            for kernels, label in (("torch", "torch operations"), ("auto", "generated C (default)")):
                t = timed_search(root, f"kernels-{kernels}", args.pack_trials, 2, cpus / 2, 0.0,
                                 {"seed": 1, "train": {"cell_kernels": kernels}})
                print(f"| {label} | {t.per_hour:,.0f} | {t.wall:.1f} | {statistics.mean(t.train):.2f} |", flush=True)
                summary["torch_ops_per_hour" if kernels == "torch" else "native_per_hour"] = t.per_hour
    ray.shutdown()
    kernel_cache.cleanup()
    line = f"overhead={summary['overhead']:.2f}s inside={summary['inside']:.2f}s"
    if "best_concurrency" in summary:
        line += f" best_concurrency={summary['best_concurrency']} children_per_hour={summary['children_per_hour']:.0f}"
    if "native_per_hour" in summary:
        line += (f" torch_ops_per_hour={summary['torch_ops_per_hour']:.0f}"
                 f" native_per_hour={summary['native_per_hour']:.0f}")
    print(line)
    return summary


if __name__ == "__main__":
    main()
