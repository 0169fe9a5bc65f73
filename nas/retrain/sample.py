"""Text from a trained model: what ``nas sample`` runs.

A model that ``nas train`` saved (a ``model-seed<S>.pt`` checkpoint, or the folder holding it, which picks its
best seed by validation perplexity; a ``nas train --top`` folder picks its winner) generates a sequence one token
at a time, each drawn from the model's next-token distribution. As in karpathy/char-rnn's ``sample.lua`` and
pytorch/examples' ``word_language_model/generate.py``: the state is first run over a prime text (default: a
newline at character level, ``<eos>`` at word level), the logits are divided by a temperature (lower: more
conservative; 0: always the most likely token, i.e. greedy), and nanoGPT's ``sample.py`` adds top-k (only the k
most likely tokens can be drawn). A seed makes a sample reproducible. Word-level output joins words with spaces and
writes ``<eos>`` as a line break.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from nas.retrain.top import TOP_JSON
from nas.retrain.trainer import TRAIN_FILE, load_checkpoint
from workers.corpora import DataConfig, resolved_level
from workers.data import EOS


@dataclass(frozen=True)
class SampleSettings:
    length: int = 500
    """Tokens to generate (characters, or words and ``<eos>``), after the prime."""
    temperature: float = 0.8
    """Logits are divided by this (nanoGPT's default 0.8); 0 means greedy (argmax)."""
    top_k: int | None = None
    """Draw only from the k most likely tokens (None: from all)."""
    seed: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.length, int) or self.length < 1:
            raise ValueError(f"--length {self.length!r}: use a whole number >= 1")
        if not (isinstance(self.temperature, (int, float)) and math.isfinite(self.temperature)
                and self.temperature >= 0):
            raise ValueError(f"--temperature {self.temperature!r}: use a number > 0 (or 0 / --greedy for argmax)")
        if self.top_k is not None and (not isinstance(self.top_k, int) or self.top_k < 1):
            raise ValueError(f"--top-k {self.top_k!r}: use a whole number >= 1")


def checkpoint_path(source: str | os.PathLike) -> Path:
    """The checkpoint ``source`` names: the file itself, a ``nas train`` folder's best completed seed (by
    validation perplexity), or a ``nas train --top`` folder's winner's."""
    path = Path(source)
    if path.is_file():
        return path
    if not path.is_dir():
        raise ValueError(f"{source}: no such file or folder; give a model-seed<S>.pt file or a `nas train` folder")
    if (path / TOP_JSON).is_file() and not (path / TRAIN_FILE).is_file():
        winner = json.loads((path / TOP_JSON).read_text()).get("winner_search_rank")
        if winner is None:
            raise ValueError(f"{path}: no child of this `nas train --top` completed; nothing to sample from")
        return checkpoint_path(path / f"rank{winner}")
    if not (path / TRAIN_FILE).is_file():
        raise ValueError(f"{path}: not a `nas train` folder (no {TRAIN_FILE}); give the folder `nas train` wrote "
                         "or a model-seed<S>.pt file")
    runs = [r for r in json.loads((path / TRAIN_FILE).read_text())["runs"]
            if r.get("model") and r.get("val_ppl") is not None and (path / r["model"]).is_file()]
    if not runs:
        raise ValueError(f"{path}: no seed completed with saved weights; nothing to sample from")
    return path / min(runs, key=lambda r: (r["val_ppl"], r["seed"]))["model"]


def level_of(ckpt: dict, path: Path) -> str:
    """"char" or "word": recorded in the checkpoint, else (a checkpoint written before it was) from the data
    settings in the ``train.json`` beside it, else from the vocabulary (word-level vocabularies hold ``<eos>``)."""
    if ckpt.get("level") in ("char", "word"):
        return ckpt["level"]
    train = path.parent / TRAIN_FILE
    if train.is_file():
        data = json.loads(train.read_text()).get("settings", {}).get("data") or {}
        try:
            return resolved_level(DataConfig(**data).source, data.get("level", "auto"))
        except (TypeError, ValueError):
            pass
    return "word" if EOS in ckpt["vocab"] else "char"


