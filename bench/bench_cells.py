"""Training throughput of searched cells vs ``nn.LSTM``, side by side in one process.

Prints training tokens/s for (a) ``nn.LSTM`` inside :class:`workers.model.ChildLM` (the reference), (b) the
"matmul floor": a base-8 cell's matrix products with one tanh per step (:class:`MatmulFloorRNN`, run by the torch
fused loop), what a base-8 cell costs with almost no element-wise work, (c) the ``nascell`` through
:class:`workers.cell_rnn.CellRNN` on the default fused path and (d) on the reference path, (e) the other known
cells (``lstm`` and ``tanh_rnn`` as trees of the space), (f) N random base-8 cells (``random_cell(8, seed)``, seeds
0..N-1), all at identical sizes, and the "setup" time from a new architecture to its first training step. Where
the default path is not torch operations (on a CPU with a C compiler: the generated C kernels of
:mod:`workers.native_cell`), the nascell and the random cells are also timed with torch operations
("…, torch ops"; ``--no-torch-ops`` skips them), and setup is timed cold (the cell compiled into an empty kernel
cache) and cached (the same cell loaded from the cache by a process that has not used it).

Presets: ``word`` (PTB-like: vocab 10k, E=H=200, batch 20, 2 layers), ``char`` (vocab 65, E=H=256, batch 32, 2
layers), ``search`` (the default ``nas search`` child: E=H=128, 2 layers) and ``bench`` (the search-quality
benchmark's child: E=H=64, 1 layer), all with BPTT 35.

On a CPU, subnormal floats are flushed to zero (``torch.set_flush_denormal(True)``), as every child and
``nas train`` do (:func:`workers.train.train_child`): the nascell drifts into subnormals, which CPUs process several
times slower (2026-12-02: nascell 0.17x nn.LSTM without, 0.66x with). ``--keep-denormals`` measures without.

A training step is the word_language_model one: forward on random token ids, cross-entropy, backward,
``clip_grad_norm_(0.25)``, SGD step; the hidden state is detached and carried between steps. Dropout is 0.

Variants are measured interleaved: after ``--warmup`` untimed steps each, ``--repeats`` rounds of ``--steps`` timed
steps each, every step round-robin over the variants (step i of every variant runs before step i+1 of any), so a
burst of load from other processes lands on all variants alike. A round's tokens/s for a variant is its timed
tokens over the sum of its timed step times. Reported per variant: the median tokens/s over rounds, ms/step
derived from that median, and "vs nn.LSTM" = the median over rounds of (variant tokens/s / nn.LSTM tokens/s in
the same round). The measurement says nothing reliable when other processes keep both cores busy: with 2 threads
each, oversubscribed steps can get 10-50x slower, and not by the same factor for every variant.

The last line is a one-line summary, e.g. (figures for the format only)::

    cell_vs_lstm=0.55x nascell_vs_lstm=0.53x floor_vs_lstm=0.70x cell_vs_floor=0.79 torch_ops_vs_floor=0.60
    known_vs_random=0.96x setup=0.12s setup_cached=0.02s (native path, preset word)

(median ratio over the random cells, the nascell ratio, the matmul floor's ratio, the random cells' median over the
floor on the default path and with torch operations (nan when not timed), the slowest known cell's ratio over the
random cells' median, median setup seconds of a new random cell, cold and cached). ``bench/bench_speed.py`` runs
this for the presets plus ``bench/bench_search.py``.

Usage: ``python bench/bench_cells.py [--preset word|char|search|bench] [--threads K] [--steps S] [--repeats R] ...``
"""

from __future__ import annotations

import argparse
import functools
import math
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from search_spaces import KNOWN_CELLS, known_cell, random_cell
from search_spaces.cell import Cell
from workers import native_cell
from workers.cell_rnn import CellRNN, kernel_path
from workers.fused_cell import CellSequence
from workers.model import ChildLM

State = tuple[torch.Tensor, torch.Tensor]

