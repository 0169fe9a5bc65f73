"""Word- and character-level language-modelling corpora, after pytorch/examples ``word_language_model``.

A :class:`Corpus` holds a vocabulary (index -> token) and three 1-D int64 tensors of token ids.
:func:`load_corpus` reads one from

- a bundled name: ``"shakespeare"`` is Tiny Shakespeare (karpathy/char-rnn, public domain; see
  ``workers/corpora/README.md``) shipped gzipped inside the package and split by lines, first 90% train,
  next 5% valid, last 5% test;
- a directory holding PTB files ``ptb.{train,valid,test}.txt``, WikiText files ``wiki.{train,valid,test}.tokens``
  or generic ``{train,valid,test}.txt`` (the first complete set wins, in that order).

Tokenisation follows ``word_language_model``: at word level each line gives its whitespace-separated words plus
one ``<eos>`` (an empty line gives just ``<eos>``); at character level every character, ``"\\n"`` included, is
a token. The vocabulary is taken from train in first-seen order; a valid/test token missing from it maps to
``<unk>``, which is appended to the vocabulary only if train does not already contain it.
Bundled names take precedence over directories of the same name; write ``./shakespeare`` for the directory.
"""

from __future__ import annotations

import gzip
import os
from array import array
from dataclasses import dataclass
from importlib import resources
from itertools import repeat
from pathlib import Path

import torch

from workers.corpora import BUNDLED, LEVELS, resolved_level

EOS = "<eos>"
UNK = "<unk>"

_BUNDLED_FILES = {"shakespeare": "tinyshakespeare.txt.gz"}
_SPLIT_PERCENT = (90, 5, 5)  # train / valid / test share of the lines of a bundled corpus
_LAYOUTS = (  # recognised file names in a corpus directory, in order of preference
    ("ptb.train.txt", "ptb.valid.txt", "ptb.test.txt"),
    ("wiki.train.tokens", "wiki.valid.tokens", "wiki.test.tokens"),
    ("train.txt", "valid.txt", "test.txt"),
)


class DataError(ValueError):
    """A corpus cannot be loaded or batched; the message names the problem and the fix."""


@dataclass(frozen=True, eq=False)  # eq=False: tensors have no single truth value, so compare fields yourself
class Corpus:
    """A tokenised corpus: vocabulary and the token ids of the three splits."""

    name: str
    """``"shakespeare"`` for the bundled corpus, otherwise the directory's name."""
    level: str
    """``"word"`` or ``"char"``."""
    vocab: tuple[str, ...]
    """Index -> token, in first-seen order over train (``<unk>`` last when it had to be added)."""
    train: torch.Tensor
    """1-D int64 token ids."""
    valid: torch.Tensor
    test: torch.Tensor

    def __post_init__(self) -> None:
        if self.level not in ("word", "char"):
            raise DataError(f"Corpus.level: {self.level!r} is not allowed; use 'word' or 'char'")
        if not self.vocab or len(set(self.vocab)) != len(self.vocab):
            raise DataError(f"Corpus.vocab of {self.name!r} must be non-empty with distinct tokens")
        for split in ("train", "valid", "test"):
            ids = getattr(self, split)
            if not isinstance(ids, torch.Tensor) or ids.dim() != 1 or ids.dtype != torch.int64:
                raise DataError(f"Corpus.{split} of {self.name!r} must be a 1-D int64 tensor of token ids")
            if ids.numel() and not 0 <= int(ids.min()) <= int(ids.max()) < len(self.vocab):
                raise DataError(f"Corpus.{split} of {self.name!r} has ids outside 0..{len(self.vocab) - 1}")

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def summary(self) -> str:
        """A few human-readable lines: name, level, vocabulary size, tokens per split."""
        return "\n".join(
            (
                f"corpus: {self.name} ({self.level} level)",
                f"vocab size: {self.vocab_size:,}",
                f"tokens: train {self.train.numel():,}, valid {self.valid.numel():,}, test {self.test.numel():,}",
            )
        )


def load_corpus(source: str | os.PathLike[str] = "shakespeare", level: str = "auto") -> Corpus:
    """Load a bundled corpus by name (see :data:`BUNDLED`) or a corpus directory, tokenised at ``level``."""
    if level not in LEVELS:
        raise DataError(f"level {level!r} is not allowed; use one of {', '.join(LEVELS)}")
    if isinstance(source, str) and source in BUNDLED:
        texts = _bundled_texts(source)
        name = source
    else:
        directory = _corpus_directory(source)
        texts = tuple(_read_split(directory / f) for f in _split_files(directory))
        name = directory.resolve().name
    level = resolved_level(source, level)
    vocab, train, valid, test = _encode(texts, level)
    return Corpus(name=name, level=level, vocab=vocab, train=train, valid=valid, test=test)


