"""The GPU-facing paths on the test device (``NAS_TEST_DEVICE=cuda`` on a GPU machine, the CPU otherwise): the fused
cell against the reference in float32 and under bfloat16 autocast, a child's training (CUDA graphs on CUDA),
``nas train``'s library side, and the exported module scripted. Nothing here needs Ray."""

import dataclasses
import importlib.util
import math
import os
import shutil
import sys
import uuid

import pytest
import torch

from nas.config import config_from_dict
from nas.retrain.trainer import load_checkpoint, retrain, retrain_recipe
from nas.runs.export import write_export
from search_spaces import ChildSpec, HParams, known_cell, random_cell
from workers.cell_rnn import CellRNN
from workers.child_settings import Budget, ModelConfig, TrainConfig
from workers.data import Corpus
from workers.train import train_child

TEXT = "the cat sat on the mat. the dog sat on the log. a cat and a dog sat on a mat.\n"
KERNELS = ["torch"] + (["triton"] if importlib.util.find_spec("triton") else []) + (
    ["native"] if shutil.which(os.environ.get("CC") or "cc") else [])


def tiny_corpus(repeats=40):
    vocab = tuple(sorted(set(TEXT)))
    ids = torch.tensor([vocab.index(ch) for ch in TEXT * repeats], dtype=torch.int64)
    cut = len(ids) * 8 // 10
    return Corpus("tiny", "char", vocab, ids[:cut], ids[cut:], ids[cut:])


def _pair(cell, device, kernels, hidden=24, inputs=12, layers=2):
    torch.manual_seed(0)
    fused = CellRNN(cell, inputs, hidden, layers, kernels=kernels).to(device)
    ref = CellRNN(cell, inputs, hidden, layers, fused=False).to(device)
    ref.load_state_dict(fused.state_dict())
    return fused, ref


def _run(rnn, x):
    for p in rnn.parameters():
        p.grad = None
    out, (h, c) = rnn(x)
    (out.float().square().sum() + c.float().sum()).backward()
    return [out.float(), c.float()] + [p.grad for p in rnn.parameters()]


def _close(got, want, rel):
    for a, b in zip(got, want):
        assert torch.isfinite(a).all()
        assert torch.linalg.vector_norm(a - b) <= rel * torch.linalg.vector_norm(b) + 1e-6


@pytest.mark.parametrize("kernels", KERNELS)
@pytest.mark.parametrize("cell", [known_cell("nascell"), random_cell(8, 5)], ids=["nascell", "random8"])
def test_fused_path_equals_the_reference_in_float32(device, kernels, cell):
    fused, ref = _pair(cell, device, kernels)
    x = torch.randn(12, 5, 12, device=device)
    # CUDA matrix products may use TF32 (~1e-3 relative): compare at that tolerance there
    _close(_run(fused, x), _run(ref, x), 2e-3 if device.type == "cuda" else 1e-5)


@pytest.mark.parametrize("kernels", KERNELS)
def test_fused_path_under_bfloat16_autocast_stays_near_the_reference(device, kernels):
    fused, ref = _pair(known_cell("nascell"), device, kernels)
    x = torch.randn(12, 5, 12, device=device)
    with torch.autocast(device.type, dtype=torch.bfloat16):
        got = _run(fused, x)
    want = _run(ref, x)  # float32
    _close(got, want, 0.1)
    assert all(p.grad.dtype == torch.float32 for p in fused.parameters())


def test_a_child_trains_on_the_device_and_cuda_graphs_follow_the_setting(device):
    corpus = tiny_corpus()
    cfg = TrainConfig(lr=10.0, batch_size=4, bptt=20, eval_batch_size=4)
    small = ModelConfig(num_layers=1, hidden_size=32, dropout=0.0)
    graphed = train_child(known_cell("nascell"), corpus, budget=Budget(epochs=4), model_config=small,
                          train_config=cfg, seed=0, device=device)
    eager = train_child(known_cell("nascell"), corpus, budget=Budget(epochs=4), model_config=small,
                        train_config=dataclasses.replace(cfg, cuda_graphs="off"), seed=0, device=device)
    assert graphed.status == eager.status == "completed"
    assert graphed.val_ppl < corpus.vocab_size / 3  # it learned
    assert eager.cuda_graphs == "off"
    if device.type == "cuda":
        assert graphed.cuda_graphs == "captured"
        # ~120 SGD steps at lr 10 amplify rounding differences (the graph's update multiplies, then adds)
        assert graphed.val_ppl == pytest.approx(eager.val_ppl, rel=0.05)
    else:
        assert graphed.cuda_graphs == "off"  # never on a CPU
        assert graphed.val_ppl == eager.val_ppl


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_a_replayed_graph_step_equals_the_eager_step(device, optimizer):
    """Window by window, the captured and replayed training step gives the eager step's losses, state and
    weights: warm-up windows, the captured one, replays, a short window in between (eager), a new sequence."""
    if device.type != "cuda":
        pytest.skip("CUDA graphs need a CUDA device")
    from workers.cuda_graph import GraphedTrainStep
    from workers.model import build_child
    from workers.train import TrainStep

    corpus = tiny_corpus()
    cfg = TrainConfig(optimizer=optimizer, lr=0.5 if optimizer == "sgd" else 1e-3, batch_size=4, bptt=10)
    torch.manual_seed(0)
    models = [build_child(known_cell("nascell"), corpus.vocab_size, ModelConfig(num_layers=2, hidden_size=16,
                                                                                  dropout=0.0)).to(device)]
    models.append(build_child(known_cell("nascell"), corpus.vocab_size, ModelConfig(num_layers=2, hidden_size=16,
                                                                                      dropout=0.0)).to(device))
    models[1].load_state_dict(models[0].state_dict())
    eager = TrainStep(models[0], cfg, device, capturable=True)
    graphed = GraphedTrainStep(TrainStep(models[1], cfg, device, capturable=True))
    data = corpus.train[: 4 * 101].view(4, -1).t().contiguous().to(device)  # (101, 4)
    windows = [(0, 10), (10, 10), (20, 10), (30, 10), (40, 10), (50, 5), (55, 10), (65, 10), None, (75, 10)]
    states = [None, None]
    for w in windows:
        if w is None:  # a new sequence: the state starts from zeros again
            states = [None, None]
            continue
        i, n = w
        inputs, targets = data[i : i + n], data[i + 1 : i + 1 + n]
        (la, states[0]), (lb, states[1]) = eager(inputs, targets, states[0]), graphed(inputs, targets, states[1])
        assert float(lb) == pytest.approx(float(la), rel=1e-4), w
        torch.testing.assert_close(states[1][0], states[0][0], rtol=1e-4, atol=1e-5)
    assert graphed.status == "captured"
    for a, b in zip(models[0].parameters(), models[1].parameters()):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5)


