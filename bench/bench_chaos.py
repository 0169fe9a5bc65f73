"""Faults against a search of long children: worker processes SIGKILLed, or whole nodes removed, at random times,
with and without the children's own checkpoints, next to an undisturbed run of the same seed.

Each run is a real ``run_search`` of ``--children`` children of the default algorithm (REINFORCE) on the bundled
corpus, 2 at a time, each child 1 layer of hidden 64 trained for ``--epochs`` epochs of ``--batches`` batches
(3 x 900: ~36 s on one core with the C kernels; it also checkpoints at each epoch's end), ``[budget]
checkpoint_every = --checkpoint-every`` seconds (or "none"; 5 s, scaled down with the children from the default
60 s), search seed ``--seed``. The runs:

1. **undisturbed**, with checkpoints (the reference for wall time; what checkpointing costs shows against 2);
2. **undisturbed, no checkpoints**;
3. per mode, **chaos with checkpoints** and **chaos without**: a killer (in the main thread; the search runs in
   another) waits an exponential time of mean ``--kill-every`` seconds (seeded by ``--kill-seed``, the same waits
   in every run), then picks one of the children being trained (Tune's worker processes executing a trial, found
   in /proc with the trial their working directory names) and
   - mode ``worker``: SIGKILLs its worker process, on a local Ray;
   - mode ``node``: removes the simulated node that runs it (``ray.cluster_utils.Cluster``: a head with no CPUs and
     two worker nodes of one CPU, as ``tests/test_faults.py``; the node whose raylet started the worker), and adds
     a fresh one in its place.
   Ray retries a child whose worker or node died (``max_failures`` = 5 here).

Reported per run: children recorded, **lost** (indices without a final record: must be 0), **duplicated** (indices
with more than one: 0), controller updates (= trained children), kills, children that resumed from a checkpoint,
wall seconds and its ratio to run 1, and the **wasted training**: batches trained that no outcome used, as a share
of all batches trained. A kill wastes the batches its child trained since the checkpoint it resumes from (all of
them without checkpoints); the batches at the kill are estimated from the killed try's latest report (its batches,
plus the child's training rate times the seconds since), or, when the try had not reported yet, as the checkpoint it
started from plus the rate times the seconds since the try was first seen running (an upper bound: those seconds
include the try's setup).

Writes ``--out``/chaos.json (every run's figures, the kills, provenance: code hash, commit, settings) and prints a
table; the last line is the summary of the first chaos run with checkpoints::

    chaos: mode=worker children=… lost=0 duplicated=0 updates=… kills=… wasted=…% wall_vs_undisturbed=…x

Usage: ``python bench/bench_chaos.py [--mode worker|node|both] [--children 12] [--batches 900] [--epochs 3]
[--kill-every 60] [--checkpoint-every 5] [--out bench/chaos]``
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
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
            "budget": {"epochs": args.epochs, "max_batches": args.batches, "max_eval_tokens": 5000,
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


def running_children() -> dict[int, str]:
    """pid -> trial folder name of every child being trained on this machine: a Ray Tune worker process executing
    a trial (``ray::ImplicitFunc.train``), whose working directory Tune sets to that trial's (named as its folder
    under the run). Found from /proc, so a child is a victim from its first second, reports or not."""
    found = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if not (proc / "cmdline").read_bytes().startswith(b"ray::ImplicitFunc.train"):
                continue
            found[int(proc.name)] = os.readlink(proc / "cwd").rstrip("/").rsplit("/", 1)[-1]
        except OSError:
            continue  # it ended just now
    return {pid: name for pid, name in found.items() if name.startswith("child_")}


def parent_pid(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def batches_at(lines: list[dict[str, Any]], when: float, first_seen: float, rate: float) -> tuple[float, int]:
    """(estimated batches the killed try had reached at ``when``, batches of the checkpoint it would resume from)
    for a child whose reports so far are ``lines``, whose try was first seen running at ``first_seen`` and which
    trains ``rate`` batches a second. With a report of this try: its batches plus ``rate`` times the seconds since;
    without one: the checkpoint it started from plus ``rate`` times the seconds since it was first seen (an upper
    bound: the seconds include the try's setup)."""
    checkpointed = max((int(r.get("batches") or 0) for r in lines if r.get("checkpoint")), default=0)
    mine = [r for r in lines if float(r.get("timestamp") or 0) >= first_seen - 1 and r.get("batches")]
    if mine:
        latest = mine[-1]
        return float(latest["batches"]) + rate * max(0.0, when - float(latest["timestamp"])), checkpointed
    started_from = max((int(r.get("batches") or 0) for r in lines if r.get("checkpoint")
                        and float(r.get("timestamp") or 0) < first_seen), default=0)
    return started_from + rate * max(0.0, when - first_seen), checkpointed


class Killer:
    """Kills a running child at exponential intervals while the search runs (see the module docstring). Runs in
    the main thread (``Cluster.add_node`` installs signal handlers, which only the main thread may do), polling
    the running children every half second to know when each try started."""

    def __init__(self, run_dir: Path, mode: str, mean: float, seed: int, batches: int, cluster=None) -> None:
        self.run_dir, self.mode, self.mean, self.batches, self.cluster = run_dir, mode, mean, batches, cluster
        self.rng = random.Random(seed)
        self.kills: list[dict[str, Any]] = []
        self.first_seen: dict[tuple[int, str], float] = {}

    def _poll(self) -> dict[int, str]:
        running = running_children()
        now = time.time()
        for key in running.items():
            self.first_seen.setdefault(key, now)
        return running

    def run_while(self, alive: Callable[[], bool]) -> None:
        next_kill = time.time() + self.rng.expovariate(1.0 / self.mean)
        while alive():
            running = self._poll()
            if time.time() < next_kill:
                time.sleep(0.5)
                continue
            next_kill = time.time() + self.rng.expovariate(1.0 / self.mean)
            if running:
                self._kill(*self.rng.choice(sorted(running.items())))

    def _kill(self, pid: int, child: str) -> None:
        kill = {"at": time.time(), "child": child, "pid": pid, "first_seen": self.first_seen[(pid, child)],
                "lines": _last_lines(self.run_dir / child / "result.json")}
        try:
            if self.mode == "worker":
                os.kill(pid, signal.SIGKILL)
            else:
                raylet = parent_pid(pid)  # a worker process is started by its node's raylet
                node = next(n for n in self.cluster.worker_nodes
                            if n.all_processes["raylet"][0].process.pid == raylet)
                self.cluster.remove_node(node)
                self.cluster.add_node(num_cpus=1)
                kill["node"] = node.node_id
        except (ProcessLookupError, StopIteration, OSError):
            return  # it finished (or its node went) just now
        self.kills.append(kill)


def figures(run_dir: Path, children: int, batches: int, kills: list[dict[str, Any]], wall: float) -> dict[str, Any]:
    """The run's figures from its records and the kill log; ``batches`` is a child's whole budget (every epoch)."""
    rows = read_records(run_dir / "children.jsonl")
    finals: dict[int, set[str]] = {}
    for r in rows:
        finals.setdefault(int(r["index"]), set()).add(r["trial_id"])
    used = sum(int(r.get("fidelity") or 0) for r in rows if r.get("reused_from") is None)
    rates = {f"child_{int(r['index']):04d}_{r['trial_id']}": int(r.get("fidelity") or 0) / r["train_seconds"]
             for r in rows if r.get("train_seconds")}
    median_rate = statistics.median(rates.values()) if rates else 0.0
    for k in kills:
        lines = k.pop("lines")
        k["reports"] = [{key: r.get(key) for key in ("batches", "timestamp", "checkpoint")} for r in lines[-3:]]
        done, checkpointed = batches_at(lines, k["at"], k["first_seen"],
                                        rates.get(k["child"], median_rate))
        k["batches"], k["checkpoint"] = min(done, batches), checkpointed
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
    ended: dict[str, Any] = {}

    def search() -> None:
        try:
            ended["outcome"] = run_search(cfg, out=lambda line: None)
        except BaseException as e:  # noqa: BLE001 - re-raised in the main thread
            ended["error"] = e

    thread = threading.Thread(target=search, daemon=True)  # the killer needs the main thread (signal handlers)
    try:
        thread.start()
        if killer:
            killer.run_while(thread.is_alive)
        thread.join()
    finally:
        ray.shutdown()
        if cluster is not None:
            cluster.shutdown()
    if "error" in ended:
        raise ended["error"]
    return figures(cfg.run_dir, args.children, args.epochs * args.batches, killer.kills if killer else [],
                   ended["outcome"].seconds)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--mode", choices=["worker", "node", "both"], default="both")
    p.add_argument("--children", type=int, default=12)
    p.add_argument("--batches", type=int, default=900, help="training batches per epoch (the bundled corpus has "
                   "~900 windows of 32 x 35 characters: more is the whole split)")
    p.add_argument("--epochs", type=int, default=3, help="epochs per child")
    p.add_argument("--kill-every", type=float, default=60.0, help="mean seconds between kills")
    p.add_argument("--checkpoint-every", type=float, default=5.0, help="[budget] checkpoint_every of the runs")
    p.add_argument("--seed", type=int, default=0, help="search seed")
    p.add_argument("--kill-seed", type=int, default=0, help="seed of the killer's waits and choices")
    p.add_argument("--out", default="bench/chaos", help="folder for chaos.json")
    args = p.parse_args(argv)
    modes = ["worker", "node"] if args.mode == "both" else [args.mode]
    runs: dict[str, dict[str, Any]] = {}
    print(f"ray {ray.__version__}; {args.children} children of {args.epochs} x {args.batches} batches, 2 at a time; "
          f"checkpoints "
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
