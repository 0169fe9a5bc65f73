"""The controller of Zoph & Le (2017): a stacked LSTM that emits a child's decisions one at a time.

At step t the LSTM reads the embedding of decision t-1's action (a learned start input at t = 0), and the
softmax head of decision t's *kind* turns its top hidden state into a distribution over that decision's
choices. Decisions of one kind (every node's "comb", every node's "act", both "node" indices) share a head and
an embedding table; each layer hyperparameter is its own kind. Logits may be shaped as ENAS does:
``tanh_constant * tanh(logits / temperature)``. With ``layer_floor`` f, a layer hyperparameter's distribution is
``(1 - f) * softmax + f / K``, and its log-probability is that mixture's.

:meth:`Controller.sample` draws actions from an explicit ``torch.Generator`` and returns them with their
summed log-probability and entropy (both differentiable). :meth:`Controller.evaluate` (one action list) and
:meth:`Controller.evaluate_many` (a batch in one pass) score given actions under the current weights by
teacher forcing; updates are asynchronous, so a child sampled from an older policy is scored by the newest
one. All of them run the same loop (:meth:`Controller._run`), so they agree.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from nas.search.controller_config import ControllerConfig
from search_spaces.cell import Decision
from search_spaces.hparams import LAYER_KIND


class Sample(NamedTuple):
    """One draw from the controller."""

    actions: list[int]
    """One index per decision, into that decision's choices."""
    log_prob: Tensor
    """Scalar: sum over decisions of log pi(a_t | a_<t), differentiable."""
    entropy: Tensor
    """Scalar: sum over decisions of the entropy of each step's distribution, differentiable."""