def test_cuda_graph_training_with_dropout_adam_and_lr_decay(device):
    """Dropout (its RNG inside the graph), Adam (capturable) and an SGD learning rate that decays between epochs
    (read from a device tensor by the graph) all train."""
    corpus = tiny_corpus()
    small = ModelConfig(num_layers=2, hidden_size=32, dropout=0.3)
    adam = train_child(known_cell("nascell"), corpus, budget=Budget(epochs=2), model_config=small,
                       train_config=TrainConfig(optimizer="adam", lr=3e-3, batch_size=4, bptt=20), device=device)
    assert adam.status == "completed" and adam.val_ppl < 0.8 * corpus.vocab_size  # below uniform guessing
    frozen = train_child(known_cell("nascell"), corpus, budget=Budget(epochs=3), model_config=small,
                         train_config=TrainConfig(lr=1e-30, batch_size=4, bptt=20), device=device)
    assert [r.lr for r in frozen.history] == pytest.approx([1e-30, 1e-30 / 4, 1e-30 / 16])
    if device.type == "cuda":
        assert adam.cuda_graphs == frozen.cuda_graphs == "captured"


def test_an_unknown_kernels_or_graphs_setting_is_one_clear_error():
    with pytest.raises(ValueError, match="train.cell_kernels: 'fast' is not one of auto, torch, triton"):
        TrainConfig(cell_kernels="fast")
    with pytest.raises(ValueError, match="train.cuda_graphs: 'on' is not one of auto, off"):
        TrainConfig(cuda_graphs="on")


def test_nas_train_on_the_device_records_it_and_the_checkpoint_loads(device, tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for split, n in (("train", 60), ("valid", 10), ("test", 10)):
        (corpus / f"{split}.txt").write_text("the cat sat on the mat and the dog sat on the log\n" * n)
    search = config_from_dict({"seed": 1, "data": {"dataset": str(corpus)},
                               "model": {"hidden_size": 16, "num_layers": 1},
                               "train": {"batch_size": 4, "eval_batch_size": 4, "bptt": 6}})
    spec = ChildSpec(known_cell("nascell"), HParams.of({"dropout": 0.0}))
    outcome = retrain(spec, retrain_recipe(search, epochs=2, seeds=1, device=str(device)), tmp_path / "out",
                      out=lambda line: None)
    (run,) = outcome.runs
    assert run["status"] == "completed" and math.isfinite(run["test_ppl"])
    assert run["cuda_graphs"] == ("captured" if device.type == "cuda" else "off")
    model, ckpt = load_checkpoint(tmp_path / "out" / run["model"])
    assert ckpt["val_ppl"] == run["val_ppl"]


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
def test_the_exported_module_scripts_and_matches_the_search_cell_on_the_device(device, tmp_path, monkeypatch):
    cell = known_cell("nascell")
    name = f"exported_{uuid.uuid4().hex}"
    py_path, _ = write_export(ChildSpec(cell), tmp_path / f"{name}.py")
    module_spec = importlib.util.spec_from_file_location(name, py_path)
    module = importlib.util.module_from_spec(module_spec)
    monkeypatch.setitem(sys.modules, name, module)  # torch.jit.script reads class sources through sys.modules
    module_spec.loader.exec_module(module)
    torch.manual_seed(0)
    ref = CellRNN(cell, 6, 8, num_layers=2).to(device, torch.float64)
    rnn = module.SearchedCellRNN(6, 8, num_layers=2).to(device, torch.float64)
    rnn.load_state_dict(ref.state_dict())
    scripted = torch.jit.script(rnn)
    x = torch.randn(7, 3, 6, device=device, dtype=torch.float64)
    for _ in range(3):  # the profiling executor optimises from the second call
        got, (h, c) = scripted(x)
        want, (h2, c2) = ref(x)
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-11)
        torch.testing.assert_close(c, c2, rtol=1e-9, atol=1e-11)
