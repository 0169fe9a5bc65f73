"""The child language model: embedding -> stacked recurrent layers -> dropout -> decoder.

The recurrent layers are a searched cell's (:class:`workers.cell_rnn.CellRNN`) or, as the reference every paper
compares against, ``torch.nn.LSTM`` (cuDNN on GPUs), picked by :attr:`ModelConfig.rnn`: both train through the same
loop, data and settings. Follows pytorch/examples ``word_language_model`` (uniform(-0.1, 0.1) embedding/decoder
init, optional weight tying, dropout on the embedding and on the RNN output), or initialises every weight
uniformly in ±``init_range`` (Zaremba et al. 2014). Tensors are time-major: tokens ``(T, B)``, logits
``(T, B, vocab_size)``.
"""

from __future__ import annotations

import torch
from torch import nn

from search_spaces.cell import Cell
from workers.cell_rnn import CellRNN
from workers.child_settings import ModelConfig

State = tuple[torch.Tensor, torch.Tensor]


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


class GRULayers(nn.Module):
    """``nn.GRU`` behind the ``nn.LSTM`` interface the child model and its training loop use: the state is an
    ``(h, c)`` pair whose ``c`` is ``h`` (a GRU has no memory cell)."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.gru = nn.GRU(input_size, hidden_size, num_layers, dropout=dropout)

    def forward(self, x: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        out, h = self.gru(x, None if state is None else state[0])
        return out, (h, h)


def build_child(cell: Cell, vocab_size: int, cfg: ModelConfig, kernels: str = "auto") -> ChildLM:
    """The child model for ``cell`` with the sizes in ``cfg``; ``kernels`` picks how the cell's steps run
    (:data:`workers.child_settings.KERNELS`). With ``cfg.rnn`` "torch-lstm" or "torch-gru" the layers are
    ``nn.LSTM`` or ``nn.GRU`` and ``cell`` is not used."""
    rnn: nn.Module
    between = cfg.dropout if cfg.num_layers > 1 else 0.0  # between layers only, as CellRNN (torch warns otherwise)
    if cfg.rnn == "torch-lstm":
        rnn = nn.LSTM(cfg.embedding_dim, cfg.hidden_size, cfg.num_layers, dropout=between)
    elif cfg.rnn == "torch-gru":
        rnn = GRULayers(cfg.embedding_dim, cfg.hidden_size, cfg.num_layers, dropout=between)
    else:
        rnn = CellRNN(cell, cfg.embedding_dim, cfg.hidden_size, cfg.num_layers, dropout=cfg.dropout, kernels=kernels)
    return ChildLM(vocab_size, rnn, cfg.embedding_dim, cfg.hidden_size, cfg.dropout, cfg.tie_weights, cfg.init_range)


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters, each shared tensor counted once."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
