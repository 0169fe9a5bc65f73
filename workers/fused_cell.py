"""A whole layer-sequence of a cell as one autograd node, with a generated, hand-derived backward.

The reference path (:func:`workers.cell_code.compile_step` under autograd) records ~30 small operations per
time step and lets autograd replay ~60 more backwards, each paying dispatch and bookkeeping. Here the forward
runs without autograd, keeps the few tensors the backward needs, and the backward is straight-line code derived
from the tree, generated per cell like the forward (so a new architecture costs microseconds, not a compile):

- activation derivatives come from the node's *output* (``tanh_backward``, ``sigmoid_backward``,
  ``threshold_backward``: one fused kernel each);
- the recurrent weight's gradient accumulates in place (``addmm_``) instead of one new tensor per step;
- gradients of add-combined leaves are the same tensor for the input and the recurrent projection.

:class:`CellSequence` (with ``compile_cell(cell)``) is what :class:`workers.cell_rnn.CellLayer` uses by default;
``tests/test_fused_cell.py`` checks it against the reference path (outputs, states and every gradient, and
``gradcheck`` in float64).
Double backward is not supported (the search never needs it).

Per step ``t`` (contract of the generated functions)::

    forward_step(xp, hp, c_prev) -> (h, c, saved)     xp, hp: (B, N*H) projections; c_prev, h, c: (B, H)
    backward_step(gh, gc, xp, hp, c_prev, saved) -> (gxp, ghp, gc_prev)
        gh, gc: gradients w.r.t. this step's h and c; gxp / ghp: w.r.t. xp / hp (ghp is gxp itself when every
        leaf adds); gc_prev: w.r.t. c_prev
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
from torch.autograd.function import once_differentiable

from search_spaces.cell import Cell, children
from workers.cell_code import ACT_CODE, COMB_CODE, load_function

_DACT = {  # gradient through an activation, from the incoming gradient g and the activation's output y
    "identity": "{g}",
    "tanh": "torch.ops.aten.tanh_backward({g}, {y})",
    "sigmoid": "torch.ops.aten.sigmoid_backward({g}, {y})",
    "relu": "torch.ops.aten.threshold_backward({g}, {y}, 0)",
}


def _comb(kind: str, a: str, b: str) -> str:
    return COMB_CODE[kind].format(a, b)


def _saved_names(cell: Cell) -> list[str]:
    """What ``forward_step`` saves, in order: every node's activation output ``y<k>``, and right after the inject
    node's, its output after the injection ``z<k>``."""
    names = [f"y{k}" for k in range(len(cell.nodes))]
    if cell.memory is not None:
        names.insert(cell.memory.inject_node + 1, f"z{cell.memory.inject_node}")
    return names


def forward_source(cell: Cell) -> str:
    """Source of ``forward_step`` (see the module docstring); ``saved`` holds the node outputs the backward needs."""
    n, mem = cell.base, cell.memory
    lines = []
    kinds = sorted({node.comb for node in cell.nodes[:n]})
    for comb in kinds:
        var = "sums" if comb == "add" else "prods"
        lines.append(f"{var} = {_comb(comb, 'xp', 'hp')}")
        lines.append(f"{', '.join(f'{var[0]}_{i}' for i in range(n))}, = {var}.chunk({n}, 1)")
    for k, node in enumerate(cell.nodes):
        kids = children(n, k)
        leaf = f"{'s' if node.comb == 'add' else 'p'}_{k}"
        pre = leaf if kids is None else _comb(node.comb, f"z{kids[0]}", f"z{kids[1]}")
        if mem is not None and mem.output_node == k:
            lines.append(f"c = {pre}")
            pre = "c"
        lines.append(f"y{k} = {ACT_CODE[node.act].format(pre)}")
        if mem is not None and mem.inject_node == k:
            lines.append(f"z{k} = {ACT_CODE[mem.inject_act].format(_comb(mem.inject_comb, f'y{k}', 'c_prev'))}")
        else:
            lines.append(f"z{k} = y{k}")
    if mem is None:
        lines.append("c = c_prev")
    lines.append(f"return z{cell.root}, c, ({', '.join(_saved_names(cell))},)")
    return _function("forward_step", "xp, hp, c_prev", lines)