class Controller(nn.Module):
    """An LSTM policy over a fixed sequence of decisions (see the module docstring)."""

    def __init__(self, decisions: Sequence[Decision], config: ControllerConfig) -> None:
        super().__init__()
        if len(decisions) == 0:
            raise ValueError("decisions: the controller needs at least one decision")
        self.decisions: tuple[Decision, ...] = tuple(decisions)
        self.config = config
        # Kinds in order of first appearance; a head and an embedding table per kind.
        kinds: list[str] = []
        sizes: dict[str, int] = {}
        def kind_of(d: Decision) -> str:
            return d.kind if config.share_heads else d.name

        for d in self.decisions:
            if d.size < 1:
                raise ValueError(f"decision {d.name}: has no choices")
            kind = kind_of(d)
            if kind not in sizes:
                kinds.append(kind)
                sizes[kind] = d.size
            elif sizes[kind] != d.size:
                raise ValueError(
                    f"decision {d.name}: kind {d.kind!r} has {sizes[kind]} choices elsewhere but {d.size} here; "
                    f"decisions that share a kind share a softmax head, so give them the same number of choices"
                )
        self.kinds: tuple[str, ...] = tuple(kinds)
        self._kind_index: tuple[int, ...] = tuple(kinds.index(kind_of(d)) for d in self.decisions)
        self._floor: tuple[float, ...] = tuple(config.layer_floor if d.kind.startswith(LAYER_KIND) else 0.0
                                               for d in self.decisions)
        units = config.lstm_units
        self.start = nn.Parameter(torch.zeros(1, units))  # (1, H): the input of the first step
        self.lstm = nn.ModuleList(nn.LSTMCell(units, units) for _ in range(config.lstm_layers))
        self.heads = nn.ModuleList(nn.Linear(units, sizes[k]) for k in kinds)
        self.embeddings = nn.ModuleList(nn.Embedding(sizes[k], units) for k in kinds)
        for p in self.parameters():
            nn.init.uniform_(p, -config.init_range, config.init_range)

    def shape_logits(self, logits: Tensor) -> Tensor:
        """ENAS logit shaping: divide by the temperature, then squash to +-tanh_constant."""
        if self.config.temperature is not None:
            logits = logits / self.config.temperature
        if self.config.tanh_constant is not None:
            logits = self.config.tanh_constant * torch.tanh(logits)
        return logits

    def _run(
        self, batch: int, actions: Tensor | None, generator: torch.Generator | None, greedy: bool = False
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Walk the decisions for ``batch`` sequences at once: sample, take the argmax, or teacher-force
        ``actions`` (B, T). Returns actions (B, T), log-probs (B,) and entropies (B,)."""
        x = self.start.expand(batch, -1)  # (B, H)
        zeros = self.start.new_zeros(batch, self.start.shape[1])  # (B, H)
        state = [(zeros, zeros) for _ in self.lstm]  # per layer (h, c), each (B, H)
        chosen: list[Tensor] = []
        step_log_probs: list[Tensor] = []
        step_entropies: list[Tensor] = []
        for t, k in enumerate(self._kind_index):
            for layer, cell in enumerate(self.lstm):
                state[layer] = cell(x, state[layer])
                x = state[layer][0]  # (B, H)
            logits = self.shape_logits(self.heads[k](x))  # (B, K)
            log_p = torch.log_softmax(logits, dim=-1)  # (B, K)
            if self._floor[t] > 0:  # a layer decision's floored mixture
                log_p = ((1 - self._floor[t]) * log_p.exp() + self._floor[t] / log_p.shape[-1]).log()
            p = log_p.exp()  # (B, K)
            if actions is not None:
                a = actions[:, t]  # (B,)
            elif greedy:
                a = logits.argmax(dim=-1)  # (B,)
            else:
                a = torch.multinomial(p.detach(), 1, generator=generator).squeeze(1)  # (B,)
            chosen.append(a)
            step_log_probs.append(log_p.gather(1, a.unsqueeze(1)).squeeze(1))  # (B,)
            step_entropies.append(-(p * log_p).sum(dim=-1))  # (B,)
            if t + 1 < len(self._kind_index):
                x = self.embeddings[k](a)  # (B, H): feeds decision t back as the input of step t + 1
        return (
            torch.stack(chosen, dim=1),  # (B, T)
            torch.stack(step_log_probs, dim=1).sum(dim=1),  # (B,)
            torch.stack(step_entropies, dim=1).sum(dim=1),  # (B,)
        )

    def sample(self, generator: torch.Generator) -> Sample:
        """Draw one action per decision from the current policy, using only ``generator`` for randomness.

        The generator must live on the controller's device.
        """
        return self.sample_many(generator, 1)[0]

    def sample_many(self, generator: torch.Generator, n: int) -> list[Sample]:
        """``n`` independent draws in one batched pass (e.g. to fill ``n`` idle workers at once)."""
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"n: {n!r} is not allowed; use a whole number >= 1")
        actions, log_probs, entropies = self._run(n, None, generator)
        return [Sample(actions[i].tolist(), log_probs[i], entropies[i]) for i in range(n)]

    def evaluate(self, actions: Sequence[int]) -> tuple[Tensor, Tensor]:
        """Teacher-forced (log-prob, entropy) of ``actions`` under the current weights; both scalars with grad."""
        log_probs, entropies = self.evaluate_many([actions])
        return log_probs[0], entropies[0]

    def evaluate_many(self, batch: Sequence[Sequence[int]]) -> tuple[Tensor, Tensor]:
        """:meth:`evaluate` for several action lists in one pass: log-probs (B,) and entropies (B,)."""
        if len(batch) == 0:
            raise ValueError("actions: evaluate_many needs at least one action list")
        for actions in batch:
            self.check(actions)
        device = self.start.device
        forced = torch.tensor([[operator.index(a) for a in actions] for actions in batch], device=device)  # (B, T)
        _, log_probs, entropies = self._run(len(batch), forced, None)
        return log_probs, entropies

    @torch.no_grad()
    def greedy(self) -> list[int]:
        """The policy's mode, decided step by step: the argmax action at each decision."""
        return self._run(1, None, None, greedy=True)[0][0].tolist()

    def get_extra_state(self) -> dict[str, Any]:
        """Saved in ``state_dict()``: the decision sequence the weights belong to, checked on load."""
        return {"decisions": [[d.name, d.kind, d.size] for d in self.decisions]}

    def set_extra_state(self, state: Any) -> None:
        saved = [tuple(x) for x in state["decisions"]]
        mine = [(d.name, d.kind, d.size) for d in self.decisions]
        if saved != mine:
            i = next((i for i, (a, b) in enumerate(zip(saved, mine)) if a != b), min(len(saved), len(mine)))
            was = f"{saved[i]}" if i < len(saved) else "nothing"
            now = f"{mine[i]}" if i < len(mine) else "nothing"
            raise ValueError(
                f"controller state: saved for {len(saved)} decisions, this controller has {len(mine)}; decision {i} "
                f"(name, kind, choices) was {was}, is {now}; restore with the search space the state was saved with"
            )

    def check(self, actions: Sequence[int]) -> None:
        """Raise ValueError unless ``actions`` has one in-range index per decision."""
        if len(actions) != len(self.decisions):
            raise ValueError(f"actions: the controller takes {len(self.decisions)} decisions, got {len(actions)}")
        for i, (d, a) in enumerate(zip(self.decisions, actions)):
            try:
                ok = not isinstance(a, bool) and 0 <= operator.index(a) < d.size
            except TypeError:
                ok = False
            if not ok:
                raise ValueError(f"actions[{i}] ({d.name}): {a!r} is not in 0..{d.size - 1}")
