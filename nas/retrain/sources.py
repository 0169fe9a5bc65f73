"""What ``nas train`` and ``nas show`` accept as a cell, and the reference LSTM beside it.

A source is a known cell (``nascell``, ``lstm``, ``tanh_rnn``), a spec JSON file, a results folder's child at a
rank, or :data:`TORCH_LSTM`: ``torch.nn.LSTM`` (cuDNN on GPUs) trained by the same loop, data and settings as any
cell (:attr:`workers.child_settings.ModelConfig.rnn`). Cells and LSTMs of equal hidden size differ in size (a base-8
cell has twice an LSTM's recurrent weights), so :func:`match_params` sizes the LSTM to another model's parameter
count.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from search_spaces import KNOWN_CELLS, ChildSpec, HParams, known_cell

if TYPE_CHECKING:  # torch: imported where a model is counted or trained, so that `nas show` starts without it
    from nas.retrain.trainer import RetrainConfig

TORCH_LSTM = "torch-lstm"
"""The source name of the reference LSTM: ``torch.nn.LSTM`` (cuDNN on GPUs) trained by the same loop, data and
settings as any cell (:attr:`workers.child_settings.ModelConfig.rnn`)."""
Job = tuple[str, ChildSpec, "RetrainConfig"]
"""(label, spec, settings) of one thing to train."""


def load_spec(source: str) -> tuple[str, ChildSpec]:
    """A known cell name, or a JSON file holding a cell or a spec; returns (label, spec)."""
    if source in KNOWN_CELLS:
        return source, ChildSpec(known_cell(source))
    path = Path(source)
    if not path.exists():
        raise ValueError(
            f"{source!r} is neither a known cell ({', '.join(KNOWN_CELLS)}) nor an existing spec JSON file"
        )
    try:
        return path.name, ChildSpec.from_json(path.read_text())
    except (ValueError, OSError) as e:
        raise ValueError(f"{path}: {e}") from None


def with_rnn(cfg: RetrainConfig, rnn: str, hidden_size: int | None = None) -> RetrainConfig:
    """``cfg`` training ``rnn`` layers ("cell" or "torch-lstm"), at ``hidden_size`` when given."""
    model = dataclasses.replace(cfg.model, rnn=rnn, **({} if hidden_size is None else {"hidden_size": hidden_size}))
    return dataclasses.replace(cfg, model=model)


def parameter_count(spec: ChildSpec, cfg: RetrainConfig, vocab_size: int) -> int:
    """Trainable parameters of the model ``retrain`` would build (counted on the meta device: no memory)."""
    from workers.train import child_parameters

    return child_parameters(spec.cell, vocab_size, spec.hparams.as_dict(), cfg.model, cfg.train)


def matched_hidden_size(params: int, spec: ChildSpec, cfg: RetrainConfig, vocab_size: int) -> int:
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


def train_source(source: str, folder: Path | None, rank: int, cfg: RetrainConfig) -> Job:
    """(label, spec, settings) of one ``nas train`` source: the results folder's child at ``rank``, the reference
    LSTM, a known cell or a spec file."""
    if folder is not None and source == str(folder):
        from nas.runs.results import spec_at_rank  # pandas: only where a results folder is read

        return f"{source} (rank {rank})", spec_at_rank(folder, rank), cfg
    if source == TORCH_LSTM:  # nn.LSTM; its spec is the same function as a tree (Zoph & Le's encoding), for the record
        return TORCH_LSTM, ChildSpec(known_cell("lstm")), with_rnn(cfg, "torch-lstm")
    label, spec = load_spec(source)
    return label, spec, cfg


def match_params(jobs: list[Job], reference: str, folder: Path | None, rank: int, cfg: RetrainConfig,
                 out: Callable[[str], None] = print) -> list[Job]:
    """``jobs`` with every torch-lstm's hidden size set so that its parameters match ``reference``'s model."""
    if not any(label == TORCH_LSTM for label, _, _ in jobs):
        raise ValueError(f"--match-params sizes the {TORCH_LSTM} source; add {TORCH_LSTM} to the sources")
    if reference == TORCH_LSTM:
        raise ValueError(f"--match-params {TORCH_LSTM}: name the model to match, e.g. a cell or a spec file")
    _, ref_spec, ref_cfg = train_source(reference, folder if reference == str(folder) else None, rank, cfg)
    from workers.data import load_corpus

    vocab = load_corpus(cfg.data.source, cfg.data.level).vocab_size
    target = parameter_count(ref_spec, ref_cfg, vocab)
    sized = []
    for label, spec, job_cfg in jobs:
        if label == TORCH_LSTM:
            h = matched_hidden_size(target, spec, job_cfg, vocab)
            job_cfg = with_rnn(job_cfg, "torch-lstm", h)
            out(f"{TORCH_LSTM}: hidden size {h}, {parameter_count(spec, job_cfg, vocab):,} parameters, matching "
                  f"{reference} ({target:,} parameters)")
        sized.append((label, spec, job_cfg))
    return sized


def slug(label: str) -> str:
    """A folder name for a source's label (``results/x (rank 1)`` -> ``results-x--rank-1``)."""
    from nas.retrain.trainer import folder_safe

    return folder_safe(label).strip("-") or "cell"
