"""The figures of a real ``nas search`` on a GPU through Ray (issue 21), from its run folder and what
``bench/gpu_check.sh`` sampled while it ran.

- children per hour: children recorded / (last child's end - first child's start) x 3600, against the children
  per hour of the same children run as plain processes at the same packing (``bench_gpu_packing.py``'s summary
  line, ``--packing``, at ``--per-gpu`` children per GPU);
- the GPU's utilisation and memory over the run (``nvidia-smi --query-gpu=utilization.gpu,memory.used
  --format=csv,noheader,nounits -l 1``, ``--smi``);
- the per-child overhead outside training: a child's span (start to end in its worker) minus its training
  seconds (evaluation, model set-up, kernel compilation, checkpoints), and the slot time per child outside its
  span (Ray and the driver between one child and the next in a slot: wall x slots / children - span);
- from every child's record: its kernel path (``kernels``), whether its CUDA graph was captured, the GPUs it saw.

The last line: ``gpu_search: children=… children_per_hour=… vs_plain_processes=…x gpu_util_mean=…%
graphs_captured=…/… triton=…/…``.

Usage: ``python bench/gpu_search_report.py RUN_DIR --smi smi.csv --packing packing_default.log --per-gpu 16``
"""

from __future__ import annotations

import argparse
import collections
import re
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from nas.runs.records import read_children  # noqa: E402


def packing_rate(log: Path, per_gpu: int) -> float | None:
    """Children per hour at ``per_gpu`` children per GPU from bench_gpu_packing's summary line, or None."""
    if not log.exists():
        return None
    for line in reversed(log.read_text(errors="replace").splitlines()):
        if line.startswith("packing_"):
            found = re.search(rf"\b{per_gpu}=(\d+)\b", line)
            return float(found.group(1)) if found else None
    return None


def smi_samples(path: Path) -> list[tuple[float, float]]:
    """(utilisation %, memory MiB) per sampled second; unparsable lines (a header, "[N/A]") are skipped."""
    samples = []
    if path.exists():
        for line in path.read_text(errors="replace").splitlines():
            parts = [p.strip().split()[0] if p.strip() else "" for p in line.split(",")]
            try:
                samples.append((float(parts[0]), float(parts[1])))
            except (ValueError, IndexError):
                continue
    return samples


def report(run_dir: Path, smi: Path, packing: Path, per_gpu: int, slots: int) -> list[str]:
    children = read_children(run_dir)
    if not children:
        return [f"{run_dir}: no child was recorded", "gpu_search: children=0"]
    trained = [c for c in children if c.started_at is not None and c.finished_at is not None]
    wall = max(c.finished_at for c in trained) - min(c.started_at for c in trained) if trained else float("nan")
    per_hour = len(children) / wall * 3600 if wall > 0 else float("nan")
    plain = packing_rate(packing, per_gpu)
    statuses = collections.Counter(c.outcome.status for c in children)
    spans = [c.finished_at - c.started_at for c in trained]
    inside = [s - (c.outcome.train_seconds or 0.0) for s, c in zip(spans, trained)]
    between = wall * slots / len(trained) - statistics.mean(spans) if trained else float("nan")
    kernels = collections.Counter(c.outcome.kernels or "?" for c in children)
    graphs = collections.Counter((c.outcome.cuda_graphs or "?").split(":")[0] for c in children)
    gpus = collections.Counter(str(c.gpus) for c in children)
    samples = smi_samples(smi)
    util = statistics.mean(u for u, _ in samples) if samples else float("nan")
    lines = [
        f"{run_dir}: {len(children)} children ({dict(statuses)}) in {wall:.0f} s of child wall time, "
        f"{per_hour:,.0f} children/hour; plain processes at {per_gpu} per GPU: "
        + (f"{plain:,.0f}/hour ({per_hour / plain:.2f}x)" if plain else "no packing figure"),
        f"per child: span {statistics.mean(spans):.1f} s, of which outside training {statistics.mean(inside):.1f} s "
        f"(median {statistics.median(inside):.1f}); slot time outside a child {between:.1f} s ({slots} slots)"
        if trained else "per child: no timings recorded",
        f"kernels {dict(kernels)}; CUDA graphs {dict(graphs)}; GPUs seen {dict(gpus)}",
        f"GPU over {len(samples)} s sampled: utilisation mean {util:.0f}% (max "
        f"{max((u for u, _ in samples), default=float('nan')):.0f}%), memory max "
        f"{max((m for _, m in samples), default=float('nan')):,.0f} MiB",
        f"gpu_search: children={len(children)} children_per_hour={per_hour:.0f} vs_plain_processes="
        + (f"{per_hour / plain:.2f}x" if plain else "n/a")
        + f" gpu_util_mean={util:.0f}% graphs_captured={graphs['captured']}/{len(children)} "
        f"triton={kernels['triton']}/{len(children)} failed={statuses['failed']}",
    ]
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir", type=Path)
    p.add_argument("--smi", type=Path, default=Path("/nonexistent"), help="nvidia-smi's CSV sampled during the run")
    p.add_argument("--packing", type=Path, default=Path("/nonexistent"), help="bench_gpu_packing.py's log")
    p.add_argument("--per-gpu", type=int, default=16, help="children per GPU in the search and the packing figure")
    p.add_argument("--slots", type=int, default=16, help="children training at once in the search")
    args = p.parse_args(argv)
    print("\n".join(report(args.run_dir, args.smi, args.packing, args.per_gpu, args.slots)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
