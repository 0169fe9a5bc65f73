"""What ``nas train`` and ``nas show`` accept as a cell, and the reference LSTM beside it.

A source is a known cell (``nascell``, ``lstm``, ``tanh_rnn``), a spec JSON file, a results folder's child at a
rank, or a reference (:data:`REFERENCES`): ``torch.nn.LSTM`` or ``torch.nn.GRU`` (cuDNN on GPUs) trained by the same
loop, data and settings as any
cell (:attr:`workers.child_settings.ModelConfig.rnn`). Cells and LSTMs of equal hidden size differ in size (a base-8
cell has twice an LSTM's recurrent weights), so :func:`match_params` sizes the LSTM to another model's parameter
count.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from search_spaces import ChildSpec, HParams, known_cell, load_spec

if TYPE_CHECKING:  # torch: imported where a model is counted or trained, so that `nas show` starts without it
    from nas.retrain.trainer import RetrainRecipe

TORCH_LSTM = "torch-lstm"
"""The source name of the reference LSTM: ``torch.nn.LSTM`` (cuDNN on GPUs) trained by the same loop, data and
settings as any cell (:attr:`workers.child_settings.ModelConfig.rnn`)."""
TORCH_GRU = "torch-gru"
"""The source name of the reference GRU, ``torch.nn.GRU``, likewise."""
REFERENCES = (TORCH_LSTM, TORCH_GRU)
"""Sources that are torch's own layers, not cells; ``--match-params`` sizes them."""
EQUATIONS = {
    TORCH_LSTM: ("torch-lstm: torch.nn.LSTM (cuDNN on GPUs), per layer and step (Hochreiter & Schmidhuber 1997, "
                 "with a forget gate):\n"
                 "  i = sigmoid(W_i x_t + U_i h_{t-1} + b_i)    f = sigmoid(W_f x_t + U_f h_{t-1} + b_f)\n"
                 "  g = tanh(W_g x_t + U_g h_{t-1} + b_g)       o = sigmoid(W_o x_t + U_o h_{t-1} + b_o)\n"
                 "  c_t = f * c_{t-1} + i * g                   h_t = o * tanh(c_t)\n"
                 "the same function as the tree `nas show lstm` prints (Zoph & Le's encoding of the LSTM)"),
    TORCH_GRU: ("torch-gru: torch.nn.GRU (cuDNN on GPUs), per layer and step (Cho et al. 2014):\n"
                "  r = sigmoid(W_r x_t + U_r h_{t-1} + b_r)    z = sigmoid(W_z x_t + U_z h_{t-1} + b_z)\n"
                "  n = tanh(W_n x_t + b_n + r * (U_n h_{t-1} + b_hn))\n"
                "  h_t = (1 - z) * n + z * h_{t-1}\n"
                "no tree of the search space computes it: a tree's leaves mix projections of x_t and h_{t-1}, and a "
                "GRU needs h_{t-1} itself and 1 - z; it is a reference, trained by the same loop as every cell"),
}
"""What ``nas show`` prints for a reference."""
Job = tuple[str, ChildSpec, "RetrainRecipe"]
"""(label, spec, settings) of one thing to train."""


def with_rnn(cfg: RetrainRecipe, rnn: str, hidden_size: int | None = None) -> RetrainRecipe:
    """``cfg`` training ``rnn`` layers ("cell", "torch-lstm" or "torch-gru"), at ``hidden_size`` when given."""
    model = dataclasses.replace(cfg.model, rnn=rnn, **({} if hidden_size is None else {"hidden_size": hidden_size}))
    return dataclasses.replace(cfg, model=model)


def parameter_count(spec: ChildSpec, cfg: RetrainRecipe, vocab_size: int) -> int:
    """Trainable parameters of the model ``retrain`` would build (counted on the meta device: no memory)."""
    from workers.train import child_parameters

    return child_parameters(spec.cell, vocab_size, spec.hparams.as_dict(), cfg.model, cfg.train)


def matched_hidden_size(params: int, spec: ChildSpec, cfg: RetrainRecipe, vocab_size: int) -> int:
    """The hidden size at which ``spec``'s model under ``cfg`` has the parameter count closest to ``params``
    (e.g. an LSTM sized like a found cell, whose base-8 tree has twice an LSTM's recurrent weights)."""
    def count(h: int) -> int:
        model = dataclasses.replace(cfg.model, hidden_size=h)
        if model.embedding_size is not None and model.tie_weights:
            model = dataclasses.replace(model, embedding_size=h)
        return parameter_count(sized, dataclasses.replace(cfg, model=model), vocab_size)

    sized = ChildSpec(spec.cell, HParams.of({k: v for k, v in spec.hparams.as_dict().items() if k != "hidden_size"}))

    lo, hi = 1, 1
    while count(hi) < params:
        lo, hi = hi, hi * 2
    while hi - lo > 1:  # count(lo) < params <= count(hi)
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if count(mid) < params else (lo, mid)
    return min((lo, hi), key=lambda h: (abs(count(h) - params), h))


def train_source(source: str, folder: Path | None, rank: int, cfg: RetrainRecipe) -> Job:
    """(label, spec, settings) of one ``nas train`` source: the results folder's child at ``rank``, the reference
    LSTM, a known cell or a spec file."""
    if folder is not None and source == str(folder):
        from nas.runs.results import spec_at_rank  # pandas: only where a results folder is read

        return f"{source} (rank {rank})", spec_at_rank(folder, rank), cfg
    if source in REFERENCES:  # the spec's cell is not used; nn.LSTM's is the same function as a tree (Zoph & Le)
        return source, ChildSpec(known_cell("lstm")), with_rnn(cfg, source)
    label, spec = load_spec(source)
    return label, spec, cfg


def match_params(jobs: list[Job], reference: str, folder: Path | None, rank: int, cfg: RetrainRecipe,
                 out: Callable[[str], None] = print) -> list[Job]:
    """``jobs`` with every reference's (torch-lstm, torch-gru) hidden size set so that its parameters match
    ``reference``'s model."""
    names = " or ".join(REFERENCES)
    if not any(label in REFERENCES for label, _, _ in jobs):
        raise ValueError(f"--match-params sizes the {names} sources; add one of them to the sources")
    if reference in REFERENCES:
        raise ValueError(f"--match-params {reference}: name the model to match, e.g. a cell or a spec file")
    _, ref_spec, ref_cfg = train_source(reference, folder if reference == str(folder) else None, rank, cfg)
    from workers.data import load_corpus

    vocab = load_corpus(cfg.data.source, cfg.data.level).vocab_size
    target = parameter_count(ref_spec, ref_cfg, vocab)
    sized = []
    for label, spec, job_cfg in jobs:
        if label in REFERENCES:
            h = matched_hidden_size(target, spec, job_cfg, vocab)
            job_cfg = with_rnn(job_cfg, label, h)
            out(f"{label}: hidden size {h}, {parameter_count(spec, job_cfg, vocab):,} parameters, matching "
                  f"{reference} ({target:,} parameters)")
        sized.append((label, spec, job_cfg))
    return sized


def slug(label: str) -> str:
    """A folder name for a source's label (``results/x (rank 1)`` -> ``results-x--rank-1``)."""
    from nas.retrain.trainer import folder_safe

    return folder_safe(label).strip("-") or "cell"
