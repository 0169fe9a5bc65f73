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

- ``spec.json``: the cell and its hyperparameters (``nas export`` and ``nas train`` read it back; none for
  ``torch-gru``, which no tree computes);
- ``train.json``: the settings, every finished seed (status, perplexities, epochs, seconds, epoch history) and
  the test perplexity's mean and standard deviation over seeds; rewritten atomically after each seed, so an
  interrupted run keeps the seeds it finished;
- ``model-seed<S>.pt``: per completed seed, a checkpoint (``torch.load(path, weights_only=True)`` reads it) with
  ``format``, the ``spec``, the resolved ``model`` and ``train`` settings, the ``vocab`` and its ``level``, ``seed``,
  ``best_epoch``, ``val_ppl``, ``test_ppl`` and ``state_dict``, the best-validation weights of
  :class:`workers.model.ChildLM`; :func:`load_checkpoint` rebuilds the model. The ``rnn.*`` entries of the state
  dict, without the ``rnn.`` prefix, load into the ``<Name>RNN`` class that ``nas export`` writes.

A seed that diverges or raises (e.g. out of memory) is recorded with its status and message, and the next seed
runs; Ctrl-C records the seed in progress as ``interrupted`` (its epochs so far, no weights) before stopping.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import math
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from nas.config import DataConfig, SearchConfig
from nas.console import bits_per_token, duration, format_mean_std, mean_std, text_table
from nas.runs.records import atomic_write, json_safe
from search_spaces import ChildSpec
from workers.child_settings import TREE_RNNS, Budget, ModelConfig, TrainConfig, split_hparams
from workers.data import Corpus, load_corpus
from workers.model import ChildLM, build_child
from workers.train import BatchProgress, EpochReport, TrainResult, failure_text, pick_device, train_child

TRAIN_FILE = "train.json"
SPEC_FILE = "spec.json"
CHECKPOINT_FORMAT = 1
"""Version of the ``model-seed<S>.pt`` layout (see the module docstring)."""
OOM_HINT = ("out of memory: this model or batch does not fit; lower hidden_size / batch_size (in the spec's "
            "hyperparameters or the config) or use a device with more memory")


@dataclass(frozen=True)
class RetrainRecipe:
    """How a cell is retrained: everything a retraining needs besides the spec (data, model, optimisation, budget,
    seeds, device). The `[retrain]` table of a search is RetrainSettings, from which the budget comes."""

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
            check_device(self.device)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def check_device(device: str) -> None:
    """Raise ValueError unless ``device`` is cpu or a CUDA device this machine has."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        dev = None
    if dev is None or dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device: {device!r} is not supported; use cpu, cuda or cuda:N")
    count = torch.cuda.device_count() if dev.type == "cuda" else 0
    if dev.type == "cuda" and (count == 0 or (dev.index or 0) >= count):
        raise ValueError(f"device: {device!r} but this machine has {count} CUDA device(s); use cpu"
                         + (f" or cuda:0 .. cuda:{count - 1}" if count else " or leave --device out"))


def retrain_recipe(search: SearchConfig, epochs: int | None = None, patience: int | None = None, seeds: int = 1,
                   first_seed: int | None = None, device: str | None = None) -> RetrainRecipe:
    """The search's data, model and optimisation settings with a convergence budget: up to ``epochs`` epochs
    over the whole splits, early stop after ``patience`` epochs without improvement (0: never), both defaulting to
    the config's ``[retrain]``, seeds ``first_seed`` .. ``first_seed + seeds - 1`` (``first_seed`` defaults to the
    search's seed)."""
    if not isinstance(seeds, int) or seeds < 1:
        raise ValueError(f"seeds: {seeds!r} is not allowed; use a whole number >= 1")
    given = {k: v for k, v in (("epochs", epochs), ("patience", patience)) if v is not None}
    settings = dataclasses.replace(search.retrain, **given)  # checked as the [retrain] table is
    budget = Budget(epochs=settings.epochs, patience=None if settings.patience == 0 else settings.patience)
    start = search.seed if first_seed is None else first_seed
    return RetrainRecipe(search.data, search.model, search.train, budget, tuple(range(start, start + seeds)), device)


def fresh_dir(path: Path) -> Path:
    """``path``, or ``path-2``, ``path-3``, ...: the first that does not exist yet (for default output folders)."""
    n = 1
    while (candidate := path if n == 1 else path.with_name(f"{path.name}-{n}")).exists():
        n += 1
    return candidate


def folder_safe(text: str) -> str:
    """``text`` with every character but letters, digits, ``-`` and ``_`` replaced by ``-``."""
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in text)


