"""What the cell-path tests compare: a recurrent module's outputs and the gradients of a weighted sum of them with
respect to its initial state and every parameter (zeros for a parameter the loss does not reach)."""

import torch


def outputs_and_grads(rnn, x, state, weights):
    h0, c0 = (s.clone().requires_grad_() for s in state)
    out, (h, c) = rnn(x, (h0, c0))
    loss = sum((t * w).sum() for t, w in zip((out, h, c), weights))
    params = list(rnn.parameters())
    grads = torch.autograd.grad(loss, [h0, c0] + params, allow_unused=True)
    return (out, h, c), [torch.zeros_like(p) if g is None else g for g, p in zip(grads, [h0, c0] + params)]
