"""The controller (sampling, teacher-forced scoring) and REINFORCE (reward, EMA baseline, learning a toy task)."""

from __future__ import annotations

import math
import random
import re

import pytest
import torch

from nas.config import config_from_dict
from nas.search.controller import Controller, Sample
from nas.search.controller_config import ControllerConfig
from nas.search.reinforce import (
    FINAL,
    Baselines,
    Elite,
    EMABaseline,
    baseline_key,
    make_optimizer,
    quantile,
    reinforce_step,
    reward_of,
)
from search_spaces.cell import CellSpace, Decision
from search_spaces.hparams import LAYER_KIND, LayerSpace
from search_spaces.space import SearchSpace

SPACE = SearchSpace(cell=CellSpace(8), layers=LayerSpace.of({"num_layers": [1, 2], "dropout": [0.0, 0.1, 0.3]}))


def make_controller(seed: int = 0, **overrides) -> Controller:
    torch.manual_seed(seed)
    return Controller(SPACE.decisions, ControllerConfig(**overrides))


def manual_scores(c: Controller, actions: list[int]) -> tuple[list[float], list[float]]:
    """Per-step log-probs and entropies recomputed by hand from the controller's modules."""
    units = c.config.lstm_units
    h = [torch.zeros(1, units) for _ in c.lstm]
    cs = [torch.zeros(1, units) for _ in c.lstm]
    x = c.start
    log_probs, entropies = [], []
    with torch.no_grad():
        for d, a in zip(c.decisions, actions):
            k = c.kinds.index(d.kind if c.config.share_heads else d.name)
            for i, cell in enumerate(c.lstm):
                h[i], cs[i] = cell(x, (h[i], cs[i]))
                x = h[i]
            logits = c.heads[k](x)[0]
            logits = c.config.tanh_constant * torch.tanh(logits / c.config.temperature)
            probs = torch.softmax(logits, dim=-1)
            assert probs.shape == (d.size,)
            log_probs.append(math.log(probs[a].item()))
            entropies.append(-(probs * probs.log()).sum().item())
            x = c.embeddings[k](torch.tensor([a]))
    return log_probs, entropies


# ---- sampling -------------------------------------------------------------------------------------------


def test_sample_log_prob_and_entropy_match_teacher_forcing_and_a_manual_recomputation():
    c = make_controller()
    s = c.sample(torch.Generator().manual_seed(0))
    assert isinstance(s, Sample) and len(s.actions) == len(SPACE.decisions)
    assert s.log_prob.shape == () and s.entropy.shape == ()
    assert s.log_prob.requires_grad and s.entropy.requires_grad

    log_prob, entropy = c.evaluate(s.actions)
    assert torch.allclose(log_prob, s.log_prob, atol=1e-6) and torch.allclose(entropy, s.entropy, atol=1e-6)

    step_log_probs, step_entropies = manual_scores(c, s.actions)
    assert s.log_prob.item() == pytest.approx(sum(step_log_probs), abs=1e-4)
    assert s.entropy.item() == pytest.approx(sum(step_entropies), abs=1e-4)
    assert all(lp < 0 for lp in step_log_probs)
    # Each step's entropy is at most log(number of choices).
    assert all(0 < h <= math.log(d.size) + 1e-6 for h, d in zip(step_entropies, SPACE.decisions))


def test_evaluate_scores_other_actions_differently_and_is_differentiable():
    c = make_controller()
    a = c.sample(torch.Generator().manual_seed(1)).actions
    b = c.sample(torch.Generator().manual_seed(2)).actions
    assert a != b
    lp_a, _ = c.evaluate(a)
    lp_b, _ = c.evaluate(b)
    assert lp_a.item() == pytest.approx(sum(manual_scores(c, a)[0]), abs=1e-4)
    assert lp_b.item() == pytest.approx(sum(manual_scores(c, b)[0]), abs=1e-4)
    lp_a.backward()
    # Everything trains except the embedding of the last decision's kind ("hp.dropout" occurs only last, and
    # nothing reads its feedback).
    untrained = {name for name, p in c.named_parameters() if p.grad is None or not p.grad.any()}
    assert untrained == {f"embeddings.{c.kinds.index('hp.dropout')}.weight"}


