"""Where a cell step's time goes on the C path: one generated C call forward, one backward and one recurrent matrix
product, each timed alone in a loop (2,000 calls, 2 threads), at the four bench_cells presets' (B, H).

Usage: ``python bench/probe_kernels.py``
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

from search_spaces import known_cell, random_cell
from workers import native_cell

CALLS = 2000


def per_call_us(call: Callable[[], object]) -> float:
    for _ in range(100):
        call()
    start = time.perf_counter()
    for _ in range(CALLS):
        call()
    return (time.perf_counter() - start) / CALLS * 1e6


def main() -> None:
    torch.set_num_threads(2)
    for batch, hidden in [(20, 200), (32, 256), (32, 128), (32, 64)]:
        for name, cell in [("nascell", known_cell("nascell")), ("random_cell(8, 0)", random_cell(8, 0))]:
            kernels = native_cell.load(cell)
            forward, backward = kernels.functions[torch.float32]
            width = cell.base * hidden
            xp, hp, ghp, gxp = (torch.randn(batch, width) for _ in range(4))
            c, h, c_out, g, gc_prev = (torch.randn(batch, hidden) for _ in range(5))
            ptr = torch.Tensor.data_ptr
            fwd_args = (ptr(xp), ptr(hp), ptr(c), ptr(h), ptr(c_out), batch, hidden)
            bwd_args = (ptr(g), ptr(g), ptr(g), ptr(xp), ptr(hp), ptr(c), ptr(gxp),
                        None if kernels.shared_grad else ptr(ghp), ptr(gc_prev), batch, hidden)
            w = torch.randn(width, hidden)
            fwd_us = per_call_us(lambda: forward(*fwd_args))  # noqa: B023 - called at once
            bwd_us = per_call_us(lambda: backward(*bwd_args))  # noqa: B023
            mm_us = per_call_us(lambda: torch.mm(h, w.t(), out=hp))  # noqa: B023
            print(f"B={batch} H={hidden} {name}: fwd {fwd_us:.1f} us, bwd {bwd_us:.1f} us, "
                  f"one recurrent mm {mm_us:.1f} us")


if __name__ == "__main__":
    main()