PRESETS: dict[str, dict[str, int]] = {
    # PTB-like word LM, the setup of docs/environment.md section 3.
    "word": dict(vocab=10000, emb=200, hidden=200, batch=20, bptt=35, layers=2),
    # Character LM (tiny-shakespeare-sized vocabulary): the softmax is cheap, so the RNN dominates.
    "char": dict(vocab=65, emb=256, hidden=256, batch=32, bptt=35, layers=2),
    # The default `nas search` child (nas/config.py: 2 layers, hidden 128, batch 32, Tiny Shakespeare's vocabulary).
    "search": dict(vocab=65, emb=128, hidden=128, batch=32, bptt=35, layers=2),
    # The search-quality benchmark's child (bench/bench_search_quality.py: 1 layer, hidden 64, batch 32).
    "bench": dict(vocab=65, emb=64, hidden=64, batch=32, bptt=35, layers=1),
}

SETUP_SEED_OFFSET = 1_000_000
"""Seeds for the setup measurement start here, so those cells are new to this process (not the timed ones)."""


@dataclass(frozen=True)
class Sizes:
    """Model and batch sizes shared by every variant."""

    vocab: int
    """Vocabulary size (decoder width)."""
    emb: int
    """Embedding size E."""
    hidden: int
    """Hidden size H per layer."""
    batch: int
    """Sequences per batch B."""
    bptt: int
    """Time steps per training step T."""
    layers: int
    """Stacked recurrent layers."""

    @property
    def tokens_per_step(self) -> int:
        return self.batch * self.bptt