def default_out_dir(results_dir: str | os.PathLike, label: str) -> Path:
    """``<results_dir>/train-<label>-<date>-<time>`` (made unique) for a cell given by name or spec file."""
    stem = folder_safe(Path(label).stem) or "cell"
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
    level: str = "word"
    """The corpus's tokenisation: "char" tables also show bits per character."""


def check_out_dir(out_dir: Path) -> None:
    """Raise ValueError unless ``out_dir`` is new or an empty folder (no earlier result is overwritten)."""
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise ValueError(f"--out {out_dir} already exists and is not an empty folder; choose another --out "
                         "(or delete it) so no earlier result is overwritten")


def epoch_line(seed: int, epochs: int, r: EpochReport, started: float, level: str = "word") -> str:
    """One console line per epoch."""
    width = len(str(epochs))
    bpc = f" = {bits_per_token(r.val_ppl):.3f} bits/char" if level == "char" else ""
    return (f"seed {seed} · epoch {r.epoch:>{width}}/{epochs} · train loss {r.train_loss:.3f} · val ppl "
            f"{r.val_ppl:.2f}{bpc} (best {r.best_val_ppl:.2f}) · lr {r.lr:g} · {r.tokens_per_second:,.0f} tokens/s · "
            f"{duration(time.perf_counter() - started)}")


class ProgressLine:
    """Progress inside an epoch: a bar redrawn in place on a terminal, else a line about once a minute."""

    EVERY = 60.0
    """Seconds between progress lines when the output is not a terminal (a log file)."""

    def __init__(self, seed: int, epochs: int, started: float, out: Callable[[str], None], terminal: bool) -> None:
        self.seed, self.epochs, self.started, self.out, self.terminal = seed, epochs, started, out, terminal
        self.last, self.drawn = time.perf_counter(), False

    def text(self, p: BatchProgress) -> str:
        width = len(str(self.epochs))
        done = p.batches / max(p.total, 1)
        bar = "#" * int(done * 20)
        return (f"seed {self.seed} · epoch {p.epoch:>{width}}/{self.epochs} [{bar:<20}] {done:4.0%} · train loss "
                f"{p.train_loss:.3f} · {duration(time.perf_counter() - self.started)}")

    def update(self, p: BatchProgress) -> None:
        now = time.perf_counter()
        if self.terminal:
            sys.stdout.write("\r" + self.text(p))
            sys.stdout.flush()
            self.drawn = True
        elif now - self.last >= self.EVERY:
            self.out(self.text(p))
            self.last = now

    def clear(self) -> None:
        if self.drawn:
            sys.stdout.write("\r\033[K")
            self.drawn = False
        self.last = time.perf_counter()


def _record(seed: int, history: list[EpochReport], result: TrainResult | None = None, status: str = "",
            message: str = "") -> dict[str, Any]:
    """One seed's entry in train.json: from its result, or (interrupted, failed) from the epochs it finished."""
    best = min(history, key=lambda r: r.val_loss, default=None)
    r = result
    return {"seed": seed, "status": r.status if r else status, "test_ppl": r.test_ppl if r else math.nan,
            "val_ppl": best.val_ppl if best else math.nan, "best_epoch": best.epoch if best else None,
            "epochs": len(history), "stopped_early": r.stopped_early if r else False,
            "params": r.params if r else None, "train_seconds": history[-1].train_seconds if history else 0.0,
            "message": r.message if r else message, "cuda_graphs": r.cuda_graphs if r else "",
            "model": f"model-seed{seed}.pt" if r and r.status == "completed" and r.best_state else None,
            "history": [dataclasses.asdict(h) for h in history]}


def _checkpoint(spec: ChildSpec, model: ModelConfig, train: TrainConfig, vocab: tuple[str, ...], level: str,
                record: dict[str, Any], state: dict[str, torch.Tensor]) -> dict[str, Any]:
    """The ``model-seed<S>.pt`` content; ``model`` and ``train`` are the settings with the spec's hparams applied."""
    return {"format": CHECKPOINT_FORMAT, "spec": spec.to_dict(), "model": dataclasses.asdict(model),
            "train": dataclasses.asdict(train), "vocab": list(vocab), "level": level, "seed": record["seed"],
            "best_epoch": record["best_epoch"], "val_ppl": record["val_ppl"], "test_ppl": record["test_ppl"],
            "state_dict": state}


def load_checkpoint(path: str | os.PathLike) -> tuple[ChildLM, dict[str, Any]]:
    """The child LM of a ``model-seed<S>.pt`` checkpoint with its weights loaded (on the CPU, in eval mode), and
    the checkpoint itself (spec, settings, vocab, perplexities)."""
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: not a `nas train` checkpoint of format {CHECKPOINT_FORMAT}")
    spec = ChildSpec.from_dict(ckpt["spec"])
    model = build_child(spec.cell, len(ckpt["vocab"]), ModelConfig(**ckpt["model"]))
    model.load_state_dict(ckpt["state_dict"])
    return model.eval(), ckpt