def prime_ids(prime: str | None, vocab: list[str], level: str) -> list[int]:
    """The prime's token ids; a character or word outside the vocabulary is one clear error naming it."""
    index = {t: i for i, t in enumerate(vocab)}
    if prime is None or prime == "":
        default = "\n" if level == "char" else EOS
        if default not in index:
            default = vocab[0]
        return [index[default]]
    tokens = list(prime) if level == "char" else prime.replace("\n", f" {EOS} ").split()
    missing = [t for t in tokens if t not in index]
    if missing:
        what = "character" if level == "char" else "word"
        raise ValueError(f"--prime: the {what} {missing[0]!r} is not in the model's vocabulary of {len(vocab):,} "
                         f"{what}s; prime with text from its training corpus")
    return [index[t] for t in tokens]


def next_token(logits: torch.Tensor, settings: SampleSettings, generator: torch.Generator) -> int:
    """Draw from ``logits`` (V,) under the temperature and top-k."""
    if settings.temperature == 0:
        return int(torch.argmax(logits))
    logits = logits.double() / settings.temperature
    if settings.top_k is not None and settings.top_k < logits.numel():
        kth = torch.topk(logits, settings.top_k).values[-1]
        logits = logits.masked_fill(logits < kth, -math.inf)
    probs = torch.softmax(logits, dim=-1)
    return int(torch.multinomial(probs, 1, generator=generator))


@torch.no_grad()
def sample(model: torch.nn.Module, prime: list[int], settings: SampleSettings, num_samples: int = 1,
           device: str | torch.device = "cpu") -> list[list[int]]:
    """``num_samples`` continuations of ``prime`` (token ids each, prime excluded), from seed ``settings.seed``."""
    model = model.to(device).eval()
    generator = torch.Generator().manual_seed(settings.seed)
    samples = []
    for _ in range(num_samples):
        logits, state = model(torch.tensor(prime, device=device).view(-1, 1))
        out: list[int] = []
        for _ in range(settings.length):
            token = next_token(logits[-1, 0].cpu(), settings, generator)
            out.append(token)
            logits, state = model(torch.tensor([[token]], device=device), state)
        samples.append(out)
    return samples


def detokenize(ids: list[int], vocab: list[str], level: str) -> str:
    """Characters joined as they are; words joined with spaces, ``<eos>`` as a line break."""
    if level == "char":
        return "".join(vocab[i] for i in ids)
    text = ""
    for i in ids:
        token = vocab[i]
        if token == EOS:
            text += "\n"
        else:
            text += ("" if not text or text.endswith("\n") else " ") + token
    return text


def sample_text(source: str | os.PathLike, prime: str | None, settings: SampleSettings, num_samples: int = 1,
                device: str | None = None) -> tuple[Path, str, list[str]]:
    """(the checkpoint used, its level, the samples as text, each starting with the prime)."""
    path = checkpoint_path(source)
    try:
        model, ckpt = load_checkpoint(path)
    except ValueError:
        raise
    except Exception as e:  # noqa: BLE001 - anything torch.load refuses is "not a checkpoint"
        raise ValueError(f"{path}: not a `nas train` checkpoint ({type(e).__name__}); give a model-seed<S>.pt "
                         "file that `nas train` wrote") from None
    level = level_of(ckpt, path)
    vocab = list(ckpt["vocab"])
    ids = prime_ids(prime, vocab, level)
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    shown = detokenize(ids, vocab, level) if prime else ""
    texts = []
    for out in sample(model, ids, settings, num_samples, dev):
        body = detokenize(out, vocab, level)
        texts.append(shown + ("" if level == "char" or not shown or shown.endswith("\n") else " ") + body)
    return path, level, texts
