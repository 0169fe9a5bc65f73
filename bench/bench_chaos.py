"""Faults against a search of long children: worker processes SIGKILLed, or whole nodes removed, at random times,
with and without the children's own checkpoints, next to an undisturbed run of the same seed.

Each run is a real ``run_search`` of ``--children`` children of the default algorithm (REINFORCE) on the bundled
corpus, 2 at a time, each child 1 layer of hidden 64 trained for ``--batches`` batches (~20-40 s on one core),
``[budget] checkpoint_every = --checkpoint-every`` seconds (or "none"), search seed ``--seed``. The runs:

1. **undisturbed**, with checkpoints (the reference for wall time; what checkpointing costs shows against 2);
2. **undisturbed, no checkpoints**;
3. per mode, **chaos with checkpoints** and **chaos without**: a killer thread waits an exponential time of mean
   ``--kill-every`` seconds (seeded by ``--kill-seed``, the same waits in every run), then
   - mode ``worker``: SIGKILLs the worker process of a running child (its pid from the child's latest report in
     its trial folder's ``result.json``), on a local Ray;
   - mode ``node``: removes the simulated node (``ray.cluster_utils.Cluster``: a head with no CPUs and two worker
     nodes of one CPU, as ``tests/test_faults.py``) that runs a child, and adds a fresh one in its place.
   Ray retries a child whose worker or node died (``max_failures`` = 5 here).

Reported per run: children recorded, **lost** (indices without a final record: must be 0), **duplicated** (indices
with more than one: 0), controller updates (= trained children), kills, children that resumed from a checkpoint,
wall seconds and its ratio to run 1, and the **wasted training**: batches trained that no outcome used, as a share
of all batches trained. A kill wastes the batches its child trained since the checkpoint it resumes from (all of
them without checkpoints); the batches at the kill are estimated from the child's latest report before it (its
batches, plus its training rate times the seconds since): an estimate to within a few seconds of training.

Writes ``--out``/chaos.json (every run's figures, the kills, provenance: code hash, commit, settings) and prints a
table; the last line is the summary of the first chaos run with checkpoints::

    chaos: mode=worker children=… lost=0 duplicated=0 updates=… kills=… wasted=…% wall_vs_undisturbed=…x

Usage: ``python bench/bench_chaos.py [--mode worker|node|both] [--children 12] [--batches 1500]
[--kill-every 30] [--checkpoint-every 5] [--out bench/chaos]``
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")

import provenance  # noqa: E402
import ray  # noqa: E402

from nas.config import config_from_dict  # noqa: E402
from nas.runs.records import read_records  # noqa: E402
from nas.search import ray_session  # noqa: E402
from nas.search.driver import run_search  # noqa: E402


def search_settings(args: argparse.Namespace, name: str, root: Path, checkpoints: bool) -> dict[str, Any]:
    return {"name": name, "trials": args.children, "concurrency": 2, "seed": args.seed, "results_dir": str(root),
            "max_failures": 5,
            "space": {"base": 8, "layers": {"num_layers": [1], "hidden_size": [64], "dropout": [0.0, 0.1]}},
            "model": {"num_layers": 1, "hidden_size": 64},
            "budget": {"epochs": 1, "max_batches": args.batches, "max_eval_tokens": 5000,
                       "checkpoint_every": args.checkpoint_every if checkpoints else "none"}}


def _last_lines(result_json: Path, n: int = 50) -> list[dict[str, Any]]:
    try:
        lines = result_json.read_text().splitlines()[-n:]
    except OSError:
        return []
    out = []
    for line in lines:
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            pass  # a line being written
    return out


def running_children(run_dir: Path) -> list[tuple[Path, list[dict[str, Any]]]]:
    """Trial folders whose latest report says "running", with their latest reports (oldest first)."""
    found = []
    for folder in sorted(run_dir.glob("child_*")):
        lines = _last_lines(folder / "result.json")
        if lines and lines[-1].get("status") == "running":
            found.append((folder, lines))
    return found


def batches_at(lines: list[dict[str, Any]], when: float) -> tuple[float, int]:
    """(estimated batches done at ``when``, batches of the latest checkpoint before it) of a child whose latest
    reports are ``lines``: the latest report's batches plus its training rate times the seconds since."""
    latest = lines[-1]
    done = float(latest.get("batches") or latest.get("fidelity") or 0)
    seconds = float(latest.get("train_seconds") or 0.0)
    if done and seconds:
        done += done / seconds * max(0.0, when - float(latest.get("timestamp") or when))
    checkpointed = max((int(r.get("batches") or 0) for r in lines if r.get("checkpoint")), default=0)
    return done, checkpointed


class Killer(threading.Thread):
    """Kills a running child at exponential intervals until stopped (see the module docstring)."""

    def __init__(self, run_dir: Path, mode: str, mean: float, seed: int, batches: int, cluster=None) -> None:
        super().__init__(daemon=True)
        self.run_dir, self.mode, self.mean, self.batches, self.cluster = run_dir, mode, mean, batches, cluster
        self.rng = random.Random(seed)
        self.stopped = threading.Event()
        self.kills: list[dict[str, Any]] = []

    def run(self) -> None:
        while not self.stopped.wait(self.rng.expovariate(1.0 / self.mean)):
            victims = running_children(self.run_dir)
            if not victims:
                continue
            folder, lines = self.rng.choice(victims)
            now = time.time()
            done, checkpointed = batches_at(lines, now)
            kill = {"at": now, "child": folder.name, "batches": min(done, self.batches), "checkpoint": checkpointed}
            try:
                if self.mode == "worker":
                    kill["pid"] = int(lines[-1]["pid"])
                    os.kill(kill["pid"], signal.SIGKILL)
                else:
                    node_id = lines[-1].get("node_id")
                    node = next(n for n in self.cluster.worker_nodes if n.node_id == node_id)
                    self.cluster.remove_node(node)
                    self.cluster.add_node(num_cpus=1)
                    kill["node"] = node_id
            except (ProcessLookupError, StopIteration, KeyError, ValueError):
                continue  # it finished (or its node went) just now
            self.kills.append(kill)


