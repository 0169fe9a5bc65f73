"""The buffers and the recurrent weight's gradient shared by the kernel-backed layer sequences
(:class:`workers.triton_cell.TritonSequence`, :class:`workers.native_cell.NativeSequence`): both run one kernel
per step each way around torch's matrix products, on contiguous buffers laid out the same way, and save the same
tensors for the backward (which recomputes the nodes from the projections and ``c_{t-1}``)."""

from __future__ import annotations

import torch


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


def backward_buffers(x_proj: torch.Tensor, h0: torch.Tensor, out: torch.Tensor, g_out: torch.Tensor | None,
                     g_h: torch.Tensor | None, g_c: torch.Tensor | None, shared_grad: bool):
    """``(g_out, gh, gc, g_xp, g_hp, gh_next, gc_bufs)``: the incoming gradients, contiguous (zeros where autograd
    passed None); the gradients w.r.t. the projections to fill (``g_hp`` is ``g_xp`` itself when every leaf adds);
    a buffer for h_{t-1}'s gradient and two that c_{t-1}'s alternates between."""
    g_out = torch.zeros_like(out) if g_out is None else g_out.contiguous()
    gh = torch.zeros_like(h0) if g_h is None else g_h.contiguous()
    gc = torch.zeros_like(h0) if g_c is None else g_c.contiguous()
    g_xp = torch.empty_like(x_proj)
    g_hp = g_xp if shared_grad else torch.empty_like(x_proj)
    return g_out, gh, gc, g_xp, g_hp, torch.empty_like(h0), (torch.empty_like(h0), torch.empty_like(h0))


def recurrent_weight_grad(g_hp: torch.Tensor, h0: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """(N*H, H): sum over t of ghp_t^T h_{t-1}, as one matrix product over all steps."""
    h_prev = torch.cat((h0.unsqueeze(0), out[:-1]))  # (T, B, H): h_0 .. h_{T-1}
    return g_hp.reshape(-1, g_hp.shape[-1]).t() @ h_prev.reshape(-1, h0.shape[1])
