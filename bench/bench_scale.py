"""A search of thousands of tiny children: does the cost per child grow with the search?

One real ``run_search`` (default algorithm) of ``--children`` (2,000) tiny children (base-8 cells, 1 layer of 16
units, ``--batches`` (1) training batch, 1,000 validation tokens, torch's element-wise ops rather than a compiled
kernel per cell), 2 at a time, on a local Ray with 2 CPUs and the
bundled corpus. From the children's records (``started_at``, ``finished_at``), per block of 100 children in index
order: the **overhead per child** = (the block's wall span x 2 children at a time - the time its children spent
inside the trainable) / 100, i.e. everything outside training a child: Tune's scheduling and bookkeeping, the
searcher's suggest and update, starting the trainable. Also: the driver's resident memory (sampled every second,
the peak reported), the time ``nas results`` takes on the finished folder (a subprocess, as a user runs it) and the
size of the run folder.

The last line (target: ratio <= 1.5, driver memory within a few hundred MB)::

    scale: children=2000 overhead_first100=…s overhead_last100=…s ratio=… driver_mb=… results_s=…

With ``--trace-memory``, the driver's Python allocations are traced (``tracemalloc``; the search runs several times
slower) and the growth between child 200 and the end is printed by owner (ray, ours, other) with the largest
allocation sites.

Usage: ``python bench/bench_scale.py [--children 2000] [--out bench/scale] [--trace-memory]`` (keeps the run folder
under --out).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import tracemalloc
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")

import provenance  # noqa: E402
import ray  # noqa: E402

from nas.config import config_from_dict  # noqa: E402
from nas.runs.records import read_records  # noqa: E402
from nas.search import ray_session  # noqa: E402
from nas.search.driver import run_search  # noqa: E402


def rss_mb() -> float:
    """This process's resident memory in MB (from /proc; 0 where there is none)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class MemorySampler(threading.Thread):
    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.stopped, self.samples = threading.Event(), []

    def run(self) -> None:
        while not self.stopped.wait(1.0):
            self.samples.append((time.time(), rss_mb()))


class MemoryTrace:
    """``tracemalloc`` snapshots of the driver after child ``first`` and at the end; what grew in between, by owner."""

    def __init__(self, first: int = 200) -> None:
        self.first, self.count, self.snapshots = first, 0, []
        tracemalloc.start(8)

    def child_line(self, line: str) -> None:  # the search's progress callback: one line per child
        self.count += 1
        if self.count == self.first:
            self.snapshots.append((self.count, tracemalloc.take_snapshot()))

    def report(self) -> list[str]:
        if not self.snapshots:
            return [f"(memory trace: the search ended before child {self.first})"]
        (first, before), after = self.snapshots[0], tracemalloc.take_snapshot()
        owners: Counter[str] = Counter()
        for stat in after.compare_to(before, "filename"):
            name = stat.traceback[0].filename
            owners["ray" if "/ray/" in name else "ours" if any(f"/{d}/" in name for d in
                   ("nas", "workers", "search_spaces")) else "other"] += stat.size_diff
        n = self.count - first
        lines = [f"Python allocations grown between child {first} and child {self.count} ({n} children):"]
        lines += [f"  {owner}: {size / 1e6:.1f} MB ({size / max(n, 1) / 1e3:.1f} KB per child)"
                  for owner, size in owners.most_common()]
        for stat in after.compare_to(before, "traceback")[:8]:
            site = next((f for f in reversed(stat.traceback) if "/ray/" in f.filename or "/nas/" in f.filename),
                        stat.traceback[0])
            lines.append(f"  {stat.size_diff / 1e6:6.1f} MB  {site.filename.split('site-packages/')[-1]}:{site.lineno}")
        tracemalloc.stop()
        return lines


