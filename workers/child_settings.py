"""What a child is trained with: its model sizes (:class:`ModelConfig`), optimisation (:class:`TrainConfig`) and
budget (:class:`Budget`), together :class:`ChildSettings`. Frozen dataclasses and their vocabularies, no torch, so
that reading a search's settings does not import it; the model is :mod:`workers.model`, the training
:mod:`workers.train`."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from workers.setting import check, setting

RNNS = ("cell", "torch-lstm", "torch-gru")
"""What the recurrent layers are: the searched cell, or ``torch.nn.LSTM`` / ``torch.nn.GRU`` (the references)."""

TREE_RNNS = ("cell", "torch-lstm")
"""The kinds of layer whose function a tree of the space computes (``torch.nn.LSTM``'s is the ``lstm`` tree), so
that a model of them has a cell spec that ``nas export`` can turn into a module; no tree computes a GRU."""

KERNELS = ("auto", "torch", "triton", "native")
"""How the fused path runs a cell's element-wise step: "torch" (:mod:`workers.fused_cell`), "triton"
(:mod:`workers.triton_cell`), "native" (generated C, :mod:`workers.native_cell`), or "auto": Triton for CUDA
tensors when Triton is installed, the C kernels on a CPU when a C compiler builds them, torch otherwise."""

CUDA_GRAPHS = ("auto", "off")
"""``train.cuda_graphs``: "auto" captures the training step on CUDA devices (and never on a CPU); "off" trains
eagerly."""

PRECISIONS = ("float32", "bfloat16")
LR_SCHEDULES = ("plateau", "step")
OPTIMIZERS = ("sgd", "adam")


@dataclass(frozen=True)
class ModelConfig:
    """Sizes of a child model. Every field may also be chosen by the controller (a layer hyperparameter)."""

    num_layers: int = setting(2, low=1)
    """Stacked cell layers (paper's PTB child: 2)."""
    hidden_size: int = setting(200, low=1)
    """Units per cell layer (H)."""
    embedding_size: int | None = setting(None, low=1, none_means="(equal to hidden_size)")
    """Token embedding size; None means equal to ``hidden_size``."""
    dropout: float = setting(0.2, low=0, below=1)
    """Dropout on the embedding, between layers and on the RNN output (word_language_model default 0.2)."""
    tie_weights: bool = setting(False)
    """Share the embedding matrix with the decoder (Press & Wolf 2017); needs embedding_size == hidden_size."""
    init_range: float | None = setting(None, above=0, none_means="for the default initialisation")
    """None: word_language_model's initialisation (embedding and decoder uniform in ±0.1, the recurrent layers
    PyTorch's default); a number r: every weight and bias uniform in ±r (Zaremba et al. 2014: 0.1 small, 0.05
    medium, 0.04 large)."""
    rnn: str = setting("cell", choices=RNNS)
    """"cell": the searched cell's layers; "torch-lstm": ``torch.nn.LSTM`` (cuDNN on GPUs), the reference LSTM;
    "torch-gru": ``torch.nn.GRU`` (cuDNN on GPUs), a second reference (no tree of the space computes it: a GRU needs
    ``h_{t-1}`` itself and ``1 - z``, while every leaf of a tree mixes projections of x_t and h_{t-1})."""

    def __post_init__(self) -> None:
        check(self, "model")
        if self.tie_weights and self.embedding_dim != self.hidden_size:
            raise ValueError(
                f"model.tie_weights: needs embedding_size == hidden_size, got {self.embedding_dim} and "
                f"{self.hidden_size}; set embedding_size to {self.hidden_size} or turn tie_weights off"
            )

    @property
    def embedding_dim(self) -> int:
        return self.hidden_size if self.embedding_size is None else self.embedding_size


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation of a child. Defaults follow pytorch/examples word_language_model unless noted."""

    lr: float = setting(20.0, above=0)
    """Initial learning rate (word_language_model: 20 with plain SGD)."""
    optimizer: str = setting("sgd", choices=OPTIMIZERS)
    """"sgd" (word_language_model) or "adam"."""
    lr_decay: float = setting(4.0, above=0)
    """The learning rate's divisor under ``lr_schedule`` (word_language_model: 4; Zaremba et al. 2014: 2)."""
    lr_schedule: str = setting("plateau", choices=LR_SCHEDULES)
    """How SGD's learning rate falls (:func:`workers.train.lr_at`). "plateau": divided by ``lr_decay`` after every
    epoch without a better validation loss (word_language_model); "step": constant for the first ``lr_step_after``
    epochs, then divided by ``lr_decay`` every epoch (Zaremba et al. 2014). Adam keeps its rate."""
    lr_step_after: int = setting(4, low=0)
    """Epochs at the initial rate under the "step" schedule (Zaremba et al. 2014: 4 small, 6 medium, 14 large)."""
    clip: float = setting(0.25, above=0)
    """Gradient-norm clipping threshold (word_language_model: 0.25)."""
    batch_size: int = setting(20, low=1)
    """Training batch size (Zaremba et al. 2014 and word_language_model: 20)."""
    bptt: int = setting(35, low=1)
    """Truncated-BPTT window (Zaremba et al. 2014; Zoph & Le 2017: 35)."""
    eval_batch_size: int = setting(10, low=1)
    """Batch size for validation/test perplexity (word_language_model: 10)."""
    precision: str = setting("float32", choices=PRECISIONS)
    """"float32", or "bfloat16": forward passes under ``torch.autocast`` (weights and optimizer stay float32).
    Worth it on GPUs with bf16 tensor cores; on CPUs without bf16 instructions it is slower."""
    cell_kernels: str = setting("auto", choices=KERNELS)
    """How the cell's element-wise step runs (:data:`KERNELS`): "auto" (generated Triton kernels on CUDA when
    Triton is installed, generated C kernels on a CPU when a C compiler is found, torch operations otherwise),
    "torch", "triton" or "native"."""
    cuda_graphs: str = setting("auto", choices=CUDA_GRAPHS)
    """"auto": on a CUDA device, capture each child's training step as a CUDA graph and replay it per window
    (:mod:`workers.cuda_graph`; never on a CPU); "off": eager steps."""

    def __post_init__(self) -> None:
        check(self, "train")


@dataclass(frozen=True)
class Budget:
    """How much training a child gets. Every child of a search gets the same budget."""

    epochs: int = setting(1, low=1)
    """Passes over the training data (or over ``max_batches`` of it)."""
    max_batches: int | None = setting(None, low=1, none_means="(the whole training split)")
    """Cap on BPTT windows per epoch (None: the whole training split). The next epoch continues through the split
    where the last one stopped (from its start again after the end), so several short epochs see the whole text."""
    max_eval_tokens: int | None = setting(None, low=1, none_means="(the whole validation split)")
    """Cap on validation tokens per evaluation (None: the whole validation split)."""
    patience: int | None = setting(None, low=1, none_means="(run every epoch)")
    """Stop early after this many epochs in a row without a better validation loss (None: run every epoch).
    With SGD every such epoch also divides the learning rate by ``lr_decay``, so patience 3 stops once the rate
    has fallen 64-fold (at lr_decay 4) without any gain: converged."""
    checkpoint_every: float | None = setting(60.0, above=0, none_means="to never checkpoint")
    """Seconds of training between two checkpoints of a child inside an epoch (it also checkpoints at every epoch's
    end but the last); None ("none" in TOML) never checkpoints. A child whose worker dies is retried from its last
    checkpoint and ends as it would have without the fault; a resumed search continues unfinished children from
    theirs. Children shorter than this (the default search's: ~10 s) never write one."""
    keep_checkpoints: bool = setting(False)
    """Keep each finished child's last checkpoint in its trial folder (by default it is deleted once the child
    has finished)."""
    report_at: tuple[int, ...] = dataclasses.field(default=(), metadata={"derived": True})
    """Training-batch counts (cumulative over epochs) after which validation perplexity is also measured and
    reported mid-training (:class:`workers.train.RungReport`): the rungs of an early-stopping scheduler, which the
    search sets from its ``[scheduler]`` (not a setting of its own)."""

    def __post_init__(self) -> None:
        if not isinstance(self.report_at, tuple) or any(
                not isinstance(v, int) or isinstance(v, bool) or v < 1 for v in self.report_at):
            raise ValueError(f"budget.report_at: {self.report_at!r} is not allowed; use whole numbers >= 1")
        check(self, "budget")


@dataclass(frozen=True)
class ChildSettings:
    """What every child of a search shares: fixed model sizes, optimisation and budget."""

    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    budget: Budget = Budget()
    device: str | None = None
    """None: CUDA when the worker has it, else CPU."""


def split_hparams(hparams: Mapping[str, Any], model: ModelConfig,
                  train: TrainConfig) -> tuple[ModelConfig, TrainConfig]:
    """Route each hyperparameter to the config that has a field of that name; unknown names are errors."""
    model_fields = {f.name for f in dataclasses.fields(ModelConfig)}
    train_fields = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(hparams) - model_fields - train_fields)
    if unknown:
        raise ValueError(
            f"unknown child hyperparameter(s) {', '.join(unknown)}; searchable names: "
            f"{', '.join(sorted(model_fields | train_fields))}"
        )
    m = dataclasses.replace(model, **{k: v for k, v in hparams.items() if k in model_fields})
    t = dataclasses.replace(train, **{k: v for k, v in hparams.items() if k in train_fields})
    return m, t
