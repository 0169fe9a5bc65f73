"""The cell search space: round trips (property-based), validation errors, named cells, sampling."""

import json
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from search_spaces import (
    ACTS,
    COMBS,
    Cell,
    CellSpace,
    ChildSpec,
    HParams,
    LayerSpace,
    Memory,
    Node,
    SearchSpace,
    known_cell,
    random_cell,
)
from search_spaces.cell import children, levels, num_nodes

BASES = st.sampled_from([2, 4, 8, 16])


@st.composite
def cells(draw, memory=st.booleans()):
    base = draw(BASES)
    nodes = tuple(Node(draw(st.sampled_from(COMBS)), draw(st.sampled_from(ACTS))) for _ in range(num_nodes(base)))
    mem = None
    if draw(memory):
        idx = st.integers(0, num_nodes(base) - 1)
        mem = Memory(draw(st.sampled_from(COMBS)), draw(st.sampled_from(ACTS)), draw(idx), draw(idx))
    return Cell(base, nodes, mem)


@settings(max_examples=300, deadline=None)
@given(cells())
def test_json_round_trip(cell):
    assert Cell.from_json(cell.to_json()) == cell
    assert Cell.from_dict(json.loads(json.dumps(cell.to_dict()))) == cell
    assert hash(Cell.from_json(cell.to_json())) == hash(cell)


@settings(max_examples=300, deadline=None)
@given(cells())
def test_action_round_trip(cell):
    space = CellSpace(cell.base, memory=cell.memory is not None)
    actions = cell.to_actions()
    assert len(actions) == len(space.decisions)
    assert all(0 <= a < d.size for a, d in zip(actions, space.decisions))
    assert space.decode(actions) == cell


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 100), min_size=34, max_size=34))
def test_decode_encode_round_trip(raw):
    space = CellSpace(8)
    actions = [r % d.size for r, d in zip(raw, space.decisions)]
    assert space.encode(space.decode(actions)) == actions


def test_decision_vocabulary_sizes_and_space_size():
    space = CellSpace(8)
    kinds = {d.kind: d.size for d in space.decisions}
    assert kinds == {"comb": 2, "act": 4, "node": 15}
    assert len(space.decisions) == 2 * 15 + 4
    assert space.size() == 8**15 * 8 * 15 * 15  # the brief's ~6e16


def test_tree_shape():
    assert levels(8) == [list(range(8)), [8, 9, 10, 11], [12, 13], [14]]
    assert [children(8, k) for k in (8, 11, 12, 13, 14)] == [(0, 1), (6, 7), (8, 9), (10, 11), (12, 13)]
    assert children(8, 3) is None
    assert children(2, 2) == (0, 1)


def test_random_cells_are_seeded_and_cover_the_vocabulary():
    assert random_cell(8, 7) == random_cell(8, 7)
    assert random_cell(8, 7) != random_cell(8, 8)
    seen = {n.act for s in range(50) for n in random_cell(4, s).nodes}
    assert seen == set(ACTS)
    # uniform: each act about a quarter of all node decisions
    counts = {a: 0 for a in ACTS}
    for s in range(400):
        for n in random_cell(8, s).nodes:
            counts[n.act] += 1
    total = sum(counts.values())
    assert all(abs(c / total - 0.25) < 0.03 for c in counts.values())


def test_nascell_is_a_base8_point():
    cell = known_cell("nascell")
    assert cell.base == 8 and cell.memory == Memory("add", "tanh", 8, 12)
    assert CellSpace(8).decode(cell.to_actions()) == cell
    lines = cell.formula().splitlines()
    assert "n3 = relu(x3 ⊙ h3)" in lines
    assert "n8 = tanh(n8 + c_{t-1})" in lines
    assert "c_t = n8 ⊙ n9" in lines
    assert lines[-1] == "h_t = n14"


