"""A child's whole training step captured once as a CUDA graph and replayed for every full BPTT window.

Even with one Triton kernel per cell step, a training step launches a few hundred small kernels (two per time
step and layer each way, plus embedding, softmax, clipping and the optimiser), and on a GPU their launch cost
from Python exceeds their run time. A CUDA graph records the launches of one step once (forward, loss, backward,
clipping, optimiser update) and replays them with one call.

How :class:`GraphedTrainStep` follows PyTorch's whole-network capture recipe (torch.cuda.graphs):

- the first ``warmup`` full windows train eagerly on a side stream (lazy initialisation, Triton compilation);
- the next full window is captured into static input, target and state buffers, then replayed; every later full
  window is copied into those buffers and replayed; the graph ends by copying the new state into the state
  buffers, so carrying the state to the next window costs nothing;
- windows of another length (the short last one of an epoch) train eagerly through the same parameters and
  optimiser state, and evaluation is eager;
- SGD's learning rate lives in a device tensor the graph reads, so the trainer's decay needs no new capture;
  Adam is created with ``capturable=True``;
- if capture fails, training continues eagerly and :attr:`GraphedTrainStep.status` says why.

A replayed step returns the graph's static loss tensor: read or accumulate it before the next step.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from workers.train import State, TrainStep


class GraphedTrainStep:
    """A :class:`workers.train.TrainStep` whose full windows replay a captured CUDA graph (module docstring)."""

    def __init__(self, eager: TrainStep, warmup: int = 3) -> None:
        if eager.device.type != "cuda":
            raise ValueError(f"CUDA graphs need a CUDA device, not {eager.device}")
        self.eager, self.warmup = eager, warmup
        self.status = "warming up"
        """"warming up", "captured", or "eager: <why capture failed>"."""
        self.graph: torch.cuda.CUDAGraph | None = None
        self._full_windows = 0
        self._stream = torch.cuda.Stream(eager.device)
        self._neg_lr = torch.tensor(-eager.config.lr, device=eager.device)  # SGD reads -lr here inside the graph

    @property
    def captured(self) -> bool:
        return self.graph is not None

    def set_lr(self, lr: float) -> None:
        self.eager.set_lr(lr)
        self._neg_lr.fill_(-lr)

    def __call__(self, inputs: torch.Tensor, targets: torch.Tensor, state: State | None
                 ) -> tuple[torch.Tensor, State]:
        full = inputs.shape[0] == self.eager.config.bptt
        if self.graph is not None and full and inputs.shape == self._inputs.shape:
            return self._replay(inputs, targets, state)
        if not full or self.status.startswith("eager") or self.graph is not None:
            return self.eager(inputs, targets, state)
        self._full_windows += 1
        if self._full_windows <= self.warmup:
            return self._on_side_stream(inputs, targets, state)
        try:
            self._capture(inputs, targets, state)
        except Exception as e:  # noqa: BLE001 - any capture failure means: train eagerly, and say why
            self.graph = None
            self.status = f"eager: capture failed ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
            torch.cuda.synchronize(self.eager.device)
            self.eager.optimizer.zero_grad(set_to_none=True)
            return self.eager(inputs, targets, state)
        self.status = "captured"
        return self._replay(inputs, targets, state)

    def _on_side_stream(self, inputs: torch.Tensor, targets: torch.Tensor, state: State | None
                        ) -> tuple[torch.Tensor, State]:
        self._stream.wait_stream(torch.cuda.current_stream(self.eager.device))
        with torch.cuda.stream(self._stream):
            loss, state = self.eager(inputs, targets, state)
        torch.cuda.current_stream(self.eager.device).wait_stream(self._stream)
        return loss, state

    def _capture(self, inputs: torch.Tensor, targets: torch.Tensor, state: State | None) -> None:
        eager = self.eager
        self._inputs, self._targets = inputs.clone(), targets.clone()
        if state is None:  # zeros, as the model starts from
            rnn = eager.model.rnn
            zeros = eager.model.encoder.weight.new_zeros(rnn.num_layers, inputs.shape[1], rnn.hidden_size)
            state = (zeros, zeros)
        self._h, self._c = (s.detach().clone().contiguous() for s in state)
        eager.optimizer.zero_grad(set_to_none=True)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            loss, (h, c) = eager.forward_backward(self._inputs, self._targets, (self._h, self._c))
            if eager.config.optimizer == "sgd":
                with torch.no_grad():  # as in torch.optim: the parameters are leaves that require grad
                    grads = [p.grad for p in eager.params]
                    torch._foreach_add_(eager.params, torch._foreach_mul(grads, self._neg_lr))
            else:
                eager.optimizer.step()  # Adam(capturable=True)
            self._loss = loss
            self._h.copy_(h)
            self._c.copy_(c)
        self.graph = graph

    def _replay(self, inputs: torch.Tensor, targets: torch.Tensor, state: State | None
                ) -> tuple[torch.Tensor, State]:
        self._inputs.copy_(inputs)
        self._targets.copy_(targets)
        if state is None:
            self._h.zero_()
            self._c.zero_()
        elif state[0].data_ptr() != self._h.data_ptr():  # the state came from an eager step
            self._h.copy_(state[0])
            self._c.copy_(state[1])
        self.graph.replay()
        return self._loss, (self._h, self._c)
