"""Training one child: truncated BPTT with the hidden state carried across windows, gradient clipping,
validation perplexity each epoch. Plain Python, no Ray: the Ray trainable and ``nas train`` both call
:func:`train_child`.

Divergence (a training or validation loss that is NaN, infinite, or above :data:`DIVERGED_LOSS` so that
perplexity overflows) ends training with ``status="diverged"`` and a message;
it never raises. Other errors (out of memory, bad input) do raise: the caller records them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import math
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from search_spaces.cell import Cell
from workers.cell_rnn import kernel_path
from workers.child_settings import Budget, ModelConfig, TrainConfig, split_hparams
from workers.cuda_graph import GraphedTrainStep
from workers.data import Corpus, batchify
from workers.model import ChildLM, State, build_child, count_parameters
from workers.outcome import ChildOutcome

DIVERGED_LOSS = 700.0
"""Mean cross-entropy (nats/token) above which a child counts as diverged: exp(700) is near the float64 limit,
and uniform guessing over any real vocabulary stays below 20 nats."""


def _diverged(loss: float) -> bool:
    return not loss < DIVERGED_LOSS  # also true for NaN


def autocast(device: torch.device, precision: str):
    """The context for a forward pass at ``precision`` (a no-op for float32). Its weight-cast cache is off, as
    CUDA graph capture requires (each weight is cast once per forward anyway)."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bfloat16", cache_enabled=False)


@dataclass(frozen=True)
class Validation:
    """A validation measurement during training: what the epoch and rung reports share."""

    epoch: int
    batches: int
    """Training batches done so far (all epochs): the fidelity reached."""
    val_loss: float
    val_ppl: float
    train_seconds: float
    """Seconds spent in training steps so far (evaluation excluded)."""


@dataclass(frozen=True)
class EpochReport(Validation):
    """What a child reports after each epoch."""

    train_loss: float
    best_val_ppl: float
    lr: float
    train_tokens: int
    tokens_per_second: float
    """Training throughput of this epoch."""


@dataclass(frozen=True)
class RungReport(Validation):
    """A mid-training measurement at one of ``Budget.report_at``."""

    params: int = 0
    """Trainable parameters of the child model."""


@dataclass(frozen=True)
class BatchProgress:
    """Where training is inside an epoch (reported every 25 batches)."""

    epoch: int
    batches: int
    """Training batches done in this epoch."""
    total: int
    """Training batches this epoch will run."""
    train_loss: float
    """Mean training loss of this epoch so far."""
    tokens: int
    """Training tokens of this epoch so far."""


@dataclass(frozen=True)
class TrainResult:
    """The outcome of :func:`train_child`."""

    status: str
    """"completed" or "diverged"."""
    val_ppl: float
    """Best validation perplexity over the epochs run (NaN if none was measured)."""
    epochs: int
    """Epochs completed."""
    params: int
    train_seconds: float
    message: str = ""
    test_ppl: float = math.nan
    """Test perplexity of the best-validation weights, when asked for (NaN otherwise)."""
    history: tuple[EpochReport, ...] = ()
    best_state: dict[str, torch.Tensor] | None = dataclasses.field(default=None, repr=False, compare=False)
    """The model's state dict (on the CPU) at its best validation loss, when test perplexity was asked for."""
    stopped_early: bool = False
    """Training ended before ``budget.epochs`` because of ``budget.patience``."""
    cuda_graphs: str = "off"
    """"off" (eager steps), or the CUDA graph's state at the end: "captured", "warming up" (too few full
    windows to capture), "eager: <why capture failed>"."""
    batches: int = 0
    """Training batches done (all epochs): the fidelity reached."""
    rungs: tuple[RungReport, ...] = ()
    """The measurements at ``budget.report_at``."""
    kernels: str = ""
    """How the cell's steps ran: "triton", "native" (generated C), "torch" (torch operations) or "" (not a cell)."""
    resumed_from: int = 0
    """Training batches done when this training resumed from a checkpoint (0: it started from the beginning)."""


def outcome_of(result: TrainResult) -> ChildOutcome:
    """The child outcome record of a finished training."""
    return ChildOutcome(result.status, result.val_ppl, result.params, result.train_seconds, result.epochs,
                        result.message, fidelity=result.batches,
                        rung_ppl={str(r.batches): r.val_ppl for r in result.rungs}, kernels=result.kernels,
                        cuda_graphs=result.cuda_graphs, resumed_from=result.resumed_from)


