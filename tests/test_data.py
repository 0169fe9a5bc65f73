"""Corpora: the bundled Tiny Shakespeare, word/char tokenisation, PTB and WikiText-2 counts, batchify, errors."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import pytest
import torch

from workers.data import BUNDLED, Corpus, DataError, batchify, load_corpus

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
BUNDLED_GZ = Path(__file__).resolve().parents[1] / "workers" / "corpora" / "tinyshakespeare.txt.gz"
SHAKESPEARE_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"


def _write(directory: Path, files: dict[str, str]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (directory / name).write_text(text, encoding="utf-8")
    return directory


def _decode(corpus: Corpus, ids: torch.Tensor) -> list[str]:
    return [corpus.vocab[i] for i in ids.tolist()]


# --- bundled Tiny Shakespeare ---------------------------------------------------------------------------------


def test_bundled_file_is_the_pinned_text() -> None:
    text = gzip.decompress(BUNDLED_GZ.read_bytes())
    assert hashlib.sha256(text).hexdigest() == SHAKESPEARE_SHA256
    assert len(text) == 1_115_394


def test_shakespeare_char_level() -> None:
    corpus = load_corpus()
    assert "shakespeare" in BUNDLED
    assert (corpus.name, corpus.level) == ("shakespeare", "char")
    assert corpus.vocab_size == 65 and "<unk>" not in corpus.vocab and "\n" in corpus.vocab
    sizes = [corpus.train.numel(), corpus.valid.numel(), corpus.test.numel()]
    assert sum(sizes) == 1_115_394  # every character, newlines included, is in exactly one split
    text = gzip.decompress(BUNDLED_GZ.read_bytes()).decode()
    lines = text.splitlines(keepends=True)
    assert sizes[0] == sum(map(len, lines[:36_000]))  # first 90% of the 40,000 lines
    assert sizes[1] == sum(map(len, lines[36_000:38_000]))  # next 5%
    assert "".join(_decode(corpus, corpus.train[:14])) == "First Citizen:"
    assert "".join(_decode(corpus, corpus.test)) == "".join(lines[38_000:])
    for split in (corpus.train, corpus.valid, corpus.test):
        assert split.dtype == torch.int64 and split.dim() == 1


def test_shakespeare_is_deterministic() -> None:
    a, b = load_corpus("shakespeare"), load_corpus("shakespeare", level="char")
    assert a.vocab == b.vocab
    assert all(torch.equal(getattr(a, s), getattr(b, s)) for s in ("train", "valid", "test"))


def test_shakespeare_word_level() -> None:
    corpus = load_corpus("shakespeare", level="word")
    assert corpus.level == "word"
    assert _decode(corpus, corpus.train[:3]) == ["First", "Citizen:", "<eos>"]
    eos = corpus.vocab.index("<eos>")
    assert sum(int((s == eos).sum()) for s in (corpus.train, corpus.valid, corpus.test)) == 40_000
    assert "<unk>" in corpus.vocab  # valid/test contain words train lacks


def test_summary_names_the_corpus() -> None:
    summary = load_corpus().summary()
    assert "shakespeare" in summary and "char" in summary and "65" in summary
    assert len(summary.splitlines()) >= 3


# --- word and character level on tiny corpora -----------------------------------------------------------------


def test_word_level_generic_names(tmp_path: Path) -> None:
    directory = _write(
        tmp_path / "tiny",
        {"train.txt": "the cat sat\n\nthe dog", "valid.txt": "the bird sat\n", "test.txt": " cat  dog \n"},
    )
    corpus = load_corpus(directory)
    assert (corpus.name, corpus.level) == ("tiny", "word")
    # first-seen order; the empty line gives <eos>; the last line counts without a newline; <unk> appended
    assert corpus.vocab == ("the", "cat", "sat", "<eos>", "dog", "<unk>")
    assert _decode(corpus, corpus.train) == ["the", "cat", "sat", "<eos>", "<eos>", "the", "dog", "<eos>"]
    assert _decode(corpus, corpus.valid) == ["the", "<unk>", "sat", "<eos>"]
    assert _decode(corpus, corpus.test) == ["cat", "dog", "<eos>"]


def test_unk_not_added_when_every_token_is_known(tmp_path: Path) -> None:
    directory = _write(tmp_path / "d", {"train.txt": "a b\n", "valid.txt": "b a\n", "test.txt": "a\n"})
    assert load_corpus(directory).vocab == ("a", "b", "<eos>")


def test_unk_in_train_is_reused(tmp_path: Path) -> None:
    directory = _write(tmp_path / "d", {"train.txt": "a <unk> b\n", "valid.txt": "c\n", "test.txt": "a\n"})
    corpus = load_corpus(directory)
    assert corpus.vocab == ("a", "<unk>", "b", "<eos>")
    assert _decode(corpus, corpus.valid) == ["<unk>", "<eos>"]


def test_char_level_directory(tmp_path: Path) -> None:
    directory = _write(tmp_path / "d", {"train.txt": "ab\nba\n", "valid.txt": "abc\n", "test.txt": "a"})
    corpus = load_corpus(directory, level="char")
    assert corpus.vocab == ("a", "b", "\n", "<unk>")
    assert _decode(corpus, corpus.valid) == ["a", "b", "<unk>", "\n"]
    assert corpus.train.numel() == 6


def test_layout_preference_and_ptb_names(tmp_path: Path) -> None:
    directory = _write(
        tmp_path / "both",
        {
            "ptb.train.txt": "p\n", "ptb.valid.txt": "p\n", "ptb.test.txt": "p\n",
            "train.txt": "g\n", "valid.txt": "g\n", "test.txt": "g\n",
        },
    )  # fmt: skip
    assert load_corpus(directory).vocab == ("p", "<eos>")
    wiki = _write(tmp_path / "w", {f"wiki.{s}.tokens": " x \n \n" for s in ("train", "valid", "test")})
    corpus = load_corpus(wiki)
    assert _decode(corpus, corpus.train) == ["x", "<eos>", "<eos>"]


def test_incomplete_preferred_layout_falls_back_to_a_complete_one(tmp_path: Path) -> None:
    files = {"ptb.train.txt": "p\n", "train.txt": "g\n", "valid.txt": "g\n", "test.txt": "g"}
    directory = _write(tmp_path / "d", files)
    assert load_corpus(directory).vocab == ("g", "<eos>")


# --- PTB and WikiText-2 from the shared data ------------------------------------------------------------------


@pytest.mark.skipif(not (SHARED_DATA / "ptb").is_dir(), reason="shared PTB data not present")
def test_ptb_counts() -> None:
    corpus = load_corpus(SHARED_DATA / "ptb")
    assert (corpus.name, corpus.level, corpus.vocab_size) == ("ptb", "word", 10_000)
    assert (corpus.train.numel(), corpus.valid.numel(), corpus.test.numel()) == (929_589, 73_760, 82_430)
    assert corpus.vocab[:3] == ("aer", "banknote", "berlitz")  # first line of ptb.train.txt, in order


@pytest.mark.skipif(not (SHARED_DATA / "wikitext-2").is_dir(), reason="shared WikiText-2 data not present")
def test_wikitext2_counts() -> None:
    corpus = load_corpus(SHARED_DATA / "wikitext-2")
    assert (corpus.name, corpus.level, corpus.vocab_size) == ("wikitext-2", "word", 33_278)
    assert (corpus.train.numel(), corpus.valid.numel(), corpus.test.numel()) == (2_088_628, 217_646, 245_569)


# --- batchify -------------------------------------------------------------------------------------------------


def test_batchify_shape_and_content() -> None:
    data = torch.arange(10)
    batched = batchify(data, 3)  # (T, B) = (3, 3); token 9 is dropped
    assert batched.shape == (3, 3) and batched.is_contiguous()
    assert batched.tolist() == [[0, 3, 6], [1, 4, 7], [2, 5, 8]]  # column j is a contiguous stretch
    assert batchify(data, 10).shape == (1, 10)
    assert batchify(data, 1).tolist() == [[i] for i in range(10)]


def test_batchify_corpus_split() -> None:
    corpus = load_corpus()
    batched = batchify(corpus.valid, 20)
    assert batched.shape == (corpus.valid.numel() // 20, 20)
    assert torch.equal(batched[:, 1], corpus.valid[batched.size(0) : 2 * batched.size(0)])


# --- errors ---------------------------------------------------------------------------------------------------


def _error(call, *args, **kwargs) -> str:
    with pytest.raises(ValueError) as info:
        call(*args, **kwargs)
    assert isinstance(info.value, DataError)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_unknown_bundled_name() -> None:
    message = _error(load_corpus, "shakespear")
    assert "shakespear" in message and "shakespeare" in message and "directory" in message


def test_missing_directory(tmp_path: Path) -> None:
    message = _error(load_corpus, tmp_path / "nowhere")
    assert "nowhere" in message and "does not exist" in message
    assert "does not exist" in _error(load_corpus, str(tmp_path / "nowhere"))


def test_file_instead_of_directory(tmp_path: Path) -> None:
    (tmp_path / "train.txt").write_text("a\n")
    assert "not a corpus directory" in _error(load_corpus, tmp_path / "train.txt")


def test_directory_without_recognised_files(tmp_path: Path) -> None:
    _write(tmp_path / "d", {"notes.md": "x"})
    message = _error(load_corpus, tmp_path / "d")
    assert "no recognised" in message
    for name in ("ptb.train.txt", "wiki.train.tokens", "train.txt", "valid.txt", "test.txt"):
        assert name in message


def test_missing_split_file(tmp_path: Path) -> None:
    _write(tmp_path / "d", {"ptb.train.txt": "a\n", "ptb.test.txt": "a\n"})
    message = _error(load_corpus, tmp_path / "d")
    assert "ptb.valid.txt" in message and "lacks" in message and "ptb.test.txt" not in message


def test_empty_split(tmp_path: Path) -> None:
    _write(tmp_path / "d", {"train.txt": "a\n", "valid.txt": " \n\n", "test.txt": "a\n"})
    message = _error(load_corpus, tmp_path / "d")
    assert "valid.txt" in message and "empty" in message


def test_unknown_level(tmp_path: Path) -> None:
    message = _error(load_corpus, "shakespeare", level="byte")
    assert "byte" in message and "word" in message and "char" in message


def test_batch_size_too_large() -> None:
    message = _error(batchify, torch.arange(5), 6)
    assert "batch_size=6" in message and "too large" in message and "5 tokens" in message
    assert "positive" in _error(batchify, torch.arange(5), 0)
