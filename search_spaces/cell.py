"""The recurrent cell search space of Zoph & Le (2017), as frozen values.

A cell of base N is a fixed balanced binary tree with N leaves and 2N - 1 nodes, numbered leaves first and
then level by level towards the root: for N = 8, nodes 0-7 are leaves, 8-11 combine leaf pairs (0,1) (2,3)
(4,5) (6,7), 12-13 combine (8,9) (10,11), and 14 is the root, whose output is h_t.

- Leaf i computes ``act(comb(x_i, h_i))`` with ``x_i = W_i x_t + b_i`` and ``h_i = U_i h_{t-1}`` (chunk i of
  one input projection and one recurrent projection).
- Internal node k computes ``act(comb(left, right))`` and has no weights.
- Memory ("cell inject" + "cell index"): the output ``a`` of node ``inject_node`` becomes
  ``inject_act(inject_comb(a, c_{t-1}))`` before any parent reads it, and ``c_t`` is the output of node
  ``output_node`` *before its activation* (and before any injection), i.e. ``comb(left, right)``.

A cell whose ``memory`` is ``None`` has no memory path (``c`` passes through unchanged); the search itself
always uses the paper's space with memory, but fixed cells such as the plain tanh RNN need none.

Everything here is pure: no torch, no I/O, no global RNG.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

COMBS: tuple[str, ...] = ("add", "elem_mult")
"""Ways to combine two inputs of a node, in controller-vocabulary order."""

ACTS: tuple[str, ...] = ("identity", "tanh", "sigmoid", "relu")
"""Activations of a node, in controller-vocabulary order."""

FORMAT_VERSION = 1
"""Version of the cell JSON format written by :meth:`Cell.to_json`."""


def num_nodes(base: int) -> int:
    """Number of tree nodes of a cell with ``base`` leaves."""
    return 2 * base - 1


def children(base: int, node: int) -> tuple[int, int] | None:
    """The (left, right) children of ``node``, or None for a leaf."""
    if node < base:
        return None
    # Each level's first node index and width, walking up from the leaves.
    first, width = 0, base
    while node >= first + width:
        first, width = first + width, width // 2
    child_first = first - 2 * width
    k = node - first
    return child_first + 2 * k, child_first + 2 * k + 1


def levels(base: int) -> list[list[int]]:
    """Node indices per tree level, leaves first, root last."""
    out, first, width = [], 0, base
    while width >= 1:
        out.append(list(range(first, first + width)))
        first, width = first + width, width // 2
    return out


def _check_base(base: Any) -> None:
    if not isinstance(base, int) or isinstance(base, bool) or base < 2 or base & (base - 1):
        raise ValueError(f"cell.base: {base!r} is not allowed; use a power of two >= 2 (2, 4 or 8 as in the paper)")


def _check_choice(field: str, value: Any, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise ValueError(f"{field}: {value!r} is not one of {', '.join(allowed)}")


def _check_node(field: str, value: Any, base: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < num_nodes(base):
        raise ValueError(f"{field}: {value!r} is not a node index of a base-{base} cell; use 0..{num_nodes(base) - 1}")


@dataclass(frozen=True)
class Node:
    """One tree node: how it combines its two inputs and which activation it applies."""

    comb: str
    """One of :data:`COMBS`."""
    act: str
    """One of :data:`ACTS`."""


@dataclass(frozen=True)
class Memory:
    """The cell inject and cell index decisions: where ``c_{t-1}`` enters and where ``c_t`` comes from."""

    inject_comb: str
    """How ``c_{t-1}`` is combined with the inject node's output (one of :data:`COMBS`)."""
    inject_act: str
    """Activation applied after that combination (one of :data:`ACTS`)."""
    inject_node: int
    """Node whose output receives ``c_{t-1}``."""
    output_node: int
    """Node whose pre-activation output becomes ``c_t``."""


