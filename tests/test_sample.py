"""`nas sample`: text from a model `nas train` saved. Deterministic with a seed, greedy is the argmax, top-k never
draws outside the k most likely, the prime sets the state, the folder picks its best seed, word-level output joins
words and writes <eos> as a line break, and bad input is one clear line with exit 2."""

import json

import pytest
import torch

from nas.cli import main
from nas.config import config_from_dict
from nas.retrain.sample import (
    SampleSettings,
    checkpoint_path,
    detokenize,
    level_of,
    prime_ids,
    sample,
    sample_text,
)
from nas.retrain.trainer import load_checkpoint, retrain, retrain_recipe
from search_spaces import ChildSpec, HParams, known_cell

TEXT = "the cat sat on the mat and the dog sat on the log\na cat ran to the dog\n"


@pytest.fixture(scope="module", params=["char", "word"])
def trained(request, tmp_path_factory):
    """A tiny model trained for two epochs at character or word level, two seeds."""
    root = tmp_path_factory.mktemp(f"sample-{request.param}")
    corpus = root / "corpus"
    corpus.mkdir()
    for split, n in (("train", 40), ("valid", 6), ("test", 6)):
        (corpus / f"{split}.txt").write_text(TEXT * n)
    search = config_from_dict({"data": {"dataset": str(corpus), "level": request.param},
                               "model": {"hidden_size": 16, "num_layers": 1},
                               "train": {"batch_size": 4, "eval_batch_size": 4, "bptt": 8}})
    cfg = retrain_recipe(search, epochs=2, patience=0, seeds=2, first_seed=0)
    retrain(ChildSpec(known_cell("lstm"), HParams.of({"dropout": 0.0})), cfg, root / "train", out=lambda line: None)
    return root / "train", request.param


def test_a_seed_makes_a_sample_reproducible_and_the_folder_picks_its_best_seed(trained):
    folder, level = trained
    runs = json.loads((folder / "train.json").read_text())["runs"]
    best = min(runs, key=lambda r: r["val_ppl"])
    assert checkpoint_path(folder) == folder / best["model"]
    settings = SampleSettings(length=60, temperature=1.0, seed=5)
    a = sample_text(folder, None, settings, num_samples=2)[2]
    assert a == sample_text(folder, None, settings, num_samples=2)[2]  # the same seed: the same text
    assert a != sample_text(folder, None, SampleSettings(length=60, temperature=1.0, seed=6), num_samples=2)[2]
    assert a[0] != a[1]  # two samples of one call are independent draws


def test_greedy_is_the_argmax_and_top_k_draws_only_from_the_k_best(trained):
    folder, level = trained
    model, ckpt = load_checkpoint(checkpoint_path(folder))
    prime = prime_ids(None, ckpt["vocab"], level)
    got = sample(model, prime, SampleSettings(length=20, temperature=0))[0]
    with torch.no_grad():
        logits, state = model(torch.tensor(prime).view(-1, 1))
        expected = []
        for _ in range(20):
            expected.append(int(logits[-1, 0].argmax()))
            logits, state = model(torch.tensor([[expected[-1]]]), state)
    assert got == expected
    assert sample(model, prime, SampleSettings(length=20, temperature=1.0, top_k=1, seed=3))[0] == expected
    drawn = sample(model, prime, SampleSettings(length=40, temperature=2.0, top_k=2, seed=1))[0]
    with torch.no_grad():  # every drawn token was one of the two most likely at its step
        logits, state = model(torch.tensor(prime).view(-1, 1))
        for token in drawn:
            assert token in logits[-1, 0].topk(2).indices.tolist()
            logits, state = model(torch.tensor([[token]]), state)


def test_the_prime_sets_the_state(trained):
    folder, level = trained
    greedy = SampleSettings(length=30, temperature=0)
    after_cat = sample_text(folder, "the cat", greedy)[2][0]
    after_dog = sample_text(folder, "a dog ran to", greedy)[2][0]
    assert after_cat.startswith("the cat") and after_dog.startswith("a dog ran to")
    assert after_cat[len("the cat"):] != after_dog[len("a dog ran to"):]


def test_a_checkpoint_without_its_level_takes_it_from_train_json(trained, tmp_path):
    folder, level = trained
    path = checkpoint_path(folder)
    ckpt = torch.load(path, weights_only=True)
    del ckpt["level"]  # as written before checkpoints recorded it
    old = tmp_path / "old"
    old.mkdir()
    torch.save(ckpt, old / path.name)
    (old / "train.json").write_text((folder / "train.json").read_text())
    assert level_of(torch.load(old / path.name, weights_only=True), old / path.name) == level
    (old / "train.json").unlink()  # nothing beside it: the vocabulary says
    assert level_of(ckpt, old / path.name) == level


def test_word_level_joins_words_and_writes_eos_as_a_line_break():
    vocab = ["the", "cat", "<eos>", "sat"]
    assert detokenize([0, 1, 2, 0, 3, 2], vocab, "word") == "the cat\nthe sat\n"
    assert detokenize([0, 1], ["a", "b"], "char") == "ab"
    assert prime_ids("the cat\nsat", vocab, "word") == [0, 1, 2, 3]


def test_bad_input_is_one_clear_line_and_exit_2(trained, tmp_path, capsys):
    folder, level = trained
    assert main(["sample", str(folder), "--prime", "zebra§", "--length", "5"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("nas: error: --prime: the ") and "not in the model's vocabulary" in err
    assert "\n" not in err
    assert main(["sample", str(folder), "--temperature", "-1"]) == 2
    assert "--temperature -1.0: use a number > 0" in capsys.readouterr().err
    junk = tmp_path / "junk.pt"
    junk.write_text("not a checkpoint")
    assert main(["sample", str(junk)]) == 2
    assert "not a `nas train` checkpoint" in capsys.readouterr().err
    assert main(["sample", str(tmp_path)]) == 2  # a folder without train.json
    assert "not a `nas train` folder" in capsys.readouterr().err


def test_the_command_prints_and_writes_the_samples(trained, tmp_path, capsys):
    folder, level = trained
    out = tmp_path / "samples.txt"
    assert main(["sample", str(folder), "--prime", "the", "--length", "12", "--num-samples", "2", "--seed", "1",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr()
    assert printed.out.startswith("the") and "\n---\n" in printed.out
    assert out.read_text() == printed.out
    unit = "characters" if level == "char" else "words"
    assert f"2 sample(s) of 12 {unit}" in printed.err
