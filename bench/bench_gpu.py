"""Training throughput of base-8 cells against ``nn.LSTM`` (cuDNN on a GPU) per implementation path and size.

For every size (hidden 200 and 650, batch 20 and 64, a word vocabulary of 10,000 and a character one of 65;
E = H, BPTT 35, 2 layers, dropout 0) it trains, through the real training step of :mod:`workers.train`
(``TrainStep``, and ``GraphedTrainStep`` for the CUDA-graph rows):

- ``nn.LSTM``: the reference (cuDNN on a GPU), eager; and replayed from a CUDA graph;
- ``cell, torch ops``: the fused path with torch element-wise operations (:mod:`workers.fused_cell`), eager;
- ``cell, Triton``: the generated Triton kernels (:mod:`workers.triton_cell`), eager;
- ``cell, Triton + graph``: the same replayed from a CUDA graph, the search's default on a GPU, for
  ``--cells`` random base-8 cells (``random_cell(8, seed)``, seeds 0..N-1);
- ``… bf16``: nn.LSTM (eager and graphed) and the Triton + graph cell under bfloat16 autocast.

Each variant warms up (``--warmup`` steps, which covers Triton's compilation and the graph capture), then
``--repeats`` rounds of ``--steps`` steps per variant, round-robin over the variants. A round's tokens/s is its
tokens over the wall time of its steps, the device synchronised only at the round's ends, as training does.
Reported: the median over rounds, and "vs LSTM" = the median over rounds of the ratio to eager ``nn.LSTM`` at
the same precision in the same round, and "vs nn.LSTM + graph" the same against ``nn.LSTM`` replayed from a CUDA
graph (the strict comparison: both sides without launch overhead). ``cell_vs_cudnn`` is the median over the
random cells of the Triton + graph path against nn.LSTM + graph. On a CPU the Triton and graph rows are skipped
(they need CUDA; the interpreter is for tests) and the ratios are the torch-ops path's against eager nn.LSTM.

Setup: seconds from a new cell (never compiled in this process) to its first training step done (Triton's
compilation of the forward, backward kernels included), and to its first replayed graph step.

The last line is the summary, e.g.::

    cell_vs_cudnn=0.78x (h200-b20-word, vs_lstm_graph) min=0.54x max=0.78x cell_vs_cudnn_eager=3.47x bf16=…

Usage: ``python bench/bench_gpu.py [--sizes h200-b20-word,...] [--steps S] [--repeats R] [--out DIR]``
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from search_spaces import random_cell
from search_spaces.cell import Cell
from workers.child_settings import ModelConfig, TrainConfig
from workers.cuda_graph import GraphedTrainStep
from workers.model import ChildLM, build_child
from workers.train import TrainStep

VOCABS = {"word": 10000, "char": 65}
SIZES = [f"h{h}-b{b}-{v}" for h in (200, 650) for b in (20, 64) for v in VOCABS]
KEY_SIZE = "h200-b20-word"
SETUP_SEED_OFFSET = 2_000_000


@dataclasses.dataclass(frozen=True)
class Size:
    hidden: int
    batch: int
    vocab_name: str
    bptt: int = 35
    layers: int = 2

    @classmethod
    def parse(cls, text: str) -> Size:
        try:
            h, b, v = text.split("-")
            size = cls(int(h.removeprefix("h")), int(b.removeprefix("b")), v)
        except ValueError:
            raise SystemExit(f"--sizes: {text!r} is not like h200-b20-word") from None
        if v not in VOCABS:
            raise SystemExit(f"--sizes: {text!r}: the vocabulary is one of {', '.join(VOCABS)}")
        return size

    @property
    def vocab(self) -> int:
        return VOCABS[self.vocab_name]

    @property
    def name(self) -> str:
        return f"h{self.hidden}-b{self.batch}-{self.vocab_name}"

    @property
    def tokens_per_step(self) -> int:
        return self.bptt * self.batch


@dataclasses.dataclass
class Variant:
    name: str
    precision: str
    make: Callable[[], TrainStep | GraphedTrainStep]
    step: TrainStep | GraphedTrainStep | None = None
    state: tuple | None = None
    tps: list[float] = dataclasses.field(default_factory=list)

    def run(self, batches: list[torch.Tensor]) -> None:
        for tokens in batches:
            loss, self.state = self.step(tokens[:-1], tokens[1:], self.state)

    @property
    def graph_status(self) -> str:
        return self.step.status if isinstance(self.step, GraphedTrainStep) else "-"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_step(model: ChildLM, device: torch.device, precision: str, graphs: bool, bptt: int
               ) -> TrainStep | GraphedTrainStep:
    cfg = TrainConfig(lr=1.0, precision=precision, bptt=bptt, cuda_graphs="auto" if graphs else "off")
    step = TrainStep(model.to(device).train(), cfg, device, capturable=graphs)
    return GraphedTrainStep(step) if graphs else step


def lstm(size: Size) -> ChildLM:
    return ChildLM(size.vocab, nn.LSTM(size.hidden, size.hidden, size.layers), size.hidden, size.hidden, dropout=0.0)


def cell_model(cell: Cell, size: Size, kernels: str) -> ChildLM:
    cfg = ModelConfig(num_layers=size.layers, hidden_size=size.hidden, dropout=0.0)
    return build_child(cell, size.vocab, cfg, kernels=kernels)


def variants(size: Size, device: torch.device, cells: int) -> list[Variant]:
    cuda = device.type == "cuda"
    t = size.bptt
    out = [Variant("nn.LSTM", "float32", lambda: train_step(lstm(size), device, "float32", False, t))]
    if cuda:
        out.append(Variant("nn.LSTM + graph", "float32", lambda: train_step(lstm(size), device, "float32", True, t)))
    first = random_cell(8, 0)
    out.append(Variant("cell, torch ops", "float32",
                       lambda: train_step(cell_model(first, size, "torch"), device, "float32", False, t)))
    if cuda:
        out.append(Variant("cell, Triton", "float32",
                           lambda: train_step(cell_model(first, size, "triton"), device, "float32", False, t)))
        for seed in range(cells):
            out.append(Variant(f"random_cell(8, {seed}), Triton + graph", "float32",
                               lambda c=random_cell(8, seed): train_step(  # noqa: B008 (bound now, on purpose)cell_model(c, size, "triton"), device,
                                                                         "float32", True, t)))
        out.append(Variant("nn.LSTM bf16", "bfloat16", lambda: train_step(lstm(size), device, "bfloat16", False, t)))
        out.append(Variant("nn.LSTM + graph, bf16", "bfloat16",
                           lambda: train_step(lstm(size), device, "bfloat16", True, t)))
        out.append(Variant("cell, Triton + graph, bf16", "bfloat16",
                           lambda: train_step(cell_model(first, size, "triton"), device, "bfloat16", True, t)))
    return out


def measure(size: Size, device: torch.device, args: argparse.Namespace) -> list[dict]:
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    data = torch.randint(size.vocab, (args.warmup + args.steps, size.bptt + 1, size.batch), generator=gen)
    batches = [b.to(device) for b in data.unbind(0)]
    vs = variants(size, device, args.cells)
    for v in vs:
        v.step = v.make()
        v.run(batches[: args.warmup])
    sync(device)
    for _ in range(args.repeats):
        for v in vs:
            sync(device)
            start = time.perf_counter()
            v.run(batches[args.warmup:])
            sync(device)
            v.tps.append(args.steps * size.tokens_per_step / (time.perf_counter() - start))
    by_name = {v.name: v.tps for v in vs}
    eager_ref = {"float32": by_name["nn.LSTM"], "bfloat16": by_name.get("nn.LSTM bf16")}
    graph_ref = {"float32": by_name.get("nn.LSTM + graph"), "bfloat16": by_name.get("nn.LSTM + graph, bf16")}

    def ratio(tps: list[float], ref: list[float] | None) -> float:
        return statistics.median(a / b for a, b in zip(tps, ref)) if ref else float("nan")

    rows = []
    for v in vs:
        med = statistics.median(v.tps)
        rows.append({"size": size.name, "variant": v.name, "precision": v.precision, "tokens_per_s": med,
                     "ms_per_step": 1000 * size.tokens_per_step / med, "vs_lstm": ratio(v.tps, eager_ref[v.precision]),
                     "vs_lstm_graph": ratio(v.tps, graph_ref[v.precision]), "graph": v.graph_status})
    del vs
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return rows


def time_setup(device: torch.device, size: Size, seed: int) -> tuple[float, float]:
    """Seconds from a new cell to its first eager step done, and to its first replayed graph step done."""
    gen = torch.Generator().manual_seed(seed)
    batches = [b.to(device) for b in torch.randint(size.vocab, (5, size.bptt + 1, size.batch), generator=gen)]
    cell = random_cell(8, SETUP_SEED_OFFSET + seed)
    sync(device)
    start = time.perf_counter()
    step = train_step(cell_model(cell, size, "auto"), device, "float32", device.type == "cuda", size.bptt)
    state, done = None, []
    for tokens in batches[:4]:  # 3 warm-up windows, then capture and replay (on a GPU)
        loss, state = step(tokens[:-1], tokens[1:], state)
        sync(device)
        done.append(time.perf_counter() - start)
    return done[0], done[-1]


def cell_ratio(rows: list[dict], size_name: str, against: str, bf16: bool = False) -> float:
    """Median over the cells of the Triton + graph path's ratio (``against``: "vs_lstm" or "vs_lstm_graph"), under
    bfloat16 with ``bf16``; on a CPU (no such rows) the torch-ops path's ratio."""
    here = [r for r in rows if r["size"] == size_name]
    if bf16:
        picked = [r[against] for r in here if r["variant"] == "cell, Triton + graph, bf16"]
    else:
        picked = [r[against] for r in here if r["variant"].endswith("Triton + graph")]
        picked = picked or [r[against] for r in here if r["variant"] == "cell, torch ops"]
    return statistics.median(picked) if picked else float("nan")