def test_unknown_cell_name():
    with pytest.raises(ValueError, match="unknown cell name 'nope'.*nascell"):
        known_cell("nope")


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d.update(base=3), r"cell\.base: 3 .*power of two"),
        (lambda d: d.update(base=True), r"cell\.base"),
        (lambda d: d["nodes"].pop(), r"cell\.nodes: a base-8 cell has 15 nodes, got 14"),
        (lambda d: d["nodes"].__setitem__(3, ["sub", "relu"]),
         r"cell\.nodes\[3\]\.comb: 'sub' is not one of add, elem_mult"),
        (lambda d: d["nodes"].__setitem__(0, ["add", "gelu"]),
         r"cell\.nodes\[0\]\.act: 'gelu' is not one of identity, tanh, sigmoid, relu"),
        (lambda d: d["nodes"].__setitem__(0, "add"), r"cell\.nodes\[0\]: expected a \[comb, act\] pair"),
        (lambda d: d["memory"].update(inject_node=15), r"cell\.memory\.inject_node: 15 .* use 0\.\.14"),
        (lambda d: d["memory"].update(output_node=-1), r"cell\.memory\.output_node: -1"),
        (lambda d: d["memory"].update(inject_act="swish"), r"cell\.memory\.inject_act: 'swish'"),
        (lambda d: d["memory"].pop("inject_comb"), r"cell\.memory: expected an object with keys"),
        (lambda d: d.update(colour="blue"), r"unknown key\(s\) colour"),
        (lambda d: d.update(version=9), r"cell\.version: 9"),
        (lambda d: d.pop("nodes"), r"cell\.nodes: missing"),
    ],
)
def test_validation_errors_name_the_field(mutate, message):
    d = known_cell("nascell").to_dict()
    mutate(d)
    with pytest.raises(ValueError, match=message):
        Cell.from_dict(d)


def test_malformed_json():
    with pytest.raises(ValueError, match="malformed JSON"):
        Cell.from_json("{not json")


def test_bad_actions():
    space = CellSpace(2)
    with pytest.raises(ValueError, match="takes 10 decisions, got 3"):
        space.decode([0, 0, 0])
    with pytest.raises(ValueError, match=r"actions\[1\] \(n0\.act\): 4 is not in 0\.\.3"):
        space.decode([0, 4] + [0] * 8)


def test_layer_space_round_trips_and_errors():
    layers = LayerSpace.of({"num_layers": [1, 2], "hidden_size": [64, 128, 256], "dropout": [0.0, 0.5]})
    rng = random.Random(0)
    for _ in range(50):
        hp = layers.sample(rng)
        assert layers.decode(layers.encode(hp)) == hp
        assert HParams.of(json.loads(json.dumps(hp.as_dict()))) == hp
    with pytest.raises(ValueError, match=r"layers\.dropout: the list of choices is empty"):
        LayerSpace.of({"dropout": []})
    with pytest.raises(ValueError, match=r"layers\.hidden_size: expected a list"):
        LayerSpace.of({"hidden_size": 64})
    with pytest.raises(ValueError, match="duplicates"):
        LayerSpace.of({"hidden_size": [64, 64]})
    with pytest.raises(ValueError, match=r"hparams\.hidden_size: 100 is not one of \[64, 128, 256\]"):
        layers.encode(HParams.of({"num_layers": 1, "hidden_size": 100, "dropout": 0.0}))
    with pytest.raises(ValueError, match="do not match"):
        layers.encode(HParams.of({"num_layers": 1}))


def test_search_space_spec_round_trip():
    space = SearchSpace(CellSpace(4), LayerSpace.of({"num_layers": [1, 2], "dropout": [0.0, 0.25]}))
    rng = random.Random(1)
    for _ in range(50):
        spec = space.sample(rng)
        assert space.decode(space.encode(spec)) == spec
        assert ChildSpec.from_json(spec.to_json()) == spec
    kinds = [d.kind for d in space.decisions]
    assert kinds[-2:] == ["hp.num_layers", "hp.dropout"]
