"""Training one child without Ray: it learns, it is deterministic, it survives divergence."""

import math

import pytest
import torch

from search_spaces import Cell, Memory, Node, known_cell
from workers.child_settings import Budget, ModelConfig, TrainConfig, split_hparams
from workers.data import Corpus
from workers.train import train_child

TEXT = "the cat sat on the mat. the dog sat on the log. a cat and a dog sat on a mat.\n"


def tiny_corpus(repeats=40):
    vocab = tuple(sorted(set(TEXT)))
    ids = torch.tensor([vocab.index(ch) for ch in TEXT * repeats], dtype=torch.int64)
    cut = len(ids) * 8 // 10
    return Corpus("tiny", "char", vocab, ids[:cut], ids[cut:], ids[cut:])


SMALL = ModelConfig(num_layers=1, hidden_size=32, dropout=0.0)
FAST = TrainConfig(lr=5.0, batch_size=8, bptt=20, eval_batch_size=4)


def test_training_lowers_validation_perplexity():
    corpus = tiny_corpus()
    reports = []
    result = train_child(known_cell("nascell"), corpus, budget=Budget(epochs=4), model_config=SMALL,
                         train_config=TrainConfig(lr=10.0, batch_size=4, bptt=20, eval_batch_size=4), seed=0,
                         on_epoch=reports.append)
    assert result.status == "completed", result.message
    assert [r.epoch for r in reports] == [1, 2, 3, 4] and result.epochs == 4
    assert reports[-1].val_ppl < reports[0].val_ppl
    # a model that learned nothing sits near the vocabulary size (uniform guessing)
    assert result.val_ppl < corpus.vocab_size / 3
    assert result.val_ppl == pytest.approx(min(r.val_ppl for r in reports))
    assert result.params > 0 and result.train_seconds > 0
    assert all(r.tokens_per_second > 0 for r in reports)


def test_deterministic_under_a_seed():
    corpus = tiny_corpus(20)
    run = lambda seed: train_child(known_cell("nascell"), corpus, budget=Budget(epochs=2), model_config=SMALL,  # noqa: E731
                                   train_config=FAST, seed=seed)
    a, b, c = run(7), run(7), run(8)
    assert [r.val_loss for r in a.history] == [r.val_loss for r in b.history]
    assert [r.train_loss for r in a.history] == [r.train_loss for r in b.history]
    assert [r.val_loss for r in a.history] != [r.val_loss for r in c.history]


def test_divergence_ends_with_a_status_not_a_crash():
    corpus = tiny_corpus(10)
    # products of unbounded (identity) nodes with an absurd learning rate and no useful clipping blow up
    explosive = Cell(2, (Node("elem_mult", "identity"),) * 3, Memory("add", "identity", 0, 2))
    result = train_child(explosive, corpus, budget=Budget(epochs=3), model_config=SMALL,
                         train_config=TrainConfig(lr=1e30, clip=1e30, optimizer="sgd", batch_size=8, bptt=20),
                         seed=0)
    assert result.status == "diverged"
    assert "became" in result.message
    assert result.epochs == 0 and math.isnan(result.val_ppl)


def test_nan_in_the_middle_is_caught(monkeypatch):
    corpus = tiny_corpus(10)
    calls = {"n": 0}
    original = torch.nn.CrossEntropyLoss.forward

    def poisoned(self, logits, targets):
        calls["n"] += 1
        loss = original(self, logits, targets)
        return loss * float("nan") if calls["n"] > 10 else loss

    monkeypatch.setattr(torch.nn.CrossEntropyLoss, "forward", poisoned)
    result = train_child(known_cell("nascell"), corpus, budget=Budget(epochs=5), model_config=SMALL,
                         train_config=FAST, seed=0)
    assert result.status == "diverged" and "nan" in result.message


def test_budget_caps_batches_and_eval_tokens():
    corpus = tiny_corpus()
    result = train_child(known_cell("lstm"), corpus, budget=Budget(epochs=1, max_batches=3, max_eval_tokens=200),
                         model_config=SMALL, train_config=FAST)
    assert result.history[0].train_tokens == 3 * 8 * 20


