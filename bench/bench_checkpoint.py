"""What one child checkpoint costs: ``checkpoint_of`` (CPU copies of the state) + ``write_checkpoint`` (torch.save,
atomic), then ``read_checkpoint``, for the default search's child and a PTB-sized one (medians of 5, one thread).

Usage: ``python bench/bench_checkpoint.py``
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import torch

from search_spaces import known_cell
from workers.checkpoint import CHECKPOINT_FILE, read_checkpoint, write_checkpoint
from workers.child_settings import ModelConfig, TrainConfig
from workers.model import build_child, count_parameters
from workers.train import Position, TrainStep, checkpoint_of

CHILDREN = [("the default search's child (char, 2 x 128)", 65, ModelConfig(num_layers=2, hidden_size=128)),
            ("a PTB-sized child (10k words, 2 x 650)", 10000, ModelConfig(num_layers=2, hidden_size=650))]


def main() -> None:
    torch.set_num_threads(1)
    cpu = torch.device("cpu")
    for label, vocab, mcfg in CHILDREN:
        model = build_child(known_cell("nascell"), vocab, mcfg, kernels="torch")
        step = TrainStep(model, TrainConfig(), cpu)
        hidden = (torch.zeros(2, 20, mcfg.hidden_size), torch.zeros(2, 20, mcfg.hidden_size))
        pos = Position(epoch=1, batches=10, done=10, hidden=hidden)
        writes, reads = [], []
        with tempfile.TemporaryDirectory() as folder:
            for _ in range(5):
                start = time.perf_counter()
                payload = checkpoint_of({"cell": "x", "hparams": {}, "seed": 0}, model, step.optimizer, pos, None, cpu)
                write_checkpoint(payload, folder)
                writes.append(time.perf_counter() - start)
                start = time.perf_counter()
                read_checkpoint(folder)
                reads.append(time.perf_counter() - start)
            size = (Path(folder) / CHECKPOINT_FILE).stat().st_size / 1e6
        print(f"{label}: {count_parameters(model):,} parameters, checkpoint {size:.1f} MB, taking+writing "
              f"{1000 * statistics.median(writes):.0f} ms, reading {1000 * statistics.median(reads):.0f} ms "
              "(medians of 5)")


if __name__ == "__main__":
    main()