def backward_source(cell: Cell) -> str:
    """Source of ``backward_step`` (see the module docstring): the forward's chain rule, node by node, root first."""
    n, mem = cell.base, cell.memory
    lines = [f"{', '.join(_saved_names(cell))}, = saved"]
    z = {k: f"y{k}" for k in range(len(cell.nodes))}  # the value a node's parent reads
    if mem is not None:
        z[mem.inject_node] = f"z{mem.inject_node}"
    lines.append(f"g{cell.root} = gh")
    if mem is None:
        lines.append("gc_prev = gc")  # c passes through unchanged
    for k in reversed(range(len(cell.nodes))):
        node = cell.nodes[k]
        g = f"g{k}"
        if mem is not None and mem.inject_node == k:
            # z = inject_act(inject_comb(y, c_prev))
            lines.append(f"gq = {_DACT[mem.inject_act].format(g='g' + str(k), y=z[k])}")
            if mem.inject_comb == "add":
                lines.append("gc_prev = gq")
                lines.append(f"{g} = gq")
            else:
                lines.append(f"gc_prev = gq * y{k}")
                lines.append(f"{g} = gq * c_prev")
        lines.append(f"gp{k} = {_DACT[node.act].format(g=g, y=f'y{k}')}")
        if mem is not None and mem.output_node == k:
            lines.append(f"gp{k} = gp{k} + gc")  # c_t is this node's pre-activation
        kids = children(n, k)
        if kids is not None:
            left, right = kids
            if node.comb == "add":
                lines.append(f"g{left} = g{right} = gp{k}")
            else:
                lines.append(f"g{left} = gp{k} * {z[right]}")
                lines.append(f"g{right} = gp{k} * {z[left]}")
    xs = ", ".join(f"gp{i}" if cell.nodes[i].comb == "add" else f"gp{i} * h_{i}" for i in range(n))
    hs = ", ".join(f"gp{i}" if cell.nodes[i].comb == "add" else f"gp{i} * x_{i}" for i in range(n))
    lines.append(f"gxp = torch.cat(({xs},), 1)")
    if any(node.comb != "add" for node in cell.nodes[:n]):
        lines.insert(0, f"{', '.join(f'x_{i}' for i in range(n))}, = xp.chunk({n}, 1)")
        lines.insert(1, f"{', '.join(f'h_{i}' for i in range(n))}, = hp.chunk({n}, 1)")
        lines.append(f"return gxp, torch.cat(({hs},), 1), gc_prev")
    else:
        lines.append("return gxp, gxp, gc_prev  # every leaf adds: the recurrent projection's gradient is the same")
    return _function("backward_step", "gh, gc, xp, hp, c_prev, saved", lines)


def _function(name: str, args: str, lines: list[str]) -> str:
    return f"def {name}({args}):\n" + "".join(f"    {line}\n" for line in lines)


@functools.lru_cache(maxsize=256)
def compile_cell(cell: Cell) -> tuple[Callable, Callable]:
    """(forward_step, backward_step) of ``cell``, generated and cached per cell."""
    return (load_function(forward_source(cell), "forward_step", cell),
            load_function(backward_source(cell), "backward_step", cell))


class CellSequence(torch.autograd.Function):
    """``(x_proj (T,B,N*H), w_hidden (N*H,H), h0, c0, step_pair) -> (out (T,B,H), h_T, c_T)``: one layer.

    ``step_pair`` is ``(forward_step, backward_step)`` with the contract of the module docstring, normally
    ``compile_cell(cell)``; each step does one recurrent matrix product forward and one backward around them.
    """

    @staticmethod
    def forward(ctx, x_proj: torch.Tensor, w_hidden: torch.Tensor, h0: torch.Tensor, c0: torch.Tensor,
                step_pair: tuple[Callable, Callable]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        fwd, bwd = step_pair
        steps = x_proj.shape[0]
        outs, cs, hps, saves = [], [c0], [], []
        h, c, wt = h0, c0, w_hidden.t()
        for t in range(steps):
            hp = torch.mm(h, wt)
            h, c, saved = fwd(x_proj[t], hp, c)
            outs.append(h)
            cs.append(c)
            hps.append(hp)
            saves.append(saved)
        out = torch.stack(outs)
        ctx.bwd, ctx.per_step = bwd, len(saves[0]) if saves else 0
        # Everything goes through save_for_backward: autograd frees it after backward (unless retain_graph),
        # checks in-place changes, and no ctx -> tensor -> grad_fn -> ctx cycle can keep it alive.
        ctx.save_for_backward(x_proj, w_hidden, h0, out, *cs, *hps, *(t for saved in saves for t in saved))
        return out, h.clone(), c.clone()  # the returned state: fresh tensors, not the saved step tensors

    @staticmethod
    @once_differentiable
    def backward(ctx, g_out: torch.Tensor | None, g_h: torch.Tensor | None, g_c: torch.Tensor | None):
        x_proj, w_hidden, h0, out, *rest = ctx.saved_tensors
        steps, k = x_proj.shape[0], ctx.per_step
        cs, hps, flat = rest[: steps + 1], rest[steps + 1 : 2 * steps + 1], rest[2 * steps + 1 :]
        g_out = torch.zeros_like(out) if g_out is None else g_out
        gh = torch.zeros_like(h0) if g_h is None else g_h
        gc = torch.zeros_like(h0) if g_c is None else g_c
        g_w = torch.zeros_like(w_hidden)
        g_xps = []
        for t in reversed(range(steps)):
            gxp, ghp, gc = ctx.bwd(g_out[t] + gh, gc, x_proj[t], hps[t], cs[t], flat[t * k : (t + 1) * k])
            g_xps.append(gxp)
            gh = torch.mm(ghp, w_hidden)
            g_w.addmm_(ghp.t(), h0 if t == 0 else out[t - 1])  # recurrent weight: sum_t ghp_t^T h_{t-1}
        g_xp = torch.stack(g_xps[::-1])
        return g_xp, g_w, gh, gc, None