def test_hyperparameters_route_to_their_config_and_unknown_names_fail():
    m, t = split_hparams({"hidden_size": 64, "lr": 1.0, "num_layers": 1}, ModelConfig(), TrainConfig())
    assert (m.hidden_size, m.num_layers, t.lr) == (64, 1, 1.0)
    with pytest.raises(ValueError, match="unknown child hyperparameter.*colour.*searchable names"):
        split_hparams({"colour": "red"}, ModelConfig(), TrainConfig())
    with pytest.raises(ValueError, match="model.dropout"):
        split_hparams({"dropout": 1.5}, ModelConfig(), TrainConfig())
    with pytest.raises(ValueError, match="tie_weights"):
        ModelConfig(hidden_size=64, embedding_size=32, tie_weights=True)


def test_test_perplexity_of_best_weights():
    corpus = tiny_corpus(20)
    result = train_child(known_cell("nascell"), corpus, budget=Budget(epochs=2), model_config=SMALL,
                         train_config=FAST, evaluate_test=True)
    # test split == valid split in this corpus, so test ppl equals the best validation ppl
    assert result.test_ppl == pytest.approx(result.val_ppl, rel=1e-9)


def test_bfloat16_autocast_trains_a_child_and_the_fused_path_matches_the_reference_under_it():
    from workers.cell_rnn import CellRNN

    corpus = tiny_corpus()
    result = train_child(known_cell("nascell"), corpus, budget=Budget(epochs=2), model_config=SMALL,
                         train_config=TrainConfig(lr=10.0, batch_size=4, bptt=20, eval_batch_size=4,
                                                  precision="bfloat16"), seed=0)
    assert result.status == "completed" and math.isfinite(result.val_ppl)
    assert result.val_ppl < corpus.vocab_size / 2  # it learned something

    torch.manual_seed(0)
    fused, ref = CellRNN(known_cell("nascell"), 8, 16), CellRNN(known_cell("nascell"), 8, 16, fused=False)
    ref.load_state_dict(fused.state_dict())
    x = torch.randn(10, 4, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got, _ = fused(x)
        want, _ = ref(x)
    assert got.dtype == torch.bfloat16
    torch.testing.assert_close(got.float(), want.float(), atol=0.05, rtol=0.05)
    got.float().sum().backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in fused.parameters())


def test_an_unknown_precision_is_one_clear_error():
    with pytest.raises(ValueError, match="train.precision"):
        TrainConfig(precision="fp8")


def test_patience_stops_after_epochs_without_a_better_validation_loss():
    corpus = tiny_corpus(10)
    frozen = TrainConfig(lr=1e-30, batch_size=8, bptt=20, eval_batch_size=4)  # weights never move
    result = train_child(known_cell("nascell"), corpus, budget=Budget(epochs=10, patience=2), model_config=SMALL,
                         train_config=frozen)
    # epoch 1 sets the best; epochs 2 and 3 do not beat it, each dividing lr by 4; then it stops
    assert result.epochs == 3 and result.stopped_early and result.status == "completed"
    assert [r.lr for r in result.history] == pytest.approx([1e-30, 1e-30 / 4, 1e-30 / 16])
    full = train_child(known_cell("nascell"), corpus, budget=Budget(epochs=2), model_config=SMALL, train_config=FAST)
    assert full.epochs == 2 and not full.stopped_early
    with pytest.raises(ValueError, match="budget.patience"):
        Budget(patience=0)


