"""REINFORCE with an exponential-moving-average baseline (Williams 1992; Zoph & Le 2017).

Reward. A child that finished training (status ``"completed"``) with validation perplexity ``ppl`` earns
``c / ppl**k`` (k = 2 in Zoph & Le 2017, k = 1 in ENAS; c = ``reward_constant``). A child that failed,
diverged or was stopped, or whose perplexity is NaN, infinite or <= 0, earns exactly 0.0. Zero is the
infimum of ``c / ppl**k`` over all perplexities, so a broken child is never rated above a working one, and
the search carries on (a broken child lowers the baseline and its decisions become less likely) instead of
crashing on a NaN.

Baseline. :class:`EMABaseline` keeps ``b``. For each reward R, in the order results arrive:
``advantage = R - b`` with ``b`` as it was *before* R, then ``b <- d*b + (1 - d)*R``. The first reward ever
seen initialises ``b = R``, so its advantage is 0 (no signal rather than a signal against an arbitrary 0).

Update. :func:`reinforce_step` minimises, averaged over the children of the batch,
``-(R - b) * log pi(a) - entropy_weight * H(pi)``, where ``log pi(a)`` and the entropy are recomputed by
:meth:`Controller.evaluate_many` (teacher forcing) under the newest weights, since children may come from
an older policy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch

from nas.controller import Controller, ControllerConfig

CHILD_STATUSES: tuple[str, ...] = ("completed", "diverged", "failed", "stopped")
"""How a child can end. Only ``"completed"`` children earn a non-zero reward."""


def reward_of(val_ppl: float, status: str, config: ControllerConfig) -> float:
    """The reward of a child: ``c / ppl**2`` or ``c / ppl`` (``config.reward``); 0.0 for a broken child.

    Raises ValueError only for a status outside :data:`CHILD_STATUSES` (a bug in the caller, not the child).
    """
    if status not in CHILD_STATUSES:
        raise ValueError(f"status: {status!r} is not one of {', '.join(CHILD_STATUSES)}")
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
        reward = float(reward)
        if not math.isfinite(reward):
            raise ValueError(f"reward: {reward!r} is not finite; map broken children to 0.0 with reward_of")
        before = reward if self.value is None else self.value
        self.value = self.decay * before + (1 - self.decay) * reward
        return before, reward - before

    def state_dict(self) -> dict[str, Any]:
        return {"decay": self.decay, "value": self.value}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        restored = EMABaseline(decay=state["decay"], value=state["value"])  # validates
        self.decay, self.value = restored.decay, restored.value


def make_optimizer(controller: Controller, config: ControllerConfig) -> torch.optim.Adam:
    """Adam on the controller's parameters (Zoph & Le 2017), learning rate ``config.lr``."""
    return torch.optim.Adam(controller.parameters(), lr=config.lr)


def reinforce_step(
    controller: Controller,
    optimizer: torch.optim.Optimizer,
    baseline: EMABaseline,
    batch: Sequence[tuple[Sequence[int], float]],
    config: ControllerConfig,
) -> dict[str, float]:
    """One REINFORCE update from finished children ``(actions, reward)``; rewards come from :func:`reward_of`.

    Rewards update the baseline one at a time in batch order, each advantage taken against the baseline just
    before its own reward (the same as ``update_every=1`` would give). Returns diagnostics under
    ``controller/...`` keys; ``controller/baseline`` is the baseline before this batch.
    """
    if len(batch) == 0:
        raise ValueError("batch: reinforce_step needs at least one finished child")
    # Rewards.
    rewards = [float(r) for _, r in batch]
    for i, r in enumerate(rewards):
        if not math.isfinite(r):
            raise ValueError(f"batch[{i}]: reward {r!r} is not finite; map broken children to 0.0 with reward_of")
    # Baseline and advantages.
    baseline_before = baseline.value if baseline.value is not None else rewards[0]
    advantages = [baseline.update(r)[1] for r in rewards]
    # Loss: mean over children of -(R - b) * log pi(a) - beta * entropy, under the newest weights.
    log_probs, entropies = controller.evaluate_many([actions for actions, _ in batch])  # (B,), (B,)
    adv = torch.tensor(advantages, dtype=log_probs.dtype, device=log_probs.device)  # (B,)
    loss = (-adv * log_probs - config.entropy_weight * entropies).mean()
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
    }
