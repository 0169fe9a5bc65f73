"""The whole search space: a cell space followed by a layer space, and its points (:class:`ChildSpec`)."""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from search_spaces.cell import Cell, CellSpace, Decision
from search_spaces.hparams import DEFAULT_LAYER_SPACE, HParams, LayerSpace


@dataclass(frozen=True)
class ChildSpec:
    """What a child is: its cell and its layer hyperparameters. Frozen, hashable, JSON round-trippable."""

    cell: Cell
    hparams: HParams = field(default_factory=HParams)

    def to_dict(self) -> dict[str, Any]:
        return {"cell": self.cell.to_dict(), "hparams": self.hparams.as_dict()}

    @classmethod
    def from_dict(cls, d: Any) -> ChildSpec:
        """Accepts ``{"cell": ..., "hparams": ...}`` or a bare cell object (then hparams are empty)."""
        if not isinstance(d, dict):
            raise ValueError(f"spec: expected a JSON object, got {type(d).__name__}")
        if "cell" not in d:
            return cls(Cell.from_dict(d))
        unknown = set(d) - {"cell", "hparams"}
        if unknown:
            raise ValueError(f"spec: unknown key(s) {', '.join(sorted(unknown))}; allowed: cell, hparams")
        return cls(Cell.from_dict(d["cell"]), HParams.of(d.get("hparams") or {}))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> ChildSpec:
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"spec: malformed JSON ({e})") from None
        return cls.from_dict(d)


@dataclass(frozen=True)
class SearchSpace:
    """Decisions = the cell's (node combs and acts, inject, indices) then one per layer hyperparameter."""

    cell: CellSpace = field(default_factory=CellSpace)
    layers: LayerSpace = DEFAULT_LAYER_SPACE

    @property
    def decisions(self) -> tuple[Decision, ...]:
        return self.cell.decisions + self.layers.decisions

    def encode(self, spec: ChildSpec) -> list[int]:
        return self.cell.encode(spec.cell) + self.layers.encode(spec.hparams)

    def decode(self, actions: Sequence[int]) -> ChildSpec:
        n = len(self.cell.decisions)
        if len(actions) != len(self.decisions):
            raise ValueError(f"actions: this search space takes {len(self.decisions)} decisions, got {len(actions)}")
        return ChildSpec(self.cell.decode(list(actions[:n])), self.layers.decode(list(actions[n:])))

    def sample(self, rng: random.Random) -> ChildSpec:
        """A uniformly random point."""
        return self.decode([rng.randrange(d.size) for d in self.decisions])