def batchify(data: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Arrange 1-D ``data`` into ``batch_size`` columns, dropping the tail that does not fill a row.

    As in ``word_language_model``: column j holds a contiguous stretch of the text, so the result is (T, B)
    with ``T = len(data) // batch_size``.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise DataError(f"batch_size={batch_size!r} is not allowed; use a positive integer")
    if data.dim() != 1:
        raise DataError(f"batchify expects 1-D token ids, got shape {tuple(data.shape)}; pass a split of a Corpus")
    rows = data.size(0) // batch_size
    if rows == 0:
        raise DataError(
            f"batch_size={batch_size} is too large for {data.size(0)} tokens (not enough for one token per "
            f"column); use batch_size <= {data.size(0)} or a larger split"
        )
    data = data.narrow(0, 0, rows * batch_size)
    return data.view(batch_size, rows).t().contiguous()  # (T, B)


def _bundled_texts(name: str) -> tuple[str, str, str]:
    """The bundled corpus ``name`` split by lines into train/valid/test texts (each keeping its newlines)."""
    resource = resources.files("workers").joinpath("corpora", _BUNDLED_FILES[name])
    try:
        text = gzip.decompress(resource.read_bytes()).decode("utf-8")
    except (OSError, EOFError) as e:
        raise DataError(f"bundled corpus {name!r} cannot be read ({e}); reinstall the package") from e
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()  # the text ends with a newline: no line after it
    n = len(lines)
    n_train = n * _SPLIT_PERCENT[0] // 100
    n_valid = n * _SPLIT_PERCENT[1] // 100
    parts = (lines[:n_train], lines[n_train : n_train + n_valid], lines[n_train + n_valid :])
    joined = ["\n".join(p) + "\n" for p in parts]
    if not text.endswith("\n"):
        joined[2] = joined[2][:-1]  # keep the text exactly: no newline the file did not have
    return joined[0], joined[1], joined[2]


def _corpus_directory(source: str | os.PathLike[str]) -> Path:
    text = os.fspath(source)
    if not text:
        raise DataError(f"corpus source is empty; pass one of {', '.join(BUNDLED)} or a directory path")
    path = Path(text).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise DataError(f"{str(path)!r} is a file, not a corpus directory; pass the directory that holds it")
    if isinstance(source, str) and not any(c in text for c in "/\\~."):
        raise DataError(
            f"unknown corpus {text!r}: it is neither a bundled corpus ({', '.join(BUNDLED)}) nor an existing "
            "directory; pass a bundled name or a directory path holding e.g. ptb.train.txt, ptb.valid.txt, "
            "ptb.test.txt (`nas data download ptb DIR` fetches PTB)"
        )
    raise DataError(f"corpus directory {text!r} does not exist; check the path or use `nas data download`")


def _split_files(directory: Path) -> tuple[str, str, str]:
    """The first complete layout present in ``directory``; an error naming what is missing otherwise."""
    present = [tuple((directory / f).is_file() for f in files) for files in _LAYOUTS]
    for files, found in zip(_LAYOUTS, present):
        if all(found):
            return files
    for files, found in zip(_LAYOUTS, present):
        if any(found):
            missing = [f for f, ok in zip(files, found) if not ok]
            it = "it" if len(missing) == 1 else "them"
            raise DataError(
                f"corpus directory {str(directory)!r} lacks {', '.join(missing)}; add {it} next to the other splits"
            )
    expected = "; or ".join(", ".join(files) for files in _LAYOUTS)
    raise DataError(f"corpus directory {str(directory)!r} has no recognised split files; expected {expected}")


def _read_split(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8")  # universal newlines, like word_language_model's open()
    except UnicodeDecodeError as e:
        raise DataError(f"{str(path)!r} is not UTF-8 text (byte {e.start}); convert it to UTF-8") from e
    if not text.strip():
        raise DataError(f"split file {str(path)!r} is empty (no text); put the split's text in it")
    return text


def _tokens(text: str, level: str) -> list[str]:
    if level == "char":
        return list(text)
    if not text.endswith("\n"):
        text += "\n"  # the last line counts even without a newline, as when iterating over a file
    return text.replace("\n", f" {EOS} ").split()  # == per line: line.split() + [EOS]


def _encode(
    texts: tuple[str, str, str], level: str
) -> tuple[tuple[str, ...], torch.Tensor, torch.Tensor, torch.Tensor]:
    """Vocabulary from train (first-seen order) and the id tensors of the three texts."""
    splits = [_tokens(t, level) for t in texts]
    stoi = {tok: i for i, tok in enumerate(dict.fromkeys(splits[0]))}
    if UNK not in stoi and any(not stoi.keys() >= set(s) for s in splits[1:]):
        stoi[UNK] = len(stoi)
    unk = stoi.get(UNK, -1)
    train, valid, test = (_ids(s, stoi, unk) for s in splits)
    return tuple(stoi), train, valid, test


def _ids(tokens: list[str], stoi: dict[str, int], unk: int) -> torch.Tensor:
    """Token ids as a 1-D int64 tensor: one dict lookup per token, then one copy (3x faster than torch.tensor)."""
    ids = array("q", list(map(stoi.get, tokens, repeat(unk))))  # stoi.get(tok, unk) for each token
    if not ids:
        return torch.empty(0, dtype=torch.int64)
    return torch.frombuffer(ids, dtype=torch.int64).clone()  # clone: own, resizable storage
