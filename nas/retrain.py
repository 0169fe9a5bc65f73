"""Retraining one cell to convergence and reporting test perplexity: what ``nas train`` runs.

A search ranks cells after a short budget per child; papers compare test perplexity after training to convergence,
and the field's first complaint is that found cells retrain worse than reported (seed variance, hidden tricks).
:func:`retrain` trains the child language model of one :class:`~search_spaces.ChildSpec` from scratch, once per
seed, through :func:`workers.train.train_child`: the search's own code path (the fused cell, the same data,
model and optimisation settings), with a convergence budget instead of the search's short one: up to ``epochs``
passes over the whole training split, the whole validation split after each, SGD's learning rate divided by
``lr_decay`` after every epoch without a better validation loss, and a stop after ``patience`` such epochs in a row.
The best-validation weights are then scored on the test split.

The output folder holds:

- ``spec.json``: the cell and its hyperparameters (``nas export`` and ``nas train`` read it back);
- ``train.json``: the settings, every finished seed (status, perplexities, epochs, seconds, epoch history) and
  the test perplexity's mean and standard deviation over seeds; rewritten atomically after each seed, so an
  interrupted run keeps the seeds it finished;
- ``model-seed<S>.pt``: per completed seed, the best-validation ``state_dict`` of :class:`workers.model.ChildLM`
  (its ``rnn.*`` entries load unchanged into the ``<Name>RNN`` class ``nas export`` writes).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import math
import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from nas.config import DataConfig, SearchConfig
from nas.results import atomic_write
from search_spaces import ChildSpec
from workers.data import load_corpus
from workers.model import ModelConfig
from workers.train import Budget, EpochReport, TrainConfig, TrainResult, split_hparams, train_child

DEFAULT_EPOCHS = 40
"""Most epochs per seed (pytorch/examples word_language_model trains 40)."""
DEFAULT_PATIENCE = 3
"""Epochs in a row without a better validation loss before stopping (with SGD: lr fallen 64-fold, no gain)."""
TRAIN_FILE = "train.json"
SPEC_FILE = "spec.json"


@dataclass(frozen=True)
class RetrainConfig:
    """Everything a retraining needs besides the spec."""

    data: DataConfig
    model: ModelConfig
    """Fixed model settings; the spec's hyperparameters override them (as in the search)."""
    train: TrainConfig
    budget: Budget
    seeds: tuple[int, ...]
    """One full training per seed."""
    device: str | None = None
    """None: CUDA when present, else CPU."""

    def __post_init__(self) -> None:
        if not self.seeds:
            raise ValueError("seeds: none given; use --seeds 1 or more")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds: {list(self.seeds)} repeats a seed; give each seed once")
        if self.device is not None:
            try:
                kind = torch.device(self.device).type
            except (RuntimeError, TypeError):
                raise ValueError(f"device: {self.device!r} is not a torch device; use cpu, cuda or cuda:N") from None
            if kind == "cuda" and not torch.cuda.is_available():
                raise ValueError(f"device: {self.device!r} but this machine has no CUDA device; use cpu or leave "
                                 "--device out") from None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def retrain_config(search: SearchConfig, epochs: int | None = None, patience: int | None = None, seeds: int = 1,
                   first_seed: int | None = None, device: str | None = None) -> RetrainConfig:
    """The search's data, model and optimisation settings with a convergence budget: up to ``epochs`` epochs
    over the whole splits, early stop after ``patience`` epochs without improvement, seeds ``first_seed`` ..
    ``first_seed + seeds - 1`` (``first_seed`` defaults to the search's seed)."""
    if not isinstance(seeds, int) or seeds < 1:
        raise ValueError(f"seeds: {seeds!r} is not allowed; use a whole number >= 1")
    budget = Budget(epochs=DEFAULT_EPOCHS if epochs is None else epochs,
                    patience=DEFAULT_PATIENCE if patience is None else patience)
    start = search.seed if first_seed is None else first_seed
    return RetrainConfig(search.data, search.model, search.train, budget, tuple(range(start, start + seeds)), device)


def fresh_dir(path: Path) -> Path:
    """``path``, or ``path-2``, ``path-3``, ...: the first that does not exist yet (for default output folders)."""
    n = 1
    while (candidate := path if n == 1 else path.with_name(f"{path.name}-{n}")).exists():
        n += 1
    return candidate


def default_out_dir(results_dir: str | os.PathLike, label: str) -> Path:
    """``<results_dir>/train-<label>-<date>-<time>`` (made unique) for a cell given by name or spec file."""
    stem = "".join(c if c.isalnum() or c in "-_" else "-" for c in Path(label).stem) or "cell"
    return fresh_dir(Path(results_dir) / f"train-{stem}-{_dt.datetime.now():%Y%m%d-%H%M%S}")


@dataclass(frozen=True)
class RetrainOutcome:
    out_dir: Path
    runs: tuple[dict[str, Any], ...]
    """One record per seed, as in ``train.json``."""
    test_ppl_mean: float
    """Mean test perplexity over the completed seeds (NaN when none completed)."""
    test_ppl_std: float
    """Sample standard deviation of the same (NaN for fewer than two)."""


def _check_out_dir(out_dir: Path) -> None:
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise ValueError(f"--out {out_dir} already exists and is not an empty folder; choose another --out "
                         "(or delete it) so no earlier result is overwritten")


