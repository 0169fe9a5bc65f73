"""The Ray Tune Searcher contract, exercised directly (no Ray runtime needed): suggestions decode, results of
every shape are recorded, the controller learns from each finished child, and save -> fresh restore -> continue
gives the same search as never stopping."""

import dataclasses
import math

import pytest
import torch

from nas.runs.records import read_records
from nas.search.controller_config import ControllerConfig
from nas.search.searcher import ControllerSearcher, NasSearcher, RandomSearcher, child_seed
from search_spaces import CellSpace, LayerSpace, SearchSpace

SPACE = SearchSpace(CellSpace(4), LayerSpace.of({"num_layers": [1, 2], "hidden_size": [16, 32]}))


def done(ppl, status="completed"):
    return {"val_ppl": ppl, "status": status, "params": 123, "train_seconds": 1.5, "epochs": 1}


@pytest.fixture(params=[ControllerSearcher, RandomSearcher])
def searcher_cls(request):
    return request.param


def test_suggest_gives_decodable_children_in_order(tmp_path, searcher_cls):
    s = searcher_cls(SPACE, tmp_path, seed=3)
    configs = [s.suggest(f"t{i}") for i in range(5)]
    assert [c["index"] for c in configs] == list(range(5))
    assert [c["seed"] for c in configs] == [child_seed(3, i) for i in range(5)]
    for c in configs:
        spec = SPACE.decode(SPACE.encode(__import__("search_spaces").ChildSpec.from_dict(c["spec"])))
        assert spec.cell.base == 4 and set(spec.hparams) == {"num_layers", "hidden_size"}
    assert s.metric == "val_ppl" and s.mode == "min"


def test_results_of_every_shape_are_recorded(tmp_path):
    s = ControllerSearcher(SPACE, tmp_path, seed=0)
    for i in range(6):
        s.suggest(f"t{i}")
    s.on_trial_complete("t0", done(50.0))
    s.on_trial_complete("t1", done(float("nan")))  # completed but NaN -> failed
    s.on_trial_complete("t2", None, error=True)  # Ray error, no result
    s.on_trial_complete("t3", {"val_ppl": float("nan"), "status": "diverged", "error": "loss became nan"})
    s.on_trial_complete("t4", {"val_ppl": 80.0, "status": "running"})  # stopped before its final report
    s.on_trial_complete("t0", done(10.0))  # duplicate completion: ignored
    s.on_trial_complete("nope", done(10.0))  # never suggested: ignored
    rows = {r["trial_id"]: r for r in read_records(tmp_path / "children.jsonl")}
    assert set(rows) == {"t0", "t1", "t2", "t3", "t4"}
    assert rows["t0"]["status"] == "completed" and rows["t0"]["reward"] == pytest.approx(80 / 50**2)
    assert rows["t1"]["status"] == "failed" and rows["t1"]["reward"] == 0.0 and "non-finite" in rows["t1"]["error"]
    assert rows["t2"]["status"] == "failed" and rows["t2"]["reward"] == 0.0 and rows["t2"]["error"]
    assert rows["t3"]["status"] == "diverged" and rows["t3"]["reward"] == 0.0 and "nan" in rows["t3"]["error"]
    assert rows["t4"]["status"] == "stopped" and rows["t4"]["reward"] is None  # NaN is stored as null
    # every measured child (not the stopped one) updated the controller once, in order
    updates = read_records(tmp_path / "controller.jsonl")
    assert [u["step"] for u in updates] == [1, 2, 3, 4] and s.step == 4
    assert [u["trial_ids"] for u in updates] == [["t0"], ["t1"], ["t2"], ["t3"]]
    assert updates[0]["controller/reward"] == pytest.approx(0.032)
    assert all(math.isfinite(u["controller/loss"]) for u in updates)
    assert s.live == {"t5": s.live["t5"]}


def test_update_every_m_children(tmp_path):
    s = ControllerSearcher(SPACE, tmp_path, ControllerConfig(update_every=3), seed=0)
    for i in range(7):
        s.suggest(f"t{i}")
        s.on_trial_complete(f"t{i}", done(40.0 + i))
    assert s.step == 2 and len(s.pending) == 1
    updates = read_records(tmp_path / "controller.jsonl")
    assert [u["trial_ids"] for u in updates] == [["t0", "t1", "t2"], ["t3", "t4", "t5"]]


