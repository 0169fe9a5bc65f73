"""A cell's whole element-wise step as one Triton kernel forward and one backward, generated per cell.

The fused torch path (:mod:`workers.fused_cell`) still launches some 30 element-wise kernels per step forward and
45 backward; on a GPU each costs a launch (5-10 µs) for a few microseconds of work, so a child is bound by
launches. Here every time step is two launches forward (the recurrent matrix product, then one kernel for every
leaf, node, the memory injection and the ``c_t`` read-out) and two backward (one kernel that recomputes the
step's nodes from its inputs and applies the chain rule, then the matrix product for ``h_{t-1}``'s gradient);
the recurrent weight's gradient is one matrix product over all steps at the end. Nothing per node is saved:
the backward recomputes from the projections (``x_proj``, ``h_proj``) and ``c_{t-1}``, which it reads anyway.

Kernels are generated from the tree like :mod:`workers.cell_code`'s torch source (the same node order and
combination templates), registered with ``linecache`` so Triton can read their source, and cached per cell.
They compute in float32 (float64 for float64 tensors) whatever the storage dtype, so under bfloat16 autocast
the state is stored in bfloat16 but every node is computed in float32.

Triton is optional: it ships with CUDA builds of torch; ``pip install triton`` elsewhere. On a CPU the kernels
run only under Triton's interpreter (``TRITON_INTERPRET=1``, set before the kernels are generated), which is how
``tests/test_triton_cell.py`` checks them against the reference path on machines without a GPU.

Kernel contract, per time step, every tensor contiguous, (B, N*H) projections with chunk i belonging to leaf i::

    cell_forward(xp, hp, c_prev, h_out, c_out, H, BLOCK)
    cell_backward(g_out, gh, gc, xp, hp, c_prev, g_xp, g_hp, gc_prev, H, BLOCK)
        g_out + gh: gradient w.r.t. this step's h; gc: w.r.t. its c; writes g_xp / g_hp (gradients w.r.t. xp / hp;
        g_hp is g_xp itself when every leaf adds, and is then not written) and gc_prev
"""

from __future__ import annotations

import functools
import importlib.util
import warnings
from collections.abc import Callable

import torch

from search_spaces.cell import Cell
from workers.cell_code import load_function
from workers.kernel_sequence import Backward
from workers.kernel_source import all_leaves_add, chain_rule, forward_tree, leaf_gradients

_ACT = {"identity": "{}", "tanh": "_tanh({})", "sigmoid": "tl.sigmoid({})", "relu": "tl.maximum({}, 0.0)"}
_DACT = {  # gradient through an activation, from the incoming gradient g and the activation's output y
    "identity": "{g}",
    "tanh": "{g} * (1.0 - {y} * {y})",
    "sigmoid": "{g} * {y} * (1.0 - {y})",
    "relu": "tl.where({y} > 0, {g}, 0.0)",
}
_HELPERS = '''@triton.jit
def _tanh(x):
    t = tl.exp(-2.0 * tl.abs(x))
    r = (1.0 - t) / (1.0 + t)
    return tl.where(x < 0, -r, r)

'''


@functools.lru_cache(maxsize=1)
def available() -> bool:
    """Whether Triton is installed (it is imported only when a kernel is generated)."""
    return importlib.util.find_spec("triton") is not None


def use_triton(kernels: str, tensor: torch.Tensor) -> bool:
    """Whether the fused path runs ``tensor``'s sequence with Triton kernels under the ``kernels`` setting: "auto"
    takes them for a CUDA tensor when Triton is installed and works on that GPU (:func:`works_on`)."""
    return kernels == "triton" or (kernels == "auto" and tensor.is_cuda and available() and works_on(tensor.device))