def test_sampling_uses_only_the_given_generator():
    c = make_controller()
    torch.manual_seed(123)
    first = c.sample(torch.Generator().manual_seed(7)).actions
    torch.manual_seed(456)  # the global RNG must not matter
    again = c.sample(torch.Generator().manual_seed(7)).actions
    other = c.sample(torch.Generator().manual_seed(8)).actions
    assert first == again
    assert first != other


def test_actions_are_in_range_and_decode_to_a_child():
    c = make_controller()
    g = torch.Generator().manual_seed(3)
    for _ in range(20):
        actions = c.sample(g).actions
        assert all(isinstance(a, int) and 0 <= a < d.size for a, d in zip(actions, SPACE.decisions))
        SPACE.decode(actions)  # a valid point of the space
    greedy = c.greedy()
    assert all(0 <= a < d.size for a, d in zip(greedy, SPACE.decisions))


def test_the_layer_floor_keeps_every_layer_value_possible_and_leaves_cells_alone():
    floored, plain = make_controller(layer_floor=0.5), make_controller()
    layer = [i for i, d in enumerate(SPACE.decisions) if d.kind.startswith(LAYER_KIND)]
    assert len(layer) == 2
    with torch.no_grad():  # both policies all but sure of each layer hyperparameter's first value
        for c in (floored, plain):
            for i in layer:
                head = c.heads[c.kinds.index(SPACE.decisions[i].name)]
                head.bias.fill_(0.0)
                head.bias[0] = 100.0
    actions = plain.sample(torch.Generator().manual_seed(0)).actions
    for i in layer:
        actions[i] = SPACE.decisions[i].size - 1  # a value the softmax all but rules out
    steps, _ = manual_scores(plain, actions)
    expected = [math.log(0.5 * math.exp(lp) + 0.5 / d.size) if i in layer else lp
                for i, (lp, d) in enumerate(zip(steps, SPACE.decisions))]
    assert all(math.exp(steps[i]) < 0.1 and math.exp(expected[i]) >= 0.5 / SPACE.decisions[i].size for i in layer)
    log_prob, _ = floored.evaluate(actions)
    assert log_prob.item() == pytest.approx(sum(expected), abs=1e-4)  # cell steps as before, layer steps floored
    draws = floored.sample_many(torch.Generator().manual_seed(1), 400)
    assert all(torch.allclose(floored.evaluate(d.actions)[0], d.log_prob, atol=1e-5) for d in draws[:5])
    last = layer[0]
    share = sum(d.actions[last] == SPACE.decisions[last].size - 1 for d in draws) / len(draws)
    assert share > 0.2  # the floor alone gives 0.25; the unfloored policy would give about 0.08


def test_heads_and_embeddings_are_shared_per_kind():
    c = make_controller(share_heads=True)
    kinds = {d.kind for d in SPACE.decisions}
    assert set(c.kinds) == kinds
    assert len(c.heads) == len(c.embeddings) == len(kinds)
    sizes = {d.kind: d.size for d in SPACE.decisions}
    for kind, head, emb in zip(c.kinds, c.heads, c.embeddings):
        assert head.out_features == sizes[kind] and emb.num_embeddings == sizes[kind]


def test_controller_rejects_a_kind_with_two_sizes_and_bad_actions():
    bad = [Decision("a", "comb", ("x", "y")), Decision("b", "comb", ("x", "y", "z"))]
    with pytest.raises(ValueError, match="kind 'comb'"):
        Controller(bad, ControllerConfig(share_heads=True))  # per-decision heads (the default) have no such limit
    Controller(bad, ControllerConfig())
    c = make_controller()
    with pytest.raises(ValueError, match="decisions"):
        c.evaluate([0, 1])
    with pytest.raises(ValueError, match=r"actions\[1\]"):
        c.evaluate([0, 4] + [0] * (len(SPACE.decisions) - 2))