def test_a_rewarded_child_becomes_more_likely_and_a_punished_one_less(tmp_path):
    """On the shipped defaults (normalized advantages, entropy bonus): the update's direction follows the
    advantage's sign, not merely "the weights moved" (the entropy bonus alone would move them)."""
    s = ControllerSearcher(SPACE, tmp_path, seed=0)
    configs = {t: s.suggest(t) for t in ("a", "b", "c")}
    actions = {t: SPACE.encode(__import__("search_spaces").ChildSpec.from_dict(c["spec"])) for t, c in configs.items()}

    def log_prob(t):
        with torch.no_grad():
            return s.controller.evaluate(actions[t])[0].item()

    s.on_trial_complete("a", done(40.0))  # the first reward sets the baseline
    before = log_prob("b")
    s.on_trial_complete("b", done(20.0))  # far better than the baseline
    assert log_prob("b") > before
    before = log_prob("c")
    s.on_trial_complete("c", done(90.0))  # far worse
    assert log_prob("c") < before


class Recording(ControllerSearcher):
    """A controller searcher that records what each update learns from."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.learned = []

    def _learn(self, trial_id, actions, reward, key):
        self.learned.append((trial_id, list(actions), reward))
        super()._learn(trial_id, actions, reward, key)


def test_children_finishing_out_of_order_teach_their_own_actions_and_rewards(tmp_path):
    s = Recording(SPACE, tmp_path, seed=4)
    configs = {f"t{i}": s.suggest(f"t{i}") for i in range(4)}
    ppl = {"t2": 30.0, "t0": 60.0, "t3": 45.0, "t1": 90.0}
    for t, p in ppl.items():  # the order children finish in, not the order they were proposed in
        s.on_trial_complete(t, done(p))
    from search_spaces import ChildSpec

    assert [t for t, _, _ in s.learned] == list(ppl)
    for t, actions, reward in s.learned:
        assert actions == SPACE.encode(ChildSpec.from_dict(configs[t]["spec"]))
        assert reward == pytest.approx(80 / ppl[t] ** 2)
    assert [u["trial_ids"] for u in read_records(tmp_path / "controller.jsonl")] == [[t] for t in ppl]


def test_save_fresh_restore_continue_with_a_pending_trial(tmp_path, searcher_cls):
    a = searcher_cls(SPACE, tmp_path / "a", seed=5)
    for i in range(3):
        a.suggest(f"t{i}")
    a.on_trial_complete("t0", done(40.0))
    a.on_trial_complete("t1", done(60.0))
    ckpt = tmp_path / "state.pkl"
    a.save(str(ckpt))
    assert not list(tmp_path.glob("state.pkl.tmp*"))  # written atomically, no temp left behind

    b = searcher_cls(SPACE, tmp_path / "a", seed=999)  # a fresh object, different seed: state must win
    b.restore(str(ckpt))
    assert b.live == a.live and b.next_index == a.next_index and "t2" in b.live
    # both continue identically: the pending trial completes, then new children are suggested
    for s in (a, b):
        s.on_trial_complete("t2", done(50.0))
    assert a.suggest("t3") == b.suggest("t3")
    assert a.suggest("t4") == b.suggest("t4")
    if searcher_cls is ControllerSearcher:
        assert a.step == b.step == 3
        for x, y in zip(a.controller.parameters(), b.controller.parameters()):
            assert torch.equal(x, y)
        assert a.baselines.state_dict() == b.baselines.state_dict()
        assert a.optimizer.state_dict()["state"].keys() == b.optimizer.state_dict()["state"].keys()


def test_restore_rejects_state_of_another_kind(tmp_path):
    a = RandomSearcher(SPACE, tmp_path, seed=0)
    a.save(str(tmp_path / "s.pkl"))
    with pytest.raises(ValueError, match="another kind"):
        ControllerSearcher(SPACE, tmp_path, seed=0).restore(str(tmp_path / "s.pkl"))


def test_restore_replays_children_that_finished_after_the_save(tmp_path):
    """The driver was SIGKILLed after the last save: children.jsonl (written at each completion) knows more."""
    a = ControllerSearcher(SPACE, tmp_path, seed=1, max_children=6)
    for i in range(3):
        a.suggest(f"t{i}")
    a.on_trial_complete("t0", done(40.0))
    a.save(str(tmp_path / "state.pkl"))
    a.on_trial_complete("t1", done(50.0))  # after the save: pending in the saved state
    a.suggest("t3")  # suggested after the save: unknown to the saved state
    a.on_trial_complete("t3", done(45.0))

    b = ControllerSearcher(SPACE, tmp_path, seed=1, max_children=6)
    b.restore(str(tmp_path / "state.pkl"))
    assert b.step == a.step == 3 and b.next_index == a.next_index == 4
    assert set(b.live) == {"t2"} and {"t0", "t1", "t3"} <= b.finished
    for x, y in zip(a.controller.parameters(), b.controller.parameters()):
        assert torch.allclose(x, y)  # the same updates, replayed in the same order
    b.on_trial_complete("t1", done(50.0))  # Tune re-running a child it thought pending: a duplicate
    assert b.step == 3
    # the sampling RNG is the saved one: a proposal may draw an earlier child's spec again (t3's was drawn from this
    # very RNG state), which is then recorded as reusing that child's outcome, not trained again
    indices = []
    while (got := b.suggest(f"t{4 + len(indices)}")) != "FINISHED":  # the budget (6, reused included) is its own
        indices.append(got["index"])
    reused = [r for r in read_records(tmp_path / "children.jsonl") if r.get("reused_from") is not None]
    assert all(r["reused_from"] in (0, 1, 3) and r["train_seconds"] == 0.0 for r in reused)
    assert sorted(indices + [r["index"] for r in reused]) == [4, 5]
    assert b.step == 3  # a reused outcome teaches nothing new: the controller learned from it when it trained


class Scripted(NasSearcher):
    """Proposes the given action lists in order; records what it learns."""

    def __init__(self, *args, proposals, **kwargs):
        super().__init__(*args, **kwargs)
        self.proposals, self.learned = list(proposals), []

    def _propose(self):
        return self.proposals.pop(0)

    def _learn(self, trial_id, actions, reward, key):
        self.learned.append((trial_id, reward, key))


def test_a_spec_trained_before_is_reused_not_trained_again(tmp_path):
    import random

    rng = random.Random(0)
    a, b, c, d, e, f = ([rng.randrange(x.size) for x in SPACE.decisions] for _ in range(6))
    s = Scripted(SPACE, tmp_path, rungs=(5,), proposals=[a, b, a, c, b, d, b, e, e, f])
    assert s.suggest("t0")["index"] == 0 and s.suggest("t1")["index"] == 1  # a, b train
    s.on_trial_complete("t0", done(40.0))
    assert s.suggest("t2")["index"] == 3  # a again: recorded as child 2 from child 0's outcome; c trains as 3
    rows = read_records(tmp_path / "children.jsonl")
    reused = rows[-1]
    assert reused["index"] == 2 and reused["reused_from"] == 0 and reused["trial_id"] == "reused-2"
    assert reused["val_ppl"] == 40.0 and reused["reward"] == rows[0]["reward"] and reused["train_seconds"] == 0.0
    assert reused["spec"] == rows[0]["spec"] and [t for t, _, _ in s.learned] == ["t0"]  # taught once, not twice
    # b is still training: drawn again, it is not trained twice at once: the next proposal (d) trains instead
    assert s.suggest("t3")["index"] == 4 and s.live["t3"][1] == d
    s.on_trial_complete("t1", {"status": "diverged", "val_ppl": float("nan"), "error": "nan"})
    assert s.suggest("t4")["index"] == 6  # b is trained now (diverged): child 5 reuses it, e trains as 6
    assert read_records(tmp_path / "children.jsonl")[-1]["status"] == "diverged"
    # a child stopped by Ctrl-C (fidelity off the rungs) measured nothing: its spec trains again
    s.on_trial_complete("t4", {"status": "running", "val_ppl": 70.0, "fidelity": 3})
    assert s.suggest("t5")["index"] == 7 and s.live["t5"][1] == e
    # a child stopped at a rung is reused with its fidelity
    s.on_trial_complete("t5", {"status": "running", "val_ppl": 70.0, "fidelity": 5})
    assert s.suggest("t6")["index"] == 8
    assert [(r["index"], r["reused_from"]) for r in read_records(tmp_path / "children.jsonl") if r["reused_from"]
            is not None] == [(2, 0), (5, 1)]


def test_learn_from_reused_teaches_a_reused_outcome_again(tmp_path):
    import random

    from nas.search.controller_config import ControllerConfig

    rng = random.Random(2)
    a, b = ([rng.randrange(x.size) for x in SPACE.decisions] for _ in range(2))
    for learn, expected in ((False, ["t0"]), (True, ["t0", "reused-1"])):
        folder = tmp_path / str(learn)
        s = Scripted(SPACE, folder, ControllerConfig(learn_from_reused=learn), proposals=[a, a, b])
        s.suggest("t0")
        s.on_trial_complete("t0", done(40.0))
        assert s.suggest("t1")["index"] == 2  # a again: reused as child 1; b trains as child 2
        assert [t for t, _, _ in s.learned] == expected
        # a restore replays the records under the same rule
        s.save(str(folder / "state.pkl"))
        fresh = Scripted(SPACE, folder, ControllerConfig(learn_from_reused=learn), proposals=[])
        fresh.finished = set()
        fresh._replay_records()
        assert [t for t, _, _ in fresh.learned] == expected


def test_reused_children_are_rebuilt_from_the_records_on_restore(tmp_path):
    import random

    rng = random.Random(1)
    a, b = ([rng.randrange(x.size) for x in SPACE.decisions] for _ in range(2))
    s = Scripted(SPACE, tmp_path, proposals=[a])
    s.suggest("t0")
    s.on_trial_complete("t0", done(40.0))
    s.save(str(tmp_path / "state.pkl"))
    fresh = Scripted(SPACE, tmp_path, proposals=[a, b])
    fresh.restore(str(tmp_path / "state.pkl"))
    assert fresh.suggest("t1")["index"] == 2  # a is known from children.jsonl: reused as child 1, b trains as 2


def test_controller_diagnostics_go_to_tensorboard_next_to_the_records(tmp_path):
    from tensorboard_reader import read_scalars
    from tensorboardX.event_file_writer import EventFileWriter  # noqa: F401 - comes with ray[tune]

    s = ControllerSearcher(SPACE, tmp_path, seed=0)
    for i in range(3):
        s.suggest(f"t{i}")
        s.on_trial_complete(f"t{i}", done(40.0 + i))
    events = list((tmp_path / "controller").glob("events.out.tfevents*"))
    assert len(events) == 1
    scalars = read_scalars(events[0])
    assert [step for step, _ in scalars["controller/entropy"]] == [1, 2, 3]
    records = read_records(tmp_path / "controller.jsonl")
    assert [v for _, v in scalars["controller/reward"]] == pytest.approx([r["controller/reward"] for r in records])
    import pickle

    pickle.loads(pickle.dumps(s))  # Tune pickles the searcher: the open event file does not travel


def test_a_rung_baseline_counts_the_children_that_went_on_not_only_the_stopped_ones(tmp_path):
    """A child stopped at a rung was worse than its peers there: its advantage must be measured against every
    child's perplexity at that rung, the promoted ones included (they report it when they finish)."""
    s = ControllerSearcher(SPACE, tmp_path, seed=0, rungs=(5,))
    for i in range(3):
        s.suggest(f"t{i}")
    s.on_trial_complete("t0", {**done(30.0), "fidelity": 10, "rung_ppl": {"5": 40.0}})  # promoted at rung 5
    assert s.baselines.means["5"].value == pytest.approx(80 / 40.0**2)  # its rung measurement, observed
    s.on_trial_complete("t1", {"status": "running", "val_ppl": 50.0, "fidelity": 5, "rung_ppl": {"5": 50.0}})
    update = read_records(tmp_path / "controller.jsonl")[-1]
    assert update["controller/baseline"] == pytest.approx(80 / 40.0**2)  # measured against the promoted child
    assert update["controller/advantage"] < 0  # worse than the one that went on
    s.on_trial_complete("t2", {"status": "running", "val_ppl": 35.0, "fidelity": 7})  # off the rungs: no lesson
    assert s.step == 2 and set(s.baselines.means) == {"final", "5"}


