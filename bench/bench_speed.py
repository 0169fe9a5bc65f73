"""Every speed target in one run: cell throughput vs nn.LSTM and against the matmul floor (word, char, the default
search's child and the search-quality benchmark's child), setup of a new architecture, per-child search overhead,
the packing table and children per hour with and without the generated C kernels.

Runs ``bench_cells.py`` for the presets word (vocab 10k, E=H=200, batch 20), char (vocab 65, E=H=256, batch 32),
search (vocab 65, E=H=128, 2 layers, batch 32) and bench (vocab 65, E=H=64, 1 layer, batch 32), all BPTT 35, then
``bench_search.py``. The last line is the one-line summary::

    cell_vs_lstm=0.70x setup=0.20s overhead=0.72s char_cell_vs_lstm=0.40x ... cell_vs_floor=0.95 ...

``cell_vs_lstm`` is the word preset's median over 5 random base-8 cells; ``setup`` the word preset's new-cell
setup (compiling its C kernels where they are the default); ``overhead`` the per-child time outside the trainable
in a 16-child search; ``<preset>_cell_vs_floor`` the random cells' median over the matmul floor per preset.

Usage: ``python bench/bench_speed.py [--quick]`` (``--quick``: fewer steps, no packing or kernel table, ~5 min).
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
    presets = {}
    for preset in ("word", "char", "search", "bench"):
        print(f"\n== throughput and setup, {preset} preset ==", flush=True)
        presets[preset] = bench_cells.main(["--preset", preset, *steps])
    word, char = presets["word"], presets["char"]
    print("\n== search overhead, packing and kernels ==", flush=True)
    search = bench_search.main(["--skip-packing", "--skip-kernels"] if args.quick else [])
    line = (f"cell_vs_lstm={word['cell_vs_lstm']:.2f}x setup={word['setup']:.2f}s overhead={search['overhead']:.2f}s "
            f"char_cell_vs_lstm={char['cell_vs_lstm']:.2f}x nascell_vs_lstm={word['nascell_vs_lstm']:.2f}x "
            f"char_nascell_vs_lstm={char['nascell_vs_lstm']:.2f}x floor_vs_lstm={word['floor_vs_lstm']:.2f}x "
            f"char_floor_vs_lstm={char['floor_vs_lstm']:.2f}x "
            + " ".join(f"{p}_cell_vs_floor={r['cell_vs_floor']:.2f}" for p, r in presets.items()))
    if "native_per_hour" in search:
        line += f" native_vs_torch_children={search['native_per_hour'] / search['torch_ops_per_hour']:.2f}x"
    if "best_concurrency" in search:
        line += f" best_concurrency={search['best_concurrency']:.0f}"
    print()
    print(line)


if __name__ == "__main__":
    main()
