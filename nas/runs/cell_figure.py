"""A cell drawn as a picture, as Zoph & Le's figures draw theirs: ``nas show … --plot cell.png``.

The tree grows upwards: the leaves at the bottom, each reading ``x_t`` and ``h_{t-1}`` (chunk i of the input and the
recurrent projection), every node a box with its combination (``+`` or ``⊙``) and activation, the root's output
``h_t`` at the top. The memory path is drawn in another colour: ``c_{t-1}`` enters the inject node through the
injection's own combination and activation, and ``c_t`` leaves the output node before that node's activation.
matplotlib's Agg backend, as the progress plot uses.
"""

from __future__ import annotations

import os
from pathlib import Path

from search_spaces.cell import Cell, children, levels

COMB_SYMBOL = {"add": "+", "elem_mult": "⊙"}
MEMORY_COLOUR = "tab:red"


def _positions(cell: Cell) -> dict[int, tuple[float, float]]:
    """(x, y) of every node: leaves evenly spaced at y = 0, each parent above the middle of its children."""
    pos: dict[int, tuple[float, float]] = {}
    for y, level in enumerate(levels(cell.base)):
        for k in level:
            kids = children(cell.base, k)
            pos[k] = (float(k), 0.0) if kids is None else ((pos[kids[0]][0] + pos[kids[1]][0]) / 2, float(y))
    return pos


def _label(comb: str, act: str) -> str:
    return COMB_SYMBOL[comb] if act == "identity" else f"{act}({COMB_SYMBOL[comb]})"


def draw_cell(cell: Cell, path: str | os.PathLike, title: str = "") -> Path:
    """Write the picture of ``cell`` to ``path`` (PNG); returns the path."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # Agg, without pyplot's global state
    from matplotlib.figure import Figure

    pos = _positions(cell)
    depth = len(levels(cell.base))
    fig = Figure(figsize=(max(6.0, 1.3 * cell.base), 1.6 * depth + 2.0), layout="constrained")
    ax = fig.add_subplot()
    ax.set_axis_off()
    box = dict(boxstyle="round,pad=0.35", facecolor="white", edgecolor="black")
    mem = cell.memory

    def arrow(a: tuple[float, float], b: tuple[float, float], colour: str = "black", text: str = "") -> None:
        ax.annotate("", xy=b, xytext=a, arrowprops=dict(arrowstyle="->", color=colour, shrinkA=12, shrinkB=12))
        if text:
            ax.text((a[0] + b[0]) / 2, (a[1] + b[1]) / 2, text, color=colour, fontsize=8, ha="center",
                    va="center", backgroundcolor="white")

    for k, node in enumerate(cell.nodes):
        x, y = pos[k]
        kids = children(cell.base, k)
        if kids is None:  # a leaf reads chunk k of both projections
            ax.text(x - 0.22, y - 0.85, f"x{k}", ha="center", fontsize=8, color="dimgray")
            ax.text(x + 0.22, y - 0.85, f"h{k}", ha="center", fontsize=8, color="dimgray")
            arrow((x - 0.22, y - 0.7), (x, y), "dimgray")
            arrow((x + 0.22, y - 0.7), (x, y), "dimgray")
        else:
            for kid in kids:
                arrow(pos[kid], (x, y))
        ax.text(x, y, f"n{k}\n{_label(node.comb, node.act)}", ha="center", va="center", fontsize=8, bbox=box)
    root = pos[cell.root]
    ax.text(root[0], root[1] + 0.9, "h_t", ha="center", fontsize=10)
    arrow(root, (root[0], root[1] + 0.8))
    if mem is not None:
        ix, iy = pos[mem.inject_node]
        ox, oy = pos[mem.output_node]
        ax.text(ix + 0.9, iy + 0.45, "c_{t-1}", color=MEMORY_COLOUR, fontsize=9, ha="center")
        arrow((ix + 0.9, iy + 0.4), (ix, iy), MEMORY_COLOUR, f"inject {_label(mem.inject_comb, mem.inject_act)}")
        ax.text(ox - 0.9, oy + 0.45, "c_t", color=MEMORY_COLOUR, fontsize=9, ha="center")
        arrow((ox, oy), (ox - 0.9, oy + 0.4), MEMORY_COLOUR, "before act")
    xs = [p[0] for p in pos.values()]
    ax.set_xlim(min(xs) - 1.3, max(xs) + 1.3)
    ax.set_ylim(-1.2, depth + 0.2)
    ax.set_title(title or f"base-{cell.base} cell", fontsize=10)
    path = Path(path)
    FigureCanvasAgg(fig).print_png(str(path))
    return path