def test_best_state_is_the_best_validation_weights():
    from workers.data import batchify
    from workers.model import build_child
    from workers.train import evaluate, perplexity

    corpus = tiny_corpus(20)
    result = train_child(known_cell("nascell"), corpus, budget=Budget(epochs=2), model_config=SMALL,
                         train_config=FAST, evaluate_test=True)
    model = build_child(known_cell("nascell"), corpus.vocab_size, SMALL)
    model.load_state_dict(result.best_state)
    test = batchify(corpus.test, FAST.eval_batch_size)
    assert perplexity(evaluate(model, test, FAST.bptt)) == pytest.approx(result.test_ppl, rel=1e-6)
    no_test = train_child(known_cell("nascell"), corpus, budget=Budget(epochs=1), model_config=SMALL, train_config=FAST)
    assert no_test.best_state is None


def test_short_epochs_continue_through_the_split_instead_of_restarting_it(monkeypatch):
    """max_batches cuts each epoch short: the next epoch starts where the last stopped (wrapping at the end), so
    several short epochs see the whole text, not its first windows again and again."""
    import workers.train as train_module

    corpus = tiny_corpus(40)  # 2,496 training tokens: 624 rows at batch 4, 32 windows of 20
    seen = []
    real_step = train_module.TrainStep.__call__

    def spy(self, inputs, targets, state):
        seen.append(inputs[0].clone())  # the first row of each window identifies it
        return real_step(self, inputs, targets, state)

    monkeypatch.setattr(train_module.TrainStep, "__call__", spy)
    cfg = TrainConfig(lr=1.0, batch_size=4, bptt=20, eval_batch_size=4)
    result = train_child(known_cell("nascell"), corpus, budget=Budget(epochs=3, max_batches=12), model_config=SMALL,
                         train_config=cfg)
    assert result.status == "completed"
    train = corpus.train[: (len(corpus.train) // 4) * 4].view(4, -1).t()  # (rows, B), as batchify lays it out
    windows = [train[i] for i in range(0, train.size(0) - 1, 20)]
    assert len(windows) == 32 and len(seen) == 36 and result.batches == 36
    expected = windows[:32] + windows[:4]  # 12 + 12 + 12: the third epoch wraps around after window 31
    assert all(torch.equal(a, b) for a, b in zip(seen, expected))
    assert [r.batches for r in result.history] == [12, 24, 36]


def test_rungs_report_validation_perplexity_inside_an_epoch():
    corpus = tiny_corpus(40)  # 16 windows of 20 at batch 8: whole epochs are longer than 10 batches
    rungs = []
    result = train_child(known_cell("nascell"), corpus, budget=Budget(epochs=2, max_batches=10, report_at=(3, 10, 14)),
                         model_config=SMALL, train_config=FAST, on_rung=rungs.append)
    assert [(r.batches, r.epoch) for r in rungs] == [(3, 1), (10, 1), (14, 2)]
    assert all(math.isfinite(r.val_ppl) and r.val_ppl == pytest.approx(math.exp(r.val_loss)) for r in rungs)
    assert [r.train_seconds for r in rungs] == sorted(r.train_seconds for r in rungs)
    # the rung at batch 10 is the end of epoch 1: the same weights, the same validation loss
    assert rungs[1].val_loss == pytest.approx(result.history[0].val_loss)
    assert result.batches == 20 and result.status == "completed"
    with pytest.raises(ValueError, match="budget.report_at"):
        Budget(report_at=(0,))


def test_a_cpu_child_flushes_subnormals_and_its_perplexity_does_not_change(monkeypatch):
    import workers.train as train_module

    corpus = tiny_corpus(20)
    args = dict(budget=Budget(epochs=2), model_config=SMALL, train_config=FAST, seed=3, device="cpu")
    calls = []
    real = torch.set_flush_denormal
    monkeypatch.setattr(train_module.torch, "set_flush_denormal", lambda on: calls.append(on) or real(on))
    flushed = train_child(known_cell("nascell"), corpus, **args)
    assert calls == [True]
    monkeypatch.setattr(train_module.torch, "set_flush_denormal", lambda on: real(False))  # as before: never flushed
    kept = train_child(known_cell("nascell"), corpus, **args)
    real(True)
    assert [r.val_loss for r in flushed.history] == pytest.approx([r.val_loss for r in kept.history], rel=1e-6)