def child_parameters(cell: Cell, vocab_size: int, hparams: Mapping[str, Any] | None = None,
                     model_config: ModelConfig = ModelConfig(), train_config: TrainConfig = TrainConfig()) -> int:
    """Trainable parameters of the model :func:`train_child` builds for these arguments, counted on the meta
    device (no memory, no training)."""
    mcfg, _ = split_hparams(hparams or {}, model_config, train_config)
    with torch.device("meta"):
        return count_parameters(build_child(cell, vocab_size, mcfg, kernels="torch"))


def batches_per_epoch(budget: Budget, rows: int, bptt: int) -> int:
    """Training batches in one epoch: the BPTT windows of a split batchified to ``rows`` rows, capped by
    ``budget.max_batches``."""
    windows = len(range(0, max(rows - 1, 0), bptt))
    return windows if budget.max_batches is None else min(budget.max_batches, windows)


def is_out_of_memory(e: BaseException) -> bool:
    """A CUDA out-of-memory error, or the CPU allocator failing to allocate."""
    oom_type = getattr(torch, "OutOfMemoryError", ())
    return isinstance(e, (MemoryError, oom_type)) or "can't allocate memory" in str(e) or "out of memory" in str(e)


def free_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def failure_text(e: BaseException, oom_hint: str) -> str:
    """What to record for a training that raised ``e`` (call inside its ``except``): type, message and the last
    traceback frames, after ``oom_hint`` when it ran out of memory (memory is then freed for whatever runs next)."""
    text = f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=-3)}"
    if is_out_of_memory(e):
        free_memory()
        return f"{oom_hint}\n{text}"
    return text


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """The given device, else CUDA when present, else CPU."""
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _detach(state: State) -> State:
    return state[0].detach(), state[1].detach()


