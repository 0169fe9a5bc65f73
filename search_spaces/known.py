"""Named cells: published points of the search space, usable wherever a cell is expected (``nas show nascell``).

- ``nascell``: the cell found by Zoph & Le (2017), base 8, transcribed from tensorflow/addons
  ``tensorflow_addons/rnn/nas_cell.py``. One difference in parameterisation, fixed by this project's module
  contract: the bias lives on the input projection (leaf i sees ``W_i x + b_i`` and ``U_i h``), while addons adds
  it to the recurrent product. For the seven additive leaves the two are identical; for leaf 3
  (``relu(x3 ⊙ h3)``) the bias multiplies instead of shifting the recurrent term.
- ``lstm``: the LSTM (Hochreiter & Schmidhuber 1997, as ``torch.nn.LSTMCell``) is a base-8 point up to a
  reparameterisation: gates that the LSTM computes from one linear map are here a sum of two or four leaves'
  linear maps, so setting the spare leaves' weights to zero gives exactly ``nn.LSTMCell`` (tested).
- ``tanh_rnn``: the plain Elman RNN ``h_t = tanh(W x + U h + b)`` as a base-2 cell with two additive leaves.
  It has no memory path: every cell of the paper's space injects ``c_{t-1}`` and reads ``c_t`` out of the tree,
  so a memory-free cell lies outside it; it is kept as a baseline, not as something the controller can emit.
- The GRU is not expressible in any base: it needs ``h_{t-1}`` itself (not a projection of it) and ``1 - z``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from search_spaces.cell import Cell, Memory, Node
from search_spaces.space import ChildSpec


def _nodes(*pairs: str) -> tuple[Node, ...]:
    out = []
    for p in pairs:
        comb, act = p.split(":")
        out.append(Node({"+": "add", "*": "elem_mult"}[comb], act))
    return tuple(out)


def nascell() -> Cell:
    """The NAS cell of Zoph & Le (2017), base 8."""
    nodes = _nodes(
        # leaves (layer1_0 .. layer1_7 in addons)
        "+:sigmoid", "+:relu", "+:sigmoid", "*:relu", "+:tanh", "+:sigmoid", "+:tanh", "+:sigmoid",
        # second layer (l2_0 .. l2_3)
        "*:tanh", "+:tanh", "*:tanh", "+:sigmoid",
        # third layer (l3_0 has no activation; its pre-activation is new_c), l3_1
        "*:identity", "+:tanh",
        # root: new_m
        "*:tanh",
    )
    return Cell(8, nodes, Memory(inject_comb="add", inject_act="tanh", inject_node=8, output_node=12))


def lstm() -> Cell:
    """The LSTM as a base-8 cell (see the module docstring for the weight mapping)."""
    nodes = _nodes(
        # leaves: f (0, 1), i (2), g (3), o (4..7)
        "+:identity", "+:identity", "+:sigmoid", "+:tanh", "+:identity", "+:identity", "+:identity", "+:identity",
        # n8 = f, then f ⊙ c_{t-1} by injection; n9 = i ⊙ g; n10, n11 sum the o leaves
        "+:sigmoid", "*:identity", "+:identity", "+:identity",
        # n12 = tanh(f ⊙ c + i ⊙ g), its pre-activation is c_t; n13 = o
        "+:tanh", "+:sigmoid",
        # h_t = tanh(c_t) ⊙ o
        "*:identity",
    )
    return Cell(8, nodes, Memory(inject_comb="elem_mult", inject_act="identity", inject_node=8, output_node=12))


def tanh_rnn() -> Cell:
    """The plain tanh RNN, base 2, no memory path."""
    return Cell(2, _nodes("+:identity", "+:identity", "+:tanh"), None)


KNOWN_CELLS: dict[str, Callable[[], Cell]] = {"nascell": nascell, "lstm": lstm, "tanh_rnn": tanh_rnn}
"""Name -> constructor of every named cell."""


def known_cell(name: str) -> Cell:
    """The named cell; raises ValueError listing the known names."""
    try:
        return KNOWN_CELLS[name]()
    except KeyError:
        raise ValueError(f"unknown cell name {name!r}; known cells: {', '.join(KNOWN_CELLS)}") from None


def load_spec(source: str) -> tuple[str, ChildSpec]:
    """A known cell name, or a JSON file holding a cell or a spec; returns (label, spec)."""
    if source in KNOWN_CELLS:
        return source, ChildSpec(known_cell(source))
    path = Path(source)
    if not path.exists():
        raise ValueError(
            f"{source!r} is neither a known cell ({', '.join(KNOWN_CELLS)}) nor an existing spec JSON file"
        )
    try:
        return path.name, ChildSpec.from_json(path.read_text())
    except (ValueError, OSError) as e:
        raise ValueError(f"{path}: {e}") from None
