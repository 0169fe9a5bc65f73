"""REINFORCE with an exponential-moving-average baseline (Williams 1992; Zoph & Le 2017).

Reward. A child that finished training (status ``"completed"``) with validation perplexity ``ppl`` earns
``c / ppl**k`` (k = 2 in Zoph & Le 2017, k = 1 in ENAS; c = ``reward_constant``); a child an early-stopping
scheduler stopped at a rung earns the same of its perplexity there (the searcher passes it as completed at that
fidelity). A child that failed or diverged, or whose perplexity is NaN, infinite or <= 0, earns exactly 0.0. Zero is the
infimum of ``c / ppl**k`` over all perplexities, so a broken child is never rated above a working one, and
the search carries on (a broken child lowers the baseline and its decisions become less likely) instead of
crashing on a NaN.

Baseline. :class:`EMABaseline` keeps ``b``. For each reward R, in the order results arrive:
``advantage = R - b`` with ``b`` as it was *before* R, then ``b <- d*b + (1 - d)*R``. The first reward ever
seen initialises ``b = R``, so its advantage is 0 (no signal rather than a signal against an arbitrary 0).

Fidelities. With early stopping, a child stopped at a rung has a perplexity measured after fewer training
batches than a finished one, so its reward is on another scale. :class:`Baselines` keeps one moving average per
fidelity key (:func:`baseline_key`: the rung's batch count for a child stopped there, "final" for every child that
ran its whole budget or broke), and a child's advantage is taken against the baseline of its own key only.
With ``normalize_advantage`` each key also keeps a moving average of the squared deviation ``s^2``, and the
advantage is ``(R - b) / s`` (both as they were before R; the first deviation of a key that is not negligible,
above 0.1% of the baseline, sets ``s``; until then the advantage is its sign), clipped to
+-:data:`ADVANTAGE_CLIP`, which makes the update independent of the reward's scale (c/ppl^2 is ~0.1-1 at character
level, 1e-3-1e-2 at word level) without letting one child dominate while the scale is still uncertain.

Risk-seeking. With ``risk_seeking`` = eps, a key's baseline is instead the (1 - eps) quantile of its last
``round(1 / (1 - d))`` rewards (the moving average's horizon; linear interpolation), and only a child above it
teaches: its advantage is ``R - quantile`` (normalized as above), every other child's is 0 (Petersen et al. 2021,
"Deep Symbolic Regression", risk-seeking policy gradient: the search keeps its best child, so the controller should
raise its best rewards, not its average). The first reward of a key meets an empty window: advantage 0.

Update. :func:`reinforce_step` minimises, averaged over the children of the batch,
``-(R - b) * log pi(a) - entropy_weight * H(pi)``, where ``log pi(a)`` and the entropy are recomputed by
:meth:`Controller.evaluate_many` (teacher forcing) under the newest weights, since children may come from
an older policy.

Elite. With ``elite_size`` K > 0 the update also imitates the best children seen so far: :class:`Elite` keeps the
K distinct action lists of highest reward among fully trained children (priority-queue training, Abolafia et al.
2018, "Neural Program Synthesis with Priority Queue Training"; self-imitation, Oh et al. 2018), and the loss gains
``- elite_weight * mean over the elite of log pi(a_elite)``: maximum likelihood on the best architectures found,
so the policy samples near them (as evolution mutates its tournament winners) while REINFORCE keeps learning from
every child. Replaying the elite trains no child: it costs controller updates only.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from nas.search.controller import Controller
from nas.search.controller_config import ControllerConfig
from workers.outcome import STATUSES


def reward_of(val_ppl: float, status: str, config: ControllerConfig) -> float:
    """The reward of a child: ``c / ppl**2`` or ``c / ppl`` (``config.reward``); 0.0 for a broken child.

    Raises ValueError only for a status outside :data:`workers.outcome.STATUSES` (a bug in the caller, not the
    child).
    """
    if status not in STATUSES:
        raise ValueError(f"status: {status!r} is not one of {', '.join(STATUSES)}")
    if status != "completed":
        return 0.0
    try:
        ppl = float(val_ppl)
    except (TypeError, ValueError):
        return 0.0
    if not math.isfinite(ppl) or ppl <= 0:
        return 0.0
    reward = config.reward_constant / ppl
    if config.reward == "c/ppl^2":
        reward /= ppl
    # A perplexity below 1 is impossible for a proper model; a tiny one would overflow to inf: treat as broken.
    return reward if math.isfinite(reward) else 0.0


def finite_reward(reward: float) -> float:
    """``reward`` as a float; a baseline refuses one that is not finite (:func:`reward_of` maps broken children
    to 0.0)."""
    reward = float(reward)
    if not math.isfinite(reward):
        raise ValueError(f"reward: {reward!r} is not finite; map broken children to 0.0 with reward_of")
    return reward


@dataclass
class EMABaseline:
    """Exponential moving average of rewards; ``value`` is None until the first reward."""

    decay: float
    """d in b <- d*b + (1 - d)*R, in [0, 1)."""
    value: float | None = None
    """The current baseline b, or None before any reward."""

    def __post_init__(self) -> None:
        d = self.decay
        if isinstance(d, bool) or not isinstance(d, (int, float)) or not 0 <= d < 1:
            raise ValueError(f"baseline.decay: {d!r} is not allowed; use a number in [0, 1)")
        if self.value is not None and not math.isfinite(self.value):
            raise ValueError(f"baseline.value: {self.value!r} is not allowed; use a finite number or None")

    def update(self, reward: float) -> tuple[float, float]:
        """Return (baseline before this reward, advantage = reward - that baseline), then move the baseline."""
        reward = finite_reward(reward)
        before = reward if self.value is None else self.value
        self.value = self.decay * before + (1 - self.decay) * reward
        return before, reward - before

    def state_dict(self) -> dict[str, Any]:
        return {"decay": self.decay, "value": self.value}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        restored = EMABaseline(decay=state["decay"], value=state["value"])  # validates
        self.decay, self.value = restored.decay, restored.value


ADVANTAGE_CLIP = 5.0
"""Normalized advantages are clipped to this many (moving) standard deviations."""
NEGLIGIBLE = 1e-3
"""A deviation below this fraction of the baseline does not set a key's scale (identical or near-identical
rewards, e.g. a reused child's, would otherwise make the next advantage huge)."""

