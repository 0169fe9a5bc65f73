"""Layer hyperparameters the controller decides: a small declarative space of named categorical choices.

A :class:`LayerSpace` maps names (``num_layers``, ``hidden_size``, ``dropout``, ...) to tuples of allowed values;
a point of it is an :class:`HParams`. Which names a child model understands is the child's business (see
``workers.model.ChildConfig``); this module only checks the shape of the space and membership of values.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from search_spaces.cell import Decision

Value = int | float | str | bool

LAYER_KIND = "hp."
"""The prefix of a layer hyperparameter decision's name and kind (``hp.hidden_size``): what tells it from a cell's."""


def _check_value(field: str, v: Any) -> None:
    if not isinstance(v, (int, float, str, bool)):
        raise ValueError(f"{field}: {v!r} is not allowed; choices are numbers, strings or booleans")


@dataclass(frozen=True)
class HParams:
    """One point of a layer space: an immutable, hashable name -> value mapping (kept sorted by name)."""

    items: tuple[tuple[str, Value], ...] = ()

    @classmethod
    def of(cls, values: Mapping[str, Value]) -> HParams:
        if not isinstance(values, Mapping):
            raise ValueError(f"hparams: expected a mapping of name -> value, got {type(values).__name__}")
        for k, v in values.items():
            _check_value(f"hparams.{k}", v)
        return cls(tuple(sorted(values.items())))

    def as_dict(self) -> dict[str, Value]:
        return dict(self.items)

    def __getitem__(self, name: str) -> Value:
        for k, v in self.items:
            if k == name:
                return v
        raise KeyError(name)

    def __iter__(self) -> Iterator[str]:
        return (k for k, _ in self.items)

    def __len__(self) -> int:
        return len(self.items)


@dataclass(frozen=True)
class LayerSpace:
    """Named categorical choices, in the order the controller decides them."""

    choices: tuple[tuple[str, tuple[Value, ...]], ...] = ()

    def __post_init__(self) -> None:
        self.validate()

    @classmethod
    def of(cls, choices: Mapping[str, Sequence[Value]]) -> LayerSpace:
        """Build from ``{"num_layers": [1, 2], ...}``; raises ValueError naming a bad entry."""
        if not isinstance(choices, Mapping):
            raise ValueError(f"layers: expected a table of name = [choices], got {type(choices).__name__}")
        items = []
        for name, vals in choices.items():
            if isinstance(vals, (str, bytes)) or not isinstance(vals, Sequence):
                raise ValueError(f"layers.{name}: expected a list of choices, got {vals!r}")
            items.append((name, tuple(vals)))
        return cls(tuple(items))

    def validate(self) -> None:
        seen = set()
        for name, vals in self.choices:
            if not isinstance(name, str) or not name.isidentifier():
                raise ValueError(f"layers: {name!r} is not a valid hyperparameter name; use letters, digits and _")
            if name in seen:
                raise ValueError(f"layers.{name}: listed twice")
            seen.add(name)
            if len(vals) == 0:
                raise ValueError(f"layers.{name}: the list of choices is empty; give at least one value")
            for v in vals:
                _check_value(f"layers.{name}", v)
            if len(set(vals)) != len(vals):
                raise ValueError(f"layers.{name}: choices {list(vals)} contain duplicates")

    def as_dict(self) -> dict[str, list[Value]]:
        return {name: list(vals) for name, vals in self.choices}

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.choices)

    @property
    def decisions(self) -> tuple[Decision, ...]:
        """One decision per hyperparameter; each is its own kind, so each gets its own controller head."""
        return tuple(Decision(f"{LAYER_KIND}{name}", f"{LAYER_KIND}{name}", vals) for name, vals in self.choices)

    def check(self, hp: HParams) -> None:
        """Raise ValueError unless ``hp`` picks one allowed value for exactly this space's names."""
        if set(hp) != set(self.names):
            raise ValueError(
                f"hparams: names {sorted(hp)} do not match the space's {sorted(self.names)}"
            )
        for name, vals in self.choices:
            if hp[name] not in vals or type(hp[name]) not in {type(v) for v in vals}:
                raise ValueError(f"hparams.{name}: {hp[name]!r} is not one of {list(vals)}")

    def encode(self, hp: HParams) -> list[int]:
        self.check(hp)
        return [list(vals).index(hp[name]) for name, vals in self.choices]

    def decode(self, actions: Sequence[int]) -> HParams:
        if len(actions) != len(self.choices):
            raise ValueError(f"actions: this layer space takes {len(self.choices)} decisions, got {len(actions)}")
        out = {}
        for i, ((name, vals), a) in enumerate(zip(self.choices, actions)):
            if not isinstance(a, int) or isinstance(a, bool) or not 0 <= a < len(vals):
                raise ValueError(f"actions[{i}] (hp.{name}): {a!r} is not in 0..{len(vals) - 1}")
            out[name] = vals[a]
        return HParams.of(out)

    def sample(self, rng: random.Random) -> HParams:
        return self.decode([rng.randrange(len(vals)) for _, vals in self.choices])


DEFAULT_LAYER_SPACE = LayerSpace.of({"num_layers": [1, 2], "hidden_size": [64, 128], "dropout": [0.0, 0.1, 0.3]})
"""A small space that trains quickly on a CPU; searches configure their own."""