def test_state_dict_round_trip_and_mismatched_space():
    c = make_controller(seed=0)
    fresh = make_controller(seed=1)
    fresh.load_state_dict(c.state_dict())
    assert fresh.sample(torch.Generator().manual_seed(5)).actions == c.sample(torch.Generator().manual_seed(5)).actions
    # Same shapes, other meaning: a base-8 space whose hyperparameters are reordered.
    other = SearchSpace(cell=CellSpace(8), layers=LayerSpace.of({"dropout": [0.0, 0.1, 0.3], "num_layers": [1, 2]}))
    with pytest.raises(ValueError, match="decision 34"):
        Controller(other.decisions, ControllerConfig()).load_state_dict(c.state_dict())


# ---- reward and baseline --------------------------------------------------------------------------------


def test_reward_of():
    paper = ControllerConfig()
    enas = ControllerConfig(reward="c/ppl")
    assert reward_of(40.0, "completed", paper) == pytest.approx(0.05)
    assert reward_of(40.0, "completed", enas) == pytest.approx(2.0)
    for status in ("failed", "diverged", "stopped"):
        assert reward_of(40.0, status, paper) == 0.0
    for ppl in (math.nan, math.inf, -math.inf, 0.0, -3.0, 1e-200):
        assert reward_of(ppl, "completed", paper) == 0.0
    # Broken children never beat working ones.
    assert reward_of(1e6, "completed", paper) > reward_of(math.nan, "completed", paper)
    with pytest.raises(ValueError, match="status"):
        reward_of(40.0, "ok", paper)


def test_ema_baseline_arithmetic():
    b = EMABaseline(decay=0.5)
    assert b.value is None
    assert b.update(1.0) == (1.0, 0.0)  # the first reward initialises b = 1
    assert b.value == 1.0
    assert b.update(2.0) == (1.0, 1.0)  # advantage against b before: 2 - 1; then b = 0.5*1 + 0.5*2
    assert b.value == 1.5
    assert b.update(4.0) == (1.5, 2.5)  # then b = 0.5*1.5 + 0.5*4
    assert b.value == 2.75

    restored = EMABaseline(decay=0.9)
    restored.load_state_dict(b.state_dict())
    assert restored == b
    with pytest.raises(ValueError, match="reward"):
        b.update(math.nan)
    with pytest.raises(ValueError, match="baseline.decay"):
        EMABaseline(decay=1.0)


@pytest.mark.parametrize("risk", [None, 0.1])
def test_both_baselines_refuse_a_reward_that_is_not_finite_and_stay_as_they_were(risk):
    baselines = Baselines(0.5, risk=risk)
    baselines.update(1.0)
    before = baselines.state_dict()
    with pytest.raises(ValueError, match=r"reward: inf is not finite; map broken children to 0.0 with reward_of"):
        baselines.update(math.inf)
    assert baselines.state_dict() == before


def test_reinforce_step_diagnostics_and_direction():
    c = make_controller(temperature=None, tanh_constant=None, lr=1e-2)
    cfg = c.config
    opt = make_optimizer(c, cfg)
    baselines = Baselines(cfg.baseline_decay, means={FINAL: EMABaseline(cfg.baseline_decay, value=0.5)})
    baseline = baselines.means[FINAL]
    actions = c.sample(torch.Generator().manual_seed(0)).actions
    before = c.evaluate(actions)[0].item()
    stats = reinforce_step(c, opt, baselines, [(actions, 1.0, FINAL)], cfg)
    assert set(stats) == {
        "controller/reward", "controller/baseline", "controller/advantage", "controller/entropy",
        "controller/log_prob", "controller/loss", "controller/grad_norm",
    }
    assert stats["controller/reward"] == 1.0
    assert stats["controller/baseline"] == 0.5
    assert stats["controller/advantage"] == 0.5
    assert stats["controller/log_prob"] == pytest.approx(before, abs=1e-5)
    assert all(math.isfinite(v) for v in stats.values()) and stats["controller/grad_norm"] > 0
    assert baseline.value == pytest.approx(0.95 * 0.5 + 0.05 * 1.0)
    assert c.evaluate(actions)[0].item() > before  # a positive advantage makes the child more likely
    with pytest.raises(ValueError, match="batch"):
        reinforce_step(c, opt, baselines, [], cfg)
    value = baseline.value
    with pytest.raises(ValueError, match=r"batch\[1\]: reward nan"):
        reinforce_step(c, opt, baselines, [(actions, 1.0, FINAL), (actions, math.nan, FINAL)], cfg)
    assert baseline.value == value  # nothing moved


