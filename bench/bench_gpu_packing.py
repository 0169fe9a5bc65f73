"""Children per GPU-hour with 1, 2, 4 and 8 children sharing one GPU, without Ray.

A search with ``gpus_per_trial = 1/k`` runs k children on each GPU as separate worker processes; this bench does
exactly that with plain processes (the GPU machine has no Ray): 8 worker processes start once (imports, CUDA
context, one untimed warm-up child each, as Ray's reused actors do), then for each setting k, k of them each
train ``--per-worker`` children back to back through :func:`workers.train.train_child`, the search's own code
path (Triton kernels and CUDA graphs on a GPU). Every child is a new random base-8 cell, so Triton's compilation
of its kernels is paid as in a search, and no setting reuses another's cells. The cells are bounded (every
activation tanh or sigmoid: :func:`bounded_cell`) so that no child diverges and stops early, which would make the
settings train different amounts.

Children per hour = children trained / (last child's end - first child's start) x 3600.

Two kinds of children (``--children``):

- ``default``: the default ``nas search`` child (bundled Tiny Shakespeare, character level; 2 layers x 128,
  dropout 0.1, batch 32, BPTT 35, 200 training batches, 20,000 validation tokens);
- ``ptb``: a PTB-sized child (``--data-dir`` with ptb.{train,valid,test}.txt, word level; 2 layers x 650,
  dropout 0.5, batch 20, BPTT 35, ``--ptb-batches`` training batches, 20,000 validation tokens).

The last line is the summary, e.g. ``packing_default: best=8 x4.1 children/hour 1=900 2=1600 4=2900 8=3700``.

Usage: ``python bench/bench_gpu_packing.py [--children default|ptb] [--counts 1,2,4,8] [--per-worker N]``
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import sys
import time
from pathlib import Path

SEED_STRIDE = 1000
_BOUNDED = {"identity": "tanh", "relu": "sigmoid", "tanh": "tanh", "sigmoid": "sigmoid"}


def bounded_cell(seed: int):
    """``random_cell(8, seed)`` with identity and relu replaced by tanh and sigmoid: every node's output is
    bounded, so its forward pass cannot overflow (the same tree, the same work per step)."""
    import dataclasses

    from search_spaces import random_cell
    from search_spaces.cell import Node

    cell = random_cell(8, seed)
    nodes = tuple(Node(n.comb, _BOUNDED[n.act]) for n in cell.nodes)
    memory = dataclasses.replace(cell.memory, inject_act=_BOUNDED[cell.memory.inject_act])
    return dataclasses.replace(cell, nodes=nodes, memory=memory)


def settings_for(kind: str, ptb_batches: int):
    from workers.child_settings import Budget, ModelConfig, TrainConfig

    if kind == "default":
        return (ModelConfig(num_layers=2, hidden_size=128, dropout=0.1),
                TrainConfig(lr=5.0, batch_size=32, eval_batch_size=32),
                Budget(epochs=1, max_batches=200, max_eval_tokens=20000))
    return (ModelConfig(num_layers=2, hidden_size=650, dropout=0.5),
            TrainConfig(lr=20.0, batch_size=20, eval_batch_size=10),
            Budget(epochs=1, max_batches=ptb_batches, max_eval_tokens=20000))


def worker(index: int, kind: str, data_dir: str | None, ptb_batches: int, tasks: mp.Queue, results: mp.Queue) -> None:
    try:
        _work(index, kind, data_dir, ptb_batches, tasks, results)
    except BaseException as e:  # the parent stops instead of waiting for a result that never comes
        import traceback

        results.put(("error", index, f"{type(e).__name__}: {e}\n{traceback.format_exc()}"))


def _work(index: int, kind: str, data_dir: str | None, ptb_batches: int, tasks: mp.Queue, results: mp.Queue) -> None:
    import torch

    from workers.child_settings import Budget
    from workers.data import load_corpus
    from workers.train import train_child

    torch.set_num_threads(1)  # what Ray gives a 1-CPU child
    corpus = load_corpus("shakespeare") if kind == "default" else load_corpus(data_dir, "word")
    model, train, budget = settings_for(kind, ptb_batches)
    warm = bounded_cell(10**7 + index)  # untimed: CUDA context, cuBLAS, Triton's runtime
    train_child(warm, corpus, budget=Budget(epochs=1, max_batches=8, max_eval_tokens=2000), model_config=model,
                train_config=train, seed=index)
    results.put(("ready", index))
    while (task := tasks.get()) is not None:
        setting, seeds = task
        for seed in seeds:
            start = time.time()
            r = train_child(bounded_cell(seed), corpus, budget=budget, model_config=model, train_config=train,
                            seed=seed)
            results.put(("child", setting, index, start, time.time(), r.train_seconds, r.status, r.cuda_graphs))
    results.put(("done", index))


def main(argv: list[str] | None = None) -> dict[str, float]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--children", choices=["default", "ptb"], default="default")
    p.add_argument("--counts", default="1,2,4,8", help="children sharing the GPU, comma-separated")
    p.add_argument("--per-worker", type=int, default=3, help="children each worker trains per setting")
    p.add_argument("--data-dir", default=None, help="PTB folder (ptb.train.txt, ...) for --children ptb")
    p.add_argument("--ptb-batches", type=int, default=300, help="training batches of a PTB-sized child")
    args = p.parse_args(argv)
    counts = [int(c) for c in args.counts.split(",")]
    if args.children == "ptb" and not (args.data_dir and Path(args.data_dir).is_dir()):
        raise SystemExit("--children ptb needs --data-dir with ptb.train.txt, ptb.valid.txt, ptb.test.txt")
    import torch

    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    model, train, budget = settings_for(args.children, args.ptb_batches)
    print(f"packing, {args.children} children on {device}: {model}, batch {train.batch_size}, BPTT {train.bptt}, "
          f"{budget.max_batches} batches, {budget.max_eval_tokens:,} validation tokens; {args.per_worker} new "
          f"random base-8 cells per worker per setting", flush=True)
    ctx = mp.get_context("spawn")
    results: mp.Queue = ctx.Queue()
    queues = [ctx.Queue() for _ in range(max(counts))]
    procs = [ctx.Process(target=worker, args=(i, args.children, args.data_dir, args.ptb_batches, q, results))
             for i, q in enumerate(queues)]
    for proc in procs:
        proc.start()
    def get(timeout: float) -> tuple:
        msg = results.get(timeout=timeout)
        if msg[0] == "error":
            for proc in procs:
                proc.kill()
            raise SystemExit(f"worker {msg[1]} failed: {msg[2]}")
        return msg

    for _ in procs:
        get(600)
    print("| children per GPU | children/hour | vs 1 | wall s | train s/child (mean) | child s (mean) | graphs |")
    print("|---:|---:|---:|---:|---:|---:|---|")
    per_hour: dict[int, float] = {}
    for setting, k in enumerate(counts):
        for i in range(k):
            seeds = [SEED_STRIDE * (100 * setting + i) + j for j in range(args.per_worker)]
            queues[i].put((setting, seeds))
        got = [get(1800) for _ in range(k * args.per_worker)]
        wall = max(g[4] for g in got) - min(g[3] for g in got)
        per_hour[k] = len(got) / wall * 3600
        statuses = {g[6] for g in got}
        graphs = ", ".join(sorted({g[7] for g in got}))
        print(f"| {k} | {per_hour[k]:,.0f} | {per_hour[k] / per_hour[counts[0]]:.2f}x | {wall:.1f} | "
              f"{statistics.mean(g[5] for g in got):.2f} | {statistics.mean(g[4] - g[3] for g in got):.2f} | "
              f"{graphs}{'' if statuses == {'completed'} else f'; statuses {sorted(statuses)}'} |", flush=True)
    for q in queues:
        q.put(None)
    for proc in procs:
        proc.join(timeout=60)
    best = max(per_hour, key=per_hour.get)
    print(f"packing_{args.children}: best={best} x{per_hour[best] / per_hour[counts[0]]:.2f} children/hour "
          + " ".join(f"{k}={v:.0f}" for k, v in per_hour.items()))
    return per_hour


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    os.environ.setdefault("PYTHONPATH", str(Path(__file__).resolve().parents[1]))
    main()
