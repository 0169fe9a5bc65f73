"""Warm start (`initial`): known cells or spec files trained first, as points of the search's space, learned from,
never repeated on resume; and the one clear error for each bad entry before anything starts."""

import json

import pytest

from nas.config import config_from_dict
from nas.search.driver import _make_searcher
from nas.search.searcher import ControllerSearcher, EvolutionSearcher, RandomSearcher
from search_spaces import ChildSpec, HParams, known_cell

SETTINGS = {"trials": 6, "space": {"layers": {"num_layers": [1, 2], "hidden_size": [16, 32]}},
            "model": {"num_layers": 2, "hidden_size": 24}}


def done(ppl):
    return {"val_ppl": ppl, "status": "completed", "params": 123, "train_seconds": 1.5, "epochs": 1}


def test_names_and_spec_files_become_points_of_the_space(tmp_path):
    spec_file = tmp_path / "mine.json"
    spec_file.write_text(ChildSpec(known_cell("nascell"), HParams.of({"hidden_size": 32})).to_json())
    cfg = config_from_dict({**SETTINGS, "initial": ["lstm", str(spec_file)]})
    lstm, mine = cfg.initial
    assert lstm.cell == known_cell("lstm") and mine.cell == known_cell("nascell")
    # a missing choice: the fixed [model] value when it is a choice (num_layers 2), else the first (hidden 16)
    assert lstm.hparams.as_dict() == {"num_layers": 2, "hidden_size": 16}
    assert mine.hparams.as_dict() == {"num_layers": 2, "hidden_size": 32}  # the spec's own choice
    again = config_from_dict(json.loads(json.dumps(cfg.to_dict())))  # config.json: the specs, no files needed
    spec_file.unlink()
    assert again.initial == cfg.initial
    assert config_from_dict({**SETTINGS, "initial": "lstm, nascell"}).initial[1].cell == known_cell("nascell")


@pytest.mark.parametrize("initial, message", [
    (["nope"], "initial[0]: 'nope' is neither a known cell"),
    (["tanh_rnn"], "initial[0]: a base-2 cell, but this search's space is base 8"),
    (["lstm", "lstm"], "initial[1]: the same child as initial[0]"),
    ([{"cell": known_cell("lstm").to_dict(), "hparams": {"dropout": 0.5}}], "hyperparameter dropout is not searched"),
    ([{"cell": known_cell("lstm").to_dict(), "hparams": {"hidden_size": 64}}], "hidden_size=64 is not one of"),
    ([7], "initial[0]: 7 is not a cell"),
    ({"lstm": 1}, "initial: {'lstm': 1} is not a list"),
])
def test_bad_initial_children_are_one_clear_error(initial, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        config_from_dict({**SETTINGS, "initial": initial})
    with pytest.raises(ValueError, match="more than trials"):
        config_from_dict({**SETTINGS, "trials": 1, "initial": ["lstm", "nascell"]})


@pytest.mark.parametrize("kind", [ControllerSearcher, RandomSearcher, EvolutionSearcher])
def test_initial_children_come_first_teach_the_searcher_and_are_not_repeated_on_resume(tmp_path, kind):
    cfg = config_from_dict({**SETTINGS, "initial": ["lstm", "nascell"], "algo": {
        ControllerSearcher: "reinforce", RandomSearcher: "random", EvolutionSearcher: "evolution"}[kind],
        "results_dir": str(tmp_path), "name": "run"})
    searcher = _make_searcher(cfg, (), vocab_size=10)
    assert isinstance(searcher, kind)
    first = [searcher.suggest(f"t{i}") for i in range(2)]
    assert [ChildSpec.from_dict(c["spec"]) for c in first] == list(cfg.initial)
    assert [c["index"] for c in first] == [0, 1]
    searcher.on_trial_complete("t0", done(10.0))
    searcher.on_trial_complete("t1", done(20.0))
    if kind is ControllerSearcher:
        assert searcher.step == 2  # the controller updated on both
    if kind is EvolutionSearcher:
        assert [m[0] for m in searcher.population.members] == [list(a) for a in searcher.initial]
    searcher.save(str(tmp_path / "state.pkl"))
    fresh = _make_searcher(cfg, (), vocab_size=10)
    fresh.restore(str(tmp_path / "state.pkl"))
    third = fresh.suggest("t2")
    assert third["index"] == 2 and ChildSpec.from_dict(third["spec"]) not in cfg.initial
