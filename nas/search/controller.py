"""The controller of Zoph & Le (2017): a stacked LSTM that emits a child's decisions one at a time.

At step t the LSTM reads the embedding of decision t-1's action (a learned start input at t = 0), and the
softmax head of decision t's *kind* turns its top hidden state into a distribution over that decision's
choices. Decisions of one kind (every node's "comb", every node's "act", both "node" indices) share a head and
an embedding table; each layer hyperparameter is its own kind. Logits may be shaped as ENAS does:
``tanh_constant * tanh(logits / temperature)``.

:meth:`Controller.sample` draws actions from an explicit ``torch.Generator`` and returns them with their
summed log-probability and entropy (both differentiable). :meth:`Controller.evaluate` (one action list) and
:meth:`Controller.evaluate_many` (a batch in one pass) score given actions under the current weights by
teacher forcing; updates are asynchronous, so a child sampled from an older policy is scored by the newest
one. All of them run the same loop (:meth:`Controller._run`), so they agree.
"""

from __future__ import annotations

import dataclasses
import math
import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from search_spaces.cell import Decision

REWARDS: tuple[str, ...] = ("c/ppl^2", "c/ppl")
"""Reward shapes :func:`nas.search.reinforce.reward_of` knows: Zoph & Le 2017 use c/ppl^2, ENAS uses c/ppl."""


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