FINAL = "final"
"""The baseline key of children that ran their whole budget (or broke): see :func:`baseline_key`."""


def baseline_key(status: str, fidelity: int) -> str:
    """The fidelity key a child's advantage is measured in: its rung for a child an early-stopping scheduler
    stopped (status "stopped"), :data:`FINAL` for every other."""
    return str(fidelity) if status == "stopped" else FINAL


def quantile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile of ``values`` (not empty), interpolating linearly between order statistics (numpy's
    default)."""
    ordered = sorted(values)
    at = q * (len(ordered) - 1)
    low = math.floor(at)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (at - low) * (ordered[high] - ordered[low])


@dataclass
class Baselines:
    """One :class:`EMABaseline` per fidelity key (or, with ``risk``, one window of recent rewards per key: the module
    docstring's "Risk-seeking"), and with ``normalize`` one moving scale per key."""

    decay: float
    normalize: bool = False
    means: dict[str, EMABaseline] = field(default_factory=dict)
    scales: dict[str, float] = field(default_factory=dict)
    """Moving average of the squared deviation ``(R - b)^2`` per key."""
    risk: float | None = None
    """eps of risk-seeking: the baseline is the (1 - eps) quantile of the key's window; None: the moving average."""
    windows: dict[str, list[float]] = field(default_factory=dict)
    """The last ``round(1 / (1 - decay))`` rewards per key (risk-seeking only)."""

    def update(self, reward: float, key: str = FINAL) -> tuple[float, float]:
        """(baseline before ``reward``, advantage) in ``key``'s fidelity; then the baseline and the scale move."""
        if self.risk is None:
            mean = self.means.setdefault(key, EMABaseline(self.decay))
            first = mean.value is None
            before, advantage = mean.update(reward)
        else:
            first, before, advantage = self._quantile_update(reward, key)
        if self.normalize:
            advantage = self._normalized(key, first, before, advantage)
        return before, (advantage if self.risk is None else max(advantage, 0.0))

    def _quantile_update(self, reward: float, key: str) -> tuple[bool, float, float]:
        """(first reward of the key, the window's (1 - risk) quantile before ``reward``, their difference); then
        ``reward`` joins the window and the oldest leaves once it is full."""
        reward = finite_reward(reward)
        window = self.windows.setdefault(key, [])
        first = not window
        before = reward if first else quantile(window, 1 - self.risk)
        window.append(reward)
        del window[:-max(2, round(1 / (1 - self.decay)))]
        return first, before, reward - before

    def _normalized(self, key: str, first: bool, before: float, advantage: float) -> float:
        """``advantage`` over the key's moving scale, clipped; its sign only while the scale is not yet set."""
        squared, floor = advantage * advantage, (NEGLIGIBLE * abs(before)) ** 2 + 1e-300
        scale = self.scales.get(key)
        if scale is None:  # no scale yet: the sign only; the first deviation that is not negligible sets it
            if not first and squared > floor:
                self.scales[key] = squared
            return math.copysign(1.0, advantage) if squared > floor else 0.0
        self.scales[key] = self.decay * scale + (1 - self.decay) * squared
        return max(-ADVANTAGE_CLIP, min(ADVANTAGE_CLIP, advantage / math.sqrt(scale)))

    def state_dict(self) -> dict[str, Any]:
        return {"decay": self.decay, "normalize": self.normalize,
                "means": {k: b.value for k, b in self.means.items()}, "scales": dict(self.scales),
                "risk": self.risk, "windows": {k: list(w) for k, w in self.windows.items()}}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.decay, self.normalize = state["decay"], state["normalize"]
        self.means = {k: EMABaseline(self.decay, v) for k, v in state["means"].items()}
        self.scales = dict(state["scales"])
        self.risk = state.get("risk")  # states saved before risk-seeking existed have neither
        self.windows = {k: list(w) for k, w in state.get("windows", {}).items()}


@dataclass
class Elite:
    """The ``size`` best distinct action lists seen so far, by reward (ties: the earlier stays), best first."""

    size: int
    members: list[tuple[float, list[int]]] = field(default_factory=list)
    """(reward, actions), best first."""

    def add(self, actions: Sequence[int], reward: float) -> bool:
        """Offer a child; returns whether it joined. Only a positive finite reward can join (a broken child's 0
        never does); an action list already in the elite keeps its first reward (an outcome teaches once)."""
        reward, actions = float(reward), [int(a) for a in actions]
        if self.size == 0 or not math.isfinite(reward) or reward <= 0:
            return False
        if any(a == actions for _, a in self.members):
            return False
        if len(self.members) == self.size and reward <= self.members[-1][0]:
            return False
        at = next((i for i, (r, _) in enumerate(self.members) if reward > r), len(self.members))
        self.members.insert(at, (reward, actions))
        del self.members[self.size:]
        return True

    def actions(self) -> list[list[int]]:
        """The members' action lists, best first (what :func:`reinforce_step` takes as ``elite``)."""
        return [a for _, a in self.members]


def make_optimizer(controller: Controller, config: ControllerConfig) -> torch.optim.Adam:
    """Adam on the controller's parameters (Zoph & Le 2017), learning rate ``config.lr``."""
    return torch.optim.Adam(controller.parameters(), lr=config.lr)


def reinforce_step(
    controller: Controller,
    optimizer: torch.optim.Optimizer,
    baselines: Baselines,
    batch: Sequence[tuple[Sequence[int], float, str]],
    config: ControllerConfig,
    elite: Sequence[Sequence[int]] = (),
) -> dict[str, float]:
    """One REINFORCE update from finished children ``(actions, reward, baseline key)``; rewards come from
    :func:`reward_of`, keys from :func:`baseline_key`. ``elite`` (:meth:`Elite.actions`) adds
    ``- config.elite_weight * mean log pi(elite)`` to the loss (the module docstring's "Elite").

    Rewards update their key's baseline one at a time in batch order, each advantage taken against that baseline
    just before its own reward (the same as ``update_every=1`` would give). Returns diagnostics under
    ``controller/...`` keys; ``controller/baseline`` is the baseline the first child of the batch was measured
    against.
    """
    if len(batch) == 0:
        raise ValueError("batch: reinforce_step needs at least one finished child")
    # Rewards.
    rewards = [float(r) for _, r, _ in batch]
    for i, r in enumerate(rewards):
        if not math.isfinite(r):
            raise ValueError(f"batch[{i}]: reward {r!r} is not finite; map broken children to 0.0 with reward_of")
    # Baselines and advantages, each in its child's fidelity.
    measured = [baselines.update(r, key) for r, (_, _, key) in zip(rewards, batch)]
    baseline_before, advantages = measured[0][0], [a for _, a in measured]
    # Loss: mean over children of -(R - b) * log pi(a) - beta * entropy, under the newest weights; then the elite's
    # negative log-likelihood (children and elite scored in one pass).
    scored, entropies = controller.evaluate_many(
        [actions for actions, _, _ in batch] + [list(a) for a in elite])  # (B+E,), (B+E,)
    log_probs, elite_log_probs = scored[:len(batch)], scored[len(batch):]  # (B,), (E,)
    entropies = entropies[:len(batch)]  # (B,)
    adv = torch.tensor(advantages, dtype=log_probs.dtype, device=log_probs.device)  # (B,)
    loss = (-adv * log_probs - config.entropy_weight * entropies).mean()
    if len(elite) > 0:
        loss = loss - config.elite_weight * elite_log_probs.mean()
    # Backward, clip, step.
    optimizer.zero_grad()
    loss.backward()
    max_norm = config.grad_clip if config.grad_clip is not None else math.inf
    grad_norm = torch.nn.utils.clip_grad_norm_(controller.parameters(), max_norm)
    optimizer.step()
    return {
        "controller/reward": sum(rewards) / len(rewards),
        "controller/baseline": baseline_before,
        "controller/advantage": sum(advantages) / len(advantages),
        "controller/entropy": entropies.mean().item(),
        "controller/log_prob": log_probs.mean().item(),
        "controller/loss": loss.item(),
        "controller/grad_norm": grad_norm.item(),
        **({"controller/elite_log_prob": elite_log_probs.mean().item()} if len(elite) > 0 else {}),
    }
