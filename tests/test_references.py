"""torch's own layers beside the cells: `torch-gru` (nn.GRU behind the LSTM interface) trains through the same model
and loop as `torch-lstm`, `--match-params` sizes both, and `nas show` prints their equations."""

import json

import torch

from nas.cli import main
from search_spaces import known_cell
from workers.child_settings import ModelConfig
from workers.model import GRULayers, build_child, count_parameters


def test_gru_layers_are_nn_gru_behind_the_lstm_interface():
    torch.manual_seed(0)
    layers = GRULayers(5, 7, 2)
    x = torch.randn(4, 3, 5)
    out, (h, c) = layers(x)
    ref, h_ref = layers.gru(x)
    assert torch.equal(out, ref) and torch.equal(h, h_ref) and c is h
    out2, _ = layers(x, (h, c))  # the state carries on: the GRU starts from h
    assert torch.equal(out2, layers.gru(x, h_ref)[0])
    model = build_child(known_cell("lstm"), 11, ModelConfig(num_layers=2, hidden_size=7, embedding_size=5,
                                                            rnn="torch-gru"))
    gru = torch.nn.GRU(5, 7, 2)
    assert count_parameters(model) == count_parameters(gru) + 11 * 5 + 7 * 11 + 11  # embedding, decoder


def test_torch_gru_trains_beside_torch_lstm_both_matched_to_a_cell(tmp_path, capsys, monkeypatch):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for split, n in (("train", 40), ("valid", 6), ("test", 6)):
        (corpus / f"{split}.txt").write_text("the cat sat on the mat and the dog sat on the log\n" * n)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "c.toml").write_text('[data]\ndataset = "corpus"\n[model]\nhidden_size = 8\nnum_layers = 1\n'
                                     '[train]\nbatch_size = 4\neval_batch_size = 4\nbptt = 6\n[retrain]\nepochs = 1\n')
    assert main(["train", "nascell", "torch-lstm", "torch-gru", "--match-params", "nascell", "--config", "c.toml",
                 "--out", "side"]) == 0
    out = capsys.readouterr().out
    docs = {name: json.loads((tmp_path / "side" / name / "train.json").read_text())
            for name in ("nascell", "torch-lstm", "torch-gru")}
    assert docs["torch-gru"]["settings"]["model"]["rnn"] == "torch-gru"
    assert docs["torch-gru"]["runs"][0]["status"] == "completed"
    target = docs["nascell"]["runs"][0]["params"]
    for name in ("torch-lstm", "torch-gru"):
        h = docs[name]["settings"]["model"]["hidden_size"]
        params = docs[name]["runs"][0]["params"]
        assert f"{name}: hidden size {h}, {params:,} parameters, matching nascell ({target:,} parameters)" in out
        assert abs(params - target) / target < 0.1
    # a GRU has 3 gates to an LSTM's 4: matched to the same cell, it gets the larger hidden layer
    hidden = {name: doc["settings"]["model"]["hidden_size"] for name, doc in docs.items()}
    assert hidden["torch-gru"] > hidden["torch-lstm"]
    assert not (tmp_path / "side" / "torch-gru" / "spec.json").exists()  # no tree computes a GRU: nothing to export
    assert main(["sample", "side/torch-gru", "--length", "5"]) == 0  # its checkpoint rebuilds a GRU


def test_show_prints_the_references_equations(capsys):
    assert main(["show", "torch-gru"]) == 0
    out = capsys.readouterr().out
    assert "h_t = (1 - z) * n + z * h_{t-1}" in out and "no tree of the search space computes it" in out
    assert main(["show", "torch-lstm"]) == 0
    assert "c_t = f * c_{t-1} + i * g" in capsys.readouterr().out
    assert main(["show", "torch-gru", "--json"]) == 2
    assert "are for trees" in capsys.readouterr().err