def test_the_elite_holds_the_best_fully_trained_children_and_is_rebuilt_on_restore(tmp_path):
    """Only children that ran their whole budget join the elite (one stopped at a rung is measured on another scale;
    a diverged one earns 0), best first; restore rebuilds it from the records, those after the saved state too, at
    the restored searcher's own size."""
    cfg = ControllerConfig(elite_size=2)
    a = ControllerSearcher(SPACE, tmp_path, cfg, seed=2, rungs=(5,))
    configs = {f"t{i}": a.suggest(f"t{i}") for i in range(5)}
    a.on_trial_complete("t0", done(40.0))
    a.on_trial_complete("t1", {"status": "running", "val_ppl": 5.0, "fidelity": 5})  # stopped at the rung
    a.on_trial_complete("t2", done(30.0))
    a.on_trial_complete("t3", done(math.inf, "diverged"))
    from search_spaces import ChildSpec

    actions = {t: SPACE.encode(ChildSpec.from_dict(c["spec"])) for t, c in configs.items()}
    assert a.elite.actions() == [actions["t2"], actions["t0"]]
    assert "controller/elite_log_prob" in read_records(tmp_path / "controller.jsonl")[-1]
    a.save(str(tmp_path / "state.pkl"))
    a.on_trial_complete("t4", done(20.0))  # the best child finishes after the saved state
    assert a.elite.actions() == [actions["t4"], actions["t2"]]
    b = ControllerSearcher(SPACE, tmp_path, cfg, seed=9, rungs=(5,))
    b.restore(str(tmp_path / "state.pkl"))
    assert b.elite == a.elite
    one = ControllerSearcher(SPACE, tmp_path, dataclasses.replace(cfg, elite_size=1), seed=9, rungs=(5,))
    one.restore(str(tmp_path / "state.pkl"))
    assert one.elite.actions() == [actions["t4"]]
