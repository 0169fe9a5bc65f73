"""What a cell is: the Zoph & Le tree-cell space, named cells, layer hyperparameters. Pure Python (no torch, no ray)."""

from search_spaces.cell import ACTS, COMBS, Cell, CellSpace, Decision, Memory, Node, random_cell
from search_spaces.hparams import DEFAULT_LAYER_SPACE, HParams, LayerSpace
from search_spaces.known import KNOWN_CELLS, known_cell, load_spec
from search_spaces.space import ChildSpec, SearchSpace

__all__ = [
    "ACTS", "COMBS", "Cell", "CellSpace", "ChildSpec", "Decision", "DEFAULT_LAYER_SPACE", "HParams",
    "KNOWN_CELLS", "LayerSpace", "Memory", "Node", "SearchSpace", "known_cell", "load_spec", "random_cell",
]
