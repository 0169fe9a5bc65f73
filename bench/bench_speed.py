"""Every speed target in one run: cell throughput vs nn.LSTM (word and char presets), setup of a new
architecture, per-child search overhead and the packing table.

Runs ``bench_cells.py`` for the word preset (vocab 10k, E=H=200, batch 20, BPTT 35) and the char preset (vocab 65,
E=H=256, batch 32, BPTT 35), then ``bench_search.py``. The last line is the one-line summary::

    cell_vs_lstm=0.70x setup=0.20s overhead=0.72s char_cell_vs_lstm=0.40x nascell_vs_lstm=0.68x ...

``cell_vs_lstm`` is the word preset's median over 5 random base-8 cells; ``setup`` the word preset's new-cell
setup; ``overhead`` the per-child time outside the trainable in a 16-child search.

Usage: ``python bench/bench_speed.py [--quick]`` (``--quick``: fewer steps and no packing table, ~3 min).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_cells  # noqa: E402
import bench_search  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer timed steps and no packing table")
    args = p.parse_args(argv)
    steps = ["--steps", "10", "--repeats", "2"] if args.quick else []
    print("== throughput and setup, word preset ==", flush=True)
    word = bench_cells.main(["--preset", "word", *steps])
    print("\n== throughput and setup, char preset ==", flush=True)
    char = bench_cells.main(["--preset", "char", *steps])
    print("\n== search overhead and packing ==", flush=True)
    search = bench_search.main(["--skip-packing"] if args.quick else [])
    line = (f"cell_vs_lstm={word['cell_vs_lstm']:.2f}x setup={word['setup']:.2f}s overhead={search['overhead']:.2f}s "
            f"char_cell_vs_lstm={char['cell_vs_lstm']:.2f}x nascell_vs_lstm={word['nascell_vs_lstm']:.2f}x "
            f"char_nascell_vs_lstm={char['nascell_vs_lstm']:.2f}x floor_vs_lstm={word['floor_vs_lstm']:.2f}x "
            f"char_floor_vs_lstm={char['floor_vs_lstm']:.2f}x")
    if "best_concurrency" in search:
        line += f" best_concurrency={search['best_concurrency']:.0f}"
    print()
    print(line)


if __name__ == "__main__":
    main()
