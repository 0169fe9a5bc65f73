"""A cell step's forward tree and chain rule as straight-line assignments, for the generated kernels.

The Triton kernels (:mod:`workers.triton_cell`) and the C kernels (:mod:`workers.native_cell`) compute the same
thing per hidden unit: from the step's inputs ``x_i``, ``h_i`` (chunk i of the input and recurrent projections)
and ``c_prev_v`` (c_{t-1}), every node's activation output ``y<k>``, what its parent reads ``z<k>`` (the injected
value at the cell-inject node) and the new state ``c``; backwards, from ``g<root>`` (the gradient w.r.t. h_t) and
``gc_v`` (w.r.t. c_t), every leaf's pre-activation gradient ``gp<i>`` and ``gc_prev_v`` (w.r.t. c_{t-1}). Both
are derived here once, as ``(name, expression)`` pairs, with each dialect's activation templates; the kernels
add their own loads, stores and declarations. The derivation is the one of
:func:`workers.fused_cell.backward_source`, which does it with whole torch tensors.
"""

from __future__ import annotations

from search_spaces.cell import Cell, children
from workers.cell_code import COMB_CODE

Assignments = list[tuple[str, str]]


def forward_tree(cell: Cell, act: dict[str, str]) -> Assignments:
    """The forward tree: ``y<k>``, ``z<k>`` for every node and ``c``; ``act`` maps an activation to a template."""
    n, mem = cell.base, cell.memory
    out: Assignments = []
    for k, node in enumerate(cell.nodes):
        kids = children(n, k)
        pre = COMB_CODE[node.comb].format(*((f"x_{k}", f"h_{k}") if kids is None else (f"z{kids[0]}", f"z{kids[1]}")))
        if mem is not None and mem.output_node == k:
            out.append(("c", pre))  # c_t: this node before its activation
            pre = "c"
        out.append((f"y{k}", act[node.act].format(pre)))
        if mem is not None and mem.inject_node == k:
            out.append((f"z{k}", act[mem.inject_act].format(COMB_CODE[mem.inject_comb].format(f"y{k}", "c_prev_v"))))
        else:
            out.append((f"z{k}", f"y{k}"))
    if mem is None:
        out.append(("c", "c_prev_v"))
    return out


def chain_rule(cell: Cell, dact: dict[str, str]) -> Assignments:
    """The chain rule, root first, after ``g<root>`` and ``gc_v`` are set: ``gp<k>`` (gradient w.r.t. node k's
    pre-activation) for every node and ``gc_prev_v``. ``dact`` maps an activation to a template in ``{g}`` (the
    incoming gradient) and ``{y}`` (the activation's output). A name can be assigned twice (the inject node's
    ``g<k>``, first by its parent, then through the injection)."""
    n, mem = cell.base, cell.memory
    out: Assignments = []
    if mem is None:
        out.append(("gc_prev_v", "gc_v"))  # c passes through unchanged
    for k in reversed(range(len(cell.nodes))):
        node, g = cell.nodes[k], f"g{k}"
        if mem is not None and mem.inject_node == k:  # z = inject_act(inject_comb(y, c_prev))
            out.append(("gq", dact[mem.inject_act].format(g=g, y=f"z{k}")))
            if mem.inject_comb == "add":
                out += [("gc_prev_v", "gq"), (g, "gq")]
            else:
                out += [("gc_prev_v", f"gq * y{k}"), (g, "gq * c_prev_v")]
        out.append((f"gp{k}", dact[node.act].format(g=g, y=f"y{k}")))
        if mem is not None and mem.output_node == k:
            out.append((f"gp{k}", f"gp{k} + gc_v"))  # c_t is this node's pre-activation
        kids = children(n, k)
        if kids is not None:
            left, right = kids
            if node.comb == "add":
                out += [(f"g{left}", f"gp{k}"), (f"g{right}", f"gp{k}")]
            else:
                out += [(f"g{left}", f"gp{k} * z{right}"), (f"g{right}", f"gp{k} * z{left}")]
    return out


def leaf_gradients(cell: Cell) -> tuple[list[str], list[str] | None]:
    """Per leaf, the gradient w.r.t. its input projection ``x_i`` and w.r.t. its recurrent projection ``h_i``;
    the second is None when every leaf adds (both gradients are then ``gp<i>``)."""
    n = cell.base
    gx = [f"gp{i}" if cell.nodes[i].comb == "add" else f"gp{i} * h_{i}" for i in range(n)]
    if all_leaves_add(cell):
        return gx, None
    return gx, [f"gp{i}" if cell.nodes[i].comb == "add" else f"gp{i} * x_{i}" for i in range(n)]


def all_leaves_add(cell: Cell) -> bool:
    """Whether every leaf adds its two projections (then the gradients w.r.t. both are the same tensor)."""
    return all(node.comb == "add" for node in cell.nodes[: cell.base])
