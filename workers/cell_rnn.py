"""Any cell as a multi-layer recurrent ``nn.Module``, with the interface of ``nn.LSTM``.

Tensors are time-major, like ``nn.LSTM``'s default and pytorch/examples ``word_language_model``:
input ``(T, B, input_size)``, output ``(T, B, hidden_size)``, state ``(h, c)`` each ``(num_layers, B, hidden_size)``,
zeros when not given.

Each layer has ``input_proj = Linear(input_size, N*H)`` (with bias) and ``hidden_proj = Linear(H, N*H, bias=False)``;
leaf i uses chunk i of both. The input projection runs once for all T steps; each step then does one recurrent
matmul and the cell's straight-line step function.

Two paths compute the same numbers: the default ``fused=True`` runs each layer's whole sequence as one autograd
node with a generated backward; ``fused=False`` is the reference, the step of :mod:`workers.cell_code` under plain
autograd (the code ``nas export`` writes). The fused path's element-wise work runs as torch operations
(:mod:`workers.fused_cell`, ~10-20% faster than the reference on CPU), as one generated Triton kernel per step
each way (:mod:`workers.triton_cell`, for GPUs) or as one generated C function per step each way
(:mod:`workers.native_cell`, for CPUs); :func:`kernel_path` says which runs. Under bfloat16 autocast the fused
path stores the whole recurrence, state included, in bfloat16.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import nn

from search_spaces.cell import Cell
from workers import native_cell, triton_cell
from workers.cell_code import compile_step
from workers.child_settings import KERNELS
from workers.fused_cell import CellSequence, compile_cell
from workers.kernel_sequence import KernelSequence
from workers.triton_cell import compile_kernels, use_triton

_warned: set[str] = set()


def check_kernels(kernels: str) -> None:
    """Raise ValueError unless ``kernels`` is one of :data:`workers.child_settings.KERNELS` and can run here."""
    if kernels not in KERNELS:
        raise ValueError(f"cell kernels: {kernels!r} is not one of {', '.join(KERNELS)}")
    if kernels == "triton" and not triton_cell.available():
        raise ValueError("cell kernels 'triton' need Triton: pip install triton, or use 'auto'")
    if kernels == "native":
        try:
            native_cell.toolchain()
        except native_cell.NativeUnavailable as e:
            raise ValueError(f"cell kernels 'native' need a C compiler ({e}); or use 'auto'") from None


def kernel_path(kernels: str, cell: Cell, tensor: torch.Tensor) -> str:
    """Which path runs ``cell``'s sequences of tensors like ``tensor`` under the ``kernels`` setting: "triton"
    (CUDA, see :func:`workers.triton_cell.use_triton`), "native" (generated C on a CPU, float32 or float64;
    "auto" takes it when the cell compiles) or "torch" (torch operations). When "auto" or "native" cannot use
    the C kernels on a CPU, a warning says why, once per process and reason; an explicit "native" whose cell
    does not compile raises :class:`workers.native_cell.NativeUnavailable`."""
    if use_triton(kernels, tensor):
        return "triton"
    if kernels not in ("auto", "native") or (kernels == "auto" and tensor.device.type != "cpu"):
        return "torch"
    why = native_cell.supports(tensor)
    if not why:
        try:
            native_cell.load(cell)
            return "native"
        except native_cell.NativeUnavailable as e:
            if kernels == "native":
                raise
            why = str(e)
    reason = why.split(":")[0]
    if reason not in _warned:
        _warned.add(reason)
        warnings.warn(f"cells run with torch operations, not the generated C kernels: {why}", stacklevel=2)
    return "torch"


class CellLayer(nn.Module):
    """One layer of a searched cell unrolled over time."""

    def __init__(self, cell: Cell, input_size: int, hidden_size: int, fused: bool = True,
                 kernels: str = "auto") -> None:
        super().__init__()
        check_kernels(kernels)
        self.cell, self.fused, self.kernels = cell, fused, kernels
        self.input_size, self.hidden_size = input_size, hidden_size
        self.input_proj = nn.Linear(input_size, cell.base * hidden_size)
        self.hidden_proj = nn.Linear(hidden_size, cell.base * hidden_size, bias=False)
        self._step = compile_step(cell)
        self._paths: dict[tuple[torch.device, torch.dtype], str] = {}  # kernel_path per device and dtype

    def forward(
        self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        h, c = state  # (B, H) each
        x_proj = self.input_proj(x)  # (T, B, N*H), one matmul for all steps
        w_hidden = self.hidden_proj.weight  # (N*H, H)
        if self.fused:
            dtype = x_proj.dtype  # bfloat16 under autocast: the whole recurrence is stored in it
            args = (x_proj, w_hidden.to(dtype), h.to(dtype), c.to(dtype))
            where = (x_proj.device, x_proj.dtype)
            if where not in self._paths:
                self._paths[where] = kernel_path(self.kernels, self.cell, x_proj)
            path = self._paths[where]
            if path == "triton":
                out, h, c = KernelSequence.apply(*args, compile_kernels(self.cell))
            elif path == "native":
                out, h, c = KernelSequence.apply(*args, native_cell.load(self.cell))
            else:
                out, h, c = CellSequence.apply(*args, compile_cell(self.cell))
            return out, (h, c)
        step = self._step
        outputs = []
        for x_t in x_proj.unbind(0):  # (B, N*H)
            h, c = step(x_t, F.linear(h, w_hidden), c)
            outputs.append(h)
        return torch.stack(outputs), (h, c)  # (T, B, H)

    def extra_repr(self) -> str:
        return (f"base={self.cell.base}, input_size={self.input_size}, hidden_size={self.hidden_size}"
                + ("" if self.fused else ", fused=False")
                + ("" if self.kernels == "auto" else f", kernels={self.kernels}"))


class CellRNN(nn.Module):
    """Stacked :class:`CellLayer`s with optional dropout between layers (as ``nn.LSTM(dropout=...)``)."""

    def __init__(self, cell: Cell, input_size: int, hidden_size: int, num_layers: int = 1, dropout: float = 0.0,
                 fused: bool = True, kernels: str = "auto"):
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers: {num_layers} is not allowed; use 1 or more")
        self.cell, self.hidden_size, self.num_layers = cell, hidden_size, num_layers
        self.dropout = dropout
        sizes = [input_size] + [hidden_size] * (num_layers - 1)
        self.layers = nn.ModuleList(CellLayer(cell, s, hidden_size, fused, kernels) for s in sizes)

    def initial_state(self, batch_size: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        zeros = like.new_zeros(self.num_layers, batch_size, self.hidden_size)
        return zeros, zeros.clone()

    def forward(
        self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        if state is None:
            state = self.initial_state(x.shape[1], x)
        h0, c0 = state  # (L, B, H) each
        hs, cs = [], []
        out = x
        for i, layer in enumerate(self.layers):
            if i > 0 and self.dropout > 0:
                out = F.dropout(out, self.dropout, self.training)
            out, (h, c) = layer(out, (h0[i], c0[i]))
            hs.append(h)
            cs.append(c)
        return out, (torch.stack(hs), torch.stack(cs))