def sync(device: torch.device) -> None:
    """Wait for queued device work before a clock is read (no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def build_lstm(sizes: Sizes) -> ChildLM:
    rnn = nn.LSTM(sizes.emb, sizes.hidden, sizes.layers, dropout=0.0)
    return ChildLM(sizes.vocab, rnn, sizes.emb, sizes.hidden, dropout=0.0)


def build_cell(cell: Cell, sizes: Sizes, fused: bool = True, kernels: str = "auto") -> ChildLM:
    rnn = CellRNN(cell, sizes.emb, sizes.hidden, sizes.layers, dropout=0.0, fused=fused, kernels=kernels)
    return ChildLM(sizes.vocab, rnn, sizes.emb, sizes.hidden, dropout=0.0)


def _floor_forward(xp: torch.Tensor, hp: torch.Tensor, c_prev: torch.Tensor):
    h = torch.tanh(xp[:, : c_prev.shape[1]] + hp[:, : c_prev.shape[1]])
    return h, c_prev, (h,)


def _floor_backward(gh, gc, xp, hp, c_prev, saved):
    g = torch.zeros_like(xp)
    g[:, : c_prev.shape[1]] = torch.ops.aten.tanh_backward(gh, saved[0])
    return g, g, gc


class MatmulFloorRNN(nn.Module):
    """The matrix products of a base-``n`` cell RNN and almost nothing else, run by the same fused loop
    (:class:`workers.fused_cell.CellSequence`): the input projection for all steps, then per step the full
    recurrent projection and one tanh on its first chunk (and their gradients). Its speed bounds what any
    base-``n`` cell can reach with these matrix products (the "floor" variant)."""

    def __init__(self, base: int, input_size: int, hidden_size: int, num_layers: int) -> None:
        super().__init__()
        sizes = [input_size] + [hidden_size] * (num_layers - 1)
        self.input_projs = nn.ModuleList(nn.Linear(s, base * hidden_size) for s in sizes)
        self.hidden_projs = nn.ModuleList(nn.Linear(hidden_size, base * hidden_size, bias=False) for _ in sizes)

    def forward(self, x: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        hs, cs, out = [], [], x
        size = self.hidden_projs[0].in_features
        for i, (inp, hid) in enumerate(zip(self.input_projs, self.hidden_projs)):
            h0, c0 = (x.new_zeros(x.shape[1], size),) * 2 if state is None else (state[0][i], state[1][i])
            out, h, c = CellSequence.apply(inp(out), hid.weight, h0, c0, (_floor_forward, _floor_backward))
            hs.append(h)
            cs.append(c)
        return out, (torch.stack(hs), torch.stack(cs))


def build_floor(sizes: Sizes, base: int = 8) -> ChildLM:
    rnn = MatmulFloorRNN(base, sizes.emb, sizes.hidden, sizes.layers)
    return ChildLM(sizes.vocab, rnn, sizes.emb, sizes.hidden, dropout=0.0)


class Trainer:
    """A model, its SGD optimiser and its carried hidden state; :meth:`step` is one training step."""

    def __init__(self, model: ChildLM, device: torch.device, lr: float) -> None:
        self.model = model.to(device).train()
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.opt = torch.optim.SGD(self.params, lr=lr)
        self.state: State | None = None
        self.last_loss = float("nan")

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        """One step on ``tokens`` (T+1, B): inputs are rows 0..T-1, targets rows 1..T."""
        inputs, targets = tokens[:-1], tokens[1:]  # (T, B) each
        if self.state is not None:
            self.state = (self.state[0].detach(), self.state[1].detach())
        self.opt.zero_grad(set_to_none=True)
        logits, self.state = self.model(inputs, self.state)  # (T, B, V)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
        loss.backward()
        nn.utils.clip_grad_norm_(self.params, 0.25)
        self.opt.step()
        return loss.detach()


def make_batches(sizes: Sizes, n: int, seed: int, device: torch.device) -> list[torch.Tensor]:
    """``n`` batches of random token ids, each (T+1, B), from a seeded generator."""
    gen = torch.Generator().manual_seed(seed)
    data = torch.randint(sizes.vocab, (n, sizes.bptt + 1, sizes.batch), generator=gen)
    return [b.to(device) for b in data.unbind(0)]


def timed_step(trainer: Trainer, tokens: torch.Tensor, device: torch.device) -> float:
    """Seconds of one training step (device work included)."""
    sync(device)
    start = time.perf_counter()
    loss = trainer.step(tokens)
    sync(device)
    elapsed = time.perf_counter() - start
    trainer.last_loss = float(loss)
    return elapsed


def warm_up(trainers: dict[str, Trainer], batches: list[torch.Tensor]) -> None:
    """Untimed steps (first-call allocations, lazy initialisation), round-robin over the variants."""
    for tokens in batches:
        for tr in trainers.values():
            tr.step(tokens)


def run_round(trainers: dict[str, Trainer], batches: list[torch.Tensor], device: torch.device) -> dict[str, float]:
    """One round of timed steps, each step round-robin over the variants (step i of every variant runs before
    step i+1 of any), so a burst of load from other processes lands on all variants alike. Returns each variant's
    summed seconds."""
    seconds = dict.fromkeys(trainers, 0.0)
    for tokens in batches:
        for name, tr in trainers.items():
            seconds[name] += timed_step(tr, tokens, device)
    return seconds


def time_setup(make_model: Callable[[], ChildLM], tokens: torch.Tensor, device: torch.device, lr: float) -> float:
    """Seconds from calling ``make_model`` (a new architecture) to its first training step done."""
    sync(device)
    start = time.perf_counter()
    trainer = Trainer(make_model(), device, lr)
    trainer.step(tokens)
    sync(device)
    return time.perf_counter() - start


def load_average() -> str:
    """The 1/5/15-minute load averages (other processes on the same cores make the absolute numbers noisy)."""
    try:
        return "/".join(f"{x:.2f}" for x in os.getloadavg())
    except (OSError, AttributeError):  # not available on this platform
        return "n/a"


def median_ratio(num: list[float], den: list[float]) -> float:
    return statistics.median(a / b for a, b in zip(num, den))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--preset", choices=sorted(PRESETS), default="word", help="size preset; flags below override it")
    for name, what in [("vocab", "vocabulary size"), ("emb", "embedding size E"), ("hidden", "hidden size H"),
                       ("batch", "batch size B"), ("bptt", "time steps per training step T"),
                       ("layers", "recurrent layers")]:
        p.add_argument(f"--{name}", type=int, default=None, help=f"{what} (default: from --preset)")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's own)")
    p.add_argument("--steps", type=int, default=40, help="timed steps per variant per round")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps per variant before the first round")
    p.add_argument("--repeats", type=int, default=3, help="rounds over all variants")
    p.add_argument("--random-cells", type=int, default=5, help="random base-8 cells (seeds 0..N-1)")
    p.add_argument("--lr", type=float, default=20.0, help="SGD learning rate (word_language_model default)")
    p.add_argument("--seed", type=int, default=0, help="seed of the torch RNG for weights and token ids")
    p.add_argument("--no-torch-ops", action="store_true",
                   help="do not also time the cells with torch operations (when the default path is another)")
    p.add_argument("--keep-denormals", action="store_true",
                   help="do not flush subnormal floats on a CPU (training flushes them)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                   help="auto = cuda if available, else cpu")
    args = p.parse_args(argv)
    for name in ("vocab", "emb", "hidden", "batch", "bptt", "layers", "threads", "steps", "repeats"):
        v = getattr(args, name)
        if v is not None and v < 1:
            p.error(f"--{name.replace('_', '-')}: {v} is not allowed; use a whole number >= 1")
    if args.warmup < 0 or args.random_cells < 0:
        p.error("--warmup and --random-cells must be >= 0")
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: CUDA is not available in this torch build/machine; use --device cpu")
    return args


def main(argv: list[str] | None = None) -> dict[str, float]:
    args = parse_args(argv)
    preset = PRESETS[args.preset]
    sizes = Sizes(**{k: (getattr(args, k) if getattr(args, k) is not None else v) for k, v in preset.items()})
    device = torch.device("cuda" if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
                          else "cpu")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    flush = device.type == "cpu" and not args.keep_denormals and torch.set_flush_denormal(True)

    print(f"torch {torch.__version__}, python {sys.version.split()[0]}, device {device}, "
          f"threads {torch.get_num_threads()}, CPUs {os.cpu_count()}, load average {load_average()}")
    print(f"preset {args.preset}: vocab {sizes.vocab}, E {sizes.emb}, H {sizes.hidden}, batch {sizes.batch}, "
          f"BPTT {sizes.bptt}, layers {sizes.layers}; {args.warmup} warm-up steps, then {args.repeats} rounds x "
          f"{args.steps} timed steps per variant; SGD lr {args.lr}, clip 0.25, dropout 0; subnormal floats "
          f"{'flushed to zero' if flush else 'kept'}")
    auto_path = kernel_path("auto", known_cell("nascell"), torch.empty(0, device=device))
    print(f"cells' element-wise steps: {auto_path} (the default here)")

    variants: dict[str, Callable[[], ChildLM]] = {"nn.LSTM": lambda: build_lstm(sizes)}
    variants["matmul floor (base 8)"] = lambda: build_floor(sizes)
    # each cell is built now and bound as the lambda's default, on purpose (B008)
    variants["nascell"] = lambda c=known_cell("nascell"): build_cell(c, sizes)  # noqa: B008
    variants["nascell, reference path"] = lambda c=known_cell("nascell"): build_cell(c, sizes, fused=False)  # noqa: B008
    for name in KNOWN_CELLS:
        if name != "nascell":
            variants[name] = lambda c=known_cell(name): build_cell(c, sizes)  # noqa: B008
    for seed in range(args.random_cells):
        variants[f"random_cell(8, {seed})"] = lambda c=random_cell(8, seed): build_cell(c, sizes)  # noqa: B008
    # the same cells with their element-wise steps as torch operations, where "auto" picks another path
    if auto_path != "torch" and not args.no_torch_ops:
        for name in ["nascell"] + [f"random_cell(8, {seed})" for seed in range(args.random_cells)]:
            cell = known_cell(name) if name == "nascell" else random_cell(8, int(name.split()[-1][:-1]))
            variants[f"{name}, torch ops"] = lambda c=cell: build_cell(c, sizes, kernels="torch")  # noqa: B008
    trainers = {name: Trainer(make(), device, args.lr) for name, make in variants.items()}
    for name, tr in trainers.items():
        print(f"  {name:<24} {sum(p.numel() for p in tr.params):>10,} parameters")

    batches = make_batches(sizes, args.warmup + args.steps, args.seed, device)
    tps: dict[str, list[float]] = {name: [] for name in trainers}
    bench_start = time.perf_counter()
    warm_up(trainers, batches[:args.warmup])
    for r in range(args.repeats):
        for name, seconds in run_round(trainers, batches[args.warmup:], device).items():
            tps[name].append(args.steps * sizes.tokens_per_step / seconds)
        print(f"round {r + 1}/{args.repeats}: " + ", ".join(f"{n} {v[-1]:,.0f}" for n, v in tps.items())
              + " tokens/s", flush=True)
    for name, tr in trainers.items():
        if not math.isfinite(tr.last_loss):
            print(f"warning: {name} has a non-finite training loss ({tr.last_loss}); its timing may not be "
                  f"representative (try a smaller --lr)")

    # Setup: a new architecture (never built in this process) to its first training step done.
    # Interleaved like the throughput rounds; each cell comes from a seed no other measurement uses.
    # With the C kernels, "cold" compiles the cell (an empty kernel cache) and "cached" loads it from the cache
    # into a process that has not used it yet, as a second search worker would.
    setup_lstm: list[float] = []
    setup_cell: list[float] = []
    setup_cached: list[float] = []
    with tempfile.TemporaryDirectory() as cache:
        previous = os.environ.get("NAS_KERNEL_CACHE")
        os.environ["NAS_KERNEL_CACHE"] = cache
        try:
            for r in range(args.repeats):
                setup_lstm.append(time_setup(lambda: build_lstm(sizes), batches[0], device, args.lr))
                make = functools.partial(build_cell, random_cell(8, SETUP_SEED_OFFSET + r), sizes)
                setup_cell.append(time_setup(make, batches[0], device, args.lr))
                native_cell.forget()
                setup_cached.append(time_setup(make, batches[0], device, args.lr))
        finally:
            native_cell.forget()
            if previous is None:
                os.environ.pop("NAS_KERNEL_CACHE")
            else:
                os.environ["NAS_KERNEL_CACHE"] = previous
    total = time.perf_counter() - bench_start

    ref = tps["nn.LSTM"]
    ratios = {name: median_ratio(v, ref) for name, v in tps.items()}
    print()
    print("| variant | tokens/s | ms/step | vs nn.LSTM |")
    print("|---|---:|---:|---:|")
    for name, v in tps.items():
        med = statistics.median(v)
        print(f"| {name} | {med:,.0f} | {1000 * sizes.tokens_per_step / med:.0f} | {ratios[name]:.2f}x |")
    random_names = [n for n in tps if n.startswith("random_cell") and not n.endswith(", torch ops")]
    cell_ratio = statistics.median(ratios[n] for n in random_names) if random_names else float("nan")
    torch_names = [n + ", torch ops" for n in random_names if n + ", torch ops" in tps]
    torch_ratio = statistics.median(ratios[n] for n in torch_names) if torch_names else float("nan")
    print()
    print(f"setup (new architecture -> first step done, median of {args.repeats}): nn.LSTM "
          f"{statistics.median(setup_lstm):.2f}s, new random cell {statistics.median(setup_cell):.2f}s "
          f"(runs: {', '.join(f'{s:.2f}' for s in setup_cell)}), the same cell again in a fresh process state "
          f"{statistics.median(setup_cached):.2f}s" + (" (compiled, then from the kernel cache)"
                                                      if auto_path == "native" else ""))
    print(f"median ratio over {len(random_names)} random cells: {cell_ratio:.2f}x; measuring took {total:.0f}s; "
          f"load average now {load_average()}")
    floor, speedup = ratios["matmul floor (base 8)"], median_ratio(tps["nascell"], tps["nascell, reference path"])
    known = {n: ratios[n] / cell_ratio for n in KNOWN_CELLS}
    slowest = min(known, key=known.get)
    print("known cells over the random cells' median: " + ", ".join(f"{n} {r:.2f}x" for n, r in known.items())
          + f"; the slowest, {slowest}, is {'within' if known[slowest] >= 0.9 else 'MORE than'} 10% of them")
    print(f"floor: the base-8 matrix products with one tanh per step run at {floor:.2f}x nn.LSTM; the random cells "
          f"reach {cell_ratio / floor:.2f} of it on the {auto_path} path"
          + (f" ({torch_ratio / floor:.2f} with torch operations)" if torch_names else "")
          + f"; the fused path is {speedup:.2f}x the reference path (nascell)")
    summary = {"cell_vs_lstm": cell_ratio, "nascell_vs_lstm": ratios["nascell"], "floor_vs_lstm": floor,
               "cell_vs_floor": cell_ratio / floor, "torch_ops_vs_floor": torch_ratio / floor,
               "fused_vs_reference": speedup, "known_vs_random": known[slowest],
               "setup": statistics.median(setup_cell), "setup_cached": statistics.median(setup_cached)}
    print(f"cell_vs_lstm={cell_ratio:.2f}x nascell_vs_lstm={ratios['nascell']:.2f}x floor_vs_lstm={floor:.2f}x "
          f"cell_vs_floor={cell_ratio / floor:.2f} torch_ops_vs_floor={torch_ratio / floor:.2f} "
          f"known_vs_random={known[slowest]:.2f}x setup={summary['setup']:.2f}s "
          f"setup_cached={summary['setup_cached']:.2f}s ({auto_path} path, preset "
          f"{args.preset})")
    return summary


if __name__ == "__main__":
    main()
