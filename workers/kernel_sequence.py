"""One layer's sequence on generated kernels, as one autograd Function: :class:`KernelSequence`.

The kernels are a cell's Triton kernels (:class:`workers.triton_cell.Kernels`, GPUs) or its compiled C step
functions (:class:`workers.native_cell.NativeKernels`, CPUs). Both run one kernel per step each way around torch's
matrix products, on contiguous buffers laid out the same way, and the backward recomputes the nodes from the
projections and ``c_{t-1}``; what differs is only how a step's kernel is called (``forward_sequence`` and
``backward_sequence`` of the kernels object).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch.autograd.function import once_differentiable


def forward_buffers(x_proj: torch.Tensor, h0: torch.Tensor, c0: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(x_proj, h0, out, cs, hps)``: the inputs made contiguous, and the outputs to fill: ``out`` (T, B, H) for
    h_1 .. h_T, ``cs`` (T+1, B, H) for c_0 .. c_T (c_0 copied in), ``hps`` (T, B, N*H) for the recurrent
    projections."""
    x_proj, h0 = x_proj.contiguous(), h0.contiguous()
    steps, batch, width = x_proj.shape
    out = x_proj.new_empty(steps, batch, h0.shape[1])
    cs = x_proj.new_empty(steps + 1, batch, h0.shape[1])
    hps = x_proj.new_empty(steps, batch, width)
    cs[0].copy_(c0)
    return x_proj, h0, out, cs, hps


def save_for_backward(ctx, kernels, x_proj: torch.Tensor, w_hidden: torch.Tensor, h0: torch.Tensor,
                      out: torch.Tensor, cs: torch.Tensor, hps: torch.Tensor
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Keep on ``ctx`` what the backward reads; the forward's outputs ``(out, h_T, c_T)``."""
    ctx.kernels = kernels
    ctx.save_for_backward(x_proj, w_hidden, h0, out, cs, hps)
    return out, out[-1].clone(), cs[-1].clone()


@dataclass
class Backward:
    """A backward pass's tensors: what the forward saved, the incoming gradients made contiguous (zeros where
    autograd passed None) as ``g_out`` and the running ``gh`` / ``gc``, the gradients w.r.t. the projections to
    fill (``g_hp`` is ``g_xp`` itself when every leaf adds), a buffer for h_{t-1}'s gradient and two that
    c_{t-1}'s alternates between."""
    kernels: Any
    x_proj: torch.Tensor
    w_hidden: torch.Tensor
    h0: torch.Tensor
    out: torch.Tensor
    cs: torch.Tensor
    hps: torch.Tensor
    g_out: torch.Tensor
    gh: torch.Tensor
    gc: torch.Tensor
    g_xp: torch.Tensor
    g_hp: torch.Tensor
    gh_next: torch.Tensor
    gc_bufs: tuple[torch.Tensor, torch.Tensor]
    g_hp_steps: tuple[torch.Tensor, ...] = ()
    """``g_hp``'s steps as views made once (a step's view costs more than its small matrix product's call)."""

    def __post_init__(self) -> None:
        self.g_hp_steps = self.g_hp.unbind(0)

    @classmethod
    def start(cls, ctx, g_out: torch.Tensor | None, g_h: torch.Tensor | None, g_c: torch.Tensor | None
              ) -> Backward:
        x_proj, w_hidden, h0, out, cs, hps = ctx.saved_tensors
        g_xp = torch.empty_like(x_proj)
        return cls(ctx.kernels, x_proj, w_hidden, h0, out, cs, hps,
                   g_out=torch.zeros_like(out) if g_out is None else g_out.contiguous(),
                   gh=torch.zeros_like(h0) if g_h is None else g_h.contiguous(),
                   gc=torch.zeros_like(h0) if g_c is None else g_c.contiguous(),
                   g_xp=g_xp, g_hp=g_xp if ctx.kernels.shared_grad else torch.empty_like(x_proj),
                   gh_next=torch.empty_like(h0), gc_bufs=(torch.empty_like(h0), torch.empty_like(h0)))

    def step_done(self, t: int, gc_prev: torch.Tensor) -> None:
        """After step t's kernel: h_{t-1}'s gradient from the recurrent projection's, into ``gh_next`` (the kernel
        has read ``gh``: from the second step on they are one buffer), and c_{t-1}'s, which the kernel wrote to
        ``gc_prev``."""
        torch.mm(self.g_hp_steps[t], self.w_hidden, out=self.gh_next)
        self.gh, self.gc = self.gh_next, gc_prev

    def gradients(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, None]:
        """The gradients w.r.t. the autograd Function's inputs ``(x_proj, w_hidden, h0, c0, kernels)``."""
        return (self.g_xp, recurrent_weight_grad(self.g_hp, self.h0, self.out), self.gh.clone(), self.gc.clone(),
                None)


def recurrent_weight_grad(g_hp: torch.Tensor, h0: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """(N*H, H): sum over t of ghp_t^T h_{t-1}, as one matrix product over all steps."""
    h_prev = torch.cat((h0.unsqueeze(0), out[:-1]))  # (T, B, H): h_0 .. h_{T-1}
    return g_hp.reshape(-1, g_hp.shape[-1]).t() @ h_prev.reshape(-1, h0.shape[1])


class KernelSequence(torch.autograd.Function):
    """``(x_proj (T,B,N*H), w_hidden (N*H,H), h0, c0, kernels) -> (out (T,B,H), h_T, c_T)``: one layer, with
    the contract of :class:`workers.fused_cell.CellSequence` and every step's element-wise work in one kernel call
    each way."""

    @staticmethod
    def forward(ctx, x_proj: torch.Tensor, w_hidden: torch.Tensor, h0: torch.Tensor, c0: torch.Tensor,
                kernels) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x_proj, h0, out, cs, hps = forward_buffers(x_proj, h0, c0)
        kernels.forward_sequence(x_proj, w_hidden, h0, out, cs, hps)
        return save_for_backward(ctx, kernels, x_proj, w_hidden, h0, out, cs, hps)

    @staticmethod
    @once_differentiable
    def backward(ctx, g_out: torch.Tensor | None, g_h: torch.Tensor | None, g_c: torch.Tensor | None):
        b = Backward.start(ctx, g_out, g_h, g_c)
        b.kernels.backward_sequence(b)
        return b.gradients()