def test_the_elite_keeps_the_k_best_distinct_children_with_a_positive_reward():
    e = Elite(3)
    assert [e.add([i], r) for i, r in enumerate([0.2, 0.0, math.nan, 0.5, 0.3])] == [True, False, False, True, True]
    assert e.actions() == [[3], [4], [0]]  # best first
    assert not e.add([3], 0.9)  # already in: keeps its first reward (an outcome teaches once)
    assert not e.add([7], 0.2)  # full, and not better than the worst member (a tie keeps the earlier)
    assert e.add([8], 0.25) and e.actions() == [[3], [4], [8]]  # the worst leaves
    assert not Elite(0).add([1], 1.0)


def test_the_elite_term_raises_the_elites_likelihood_even_without_an_advantage():
    """With the elite, an update whose own child teaches nothing (advantage 0) still moves the policy toward the
    elite; with elite_weight 0 the same update moves it only as far as the entropy bonus does."""
    results = {}
    for weight in (1.0, 0.0):
        c = make_controller(seed=3, elite_size=2, elite_weight=weight)
        cfg = c.config
        g = torch.Generator().manual_seed(1)
        elite, child = [c.sample(g).actions for _ in range(2)], c.sample(g).actions
        before = c.evaluate_many(elite)[0]  # (2,)
        opt = make_optimizer(c, cfg)
        baselines = Baselines(cfg.baseline_decay, means={FINAL: EMABaseline(cfg.baseline_decay, value=0.5)})
        stats = reinforce_step(c, opt, baselines, [(child, 0.5, FINAL)], cfg, elite)  # advantage exactly 0
        assert stats["controller/advantage"] == 0.0
        assert stats["controller/elite_log_prob"] == pytest.approx(before.mean().item(), abs=1e-5)
        results[weight] = (c.evaluate_many(elite)[0] - before).tolist()
    # each elite member became more likely, by far more than the entropy bonus alone moves it (Adam's first step)
    assert all(with_elite > 1.0 and with_elite > 3 * abs(without) for with_elite, without in zip(*results.values())
               ) or pytest.fail(f"log-prob changes without / with the elite: {results}")


def test_risk_seeking_teaches_only_children_above_the_recent_quantile():
    """risk_seeking = eps: the baseline is the (1 - eps) quantile of the last 1/(1 - decay) rewards (hand-computed
    here with decay 0.75: a window of 4), and children below it teach nothing (advantage 0, never negative)."""
    assert quantile([1.0, 2.0, 3.0, 4.0], 0.8) == pytest.approx(3.4) and quantile([5.0], 0.8) == 5.0
    b = Baselines(0.75, risk=0.5)
    got = [b.update(r) for r in [0.2, 0.4, 0.1, 0.3, 0.9, 0.25]]
    assert got[0] == (0.2, 0.0)  # the first reward meets an empty window
    assert got[1] == (0.2, pytest.approx(0.2))  # median of [0.2]
    assert got[2] == (pytest.approx(0.3), 0.0)  # median of [0.2, 0.4]; below it: no lesson, not a negative one
    assert got[3] == (pytest.approx(0.2), pytest.approx(0.1))  # median of [0.2, 0.4, 0.1]
    assert got[4] == (pytest.approx(0.25), pytest.approx(0.65))  # median of [0.2, 0.4, 0.1, 0.3]
    assert got[5] == (pytest.approx(0.35), 0.0)  # the window dropped 0.2: median of [0.4, 0.1, 0.3, 0.9]
    assert b.windows[FINAL] == [0.1, 0.3, 0.9, 0.25] and b.means == {}
    restored = Baselines(0.1)
    restored.load_state_dict(b.state_dict())
    assert restored == b and restored.update(1.0) == b.update(1.0)
    normalized = Baselines(0.75, normalize=True, risk=0.5)
    assert all(a >= 0 for _, a in (normalized.update(r) for r in [0.2, 0.4, 0.1, 0.3, 0.9, 0.25, 0.0, 0.05]))