def overhead_per_block(rows: list[dict], block: int = 100, concurrency: int = 2) -> list[tuple[int, float, float]]:
    """(first index, overhead per child in s, inside-the-trainable per child in s) for each full block of
    ``block`` children in index order."""
    rows = sorted((r for r in rows if r.get("started_at") and r.get("finished_at")), key=lambda r: r["index"])
    out = []
    for k in range(0, len(rows) - block + 1, block):
        part = rows[k : k + block]
        span = max(r["finished_at"] for r in part) - min(r["started_at"] for r in part)
        inside = sum(r["finished_at"] - r["started_at"] for r in part)
        out.append((part[0]["index"], (span * concurrency - inside) / block, inside / block))
    return out


def main(argv: list[str] | None = None) -> dict[str, float]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--children", type=int, default=2000)
    p.add_argument("--batches", type=int, default=1, help="training batches per child")
    p.add_argument("--out", default="bench/scale", help="folder for the run and scale.json")
    p.add_argument("--trace-memory", action="store_true", help="trace the driver's Python allocations (slower)")
    args = p.parse_args(argv)
    out = Path(args.out)
    if (out / "scale").exists():
        shutil.rmtree(out / "scale")
    d = {"name": "scale", "trials": args.children, "concurrency": 2, "seed": 0, "results_dir": str(out),
         "space": {"base": 8, "layers": {"hidden_size": [16], "num_layers": [1], "dropout": [0.0]}},
         "model": {"num_layers": 1, "hidden_size": 16},
         # torch's element-wise ops, not the generated C kernels: every child here is a new cell, and compiling its
         # kernel (~1 s inside the trainable, measured: 1.0 s of 1.1 s per child) would only slow the run down.
         "train": {"cell_kernels": "torch"},
         "budget": {"max_batches": args.batches, "max_eval_tokens": 1000}}
    cfg = config_from_dict(d)
    ray_session.start_local(num_cpus=2)
    sampler = MemorySampler()
    start_mb = rss_mb()
    sampler.start()
    trace = MemoryTrace() if args.trace_memory else None
    started = time.time()
    try:
        outcome = run_search(cfg, out=trace.child_line if trace else lambda line: None)
    finally:
        sampler.stopped.set()
        ray.shutdown()
    wall = time.time() - started
    if trace:
        print("\n".join(trace.report()))
    rows = read_records(cfg.run_dir / "children.jsonl")
    blocks = overhead_per_block(rows)
    began = time.time()
    nas = shutil.which("nas", path=os.path.dirname(sys.executable)) or "nas"
    subprocess.run([nas, "results", str(cfg.run_dir)], capture_output=True, check=True)
    results_s = time.time() - began
    size_mb = sum(f.stat().st_size for f in cfg.run_dir.rglob("*") if f.is_file()) / 1e6
    peak = max((mb for _, mb in sampler.samples), default=rss_mb())
    print(f"ray {ray.__version__}; {len(rows)} children in {wall:.0f} s ({outcome.seconds:.0f} s in Tune); driver "
          f"memory {start_mb:.0f} MB at the start, {peak:.0f} MB at its peak; run folder {size_mb:.0f} MB; "
          f"`nas results` {results_s:.1f} s")
    print("\n| children | overhead per child (s) | inside the trainable per child (s) |")
    print("|---|---:|---:|")
    for first, over, inside in blocks:
        print(f"| {first + 1}-{first + 100} | {over:.3f} | {inside:.3f} |")
    first100, last100 = blocks[0][1], blocks[-1][1]
    summary = {"children": len(rows), "overhead_first100": first100, "overhead_last100": last100,
               "ratio": last100 / first100, "driver_mb": peak, "driver_mb_start": start_mb, "results_s": results_s,
               "folder_mb": size_mb, "wall": wall}
    record = provenance.provenance(vars(args), extra=("bench/bench_scale.py",))
    (out / "scale.json").write_text(json.dumps({"provenance": record, "summary": summary, "blocks": blocks,
                                                "memory": sampler.samples}, indent=1) + "\n")
    print(f"\nscale: children={len(rows)} overhead_first100={first100:.3f}s overhead_last100={last100:.3f}s "
          f"ratio={last100 / first100:.2f} driver_mb={peak:.0f} results_s={results_s:.1f}")
    return summary


if __name__ == "__main__":
    main()