def report(rows: list[dict], setup: list[tuple[float, float]], cuda: bool) -> dict[str, float]:
    """The summary table and line of measured ``rows`` (also for a saved bench_gpu.json: ``--report``)."""
    sizes = list(dict.fromkeys(r["size"] for r in rows))
    first, graphed = statistics.median(s[0] for s in setup), statistics.median(s[1] for s in setup)
    print(f"\nsetup of a new cell ({sizes[0]}, median of {len(setup)}): first step {first:.2f} s, first graph "
          f"replay {graphed:.2f} s (runs: {', '.join(f'{a:.2f}/{b:.2f}' for a, b in setup)})")
    print("\nratios of tokens/s (the median of the random cells for Triton + graph); LSTM = nn.LSTM as usually run "
          "(eager), LSTM + graph = nn.LSTM replayed from a CUDA graph like the cell")
    print("| size | torch ops / LSTM | Triton / LSTM | Triton + graph / LSTM | Triton + graph / LSTM + graph | "
          "bf16: Triton + graph / LSTM + graph |")
    print("|---|---:|---:|---:|---:|---:|")
    for size in sizes:
        def one(variant: str, size: str = size) -> str:
            got = [r["vs_lstm"] for r in rows if r["size"] == size and r["variant"] == variant]
            return f"{got[0]:.2f}x" if got else "n/a"
        print(f"| {size} | {one('cell, torch ops')} | {one('cell, Triton')} | "
              f"{cell_ratio(rows, size, 'vs_lstm'):.2f}x | {cell_ratio(rows, size, 'vs_lstm_graph'):.2f}x | "
              f"{cell_ratio(rows, size, 'vs_lstm_graph', bf16=True):.2f}x |")
    strict = "vs_lstm_graph" if cuda else "vs_lstm"
    per_size = {s: cell_ratio(rows, s, strict) for s in sizes}
    bf16 = {s: cell_ratio(rows, s, strict, bf16=True) for s in sizes}
    key = KEY_SIZE if KEY_SIZE in per_size else sizes[0]
    summary = {"cell_vs_cudnn": per_size[key], "min": min(per_size.values()), "max": max(per_size.values()),
               "cell_vs_cudnn_eager": cell_ratio(rows, key, "vs_lstm"), "bf16": bf16[key],
               "bf16_min": min(bf16.values()), "setup": first, "graph_setup": graphed}
    print()
    print(f"cell_vs_cudnn={summary['cell_vs_cudnn']:.2f}x ({key}, {strict}) min={summary['min']:.2f}x "
          f"max={summary['max']:.2f}x cell_vs_cudnn_eager={summary['cell_vs_cudnn_eager']:.2f}x "
          f"bf16={summary['bf16']:.2f}x bf16_min={summary['bf16_min']:.2f}x setup={first:.2f}s "
          f"graph_setup={graphed:.2f}s " + " ".join(f"{k}={v:.2f}x" for k, v in per_size.items()))
    return summary