def test_each_fidelity_has_its_own_baseline():
    """Children stopped at a rung are measured against the children stopped at that rung only (hand-computed)."""
    b = Baselines(decay=0.5)
    assert baseline_key("stopped", 25) == "25" and baseline_key("completed", 200) == FINAL
    assert baseline_key("diverged", 7) == FINAL and baseline_key("failed", 0) == FINAL
    assert b.update(1.0, FINAL) == (1.0, 0.0)  # the first reward of a key sets its baseline: advantage 0
    assert b.update(0.2, "25") == (0.2, 0.0)  # a rung's first reward does not meet the final baseline
    assert b.update(0.4, "25") == (0.2, pytest.approx(0.2))  # against the rung's 0.2, not the final 1.0
    assert b.means["25"].value == pytest.approx(0.3)  # 0.5 * 0.2 + 0.5 * 0.4
    assert b.update(0.6, FINAL) == (1.0, pytest.approx(-0.4))
    assert b.means[FINAL].value == pytest.approx(0.8)
    restored = Baselines(decay=0.1)
    restored.load_state_dict(b.state_dict())
    assert restored.update(0.5, "25") == b.update(0.5, "25")


def test_normalized_advantages_do_not_depend_on_the_reward_scale():
    """Rewards a thousand times smaller (word level against character level) give the same advantages."""
    rewards = [0.5, 0.7, 0.2, 0.9, 0.4, 0.6]
    big, small = Baselines(0.9, normalize=True), Baselines(0.9, normalize=True)
    got_big = [big.update(r)[1] for r in rewards]
    got_small = [small.update(r / 1000)[1] for r in rewards]
    assert got_big == pytest.approx(got_small)
    assert got_big[0] == 0.0 and got_big[1] == 1.0  # the first deviation sets the scale
    # the third: deviation 0.2 - 0.52 against the scale of the second's, sqrt(0.2^2)
    assert got_big[2] == pytest.approx((0.2 - (0.9 * 0.5 + 0.1 * 0.7)) / 0.2)
    raw = Baselines(0.9)
    assert [raw.update(r / 1000)[1] for r in rewards][1] == pytest.approx(0.2 / 1000)


def toy_problem(cfg, target_seed):
    """A base-4 cell + 2 hyperparameters (20 decisions), a random target, and a fresh controller to learn it.
    The toy reward is the fraction of decisions equal to the target."""
    space = SearchSpace(cell=CellSpace(4), layers=LayerSpace.of({"num_layers": [1, 2], "dropout": [0.0, 0.1, 0.3]}))
    rng = random.Random(target_seed)
    target = [rng.randrange(d.size) for d in space.decisions]

    def match(actions: list[int]) -> float:
        return sum(a == t for a, t in zip(actions, target)) / len(target)

    torch.manual_seed(0)
    c = Controller(space.decisions, cfg)
    return space, match, c, make_optimizer(c, cfg), Baselines(cfg.baseline_decay), torch.Generator().manual_seed(0)


def test_reinforce_learns_a_target_architecture():
    # Toy reward: the fraction of decisions equal to a fixed random target, over a base-4 cell + 2 hparams
    # (20 decisions). Heads are shared per kind, so the LSTM must learn where in the sequence it is; without an
    # entropy bonus the policy collapses onto each kind's majority target first and stalls there (~0.55-0.85),
    # hence the bonus, a raised learning rate and 16 children per update. Seeds 0-5 all reach >= 0.95 here.
    cfg = ControllerConfig(lr=0.02, entropy_weight=0.05)  # default temperature 5 and tanh constant 2.5
    space, match, c, opt, baseline, g = toy_problem(cfg, target_seed=0)
    start = match(c.greedy())
    for _ in range(300):
        with torch.no_grad():
            children = c.sample_many(g, 16)
        reinforce_step(c, opt, baseline, [(s.actions, match(s.actions), FINAL) for s in children], cfg)
    assert start < 0.6
    assert match(c.greedy()) >= 0.9