@functools.lru_cache(maxsize=16)
def works_on(device: torch.device) -> bool:
    """Whether a generated kernel compiles and runs correctly on ``device``, tried once per process (Triton
    needs a supported GPU and a C compiler for its launcher). When not, a warning says why, and "auto" cells run
    with torch operations instead."""
    from search_spaces import known_cell
    from workers.fused_cell import compile_cell

    try:
        cell = known_cell("nascell")
        kernels, (forward_step, _) = compile_kernels(cell), compile_cell(cell)
        g = torch.Generator().manual_seed(0)
        xp, hp = (torch.randn(2, 8 * 3, generator=g).to(device) for _ in range(2))
        c_prev = torch.randn(2, 3, generator=g).to(device)
        h, c = torch.empty_like(c_prev), torch.empty_like(c_prev)
        kernels.forward(xp, hp, c_prev, h, c)
        want_h, want_c, _ = forward_step(xp, hp, c_prev)
        if not (torch.allclose(h, want_h, atol=1e-4) and torch.allclose(c, want_c, atol=1e-4)):
            raise RuntimeError(f"a test step gave {h.flatten()[:3].tolist()}, expected {want_h.flatten()[:3].tolist()}")
        return True
    except Exception as e:  # noqa: BLE001 - any failure means: do not use Triton on this device
        warnings.warn(f"Triton kernels do not work on {device} ({type(e).__name__}: {str(e)[:200]}); cells run with "
                      "torch operations there (set train.cell_kernels = \"torch\" to skip this check)", stacklevel=2)
        return False


def _tree(cell: Cell, compute: str) -> list[str]:
    """Loads of the step's inputs and the forward tree, in registers (:func:`workers.kernel_source.forward_tree`)."""
    lines = ["j = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)",
             "b = tl.program_id(1)",
             "m = j < H",
             f"leaf = b * ({cell.base} * H) + j",
             "st = b * H + j"]
    for i in range(cell.base):
        lines.append(f"x_{i} = tl.load(xp + leaf + {i} * H, mask=m, other=0.0).to({compute})")
        lines.append(f"h_{i} = tl.load(hp + leaf + {i} * H, mask=m, other=0.0).to({compute})")
    lines.append(f"c_prev_v = tl.load(c_prev + st, mask=m, other=0.0).to({compute})")
    return lines + [f"{name} = {expr}" for name, expr in forward_tree(cell, _ACT)]


def forward_kernel_source(cell: Cell, compute: str = "tl.float32") -> str:
    """Source of the Triton kernel ``cell_forward`` (see the module docstring), computing in ``compute``."""
    lines = _tree(cell, compute) + [f"tl.store(h_out + st, z{cell.root}.to(h_out.dtype.element_ty), mask=m)",
                           "tl.store(c_out + st, c.to(c_out.dtype.element_ty), mask=m)"]
    return _kernel("cell_forward", "xp, hp, c_prev, h_out, c_out", lines)


def backward_kernel_source(cell: Cell, compute: str = "tl.float32") -> str:
    """Source of the Triton kernel ``cell_backward`` (see the module docstring): the forward recomputed, then the
    chain rule node by node, root first (:func:`workers.kernel_source.chain_rule`)."""
    lines = _tree(cell, compute)
    lines.append(f"g{cell.root} = tl.load(g_out + st, mask=m, other=0.0).to({compute})"
                 f" + tl.load(gh + st, mask=m, other=0.0).to({compute})")
    lines.append(f"gc_v = tl.load(gc + st, mask=m, other=0.0).to({compute})")
    lines += [f"{name} = {expr}" for name, expr in chain_rule(cell, _DACT)]
    out = "g_xp.dtype.element_ty"
    gx, gh = leaf_gradients(cell)
    lines += [f"tl.store(g_xp + leaf + {i} * H, ({g}).to({out}), mask=m)" for i, g in enumerate(gx)]
    lines += [f"tl.store(g_hp + leaf + {i} * H, ({g}).to({out}), mask=m)" for i, g in enumerate(gh or ())]
    lines.append("tl.store(gc_prev + st, gc_prev_v.to(gc_prev.dtype.element_ty), mask=m)")
    return _kernel("cell_backward", "g_out, gh, gc, xp, hp, c_prev, g_xp, g_hp, gc_prev", lines)


def _kernel(name: str, args: str, lines: list[str]) -> str:
    return (f"@triton.jit\ndef {name}({args}, H, BLOCK: tl.constexpr):\n"
            + "".join(f"    {line}\n" for line in lines))