def scored(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The seeds that count: completed, with a finite test perplexity."""
    return [r for r in runs if r["status"] == "completed" and math.isfinite(r["test_ppl"])]


def _summary(runs: list[dict[str, Any]]) -> tuple[float, float]:
    return mean_std([r["test_ppl"] for r in scored(runs)])


def seeds_summary_line(mean: float, std: float, runs: list[dict[str, Any]], level: str = "word") -> str:
    """E.g. ``test perplexity 4.95 ± 0.03 over 3 seeds (4.93, 4.98, 4.94)``; at character level followed by
    ``, 2.31 bits/char``."""
    done = scored(runs)
    if not done:
        return f"no seed completed ({len(runs)} tried); see the messages above"
    bpc = f", {statistics.fmean(bits_per_token(r['test_ppl']) for r in done):.3f} bits/char" if level == "char" else ""
    if len(done) == 1:
        line = f"test perplexity {mean:.2f}{bpc} (seed {done[0]['seed']})"
    else:
        each = ", ".join(f"{r['test_ppl']:.2f}" for r in done)
        line = f"test perplexity {mean:.2f} ± {std:.2f}{bpc} over {len(done)} seeds ({each})"
    failed = len(runs) - len(done)
    return line + (f"; {failed} seed(s) did not complete" if failed else "")


def retrain(spec: ChildSpec, cfg: RetrainRecipe, out_dir: str | os.PathLike, source: str = "",
            out: Callable[[str], None] = print, terminal: bool | None = None) -> RetrainOutcome:
    """Train ``spec`` once per seed of ``cfg`` and write the output folder (see the module docstring).

    Every check that can fail early (the folder, the data, the hyperparameters) runs before anything is written.
    Progress inside an epoch is a bar on a terminal (``terminal``; default: when ``out`` is ``print`` to a
    terminal), else a line about once a minute.
    """
    if terminal is None:
        terminal = out is print and sys.stdout.isatty()
    out_dir = Path(out_dir)
    check_out_dir(out_dir)
    # the child's settings, spec hyperparameters applied: unknown or invalid ones fail here, before any writing
    child_model, child_train = split_hparams(spec.hparams.as_dict(), cfg.model, cfg.train)
    corpus = load_corpus(cfg.data.source, cfg.data.level)
    seeds = ", ".join(map(str, cfg.seeds))
    patience = cfg.budget.patience
    stop = f"stopping after {patience} epochs without a better validation loss" if patience else "no early stop"
    plural = "" if cfg.budget.epochs == 1 else "s"
    out(f"training {source or 'the cell'} on {corpus.name} ({corpus.level}, vocab {corpus.vocab_size:,}, "
        f"{corpus.train.numel():,} training tokens): up to {cfg.budget.epochs} epoch{plural}, {stop}; seed(s) {seeds}; "
        f"writing {out_dir}")
    out_dir.mkdir(parents=True, exist_ok=True)
    if cfg.model.rnn in TREE_RNNS:  # a GRU has no spec that `nas export` could turn into one
        atomic_write(out_dir / SPEC_FILE, lambda p: p.write_text(spec.to_json() + "\n"))
    device = pick_device(cfg.device)
    header = _header(source, spec, cfg, corpus, device)
    runs: list[dict[str, Any]] = []

    def write(records: list[dict[str, Any]]) -> None:
        mean, std = _summary(records)
        doc = {**header, "runs": records, "test_ppl_mean": mean, "test_ppl_std": std}
        text = json.dumps(json_safe(doc), indent=2, allow_nan=False) + "\n"  # NaN/inf as null: standard JSON
        atomic_write(out_dir / TRAIN_FILE, lambda p: p.write_text(text))

    for seed in cfg.seeds:
        history: list[EpochReport] = []
        try:
            result = _train_seed(spec, cfg, corpus, seed, device, history, out, terminal)
            record = _record(seed, history, result)
        except KeyboardInterrupt:
            write(runs + [_record(seed, history, status="interrupted", message="stopped by Ctrl-C")])
            out(f"interrupted in seed {seed} after {len(history)} epoch(s); finished seeds are in {out_dir}")
            raise
        except Exception as e:  # noqa: BLE001 - one seed's error is recorded; the others still run
            result, record = None, _record(seed, history, status="failed", message=failure_text(e, OOM_HINT))
        if result is not None and record["model"]:
            _save_checkpoint(out_dir / record["model"],
                             _checkpoint(spec, child_model, child_train, corpus.vocab, corpus.level, record,
                                         result.best_state))
        runs.append(record)
        write(runs)
        out(_seed_line(record, patience))
    mean, std = _summary(runs)
    return RetrainOutcome(out_dir, tuple(runs), mean, std, corpus.level)


def _header(source: str, spec: ChildSpec, cfg: RetrainRecipe, corpus: Corpus, device: torch.device) -> dict[str, Any]:
    """What ``train.json`` records besides the runs: the source, spec, settings, corpus and machine."""
    return {"source": source, "spec": spec.to_dict(), "settings": cfg.to_dict(), "corpus": corpus.summary(),
            "device": str(device), "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "",
            "threads": torch.get_num_threads(), "torch": torch.__version__}


def _train_seed(spec: ChildSpec, cfg: RetrainRecipe, corpus: Corpus, seed: int, device: torch.device,
                history: list[EpochReport], out: Callable[[str], None], terminal: bool) -> TrainResult:
    """Train one seed, appending each epoch's report to ``history`` (also on failure) and printing progress."""
    started = time.perf_counter()
    progress = ProgressLine(seed, cfg.budget.epochs, started, out, terminal)

    def on_epoch(r: EpochReport) -> None:
        progress.clear()
        history.append(r)
        out(epoch_line(seed, cfg.budget.epochs, r, started, corpus.level))

    return train_child(spec.cell, corpus, spec.hparams.as_dict(), cfg.budget, cfg.model, cfg.train,
                       seed=seed, device=device, evaluate_test=True, on_epoch=on_epoch, on_progress=progress.update)


def _save_checkpoint(path: Path, ckpt: dict[str, Any]) -> None:
    atomic_write(path, lambda p: torch.save(ckpt, p))


def comparison_rows(labels: list[str], outcomes: list[RetrainOutcome]) -> list[dict[str, Any]]:
    """One row per trained source: its parameters, validation and test perplexity (mean and std over seeds)."""
    rows = []
    for label, o in zip(labels, outcomes):
        done = scored(list(o.runs))
        val, val_std = mean_std([r["val_ppl"] for r in done])
        row = {"source": label, "params": done[0]["params"] if done else None, "seeds": len(done),
               "val_ppl": val, "val_ppl_std": val_std, "test_ppl": o.test_ppl_mean, "test_ppl_std": o.test_ppl_std,
               "folder": str(o.out_dir)}
        if o.level == "char":
            row["test_bpc"] = bits_per_token(o.test_ppl_mean)
        rows.append(row)
    return rows


def comparison_lines(labels: list[str], outcomes: list[RetrainOutcome]) -> list[str]:
    """The side-by-side table of several sources trained under the same settings."""
    rows = comparison_rows(labels, outcomes)
    char = any("test_bpc" in r for r in rows)
    table = [("source", "parameters", "val ppl", "test ppl") + (("bits/char",) if char else ())]
    for r in rows:
        bpc = (f"{r['test_bpc']:.3f}" if math.isfinite(r.get("test_bpc", math.nan)) else "-",) if char else ()
        table.append((r["source"], f"{r['params']:,}" if r["params"] else "-",
                      format_mean_std(r["val_ppl"], r["val_ppl_std"]),
                      format_mean_std(r["test_ppl"], r["test_ppl_std"])) + bpc)
    return text_table(table, left={0})


COMPARISON_FILE = "compare.csv"


def write_comparison(out_dir: Path, labels: list[str], outcomes: list[RetrainOutcome]) -> Path:
    """``compare.csv`` in ``out_dir``: :func:`comparison_rows`."""
    import csv
    import io

    rows = comparison_rows(labels, outcomes)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(dict.fromkeys(k for r in rows for k in r)))
    writer.writeheader()
    writer.writerows(rows)
    atomic_write(out_dir / COMPARISON_FILE, lambda p: p.write_text(buf.getvalue()))
    return out_dir / COMPARISON_FILE


def _seed_line(r: dict[str, Any], patience: int | None) -> str:
    if r["status"] != "completed":
        return f"seed {r['seed']}: {r['status']} after {r['epochs']} epoch(s): {r['message'].splitlines()[0]}"
    stop = f" (stopped: no better validation loss in {patience} epochs)" if r["stopped_early"] else ""
    epochs = f"{r['epochs']} epoch" + ("" if r["epochs"] == 1 else "s")
    return (f"seed {r['seed']}: test ppl {r['test_ppl']:.2f}, best val ppl {r['val_ppl']:.2f} (epoch "
            f"{r['best_epoch']}), {epochs}{stop}, {r['params']:,} parameters, "
            f"{duration(r['train_seconds'])} training")