def main(argv: list[str] | None = None) -> dict[str, float]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default=",".join(SIZES), help=f"comma-separated, from {', '.join(SIZES)}")
    p.add_argument("--cells", type=int, default=3, help="random base-8 cells for the Triton + graph rows")
    p.add_argument("--steps", type=int, default=20, help="timed steps per variant per round")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps per variant (>= 4 captures the graph)")
    p.add_argument("--repeats", type=int, default=3, help="rounds over all variants")
    p.add_argument("--setup-runs", type=int, default=3, help="new cells timed for the setup figure")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--out", default=None, help="folder for bench_gpu.csv and bench_gpu.json")
    p.add_argument("--report", default=None, metavar="JSON",
                   help="print the summary of a saved bench_gpu.json instead of measuring")
    args = p.parse_args(argv)
    if args.report:
        saved = json.loads(Path(args.report).read_text())
        print(f"{args.report}: measured on {saved['device']} with torch {saved['torch']}")
        return report(saved["rows"], saved["setup_runs"], saved["device"] != "cpu")
    sizes = [Size.parse(s) for s in args.sizes.split(",")]
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"torch {torch.__version__}, python {sys.version.split()[0]}, device {device} ({name}), "
          f"threads {torch.get_num_threads()}; {args.warmup} warm-up steps, {args.repeats} rounds x {args.steps} "
          f"steps per variant; BPTT 35, 2 layers, E = H, SGD, clip 0.25, dropout 0", flush=True)

    rows: list[dict] = []
    for size in sizes:
        started = time.perf_counter()
        got = measure(size, device, args)
        rows += got
        print(f"\n{size.name} (vocab {size.vocab:,}, hidden {size.hidden}, batch {size.batch}) in "
              f"{time.perf_counter() - started:.0f} s")
        print("| variant | tokens/s | ms/step | vs nn.LSTM | vs nn.LSTM + graph | CUDA graph |")
        print("|---|---:|---:|---:|---:|---|")
        for r in got:
            print(f"| {r['variant']} | {r['tokens_per_s']:,.0f} | {r['ms_per_step']:.2f} | {r['vs_lstm']:.2f}x | "
                  f"{r['vs_lstm_graph']:.2f}x | {r['graph']} |", flush=True)
    setup = [time_setup(device, sizes[0], seed) for seed in range(args.setup_runs)]
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        with open(out / "bench_gpu.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        (out / "bench_gpu.json").write_text(json.dumps({"device": name, "torch": torch.__version__, "rows": rows,
                                                        "setup_runs": setup}, indent=1))
    return report(rows, setup, device.type == "cuda")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
