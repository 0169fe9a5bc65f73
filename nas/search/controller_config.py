"""The settings of the controller and its REINFORCE update (``[controller]``): a frozen dataclass, no torch, so that
reading a search's settings (:mod:`nas.config`) does not import it. The network is :mod:`nas.search.controller`."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from workers.setting import check, setting

REWARDS: tuple[str, ...] = ("c/ppl^2", "c/ppl")
"""Reward shapes :func:`nas.search.reinforce.reward_of` knows: Zoph & Le 2017 use c/ppl^2, ENAS uses c/ppl."""


@dataclass(frozen=True)
class ControllerConfig:
    """The controller network and its REINFORCE update. Each default names its source."""

    lstm_layers: int = setting(2, low=1)
    """LSTM layers (Zoph & Le 2017: 2 layers of 35 units; ENAS, Pham et al. 2018: 1 layer of 100)."""
    lstm_units: int = setting(35, low=1)
    """Units per LSTM layer, also the embedding width (Zoph & Le 2017: 35; ENAS: 100)."""
    temperature: float | None = setting(5.0, above=0, none_means="to disable it")
    """Logits are divided by this before the tanh squash (ENAS PTB: 5.0). None disables it."""
    tanh_constant: float | None = setting(2.5, above=0, none_means="to disable it")
    """Logits become ``tanh_constant * tanh(logits)``, bounding them to +-tanh_constant, which keeps the policy
    from collapsing early (ENAS PTB: 2.5). None disables it."""
    entropy_weight: float = setting(1e-3, low=0)
    """Weight beta of the entropy bonus in the loss (ENAS's TF ptb_search.sh: 1e-3; its CIFAR-10 flags and
    carpedm20/ENAS-pytorch: 1e-4). Measured here (bench/RESULTS.md, 2026-11-27 pilots, 100 children x 3 seeds):
    with normalized advantages 1e-3 found 13.63 ± 0.65, 1e-2 14.16 ± 0.48 (random search: 14.34 ± 0.32).
    0 disables it."""
    lr: float = setting(0.03, above=0)
    """Adam learning rate. Zoph & Le 2017 use 5e-4 to 6e-4 over ~15,000 children; at the few hundred children
    of a laptop search that barely moves the policy (the old default: entropy 40.1 -> 40.0 nats over 100
    children, best 14.74 vs random 14.15). Measured here (bench/RESULTS.md, 2026-11-27 pilots, 100 children x 3
    seeds, per-decision heads): 0.01 14.65 (2 seeds), 0.03 13.63 ± 0.65, 0.05 13.74 ± 0.77."""
    baseline_decay: float = setting(0.95, low=0, below=1)
    """Decay d of the moving-average baseline, b <- d*b + (1-d)*R. Zoph & Le give none; ENAS (TF) uses 0.99
    or 0.999 over thousands of controller steps, the PyTorch port carpedm20/ENAS-pytorch 0.95. We take 0.95:
    the baseline averages over ~1/(1-d) = 20 children, so it keeps up with a policy that improves within the
    few hundred children of a laptop search (0.999 would still mostly remember its first reward)."""
    risk_seeking: float | None = setting(None, above=0, below=1, none_means="for the moving average")
    """eps of risk-seeking policy gradient (Petersen et al. 2021, "Deep Symbolic Regression": eps 0.05 of batches of
    1,000): the baseline is the (1 - eps) quantile of the last 1/(1 - baseline_decay) rewards, and only a child
    above it teaches (the others' advantage is 0), so the controller raises its best children rather than its
    average (nas.search.reinforce, "Risk-seeking"). None (the default): the moving-average baseline."""
    reward: str = setting("c/ppl^2", choices=REWARDS)
    """Reward shape: "c/ppl^2" (Zoph & Le 2017) or "c/ppl" (ENAS), of validation perplexity."""
    reward_constant: float = setting(80.0, above=0)
    """The constant c of the reward (Zoph & Le 2017: 80; ENAS also uses 80 with c/ppl)."""
    grad_clip: float | None = setting(5.0, above=0, none_means="to disable it")
    """Clip the controller's gradient norm to this (ours: a safety net against one outlying advantage; the
    papers give none and carpedm20/ENAS-pytorch disables it). None disables it."""
    normalize_advantage: bool = setting(True)
    """Divide each advantage by a moving estimate of its own scale (per fidelity; nas.search.reinforce.Baselines), so
    the update, and its balance with the entropy bonus, does not depend on the reward's scale, which moves a
    hundredfold between character level (c/ppl^2 ~ 0.1-1) and word level (1e-3-1e-2). Ours; the papers use raw
    advantages. At character level both measured alike (bench/RESULTS.md, 2026-11-27 pilots: normalized
    13.63 ± 0.65, raw 13.10 ± 0.56, 3 seeds each); it is on so that one set of settings holds across corpora."""
    update_every: int = setting(1, low=1)
    """Update the controller after every m finished children, without waiting for any others
    (Zoph & Le 2017 update asynchronously; 1 means after each child). Measured here: 4 children per update
    found 14.25 ± 1.08 against 13.63 ± 0.65 for 1 (bench/RESULTS.md, 2026-11-27 pilots)."""
    learn_from_reused: bool = setting(False)
    """Whether a child whose outcome was reused (its spec was already trained in this search, see
    nas.search.searcher) teaches the searcher again. False (ours): an outcome teaches once, when its child was trained;
    learning from every reuse would feed the same single-seed reward to the controller again and again as a
    policy converges, reinforcing lucky draws. True was the behaviour before 2026-12-02."""
    elite_size: int = setting(0, low=0)
    """K: the controller also learns, at every update, to propose the K best distinct children trained so far
    (maximum likelihood on a priority queue: Abolafia et al. 2018, "Neural Program Synthesis with Priority Queue
    Training", used K = 10; nas.search.reinforce.Elite). Only fully trained children with a positive reward join;
    reused outcomes do not. 0 (the default) disables it: it measured no better than without (elite_weight)."""
    elite_weight: float = setting(1.0, low=0)
    """Weight of the elite's negative log-likelihood in the controller's loss, against the REINFORCE term whose
    advantages are about +-1 with normalize_advantage (with raw advantages, ~1e-3 at word level, weight 1 makes the
    update almost pure imitation; Abolafia et al. 2018 train on the queue alone). Unused when elite_size is 0.
    Measured here (bench/RESULTS.md, 2026-12-07 pilot, K 10, 3 tuning seeds): weight 1 -0.25 against random
    search at equal work, 0.2 -0.82, the default without an elite +0.34."""
    layer_floor: float = setting(0.0, low=0, below=1)
    """f: each layer hyperparameter (hidden size, layers, dropout) is drawn from (1 - f) * the controller's softmax +
    f * uniform, so each of its K values keeps a probability of at least f / K however the policy moves; the log-prob
    REINFORCE differentiates is this mixture's, so the update stays on-policy. Cell decisions are not floored. Why:
    REINFORCE raises the mean reward, and a layer choice can leave the mean alone while moving the best children
    (bench/RESULTS.md, 2026-12-07: random children's mean reward was equal at hidden 32 and 64, the best ones were at
    64), so without a floor noise settles it. 0 (the default) disables it: f = 0.5 measured no better than the
    default (bench/RESULTS.md, 2026-12-07 second session, tuning seeds 0-4: -0.11 [-0.41, +0.19] at equal work)."""
    init_range: float = setting(0.1, above=0)
    """Weights are initialised uniformly in [-init_range, init_range] (ENAS: 0.1; Zoph & Le 2017 use 0.08)."""
    share_heads: bool = setting(False)
    """True: one softmax head (and feedback embedding) per decision kind, as in Zoph & Le and ENAS. False (ours)
    gives every decision its own head, which learns per-node choices (e.g. "the root is not a sigmoid", which
    no child survives) in far fewer updates: measured here 13.63 ± 0.65 against 17.74 ± 7.01 for shared heads
    (bench/RESULTS.md, 2026-11-27 pilots, 100 children x 3 seeds), and on a toy target in tests."""

    def __post_init__(self) -> None:
        check(self, "controller")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (what ``config.json`` holds; :func:`nas.config.config_from_dict` reads it back)."""
        return dataclasses.asdict(self)
