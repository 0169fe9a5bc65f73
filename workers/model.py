"""The child language model: embedding -> stacked recurrent layers -> dropout -> decoder.

The recurrent layers are a searched cell's (:class:`workers.cell_rnn.CellRNN`) or, as the reference every paper
compares against, ``torch.nn.LSTM`` (cuDNN on GPUs), picked by :attr:`ModelConfig.rnn`: both train through the same
loop, data and settings. Follows pytorch/examples ``word_language_model`` (uniform(-0.1, 0.1) embedding/decoder
init, optional weight tying, dropout on the embedding and on the RNN output), or initialises every weight
uniformly in ±``init_range`` (Zaremba et al. 2014). Tensors are time-major: tokens ``(T, B)``, logits
``(T, B, vocab_size)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from search_spaces.cell import Cell
from workers.cell_rnn import CellRNN

State = tuple[torch.Tensor, torch.Tensor]

RNNS = ("cell", "torch-lstm")
"""What the recurrent layers are: the searched cell, or ``torch.nn.LSTM`` (the reference)."""


@dataclass(frozen=True)
class ModelConfig:
    """Sizes of a child model. Every field may also be chosen by the controller (a layer hyperparameter)."""

    num_layers: int = 2
    """Stacked cell layers (paper's PTB child: 2)."""
    hidden_size: int = 200
    """Units per cell layer (H)."""
    embedding_size: int | None = None
    """Token embedding size; None means equal to ``hidden_size``."""
    dropout: float = 0.2
    """Dropout on the embedding, between layers and on the RNN output (word_language_model default 0.2)."""
    tie_weights: bool = False
    """Share the embedding matrix with the decoder (Press & Wolf 2017); needs embedding_size == hidden_size."""
    init_range: float | None = None
    """None: word_language_model's initialisation (embedding and decoder uniform in ±0.1, the recurrent layers
    PyTorch's default); a number r: every weight and bias uniform in ±r (Zaremba et al. 2014: 0.1 small, 0.05
    medium, 0.04 large)."""
    rnn: str = "cell"
    """"cell": the searched cell's layers; "torch-lstm": ``torch.nn.LSTM`` (cuDNN on GPUs), the reference LSTM."""

    def __post_init__(self) -> None:
        if self.rnn not in RNNS:
            raise ValueError(f"model.rnn: {self.rnn!r} is not one of {', '.join(RNNS)}")
        r = self.init_range
        if r is not None and (not isinstance(r, (int, float)) or isinstance(r, bool) or not 0 < r < math.inf):
            raise ValueError(f"model.init_range: {r!r} is not allowed; use a positive number, or none for the "
                             "default initialisation")
        for name in ("num_layers", "hidden_size"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"model.{name}: {v!r} is not allowed; use a whole number >= 1")
        if self.embedding_size is not None and (not isinstance(self.embedding_size, int) or self.embedding_size < 1):
            raise ValueError(f"model.embedding_size: {self.embedding_size!r} is not allowed; use a whole number >= 1")
        if not isinstance(self.dropout, (int, float)) or not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"model.dropout: {self.dropout!r} is not allowed; use a number in [0, 1)")
        if self.tie_weights and self.embedding_dim != self.hidden_size:
            raise ValueError(
                f"model.tie_weights: needs embedding_size == hidden_size, got {self.embedding_dim} and "
                f"{self.hidden_size}; set embedding_size to {self.hidden_size} or turn tie_weights off"
            )

    @property
    def embedding_dim(self) -> int:
        return self.hidden_size if self.embedding_size is None else self.embedding_size


class ChildLM(nn.Module):
    """A language model around any recurrent module with the ``nn.LSTM`` interface (time-major, (h, c) state)."""

    def __init__(self, vocab_size: int, rnn: nn.Module, embedding_size: int, hidden_size: int,
                 dropout: float = 0.2, tie_weights: bool = False, init_range: float | None = None) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.drop = nn.Dropout(dropout)
        self.encoder = nn.Embedding(vocab_size, embedding_size)
        self.rnn = rnn
        self.decoder = nn.Linear(hidden_size, vocab_size)
        if tie_weights:
            self.decoder.weight = self.encoder.weight
        nn.init.uniform_(self.encoder.weight, -0.1, 0.1)
        if not tie_weights:
            nn.init.uniform_(self.decoder.weight, -0.1, 0.1)
        nn.init.zeros_(self.decoder.bias)
        if init_range is not None:
            for p in self.parameters():
                nn.init.uniform_(p, -init_range, init_range)

    def forward(self, tokens: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        emb = self.drop(self.encoder(tokens))  # (T, B, E)
        out, state = self.rnn(emb, state)  # (T, B, H)
        return self.decoder(self.drop(out)), state  # (T, B, V)


def build_child(cell: Cell, vocab_size: int, cfg: ModelConfig, kernels: str = "auto") -> ChildLM:
    """The child model for ``cell`` with the sizes in ``cfg``; ``kernels`` picks how the cell's steps run
    (:data:`workers.triton_cell.KERNELS`). With ``cfg.rnn == "torch-lstm"`` the layers are ``nn.LSTM`` and
    ``cell`` is not used."""
    rnn: nn.Module
    if cfg.rnn == "torch-lstm":
        # dropout between layers only, as CellRNN (nn.LSTM warns about dropout with a single layer)
        rnn = nn.LSTM(cfg.embedding_dim, cfg.hidden_size, cfg.num_layers,
                      dropout=cfg.dropout if cfg.num_layers > 1 else 0.0)
    else:
        rnn = CellRNN(cell, cfg.embedding_dim, cfg.hidden_size, cfg.num_layers, dropout=cfg.dropout, kernels=kernels)
    return ChildLM(vocab_size, rnn, cfg.embedding_dim, cfg.hidden_size, cfg.dropout, cfg.tie_weights, cfg.init_range)


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters, each shared tensor counted once."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