@dataclass(frozen=True)
class ControllerConfig:
    """The controller network and its REINFORCE update. Each default names its source."""

    lstm_layers: int = 2
    """LSTM layers (Zoph & Le 2017: 2 layers of 35 units; ENAS, Pham et al. 2018: 1 layer of 100)."""
    lstm_units: int = 35
    """Units per LSTM layer, also the embedding width (Zoph & Le 2017: 35; ENAS: 100)."""
    temperature: float | None = 5.0
    """Logits are divided by this before the tanh squash (ENAS PTB: 5.0). None disables it."""
    tanh_constant: float | None = 2.5
    """Logits become ``tanh_constant * tanh(logits)``, bounding them to +-tanh_constant, which keeps the policy
    from collapsing early (ENAS PTB: 2.5). None disables it."""
    entropy_weight: float = 1e-3
    """Weight beta of the entropy bonus in the loss (ENAS's TF ptb_search.sh: 1e-3; its CIFAR-10 flags and
    carpedm20/ENAS-pytorch: 1e-4). Measured here (bench/RESULTS.md, 2026-11-27 pilots, 100 children x 3 seeds):
    with normalized advantages 1e-3 found 13.63 ± 0.65, 1e-2 14.16 ± 0.48 (random search: 14.34 ± 0.32).
    0 disables it."""
    lr: float = 0.03
    """Adam learning rate. Zoph & Le 2017 use 5e-4 to 6e-4 over ~15,000 children; at the few hundred children
    of a laptop search that barely moves the policy (the old default: entropy 40.1 -> 40.0 nats over 100
    children, best 14.74 vs random 14.15). Measured here (bench/RESULTS.md, 2026-11-27 pilots, 100 children x 3
    seeds, per-decision heads): 0.01 14.65 (2 seeds), 0.03 13.63 ± 0.65, 0.05 13.74 ± 0.77."""
    baseline_decay: float = 0.95
    """Decay d of the moving-average baseline, b <- d*b + (1-d)*R. Zoph & Le give none; ENAS (TF) uses 0.99
    or 0.999 over thousands of controller steps, the PyTorch port carpedm20/ENAS-pytorch 0.95. We take 0.95:
    the baseline averages over ~1/(1-d) = 20 children, so it keeps up with a policy that improves within the
    few hundred children of a laptop search (0.999 would still mostly remember its first reward)."""
    reward: str = "c/ppl^2"
    """Reward shape: "c/ppl^2" (Zoph & Le 2017) or "c/ppl" (ENAS), of validation perplexity."""
    reward_constant: float = 80.0
    """The constant c of the reward (Zoph & Le 2017: 80; ENAS also uses 80 with c/ppl)."""
    grad_clip: float | None = 5.0
    """Clip the controller's gradient norm to this (ours: a safety net against one outlying advantage; the
    papers give none and carpedm20/ENAS-pytorch disables it). None disables it."""
    normalize_advantage: bool = True
    """Divide each advantage by a moving estimate of its own scale (per fidelity; nas.search.reinforce.Baselines), so
    the update, and its balance with the entropy bonus, does not depend on the reward's scale, which moves a
    hundredfold between character level (c/ppl^2 ~ 0.1-1) and word level (1e-3-1e-2). Ours; the papers use raw
    advantages. At character level both measured alike (bench/RESULTS.md, 2026-11-27 pilots: normalized
    13.63 ± 0.65, raw 13.10 ± 0.56, 3 seeds each); it is on so that one set of settings holds across corpora."""
    update_every: int = 1
    """Update the controller after every m finished children, without waiting for any others
    (Zoph & Le 2017 update asynchronously; 1 means after each child). Measured here: 4 children per update
    found 14.25 ± 1.08 against 13.63 ± 0.65 for 1 (bench/RESULTS.md, 2026-11-27 pilots)."""
    learn_from_reused: bool = False
    """Whether a child whose outcome was reused (its spec was already trained in this search, see
    nas.search.searcher) teaches the searcher again. False (ours): an outcome teaches once, when its child was trained;
    learning from every reuse would feed the same single-seed reward to the controller again and again as a
    policy converges, reinforcing lucky draws. True was the behaviour before 2026-12-02."""
    init_range: float = 0.1
    """Weights are initialised uniformly in [-init_range, init_range] (ENAS: 0.1; Zoph & Le 2017 use 0.08)."""
    share_heads: bool = False
    """True: one softmax head (and feedback embedding) per decision kind, as in Zoph & Le and ENAS. False (ours)
    gives every decision its own head, which learns per-node choices (e.g. "the root is not a sigmoid", which
    no child survives) in far fewer updates: measured here 13.63 ± 0.65 against 17.74 ± 7.01 for shared heads
    (bench/RESULTS.md, 2026-11-27 pilots, 100 children x 3 seeds), and on a toy target in tests."""

    def __post_init__(self) -> None:
        for name in ("lstm_layers", "lstm_units", "update_every"):
            v = getattr(self, name)
            if not _is_int(v) or v < 1:
                raise ValueError(f"controller.{name}: {v!r} is not allowed; use a whole number >= 1")
        for name in ("lr", "reward_constant", "init_range"):
            v = getattr(self, name)
            if not _is_number(v) or not v > 0:
                raise ValueError(f"controller.{name}: {v!r} is not allowed; use a finite number > 0")
        for name in ("temperature", "tanh_constant", "grad_clip"):
            v = getattr(self, name)
            if v is not None and (not _is_number(v) or not v > 0):
                raise ValueError(
                    f"controller.{name}: {v!r} is not allowed; use a finite number > 0, or None to disable")
        if not _is_number(self.entropy_weight) or self.entropy_weight < 0:
            raise ValueError(
                f"controller.entropy_weight: {self.entropy_weight!r} is not allowed; use a finite number >= 0"
            )
        if not _is_number(self.baseline_decay) or not 0 <= self.baseline_decay < 1:
            raise ValueError(
                f"controller.baseline_decay: {self.baseline_decay!r} is not allowed; use a number in [0, 1)"
            )
        if self.reward not in REWARDS:
            raise ValueError(f"controller.reward: {self.reward!r} is not one of {', '.join(REWARDS)}")
        if not isinstance(self.normalize_advantage, bool):
            raise ValueError(f"controller.normalize_advantage: {self.normalize_advantage!r} is not allowed; use "
                             "true or false")
        if not isinstance(self.learn_from_reused, bool):
            raise ValueError(f"controller.learn_from_reused: {self.learn_from_reused!r} is not allowed; use true or "
                             "false")
        if not isinstance(self.share_heads, bool):
            raise ValueError(f"controller.share_heads: {self.share_heads!r} is not allowed; use true or false")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ControllerConfig:
        """Build from a mapping (e.g. a TOML table); unknown keys are errors that list the allowed ones."""
        if not isinstance(d, Mapping):
            raise ValueError(f"controller: expected a table of settings, got {type(d).__name__}")
        allowed = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(d) - set(allowed))
        if unknown:
            raise ValueError(
                f"controller: unknown key(s) {', '.join(map(str, unknown))}; allowed: {', '.join(allowed)}")
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; :meth:`from_dict` inverts it."""
        return dataclasses.asdict(self)


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