def figures(run_dir: Path, children: int, kills: list[dict[str, Any]], wall: float) -> dict[str, Any]:
    rows = read_records(run_dir / "children.jsonl")
    finals: dict[int, set[str]] = {}
    for r in rows:
        finals.setdefault(int(r["index"]), set()).add(r["trial_id"])
    used = sum(int(r.get("fidelity") or 0) for r in rows if r.get("reused_from") is None)
    wasted = sum(max(0.0, k["batches"] - k["checkpoint"]) for k in kills)
    return {"children": len(finals), "lost": sum(1 for i in range(children) if i not in finals),
            "duplicated": sum(1 for ids in finals.values() if len(ids) > 1),
            "updates": len(read_records(run_dir / "controller.jsonl")),
            "trained": sum(1 for r in rows if r.get("reused_from") is None), "kills": len(kills),
            "resumed": sum(1 for r in rows if int(r.get("resumed_from") or 0) > 0),
            "statuses": dict(sorted({r["status"]: sum(1 for x in rows if x["status"] == r["status"])
                                     for r in rows}.items())),
            "batches_used": used, "batches_wasted": round(wasted), "wasted_share": wasted / max(used + wasted, 1),
            "wall": wall, "kill_log": kills}


def one_run(args: argparse.Namespace, root: Path, name: str, mode: str | None, checkpoints: bool) -> dict[str, Any]:
    """Run one search (with a killer unless ``mode`` is None) on a fresh Ray; its figures."""
    d = search_settings(args, name, root, checkpoints)
    cfg = config_from_dict(d)
    cluster = None
    if mode == "node":
        from ray.cluster_utils import Cluster

        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
        for _ in range(2):
            cluster.add_node(num_cpus=1)
        ray.init(address=cluster.address, log_to_driver=False, logging_level="ERROR")
    else:
        ray_session.start_local(num_cpus=2)
    killer = Killer(cfg.run_dir, mode, args.kill_every, args.kill_seed, args.batches, cluster) if mode else None
    try:
        if killer:
            killer.start()
        outcome = run_search(cfg, out=lambda line: None)
    finally:
        if killer:
            killer.stopped.set()
            killer.join()
        ray.shutdown()
        if cluster is not None:
            cluster.shutdown()
    return figures(cfg.run_dir, args.children, killer.kills if killer else [], outcome.seconds)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--mode", choices=["worker", "node", "both"], default="both")
    p.add_argument("--children", type=int, default=12)
    p.add_argument("--batches", type=int, default=1500, help="training batches per child")
    p.add_argument("--kill-every", type=float, default=30.0, help="mean seconds between kills")
    p.add_argument("--checkpoint-every", type=float, default=5.0, help="[budget] checkpoint_every of the runs")
    p.add_argument("--seed", type=int, default=0, help="search seed")
    p.add_argument("--kill-seed", type=int, default=0, help="seed of the killer's waits and choices")
    p.add_argument("--out", default="bench/chaos", help="folder for chaos.json")
    args = p.parse_args(argv)
    modes = ["worker", "node"] if args.mode == "both" else [args.mode]
    runs: dict[str, dict[str, Any]] = {}
    print(f"ray {ray.__version__}; {args.children} children of {args.batches} batches, 2 at a time; checkpoints "
          f"every {args.checkpoint_every:g} s; a kill every {args.kill_every:g} s on average", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-chaos-") as tmp:
        root = Path(tmp)
        plan = [("undisturbed", None, True), ("undisturbed, no checkpoints", None, False)]
        plan += [(f"{m}, {'checkpoints' if c else 'no checkpoints'}", m, c) for m in modes for c in (True, False)]
        for k, (label, mode, checkpoints) in enumerate(plan):
            runs[label] = one_run(args, root, f"run{k}", mode, checkpoints)
            f = runs[label]
            print(f"{label}: {f['children']} children ({f['statuses']}), lost {f['lost']}, duplicated "
                  f"{f['duplicated']}, updates {f['updates']}, kills {f['kills']}, resumed {f['resumed']}, wasted "
                  f"{100 * f['wasted_share']:.1f}%, wall {f['wall']:.0f} s", flush=True)
    base = runs["undisturbed"]["wall"]
    print("\n| run | children | lost | duplicated | updates | kills | resumed | wasted | wall s | vs undisturbed |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for label, f in runs.items():
        print(f"| {label} | {f['children']} | {f['lost']} | {f['duplicated']} | {f['updates']} | {f['kills']} | "
              f"{f['resumed']} | {100 * f['wasted_share']:.1f}% | {f['wall']:.0f} | {f['wall'] / base:.2f}x |")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    record = provenance.provenance(vars(args), extra=("bench/bench_chaos.py",))
    (out / "chaos.json").write_text(json.dumps({"provenance": record, "runs": runs}, indent=2, default=str) + "\n")
    first = next(label for label in runs if label.endswith(", checkpoints"))
    f = runs[first]
    print(f"\nchaos: mode={first.split(',')[0]} children={f['children']} lost={f['lost']} "
          f"duplicated={f['duplicated']} updates={f['updates']} kills={f['kills']} "
          f"wasted={100 * f['wasted_share']:.1f}% wall_vs_undisturbed={f['wall'] / base:.2f}x")
    return runs


if __name__ == "__main__":
    main()
