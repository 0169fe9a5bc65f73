"""Regularized evolution (Real et al. 2019, "Regularized Evolution for Image Classifier Architecture Search"),
asynchronous, over the same decisions as the controller (``nas.search.searcher.EvolutionSearcher`` adapts it to Ray
Tune).

- The first ``population`` children are drawn uniformly at random.
- Then every new child (whenever a slot frees up: no generations, no barrier) is a mutation of a tournament
  winner: ``sample_size`` members of the population drawn at random without replacement, the fittest of them
  is the parent, and the child copies the parent's decisions but one, drawn uniformly among the decisions
  (cell or layer choice), which takes another of its values uniformly.
- Aging: each finished child joins the population and the *oldest* member leaves once there are more than
  ``population``, whatever its fitness; this regularisation is what separates it from plain tournament selection.
- Fitness is the child's reward (:func:`nas.search.reinforce.reward_of`: c/ppl^2 of validation perplexity, 0 for a
  broken child); a child an early-stopping scheduler stopped at a rung competes with its perplexity at that rung, which
  is higher than it would have reached, so such children rank low, as the scheduler judged.

The population and the tournament RNG are saved and restored with the searcher's state; a restored search
continues exactly.
"""

from __future__ import annotations

import dataclasses
import random
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from workers.setting import check, setting


@dataclass(frozen=True)
class EvolutionConfig:
    """Settings of ``algo = "evolution"`` (the ``[evolution]`` table)."""

    population: int = setting(20, low=1)
    """Children kept alive (P). Real et al. 2019 use 100 of 20,000 children; 20 suits searches of ~150 children,
    where a population of 100 would leave most of the budget to the random start."""
    sample_size: int = setting(5, low=1)
    """Tournament size (S): members compared to choose a parent. Real et al. 2019 use 25 of 100; 5 of 20 keeps
    the same selection pressure (S/P = 1/4)."""

    def __post_init__(self) -> None:
        check(self, "evolution")
        if self.sample_size > self.population:
            raise ValueError(f"evolution.sample_size: {self.sample_size} is more than the population "
                             f"({self.population}); use at most {self.population}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class Population:
    """The population of regularized evolution and its proposals (no Ray: the searcher in :mod:`nas.search.searcher`
    adapts it to Ray Tune)."""

    def __init__(self, sizes: Sequence[int], config: EvolutionConfig, rng: random.Random) -> None:
        self.sizes, self.config, self.rng = tuple(sizes), config, rng
        self.members: deque[tuple[list[int], float]] = deque()  # (actions, fitness), oldest first
        self.seen = 0  # children that have joined the population so far

    def propose(self) -> list[int]:
        """A random child while the population fills up, then a mutation of a tournament winner."""
        if self.seen < self.config.population or not self.members:
            return [self.rng.randrange(n) for n in self.sizes]
        k = min(self.config.sample_size, len(self.members))
        parent = max(self.rng.sample(list(self.members), k), key=lambda member: member[1])[0]
        return self.mutate(parent)

    def mutate(self, actions: Sequence[int]) -> list[int]:
        """``actions`` with one decision (one with more than one choice) changed to another of its values."""
        child = list(actions)
        choices = [i for i, n in enumerate(self.sizes) if n > 1]
        if not choices:
            return child
        i = self.rng.choice(choices)
        child[i] = self.rng.choice([v for v in range(self.sizes[i]) if v != child[i]])
        return child

    def add(self, actions: Sequence[int], fitness: float) -> None:
        """A finished child joins; the oldest member leaves once there are more than ``population``."""
        self.members.append((list(actions), float(fitness)))
        self.seen += 1
        while len(self.members) > self.config.population:
            self.members.popleft()  # aging: the oldest leaves, however fit

    def state_dict(self) -> dict[str, Any]:
        return {"rng": self.rng.getstate(), "members": list(self.members), "seen": self.seen}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.rng.setstate(state["rng"])
        self.members = deque((list(a), float(f)) for a, f in state["members"])
        self.seen = state["seen"]