class TrainStep:
    """One training step of a child: forward on a window with the carried state (detached), cross-entropy,
    backward, gradient clipping, optimiser step. ``step(inputs, targets, state) -> (loss, state)``, both
    detached (the loss a 0-d tensor on the device: reading it waits for the device)."""

    def __init__(self, model: ChildLM, config: TrainConfig, device: torch.device, capturable: bool = False) -> None:
        self.model, self.config, self.device = model, config, device
        self.params = [p for p in model.parameters() if p.requires_grad]
        if config.optimizer == "sgd":
            self.optimizer: torch.optim.Optimizer = torch.optim.SGD(self.params, lr=config.lr)
        else:  # capturable: its step can be recorded in a CUDA graph
            self.optimizer = torch.optim.Adam(self.params, lr=config.lr, capturable=capturable)
        self.loss_fn = nn.CrossEntropyLoss()

    def set_lr(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def forward_backward(self, inputs: torch.Tensor, targets: torch.Tensor, state: State | None
                         ) -> tuple[torch.Tensor, State]:
        """Loss and new state of one window, its gradients computed and clipped (no optimiser step)."""
        with autocast(self.device, self.config.precision):
            logits, state = self.model(inputs, state)  # (T, B, V)
            loss = self.loss_fn(logits.view(-1, self.model.vocab_size), targets.reshape(-1))
        loss.backward()
        nn.utils.clip_grad_norm_(self.params, self.config.clip)
        return loss.detach(), state

    def __call__(self, inputs: torch.Tensor, targets: torch.Tensor, state: State | None
                 ) -> tuple[torch.Tensor, State]:
        if state is not None:
            state = _detach(state)
        self.optimizer.zero_grad(set_to_none=True)
        loss, state = self.forward_backward(inputs, targets, state)
        self.optimizer.step()
        return loss, _detach(state)  # no autograd graph outlives its step


def evaluate(model: ChildLM, data: torch.Tensor, bptt: int, precision: str = "float32") -> float:
    """Mean cross-entropy (nats/token) of ``model`` on batchified ``data`` (T, B)."""
    model.eval()
    total, count, state = 0.0, 0, None
    loss_fn = nn.CrossEntropyLoss(reduction="sum")
    with torch.no_grad():
        for i in range(0, data.size(0) - 1, bptt):
            n = min(bptt, data.size(0) - 1 - i)
            inputs, targets = data[i : i + n], data[i + 1 : i + 1 + n]
            with autocast(data.device, precision):
                logits, state = model(inputs, state)
            total += loss_fn(logits.float().view(-1, model.vocab_size), targets.reshape(-1)).item()
            count += targets.numel()
    return total / max(count, 1)


def lr_at(config: TrainConfig, epoch: int, stale_epochs: int = 0) -> float:
    """SGD's learning rate for ``epoch`` (from 1) under ``config.lr_schedule``; ``stale_epochs`` counts the epochs
    so far that did not improve the validation loss (what "plateau" divides by). Adam keeps ``config.lr``."""
    if config.optimizer != "sgd":
        return config.lr
    if config.lr_schedule == "step":
        return config.lr / config.lr_decay ** max(0, epoch - config.lr_step_after)
    return config.lr / config.lr_decay ** stale_epochs


def perplexity(loss: float) -> float:
    """exp(loss), inf when it overflows, NaN for NaN."""
    if math.isnan(loss):
        return math.nan
    return math.exp(loss) if loss < 709.0 else math.inf


def train_child(
    cell: Cell,
    corpus: Corpus,
    hparams: Mapping[str, Any] | None = None,
    budget: Budget = Budget(),
    model_config: ModelConfig = ModelConfig(),
    train_config: TrainConfig = TrainConfig(),
    seed: int = 0,
    device: str | torch.device | None = None,
    on_epoch: Callable[[EpochReport], None] | None = None,
    evaluate_test: bool = False,
    on_rung: Callable[[RungReport], None] | None = None,
    on_progress: Callable[[BatchProgress], None] | None = None,
    resume: Mapping[str, Any] | None = None,
    on_checkpoint: Callable[[dict[str, Any]], None] | None = None,
) -> TrainResult:
    """Train a child LM with ``cell`` on ``corpus``; ``hparams`` override fields of the two configs.

    Deterministic on CPU for a given seed (and thread count). On a CPU, subnormal floats are flushed to zero
    (:func:`torch.set_flush_denormal`, for the whole process): cells that drift into them otherwise train several
    times slower (bench/RESULTS.md), and their perplexities do not change measurably (tested).
    ``on_epoch`` is called after every epoch,
    ``on_rung`` after each of ``budget.report_at`` training batches (at an epoch's end, with its evaluation),
    ``on_progress`` every 25 training batches inside an epoch.

    Checkpoints: with ``on_checkpoint``, a checkpoint (:func:`checkpoint_of`) is handed to it every
    ``budget.checkpoint_every`` seconds of training inside an epoch and at the end of every epoch but the last;
    ``resume`` (such a checkpoint, of this very child: same cell, hyperparameters and seed) continues from it, and
    the training then ends exactly as it would have without the interruption (tested on CPU).
    """
    dev = pick_device(device)
    if dev.type == "cpu":
        torch.set_flush_denormal(True)  # a no-op (False) where the CPU cannot
    # Triton launches on the current CUDA device and a CUDA graph captures on it: make it the child's own
    with torch.cuda.device(dev) if dev.type == "cuda" else contextlib.nullcontext():
        hooks = Hooks(on_epoch, on_rung, on_progress, on_checkpoint)
        return _Training(cell, corpus, hparams, budget, model_config, train_config, seed, dev, hooks, evaluate_test,
                         resume).run()


@dataclass
class Position:
    """Where a child's training stands between two training steps: everything besides the weights, the optimiser
    and the random state that going on from here needs."""

    epoch: int = 1
    """The epoch being trained (from 1)."""
    batches: int = 0
    """Training batches done in this epoch."""
    done: int = 0
    """Training batches done in all epochs (the fidelity reached)."""
    cursor: int = 0
    """The next BPTT window of the training split (carried over epochs cut short by ``max_batches``)."""
    loss_sum: float = 0.0
    """This epoch's summed training loss so far."""
    tokens: int = 0
    """This epoch's training tokens so far."""
    epoch_seconds: float = 0.0
    """This epoch's training seconds before the current stretch of steps."""
    train_seconds: float = 0.0
    """Training seconds of the finished epochs."""
    best_loss: float = math.inf
    stale: int = 0
    """Epochs in a row without a better validation loss (what ``patience`` counts)."""
    stale_epochs: int = 0
    """Epochs so far without a better validation loss (what the "plateau" schedule divides the rate by)."""
    history: list[EpochReport] = dataclasses.field(default_factory=list)
    rungs: list[RungReport] = dataclasses.field(default_factory=list)
    hidden: State | None = None
    """The recurrent state carried into the next window (None at the start of an epoch or of the split)."""


class _EpochClock:
    """An epoch's training seconds: the wall time since this stretch of it began, less what ran inside
    :meth:`excluded` (evaluations), plus ``before`` (earlier stretches of the same epoch)."""

    def __init__(self, before: float = 0.0) -> None:
        self.before, self.start, self.skipped = before, time.perf_counter(), 0.0

    @contextlib.contextmanager
    def excluded(self):
        began = time.perf_counter()
        try:
            yield
        finally:
            self.skipped += time.perf_counter() - began

    def seconds(self) -> float:
        return self.before + time.perf_counter() - self.start - self.skipped


@dataclass(frozen=True)
class Hooks:
    """What :func:`train_child` calls while it trains (each may be None)."""

    on_epoch: Callable[[EpochReport], None] | None = None
    on_rung: Callable[[RungReport], None] | None = None
    on_progress: Callable[[BatchProgress], None] | None = None
    on_checkpoint: Callable[[dict[str, Any]], None] | None = None


class _Training:
    """One child's training, from its first step (or a checkpoint) to its :class:`TrainResult`: :meth:`run`."""

    def __init__(self, cell: Cell, corpus: Corpus, hparams: Mapping[str, Any] | None, budget: Budget,
                 model_config: ModelConfig, train_config: TrainConfig, seed: int, dev: torch.device, hooks: Hooks,
                 evaluate_test: bool, resume: Mapping[str, Any] | None) -> None:
        mcfg, tcfg = split_hparams(hparams or {}, model_config, train_config)
        self.budget, self.tcfg, self.dev, self.hooks, self.corpus = budget, tcfg, dev, hooks, corpus
        self.evaluate_test = evaluate_test
        torch.manual_seed(seed)
        self.model = build_child(cell, corpus.vocab_size, mcfg, kernels=tcfg.cell_kernels).to(dev)
        self.params = count_parameters(self.model)
        self.train = batchify(corpus.train, tcfg.batch_size).to(dev)  # (T, B)
        valid_tokens = corpus.valid if budget.max_eval_tokens is None else corpus.valid[: budget.max_eval_tokens]
        self.valid = batchify(valid_tokens, tcfg.eval_batch_size).to(dev)
        graphs = tcfg.cuda_graphs == "auto" and dev.type == "cuda"
        self.eager = TrainStep(self.model, tcfg, dev, capturable=graphs)
        self.child = {"cell": cell.to_json(), "hparams": dict(hparams or {}), "seed": seed}
        self.pos, self.best_state = Position(), None
        if resume is not None:  # before a CUDA graph captures the parameters: loading copies into them
            self.pos, self.best_state = restore_checkpoint(resume, self.child, self.model, self.eager.optimizer, dev)
        self.resumed_from = self.pos.done
        self.step: TrainStep | GraphedTrainStep = GraphedTrainStep(self.eager) if graphs else self.eager
        self.every = budget.checkpoint_every if hooks.on_checkpoint is not None else None
        self.last_checkpoint = time.perf_counter()
        self.windows = list(range(0, self.train.size(0) - 1, tcfg.bptt))  # start row of every BPTT window
        self.per_epoch = batches_per_epoch(budget, self.train.size(0), tcfg.bptt)
        self.rungs = set(budget.report_at)
        compute = torch.empty(0, device=dev, dtype=torch.bfloat16 if tcfg.precision == "bfloat16" else torch.float32)
        self.kernels = "" if mcfg.rnn != "cell" else kernel_path(tcfg.cell_kernels, cell, compute)

    def run(self) -> TrainResult:
        pos, budget = self.pos, self.budget
        while pos.epoch <= budget.epochs:
            diverged = self._epoch()
            if diverged is not None:
                return diverged
            if budget.patience is not None and pos.stale >= budget.patience:
                break
            pos.epoch, pos.batches, pos.loss_sum, pos.tokens, pos.epoch_seconds, pos.hidden = (
                pos.epoch + 1, 0, 0.0, 0, 0, None)
            if self.every is not None and pos.epoch <= budget.epochs:
                self._checkpoint()
        return self._result("completed")

    def _epoch(self) -> TrainResult | None:
        """Train the rest of this epoch, evaluate and report it; the result when the child diverged."""
        pos, tcfg = self.pos, self.tcfg
        lr = lr_at(tcfg, pos.epoch, pos.stale_epochs)
        self.step.set_lr(lr)
        self.model.train()
        clock = _EpochClock(pos.epoch_seconds)
        loss_sum = torch.full((), pos.loss_sum, device=self.dev)
        diverged = self._batches(clock, loss_sum)
        if diverged is not None:
            return diverged
        if self.budget.max_batches is None:
            pos.cursor = 0  # whole epochs: each starts at the beginning of the split
        seconds = clock.seconds()
        pos.train_seconds += seconds
        train_loss = (loss_sum / max(pos.batches, 1)).item()
        if _diverged(train_loss):
            return self._result("diverged", f"training loss became {train_loss} in epoch {pos.epoch}")
        val_loss = evaluate(self.model, self.valid, tcfg.bptt, tcfg.precision)
        if _diverged(val_loss):
            return self._result("diverged", f"validation loss became {val_loss} after epoch {pos.epoch}")
        if pos.done in self.rungs and pos.batches == self.per_epoch:
            self._rung(val_loss, pos.train_seconds)
        if val_loss < pos.best_loss:
            pos.best_loss, pos.stale = val_loss, 0
            if self.evaluate_test:  # a CPU copy: no second model in GPU memory
                self.best_state = {k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()}
        else:
            pos.stale, pos.stale_epochs = pos.stale + 1, pos.stale_epochs + 1
        report = EpochReport(pos.epoch, pos.done, val_loss, perplexity(val_loss), pos.train_seconds, train_loss,
                             perplexity(pos.best_loss), lr, pos.tokens,
                             pos.tokens / seconds if seconds > 0 else math.nan)
        pos.history.append(report)
        if self.hooks.on_epoch is not None:
            self.hooks.on_epoch(report)
        return None

    def _batches(self, clock: _EpochClock, loss_sum: torch.Tensor) -> TrainResult | None:
        """The epoch's remaining training steps (with its rungs and checkpoints); the result if a rung diverged.
        Stops early, leaving the epoch's end to notice, when the running training loss diverged."""
        pos, tcfg, train, state = self.pos, self.tcfg, self.train, self.pos.hidden
        while pos.batches < self.per_epoch:
            if pos.cursor == len(self.windows):  # the end of the split: continue from its start, with a fresh state
                pos.cursor, state = 0, None
            i = self.windows[pos.cursor]
            pos.cursor += 1
            n = min(tcfg.bptt, train.size(0) - 1 - i)
            inputs, targets = train[i : i + n], train[i + 1 : i + 1 + n]  # (n, B)
            loss, state = self.step(inputs, targets, state)
            loss_sum += loss
            pos.tokens += targets.numel()
            pos.batches += 1
            pos.done += 1
            if pos.batches % 25 == 0:  # one device sync per 25 steps
                running = loss_sum.item() / pos.batches
                if _diverged(running):
                    return None
                if self.hooks.on_progress is not None:
                    self.hooks.on_progress(BatchProgress(pos.epoch, pos.batches, self.per_epoch, running, pos.tokens))
            if pos.done in self.rungs and pos.batches < self.per_epoch:  # at an epoch's end: its evaluation
                with clock.excluded():
                    rung_loss = evaluate(self.model, self.valid, tcfg.bptt, tcfg.precision)
                    self.model.train()
                if _diverged(rung_loss):
                    pos.train_seconds += clock.seconds()
                    return self._result("diverged", f"validation loss became {rung_loss} after {pos.done} batches")
                self._rung(rung_loss, pos.train_seconds + clock.seconds())
            if (self.every is not None and pos.batches < self.per_epoch
                    and time.perf_counter() - self.last_checkpoint >= self.every):
                with clock.excluded():
                    self._checkpoint(loss_sum=loss_sum.item(), epoch_seconds=clock.seconds(), hidden=state)
        return None

    def _rung(self, loss: float, seconds: float) -> None:
        self.pos.rungs.append(RungReport(self.pos.epoch, self.pos.done, loss, perplexity(loss), seconds, self.params))
        if self.hooks.on_rung is not None:
            self.hooks.on_rung(self.pos.rungs[-1])

    def _checkpoint(self, **now: Any) -> None:
        """Hand a checkpoint of where training stands (``now``: the running epoch's fields) to on_checkpoint."""
        self.hooks.on_checkpoint(checkpoint_of(self.child, self.model, self.eager.optimizer,
                                               dataclasses.replace(self.pos, **now), self.best_state, self.dev))
        self.last_checkpoint = time.perf_counter()

    def _result(self, status: str, message: str = "") -> TrainResult:
        test_ppl, tcfg, pos = math.nan, self.tcfg, self.pos
        if self.evaluate_test and self.best_state is not None and status == "completed":
            self.model.load_state_dict(self.best_state)
            test = batchify(self.corpus.test, tcfg.eval_batch_size).to(self.dev)
            test_ppl = perplexity(evaluate(self.model, test, tcfg.bptt, tcfg.precision))
        step, history = self.step, pos.history
        return TrainResult(status, perplexity(pos.best_loss) if history else math.nan, len(history), self.params,
                           pos.train_seconds, message, test_ppl, tuple(history), self.best_state,
                           stopped_early=len(history) < self.budget.epochs and status == "completed",
                           cuda_graphs=step.status if isinstance(step, GraphedTrainStep) else "off", batches=pos.done,
                           rungs=tuple(pos.rungs), kernels=self.kernels, resumed_from=self.resumed_from)


def checkpoint_of(child: Mapping[str, Any], model: nn.Module, optimizer: torch.optim.Optimizer, pos: Position,
                  best_state: Mapping[str, torch.Tensor] | None, dev: torch.device) -> dict[str, Any]:
    """A checkpoint of a training at ``pos``: tensors (on the CPU) and plain values only (see
    :mod:`workers.checkpoint`), with ``child`` (cell, hyperparameters, seed) to check that it is resumed by the
    same child."""
    position = {f.name: getattr(pos, f.name) for f in dataclasses.fields(pos)}
    position["history"] = [dataclasses.asdict(r) for r in pos.history]
    position["rungs"] = [dataclasses.asdict(r) for r in pos.rungs]
    position["hidden"] = None if pos.hidden is None else [t.detach().to("cpu", copy=True) for t in pos.hidden]
    cpu = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
    return {"child": dict(child), "model": cpu, "optimizer": _to_cpu(optimizer.state_dict()),
            "rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state(dev) if dev.type == "cuda" else None,
            "position": position, "best_state": None if best_state is None else dict(best_state)}


def restore_checkpoint(payload: Mapping[str, Any], child: Mapping[str, Any], model: nn.Module,
                       optimizer: torch.optim.Optimizer, dev: torch.device
                       ) -> tuple[Position, dict[str, torch.Tensor] | None]:
    """Load a :func:`checkpoint_of` into ``model``, ``optimizer`` and the random state; its Position and best
    weights. ValueError when it is of another child."""
    if dict(payload.get("child") or {}) != dict(child):
        raise ValueError(f"the checkpoint is of another child ({payload.get('child')!r}), not of {dict(child)!r}")
    model.load_state_dict(payload["model"])
    optimizer.load_state_dict(payload["optimizer"])
    torch.set_rng_state(payload["rng"])
    if dev.type == "cuda" and payload.get("cuda_rng") is not None:
        torch.cuda.set_rng_state(payload["cuda_rng"], dev)
    position = dict(payload["position"])
    position["history"] = [EpochReport(**r) for r in position["history"]]
    position["rungs"] = [RungReport(**r) for r in position["rungs"]]
    hidden = position["hidden"]
    position["hidden"] = None if hidden is None else (hidden[0].to(dev), hidden[1].to(dev))
    return Position(**position), payload.get("best_state")


def _to_cpu(value: Any) -> Any:
    """An optimiser's state dict with every tensor copied to the CPU."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        return {k: _to_cpu(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_to_cpu(v) for v in value]
    return value