@pytest.mark.parametrize("cfg, target_seed", [
    (ControllerConfig(lr=0.01, share_heads=False, normalize_advantage=False), 1),
    (ControllerConfig(), 2),  # the shipped defaults
    (ControllerConfig(risk_seeking=0.2), 3),  # only children above the recent 80th percentile teach
], ids=["raw-advantages", "defaults", "risk-seeking"])
def test_per_decision_heads_learn_from_one_child_per_update(cfg, target_seed):
    """share_heads=False: the asynchronous setting (one child per update, default entropy) learns a target, with
    raw advantages and on the shipped defaults (normalized advantages)."""
    space, match, c, opt, _, g = toy_problem(cfg, target_seed=target_seed)
    baseline = Baselines(cfg.baseline_decay, cfg.normalize_advantage, risk=cfg.risk_seeking)
    assert len(c.heads) == len(space.decisions)
    start = match(c.greedy())
    for _ in range(300):
        with torch.no_grad():
            s = c.sample(g)
        reinforce_step(c, opt, baseline, [(s.actions, match(s.actions), FINAL)], cfg)
    assert start < 0.6
    assert match(c.greedy()) >= 0.9


# ---- config ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "field, value",
    [
        ("lstm_layers", 0), ("lstm_units", 2.5), ("temperature", 0.0), ("tanh_constant", -1.0),
        ("entropy_weight", -1e-4), ("lr", math.nan), ("baseline_decay", 1.0), ("baseline_decay", -0.1),
        ("reward", "1/ppl"), ("reward_constant", 0), ("grad_clip", math.inf), ("update_every", 0),
        ("init_range", 0.0), ("lstm_layers", True), ("elite_size", -1), ("elite_weight", -0.5),
        ("risk_seeking", 0.0), ("risk_seeking", 1.0), ("layer_floor", -0.1), ("layer_floor", 1.0),
    ],
)
def test_config_rejects_bad_values(field, value):
    with pytest.raises(ValueError, match=rf"controller\.{field}: {re.escape(repr(value))}"):
        ControllerConfig(**{field: value})


def test_config_from_a_controller_table():
    table = {"lstm_units": 100, "lstm_layers": 1, "reward": "c/ppl", "temperature": "none"}
    cfg = config_from_dict({"controller": table}).controller
    assert (cfg.lstm_units, cfg.lstm_layers, cfg.reward, cfg.temperature) == (100, 1, "c/ppl", None)
    assert config_from_dict({"controller": cfg.to_dict()}).controller == cfg
    with pytest.raises(ValueError, match=r"controller.learning_rate: unknown setting; allowed in \[controller\]: "
                                         r"lstm_layers, .*lr"):
        config_from_dict({"controller": {"learning_rate": 1e-3}})


def test_defaults_follow_the_papers_or_the_measurements():
    cfg = ControllerConfig()
    assert (cfg.lstm_layers, cfg.lstm_units, cfg.reward, cfg.reward_constant) == (2, 35, "c/ppl^2", 80.0)
    assert (cfg.temperature, cfg.tanh_constant) == (5.0, 2.5)
    # chosen with bench/bench_search_quality.py (bench/RESULTS.md); each docstring cites its measurement
    assert (cfg.lr, cfg.share_heads, cfg.normalize_advantage, cfg.entropy_weight) == (0.03, False, True, 1e-3)


def test_normalized_advantages_stay_bounded_when_the_scale_is_uncertain():
    b = Baselines(0.95, normalize=True)
    got = [b.update(r)[1] for r in [0.0, 0.0, 0.0, 0.0, 0.5]]
    assert got == [0.0, 0.0, 0.0, 0.0, 1.0]  # the first good child after failures teaches (its sign), no 0/0
    b = Baselines(0.95, normalize=True)
    got = [b.update(r)[1] for r in [0.30, 0.3001, 0.5, 0.9]]
    assert got[1] == 0.0 and got[2] == 1.0  # a negligible first deviation sets no scale: no 2,000-fold advantage
    assert abs(got[3]) <= 5.0


def test_normalized_advantages_are_clipped_at_five_scales():
    b = Baselines(0.95, normalize=True)
    assert [b.update(r)[1] for r in [0.5, 0.6]] == [0.0, 1.0]  # the scale is now 0.1
    assert b.update(5.0)[1] == 5.0  # (5.0 - 0.505) / 0.1 = 45 standard deviations: clipped
    b = Baselines(0.95, normalize=True)
    [b.update(r) for r in [0.5, 0.6]]
    assert b.update(-4.0)[1] == -5.0