class Kernels:
    """A cell's two generated Triton kernels and how to launch them on (B, H) steps. Each kernel exists in two
    versions, computing in float32 (for float32, bfloat16 and float16 tensors) or float64; a version is generated
    the first time a step of its dtype runs."""

    def __init__(self, cell: Cell) -> None:
        import triton

        self.cell, self._triton = cell, triton
        self.shared_grad = all_leaves_add(cell)
        self._versions: dict[str, tuple[Callable, Callable]] = {}

    def kernels(self, dtype: torch.dtype) -> tuple[Callable, Callable]:
        """(cell_forward, cell_backward) computing in ``tl.float64`` for float64 tensors, else ``tl.float32``."""
        compute = "tl.float64" if dtype == torch.float64 else "tl.float32"
        if compute not in self._versions:
            fwd, bwd = forward_kernel_source(self.cell, compute), backward_kernel_source(self.cell, compute)
            self._versions[compute] = (_load(_HELPERS + fwd, "cell_forward", self.cell, compute),
                                       _load(_HELPERS + bwd, "cell_backward", self.cell, compute))
        return self._versions[compute]

    def _grid(self, ref: torch.Tensor) -> tuple[tuple[int, int], int]:
        batch, hidden = ref.shape
        block = min(self._triton.next_power_of_2(hidden), 256)
        return (self._triton.cdiv(hidden, block), batch), block

    def forward(self, xp: torch.Tensor, hp: torch.Tensor, c_prev: torch.Tensor, h_out: torch.Tensor,
                c_out: torch.Tensor) -> None:
        """One step forward: writes h_t into ``h_out`` and c_t into ``c_out`` (all (B, H) but xp, hp (B, N*H))."""
        grid, block = self._grid(c_prev)
        self.kernels(c_prev.dtype)[0][grid](xp, hp, c_prev, h_out, c_out, c_prev.shape[1], BLOCK=block)

    def backward(self, g_out: torch.Tensor, gh: torch.Tensor, gc: torch.Tensor, xp: torch.Tensor, hp: torch.Tensor,
                 c_prev: torch.Tensor, g_xp: torch.Tensor, g_hp: torch.Tensor, gc_prev: torch.Tensor) -> None:
        """One step backward (see the module docstring)."""
        grid, block = self._grid(c_prev)
        self.kernels(c_prev.dtype)[1][grid](g_out, gh, gc, xp, hp, c_prev, g_xp, g_hp, gc_prev, c_prev.shape[1],
                                            BLOCK=block)

    def forward_sequence(self, x_proj: torch.Tensor, w_hidden: torch.Tensor, h0: torch.Tensor, out: torch.Tensor,
                         cs: torch.Tensor, hps: torch.Tensor) -> None:
        """Every step forward, filling ``out``, ``cs`` and ``hps`` (:class:`workers.kernel_sequence.KernelSequence`)."""
        wt, h = w_hidden.t(), h0
        for t in range(x_proj.shape[0]):
            torch.mm(h, wt, out=hps[t])
            self.forward(x_proj[t], hps[t], cs[t], out[t], cs[t + 1])
            h = out[t]

    def backward_sequence(self, b: Backward) -> None:
        """Every step backward, from the last, filling ``b``'s gradients."""
        for t in reversed(range(b.x_proj.shape[0])):
            gc_prev = b.gc_bufs[t % 2]
            self.backward(b.g_out[t], b.gh, b.gc, b.x_proj[t], b.hps[t], b.cs[t], b.g_xp[t], b.g_hp[t], gc_prev)
            b.step_done(t, gc_prev)


def _load(src: str, name: str, cell: Cell, compute: str) -> Callable:
    import triton
    import triton.language as tl

    # __name__: Triton's compiler reads each called function's __module__ (None without it)
    scope = {"triton": triton, "tl": tl, "__name__": __name__}
    return load_function(src, name, cell, scope, label=f"{name} {compute}")


@functools.lru_cache(maxsize=256)
def compile_kernels(cell: Cell) -> Kernels:
    """The cell's Triton kernels, generated once per cell (Triton compiles each on its first launch per dtype,
    and under ``TRITON_INTERPRET=1`` interprets them instead)."""
    return Kernels(cell)