def _duration(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


def epoch_line(seed: int, epochs: int, r: EpochReport, started: float) -> str:
    """One console line per epoch."""
    width = len(str(epochs))
    return (f"seed {seed} · epoch {r.epoch:>{width}}/{epochs} · train loss {r.train_loss:.3f} · val ppl "
            f"{r.val_ppl:.2f} (best {r.best_val_ppl:.2f}) · lr {r.lr:g} · {r.tokens_per_second:,.0f} tokens/s · "
            f"{_duration(time.perf_counter() - started)}")


def _record(seed: int, r: TrainResult) -> dict[str, Any]:
    return {"seed": seed, "status": r.status, "test_ppl": r.test_ppl, "val_ppl": r.val_ppl, "epochs": r.epochs,
            "stopped_early": r.stopped_early, "params": r.params, "train_seconds": r.train_seconds,
            "message": r.message, "model": f"model-seed{seed}.pt" if r.best_state is not None else None,
            "history": [dataclasses.asdict(h) for h in r.history]}


def _summary(runs: list[dict[str, Any]]) -> tuple[float, float]:
    ppls = [r["test_ppl"] for r in runs if r["status"] == "completed" and math.isfinite(r["test_ppl"])]
    mean = statistics.fmean(ppls) if ppls else math.nan
    return mean, statistics.stdev(ppls) if len(ppls) > 1 else math.nan


def _json(value: Any) -> Any:
    """NaN/inf as null: train.json is standard JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json(v) for v in value]
    return value


def summary_line(mean: float, std: float, runs: list[dict[str, Any]]) -> str:
    """E.g. ``test perplexity 4.95 ± 0.03 over 3 seeds (4.93, 4.98, 4.94)``."""
    done = [r for r in runs if r["status"] == "completed" and math.isfinite(r["test_ppl"])]
    if not done:
        return f"no seed completed ({len(runs)} tried); see the messages above"
    if len(done) == 1:
        line = f"test perplexity {mean:.2f} (seed {done[0]['seed']})"
    else:
        each = ", ".join(f"{r['test_ppl']:.2f}" for r in done)
        line = f"test perplexity {mean:.2f} ± {std:.2f} over {len(done)} seeds ({each})"
    failed = len(runs) - len(done)
    return line + (f"; {failed} seed(s) did not complete" if failed else "")


def retrain(spec: ChildSpec, cfg: RetrainConfig, out_dir: str | os.PathLike, source: str = "",
            out: Callable[[str], None] = print) -> RetrainOutcome:
    """Train ``spec`` once per seed of ``cfg`` and write the output folder (see the module docstring).

    Every check that can fail early (the folder, the data, the hyperparameters) runs before anything is written.
    """
    out_dir = Path(out_dir)
    _check_out_dir(out_dir)
    split_hparams(spec.hparams.as_dict(), cfg.model, cfg.train)  # unknown or invalid hyperparameters fail here
    corpus = load_corpus(cfg.data.source, cfg.data.level)
    seeds = ", ".join(map(str, cfg.seeds))
    patience = cfg.budget.patience
    stop = f"stopping after {patience} without a better validation loss" if patience else "no early stop"
    out(f"training {source or 'the cell'} on {corpus.name} ({corpus.level}, vocab {corpus.vocab_size:,}, "
        f"{corpus.train.numel():,} training tokens): up to {cfg.budget.epochs} epochs, {stop}; seed(s) {seeds}; "
        f"writing {out_dir}")
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(out_dir / SPEC_FILE, lambda p: p.write_text(spec.to_json() + "\n"))
    header = {"source": source, "spec": spec.to_dict(), "settings": cfg.to_dict(), "corpus": corpus.summary(),
              "torch": torch.__version__}
    runs: list[dict[str, Any]] = []
    for seed in cfg.seeds:
        started = time.perf_counter()
        result = train_child(spec.cell, corpus, spec.hparams.as_dict(), cfg.budget, cfg.model, cfg.train, seed=seed,
                             device=cfg.device, evaluate_test=True,
                             on_epoch=lambda r: out(epoch_line(seed, cfg.budget.epochs, r, started)))
        record = _record(seed, result)
        if result.best_state is not None:
            state = {k: v.detach().cpu() for k, v in result.best_state.items()}
            atomic_write(out_dir / record["model"], lambda p: torch.save(state, p))
        runs.append(record)
        mean, std = _summary(runs)
        doc = {**header, "runs": runs, "test_ppl_mean": mean, "test_ppl_std": std}
        atomic_write(out_dir / TRAIN_FILE, lambda p: p.write_text(json.dumps(_json(doc), indent=2) + "\n"))
        out(_seed_line(record))
    mean, std = _summary(runs)
    return RetrainOutcome(out_dir, tuple(runs), mean, std)


def _seed_line(r: dict[str, Any]) -> str:
    if r["status"] != "completed":
        return f"seed {r['seed']}: {r['status']} after {r['epochs']} epoch(s): {r['message']}"
    stop = " (stopped early: converged)" if r["stopped_early"] else ""
    return (f"seed {r['seed']}: test ppl {r['test_ppl']:.2f}, best val ppl {r['val_ppl']:.2f}, {r['epochs']} "
            f"epochs{stop}, {r['params']:,} parameters, {_duration(r['train_seconds'])} training")
