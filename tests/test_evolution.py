"""Regularized evolution as a Ray Tune searcher: a random start, tournaments over the population, mutation of one
decision, aging; the searcher contract (records, duplicates, save -> fresh restore -> the same continuation), and a
real search on Ray resumed and extended with evolution's state intact."""

import dataclasses
import json

import pytest

from nas.config import config_from_dict
from nas.runs.records import read_records
from nas.search import ray_session
from nas.search.evolution import EvolutionConfig
from nas.search.searcher import EvolutionSearcher
from search_spaces import CellSpace, ChildSpec, LayerSpace, SearchSpace

SPACE = SearchSpace(CellSpace(4), LayerSpace.of({"num_layers": [1, 2], "hidden_size": [16, 32]}))


def done(ppl, status="completed"):
    return {"val_ppl": ppl, "status": status, "params": 123, "train_seconds": 1.5, "epochs": 1, "fidelity": 10}


def differing(a, b):
    return sum(x != y for x, y in zip(a, b))


def test_random_start_then_one_decision_mutations_of_tournament_winners(tmp_path):
    s = EvolutionSearcher(SPACE, tmp_path, seed=0, evolution=EvolutionConfig(population=4, sample_size=4))
    first = [s.suggest(f"t{i}") for i in range(4)]
    for i, ppl in enumerate([50.0, 20.0, 80.0, 40.0]):  # child 1 is the fittest
        s.on_trial_complete(f"t{i}", done(ppl))
    assert [c["index"] for c in first] == [0, 1, 2, 3]
    best = SPACE.encode(ChildSpec.from_dict(first[1]["spec"]))
    for i in range(4, 10):  # the tournament sees the whole population: the parent is always child 1 ...
        child = SPACE.encode(ChildSpec.from_dict(s.suggest(f"t{i}")["spec"]))
        assert differing(child, best) == 1  # ... and a child differs from its parent in exactly one decision


def test_aging_removes_the_oldest_whatever_its_fitness(tmp_path):
    s = EvolutionSearcher(SPACE, tmp_path, seed=1, evolution=EvolutionConfig(population=3, sample_size=1))
    for i, ppl in enumerate([10.0, 90.0, 80.0, 70.0]):
        s.suggest(f"t{i}")
        s.on_trial_complete(f"t{i}", done(ppl))
    fitness = [f for _, f in s.population.members]
    assert len(fitness) == 3 and fitness == pytest.approx([80 / 90**2, 80 / 80**2, 80 / 70**2])  # child 0 aged out
    s.on_trial_complete("t3", done(5.0))  # a duplicate completion changes nothing
    assert len(s.population.members) == 3 and s.population.seen == 4


def test_broken_and_stopped_children_join_the_population_with_their_fitness(tmp_path):
    s = EvolutionSearcher(SPACE, tmp_path, seed=2, max_children=4, rungs=(5,))
    for i in range(4):
        s.suggest(f"t{i}")
    s.on_trial_complete("t0", done(40.0))
    s.on_trial_complete("t1", {"status": "diverged", "val_ppl": float("nan"), "error": "loss became nan"})
    s.on_trial_complete("t2", {"status": "running", "val_ppl": 60.0, "fidelity": 5})  # stopped at the rung 5
    s.on_trial_complete("t3", {"status": "running", "val_ppl": 60.0, "fidelity": 7})  # Ctrl-C: no measurement
    assert [f for _, f in s.population.members] == pytest.approx([80 / 40**2, 0.0, 80 / 60**2])
    rows = {r["trial_id"]: r for r in read_records(tmp_path / "children.jsonl")}
    assert rows["t2"]["status"] == "stopped" and rows["t2"]["fidelity"] == 5 and rows["t2"]["reward"] > 0
    assert rows["t3"]["reward"] is None
    assert s.suggest("t4") == "FINISHED"


def test_save_fresh_restore_continues_identically(tmp_path):
    cfg = EvolutionConfig(population=3, sample_size=2)
    a = EvolutionSearcher(SPACE, tmp_path, seed=5, evolution=cfg)
    for i in range(5):
        a.suggest(f"t{i}")
    for i in range(4):
        a.on_trial_complete(f"t{i}", done(30.0 + 7 * i))
    a.save(str(tmp_path / "state.pkl"))
    b = EvolutionSearcher(SPACE, tmp_path, seed=99, evolution=cfg)
    b.restore(str(tmp_path / "state.pkl"))
    assert b.population.members == a.population.members and b.live == a.live
    assert b.population.seen == a.population.seen == 4
    for s in (a, b):
        s.on_trial_complete("t4", done(25.0))
    assert [a.suggest(f"u{i}") for i in range(5)] == [b.suggest(f"u{i}") for i in range(5)]


def test_bad_settings_are_one_clear_error():
    with pytest.raises(ValueError, match="evolution.sample_size: 5 is more than the population"):
        EvolutionConfig(population=4, sample_size=5)
    with pytest.raises(ValueError, match=r"evolution.tournament: unknown setting; allowed in \[evolution\]"):
        config_from_dict({"evolution": {"tournament": 3}})


def test_a_real_evolution_search_is_resumed_and_extended_with_its_population(tmp_path):
    """4 children on Ray, then `--resume --trials 7`: the new Tune run continues the same searcher state, so the
    three new children are mutations (one decision) of members of the population the first run built."""
    import ray
    from test_faults import search_on_local_ray, tiny_config

    from nas.search.driver import run_search

    cfg = tiny_config(tmp_path, name="evo", trials=4, algo="evolution",
                      evolution={"population": 2, "sample_size": 2})
    outcome, rows = search_on_local_ray(cfg)
    assert len(rows) == 4 and not outcome.interrupted
    more = dataclasses.replace(cfg, trials=7)  # what `nas search --resume evo --trials 7` runs
    lines = []
    ray_session.start_local(num_cpus=2)
    try:
        outcome = run_search(more, resume=True, out=lines.append)
    finally:
        ray.shutdown()
    rows = read_records(outcome.run_dir / "children.jsonl")
    assert sorted(r["index"] for r in rows) == list(range(7)) and len({r["trial_id"] for r in rows}) == 7
    assert json.loads((outcome.run_dir / "config.json").read_text())["trials"] == 7  # later resumes know
    assert outcome.finished == 7 and not outcome.interrupted
    encoded = {r["index"]: cfg.space.search_space().encode(ChildSpec.from_dict(r["spec"]))
               for r in rows}
    for i in (4, 5, 6):  # each new child is one decision away from an earlier child (its parent)
        assert any(differing(encoded[i], encoded[j]) == 1 for j in range(i)), i
    assert any("[  7/7]" in line for line in lines)