@dataclass(frozen=True)
class Cell:
    """A recurrent cell: a base-N tree of (comb, act) nodes plus an optional memory path. Frozen and hashable."""

    base: int
    """Number of leaves N (a power of two)."""
    nodes: tuple[Node, ...]
    """The 2N - 1 nodes, leaves first, root last."""
    memory: Memory | None
    """Cell inject + cell index, or None for a cell without memory state."""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming the first bad field and the allowed values."""
        _check_base(self.base)
        if not isinstance(self.nodes, tuple) or len(self.nodes) != num_nodes(self.base):
            n = len(self.nodes) if isinstance(self.nodes, (tuple, list)) else self.nodes
            raise ValueError(f"cell.nodes: a base-{self.base} cell has {num_nodes(self.base)} nodes, got {n!r}")
        for i, node in enumerate(self.nodes):
            if not isinstance(node, Node):
                raise ValueError(f"cell.nodes[{i}]: expected a Node(comb, act), got {node!r}")
            _check_choice(f"cell.nodes[{i}].comb", node.comb, COMBS)
            _check_choice(f"cell.nodes[{i}].act", node.act, ACTS)
        m = self.memory
        if m is None:
            return
        if not isinstance(m, Memory):
            raise ValueError(f"cell.memory: expected a Memory or None, got {m!r}")
        _check_choice("cell.memory.inject_comb", m.inject_comb, COMBS)
        _check_choice("cell.memory.inject_act", m.inject_act, ACTS)
        _check_node("cell.memory.inject_node", m.inject_node, self.base)
        _check_node("cell.memory.output_node", m.output_node, self.base)

    @property
    def root(self) -> int:
        """Index of the root node (its output is h_t)."""
        return num_nodes(self.base) - 1

    # ---- JSON -------------------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; :meth:`from_dict` inverts it."""
        d: dict[str, Any] = {
            "version": FORMAT_VERSION,
            "base": self.base,
            "nodes": [[n.comb, n.act] for n in self.nodes],
            "memory": None,
        }
        if self.memory is not None:
            m = self.memory
            d["memory"] = {
                "inject_comb": m.inject_comb,
                "inject_act": m.inject_act,
                "inject_node": m.inject_node,
                "output_node": m.output_node,
            }
        return d

    @classmethod
    def from_dict(cls, d: Any) -> Cell:
        """Build a cell from :meth:`to_dict` output; raises ValueError naming the bad field."""
        if not isinstance(d, dict):
            raise ValueError(f"cell: expected a JSON object, got {type(d).__name__}")
        unknown = set(d) - {"version", "base", "nodes", "memory"}
        if unknown:
            raise ValueError(
                f"cell: unknown key(s) {', '.join(sorted(unknown))}; allowed: version, base, nodes, memory")
        version = d.get("version", FORMAT_VERSION)
        if version != FORMAT_VERSION:
            raise ValueError(f"cell.version: {version!r} is not supported; this program reads version {FORMAT_VERSION}")
        for key in ("base", "nodes"):
            if key not in d:
                raise ValueError(f"cell.{key}: missing")
        nodes = d["nodes"]
        if not isinstance(nodes, list):
            raise ValueError(f"cell.nodes: expected a list of [comb, act] pairs, got {nodes!r}")
        parsed = []
        for i, pair in enumerate(nodes):
            if not isinstance(pair, (list, tuple)) or len(pair) != 2:
                raise ValueError(f"cell.nodes[{i}]: expected a [comb, act] pair, got {pair!r}")
            parsed.append(Node(pair[0], pair[1]))
        mem = d.get("memory")
        memory = None
        if mem is not None:
            keys = ("inject_comb", "inject_act", "inject_node", "output_node")
            if not isinstance(mem, dict) or set(mem) != set(keys):
                raise ValueError(f"cell.memory: expected an object with keys {', '.join(keys)}, got {mem!r}")
            memory = Memory(**{k: mem[k] for k in keys})
        return cls(base=d["base"], nodes=tuple(parsed), memory=memory)

    def to_json(self) -> str:
        """Compact, canonical JSON (same cell -> same string)."""
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Cell:
        """Parse :meth:`to_json` output; raises ValueError on malformed JSON or an invalid cell."""
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"cell: malformed JSON ({e})") from None
        return cls.from_dict(d)

    # ---- controller actions -------------------------------------------------------------------------------

    def to_actions(self) -> list[int]:
        """The decisions the controller emits for this cell, as indices into each decision's vocabulary."""
        return CellSpace(self.base, memory=self.memory is not None).encode(self)

    # ---- human-readable form ------------------------------------------------------------------------------

    def formula(self) -> str:
        """One line per node, e.g. ``n8 = tanh(n0 ⊙ n1)``; see the module docstring for x_i and h_i."""
        return "\n".join(formula_lines(self))


def _apply(comb: str, act: str, a: str, b: str) -> tuple[str, str]:
    """(pre-activation, output) expressions of ``act(comb(a, b))``."""
    pre = f"{a} + {b}" if comb == "add" else f"{a} ⊙ {b}"
    out = pre if act == "identity" else f"{act}({pre})"
    return pre, out


def formula_lines(cell: Cell) -> list[str]:
    """The lines of :meth:`Cell.formula`."""
    lines = []
    m = cell.memory
    for k, node in enumerate(cell.nodes):
        kids = children(cell.base, k)
        a, b = (f"x{k}", f"h{k}") if kids is None else (f"n{kids[0]}", f"n{kids[1]}")
        pre, out = _apply(node.comb, node.act, a, b)
        lines.append(f"n{k} = {out}")
        if m is not None and m.output_node == k:
            lines.append(f"c_t = {pre}")
        if m is not None and m.inject_node == k:
            _, injected = _apply(m.inject_comb, m.inject_act, f"n{k}", "c_{t-1}")
            lines.append(f"n{k} = {injected}")
    lines.append(f"h_t = n{cell.root}")
    if m is None:
        lines.append("c_t = c_{t-1}")
    return lines


# ---- the decision sequence ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Decision:
    """One controller decision: its name, its kind (decisions of one kind share a softmax head) and vocabulary."""

    name: str
    kind: str
    choices: tuple[Any, ...]

    @property
    def size(self) -> int:
        return len(self.choices)


@dataclass(frozen=True)
class CellSpace:
    """All cells of one base: the decision sequence a controller emits, and encode/decode against it.

    Order (as in Zoph & Le): for each node 0..2N-2 its comb then its act; then (with memory) the cell inject
    comb and act, then the cell index: inject node, output node.
    """

    base: int = 8
    """Number of leaves N (a power of two)."""
    memory: bool = True
    """Whether cells have the cell inject / cell index memory path (the paper's space does)."""

    def __post_init__(self) -> None:
        _check_base(self.base)

    @property
    def decisions(self) -> tuple[Decision, ...]:
        ds: list[Decision] = []
        for k in range(num_nodes(self.base)):
            ds.append(Decision(f"n{k}.comb", "comb", COMBS))
            ds.append(Decision(f"n{k}.act", "act", ACTS))
        if self.memory:
            node_ids = tuple(range(num_nodes(self.base)))
            ds.append(Decision("inject.comb", "comb", COMBS))
            ds.append(Decision("inject.act", "act", ACTS))
            ds.append(Decision("inject.node", "node", node_ids))
            ds.append(Decision("output.node", "node", node_ids))
        return tuple(ds)

    def size(self) -> int:
        """Number of distinct cells in this space."""
        total = 1
        for d in self.decisions:
            total *= d.size
        return total

    def encode(self, cell: Cell) -> list[int]:
        """Cell -> action list (indices into each decision's choices)."""
        if cell.base != self.base or (cell.memory is not None) != self.memory:
            raise ValueError(
                f"cell: base {cell.base} (memory={cell.memory is not None}) does not belong to this space "
                f"(base {self.base}, memory={self.memory})"
            )
        values: list[Any] = []
        for n in cell.nodes:
            values += [n.comb, n.act]
        if cell.memory is not None:
            m = cell.memory
            values += [m.inject_comb, m.inject_act, m.inject_node, m.output_node]
        return [d.choices.index(v) for d, v in zip(self.decisions, values)]

    def decode(self, actions: Sequence[int]) -> Cell:
        """Action list -> cell; raises ValueError naming the position of a bad action."""
        ds = self.decisions
        if len(actions) != len(ds):
            raise ValueError(f"actions: a base-{self.base} cell takes {len(ds)} decisions, got {len(actions)}")
        values = []
        for i, (d, a) in enumerate(zip(ds, actions)):
            if not isinstance(a, int) or isinstance(a, bool) or not 0 <= a < d.size:
                raise ValueError(f"actions[{i}] ({d.name}): {a!r} is not in 0..{d.size - 1}")
            values.append(d.choices[a])
        n = num_nodes(self.base)
        nodes = tuple(Node(values[2 * k], values[2 * k + 1]) for k in range(n))
        memory = Memory(*values[2 * n : 2 * n + 4]) if self.memory else None
        return Cell(self.base, nodes, memory)

    def sample(self, rng: random.Random) -> Cell:
        """A cell drawn uniformly from this space (every decision uniform and independent)."""
        return self.decode([rng.randrange(d.size) for d in self.decisions])


def random_cell(base: int = 8, seed: int | random.Random = 0, memory: bool = True) -> Cell:
    """A uniformly random cell of ``base``; ``seed`` is an int or a ``random.Random``."""
    rng = seed if isinstance(seed, random.Random) else random.Random(seed)
    return CellSpace(base, memory).sample(rng)
