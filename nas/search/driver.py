"""Running a search on Ray Tune: local or on a cluster, fresh or resumed, with progress on the console.

``run_search`` validates everything first (config, data, the experiment folder, the cluster's resources), then
hands a searcher and the child trainable to a ``tune.Tuner``. When Tune returns (all children done, or Ctrl-C)
it writes the tables and plot, exports the best cell and returns a :class:`SearchOutcome`.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

# Keep Ray's console quiet; must be set before ray is imported. (Authentication stays on: nas.search.ray_session.)
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")

import ray  # noqa: E402
from ray import tune  # noqa: E402

from nas.config import CONFIG_FILE, SearchConfig, load_run_config  # noqa: E402
from nas.runs.export import write_export  # noqa: E402
from nas.runs.records import ChildRecord, atomic_write, latest_per_trial, read_children  # noqa: E402
from nas.runs.results import Run, leaderboard  # noqa: E402
from nas.search import ray_session  # noqa: E402
from nas.search.restored_checkpoints import NewestCheckpoint  # noqa: E402
from nas.search.searcher import ControllerSearcher, EvolutionSearcher, NasSearcher, RandomSearcher  # noqa: E402
from search_spaces import ChildSpec  # noqa: E402
from workers.data import Corpus, load_corpus  # noqa: E402
from workers.download import DATASETS, verify  # noqa: E402
from workers.outcome import METRIC, ChildOutcome  # noqa: E402
from workers.train import batches_per_epoch, child_parameters  # noqa: E402
from workers.trainable import train_trial  # noqa: E402


class SearchError(ValueError):
    """A search cannot start; the message names the problem and the fix."""


@dataclass(frozen=True)
class SearchOutcome:
    run_dir: Path
    finished: int
    """Children with a final record (completed, diverged, failed or stopped)."""
    interrupted: bool
    best_export: Path | None
    leaderboard: str
    seconds: float = 0.0
    """Wall time of the Tune run (tuner.fit), without Ray start-up and the final tables."""


class SearchProgress(tune.Callback):
    """One console line per finished child: done / running / best so far (counting children recorded before a
    resume: Tune restores this callback as it was pickled at the start, so :meth:`setup` re-reads the records).

    Children the searcher records without a trial (reused, over budget) reach it through :meth:`child_recorded`,
    which the searcher calls as it writes each record (``searcher.listeners``); they are printed when the next
    trial starts and at the end."""

    def __init__(self, total: int, out: Callable[[str], None], run_dir: Path | None = None,
                 keep_checkpoints: bool = False) -> None:
        self.total, self.out, self.run_dir, self.keep_checkpoints = total, out, run_dir, keep_checkpoints
        self.best: tuple[float, int] | None = None
        self.done = 0
        self.untrained: list[ChildRecord] = []  # recorded without a trial, not yet printed

    def setup(self, **info) -> None:
        rows = latest_per_trial(read_children(self.run_dir)) if self.run_dir else []  # [] when none yet
        self.done = len(rows)  # one per trial: a child recorded just before a crash may be re-run and re-reported
        done = [(r.outcome.val_ppl, r.index) for r in rows
                if r.outcome.status == "completed" and r.outcome.val_ppl and not math.isnan(r.outcome.val_ppl)]
        self.best = min(done) if done else None

    def child_recorded(self, record: ChildRecord) -> None:
        """The searcher wrote ``record``: keep it for a line if it ran no trial (reused, or over the budget)."""
        if record.reused_from is not None or record.outcome.status == "over_budget":
            self.untrained.append(record)

    def _line(self, trials, trial, status: str, ppl: float | None, index) -> None:
        self.done += 1
        running = sum(1 for t in trials if t.status == "RUNNING" and t is not trial)
        if status == "completed" and ppl is not None and (self.best is None or ppl < self.best[0]):
            self.best = (ppl, index)
        if status.startswith("=") and ppl is not None:  # reused: "val_ppl x.xx = child k"
            got = f"val_ppl {ppl:8.2f} {status}"
        else:
            got = f"val_ppl {ppl:8.2f}" if status == "completed" and ppl is not None else f"{status:>16}"
        best = f"best {self.best[0]:.2f} (child {self.best[1]})" if self.best else "best -"
        self.out(f"[{self.done:>3}/{self.total}] child {index:>3} {got}   running {running}   {best}")

    def _drop_checkpoints(self, trial) -> None:
        """Delete a finished child's checkpoints (unless ``[budget] keep_checkpoints``): nothing resumes it."""
        if not self.keep_checkpoints and trial.path:
            for folder in Path(trial.path).glob("checkpoint_*"):
                shutil.rmtree(folder, ignore_errors=True)

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        self._drop_checkpoints(trial)
        outcome = ChildOutcome.from_result(trial.last_result)
        label = f"stopped@{outcome.fidelity}" if outcome.status == "stopped" and outcome.fidelity else outcome.status
        self._line(trials, trial, label, outcome.val_ppl, trial.config.get("index", "?"))

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        self.reused(trials)

    def on_experiment_end(self, trials, **info) -> None:
        self.reused(trials)

    def reused(self, trials) -> None:
        """A line for each child the searcher recorded without a trial: reusing an earlier child's outcome, or over
        the parameter budget."""
        untrained, self.untrained = self.untrained, []
        for r in untrained:
            if r.reused_from is not None:
                got = ChildOutcome.from_result(r.to_dict())
                status = f"= child {r.reused_from}"
                self._line(trials, None, status, got.val_ppl if got.status == "completed" else None, r.index)
            else:
                self._line(trials, None, "over_budget", None, r.index)

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self._drop_checkpoints(trial)
        self._line(trials, trial, "failed", None, trial.config.get("index", "?"))


def shown(path: Path) -> Path:
    """``path`` relative to the working directory when it lies inside it (shorter console lines), else as is."""
    try:
        return path.relative_to(Path.cwd())
    except ValueError:
        return path


def trial_dirname(trial) -> str:
    """Short trial folder names (Tune's default flattens the whole spec into the name)."""
    return f"child_{trial.config.get('index', 0):04d}_{trial.trial_id}"


def _started_budget(cfg: SearchConfig, resume: bool) -> int:
    """The children the experiment was started with: on resume, its config.json's (raises when there is nothing to
    resume); else ``cfg.trials``, once it is sure that the name is free."""
    if resume:
        return load_run_config(cfg.results_dir, cfg.name).trials
    if cfg.run_dir.exists():
        raise SearchError(f"an experiment named {cfg.name!r} already exists in {cfg.run_dir.parent}; "
                          f"continue it with `nas search --resume {cfg.name}` or choose another --name")
    return cfg.trials


def _cluster_endpoint(address: str) -> tuple[str, int] | None:
    """(host, port) that ``address`` points at; for "auto", the running local cluster's, or None."""
    if address == "auto":
        address = os.environ.get("RAY_ADDRESS", "")
        if not address:
            current = Path(os.environ.get("RAY_TMPDIR", "/tmp")) / "ray" / "ray_current_cluster"
            address = current.read_text().strip() if current.is_file() else ""
        if not address:
            return None
    address = address.removeprefix("ray://")
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise SearchError(f"--address {address!r} is not host:port, ray://host:port or auto; "
                          "use the address `ray start --head` printed")
    return host, int(port)


def _check_reachable(address: str) -> None:
    """Fail fast on an unreachable cluster: ray.init would otherwise retry for minutes."""
    endpoint = _cluster_endpoint(address)
    if endpoint is None:
        raise SearchError("--address auto: no running Ray cluster found on this machine; start one with "
                          "`ray start --head`, or leave --address out to run locally")
    try:
        socket.create_connection(endpoint, timeout=5).close()
    except OSError as e:
        raise SearchError(f"cannot reach the Ray cluster at {address} ({e.strerror or e}); check the address and "
                          "that the head node is up (`ray status`), or leave --address out to run locally") from None


def _init_ray(cfg: SearchConfig) -> str | None:
    """Join the cluster at ``cfg.address`` (or ``RAY_ADDRESS``, as Ray does), or start a Ray on this machine only
    (loopback, token authentication: :mod:`nas.search.ray_session`); nothing when Ray is already up in this
    process. Returns the address joined, None for a local Ray."""
    from_env = os.environ.get("RAY_ADDRESS", "")
    address = cfg.address or ("" if from_env == "local" else from_env)
    if ray.is_initialized():
        return address or None
    if not address:
        ray_session.start_local(configure_logging=True)
        return None
    _check_reachable(address)
    try:
        ray_session.join(address, configure_logging=True)
    except (ray.exceptions.AuthenticationError, ConnectionError, RuntimeError, ValueError) as e:
        # its port answered (_check_reachable), so it is often the token: Ray retries ~20 s, then ConnectionError
        raise SearchError(f"cannot connect to the Ray cluster at {address!r} ({str(e).splitlines()[0]}); its "
                          "port answers, so check that this machine has the cluster's token (RAY_AUTH_TOKEN or "
                          "~/.ray/auth_token, docs/cluster.md) and the address, or leave --address out to run "
                          "locally") from None
    return address


AUTO_GPUS_PER_TRIAL = 1 / 16
"""GPUs per child when the cluster has GPUs and gpus_per_trial is "auto": up to 16 children share a GPU (fewer
where CPUs run out first: concurrency "auto" also gives each child cpus_per_trial CPUs). Measured on an H200 with
16 CPUs (bench/bench_gpu_packing.py, bench/RESULTS.md 2026-11-27): default-search children per GPU-hour rise
with every doubling, 1.60x at 2, 2.28x at 4, 2.75x at 8, 3.17x at 16 children per GPU; PTB-sized children
(2 x 650) 1.45x at 8 and still rising. A child alternates CPU work (Triton's compilation of a new cell,
Python, evaluation) with short GPU bursts, so more children keep the GPU busier."""


@dataclass(frozen=True)
class Plan:
    """Resources of one search after "auto" settings are resolved against the cluster."""

    concurrency: int
    cpus_per_trial: float
    gpus_per_trial: float


def plan_resources(cfg: SearchConfig, resources: dict[str, float]) -> Plan:
    """Resolve "auto" concurrency / gpus_per_trial for a cluster with ``resources`` (ray.cluster_resources()).

    Auto concurrency fills the cluster: one child per ``cpus_per_trial`` CPUs (and per ``gpus_per_trial`` GPUs
    when children use GPUs), at least 1. On CPU, several one-thread children beat one child using every core:
    small recurrent models do not scale across threads (``bench/bench_search.py``, packing table).
    Raises SearchError when one child does not fit at all.
    """
    cpus, gpus = resources.get("CPU", 0.0), resources.get("GPU", 0.0)
    gpt = cfg.gpus_per_trial if cfg.gpus_per_trial is not None else (AUTO_GPUS_PER_TRIAL if gpus > 0 else 0.0)
    if cfg.cpus_per_trial > cpus:
        raise SearchError(f"cpus_per_trial={cfg.cpus_per_trial} but the Ray cluster has {cpus:g} CPUs; "
                          "lower --cpus-per-trial")
    if gpt > gpus:
        raise SearchError(f"gpus_per_trial={gpt} but the Ray cluster has {gpus:g} GPUs; "
                          "use --gpus-per-trial 0 or add GPU nodes")
    concurrency = cfg.concurrency
    if concurrency is None:
        fits = [cpus / cfg.cpus_per_trial] + ([gpus / gpt] if gpt > 0 else [])
        concurrency = max(1, int(min(fits) + 1e-9))
    return Plan(concurrency, cfg.cpus_per_trial, gpt)


def _make_searcher(cfg: SearchConfig, rungs: tuple[int, ...], vocab_size: int) -> NasSearcher:
    def count_params(spec: ChildSpec) -> int:
        return child_parameters(spec.cell, vocab_size, spec.hparams.as_dict(), cfg.model, cfg.train)

    space = cfg.space.search_space()
    common = dict(seed=cfg.seed, max_children=cfg.trials, rungs=rungs, max_params=cfg.max_params,
                  count_params=count_params, initial=cfg.initial)
    if cfg.algo == "random":
        return RandomSearcher(space, cfg.run_dir, cfg.controller, **common)
    if cfg.algo == "evolution":
        return EvolutionSearcher(space, cfg.run_dir, cfg.controller, evolution=cfg.evolution, **common)
    return ControllerSearcher(space, cfg.run_dir, cfg.controller, **common)


def max_fidelity(cfg: SearchConfig, corpus: Corpus) -> int:
    """Training batches of a child's whole budget (the default batch size and BPTT; a searched batch size or BPTT
    changes a child's own count): epochs x batches per epoch, as ``train_child`` counts them."""
    rows = corpus.train.numel() // cfg.train.batch_size
    return cfg.budget.epochs * batches_per_epoch(cfg.budget, rows, cfg.train.bptt)


def _scheduler(cfg: SearchConfig, top: int):
    """Ray Tune's ASHA for ``[scheduler] kind = "asha"`` (None when off); ``top`` is the max fidelity."""
    if cfg.scheduler.kind == "none":
        return None
    from ray.tune.schedulers import ASHAScheduler

    return ASHAScheduler(time_attr="fidelity", max_t=top + 1, grace_period=cfg.scheduler.grace_period,
                         reduction_factor=cfg.scheduler.reduction_factor, brackets=1)


def _trainable(cfg: SearchConfig, corpus: Corpus, plan: Plan, rungs: tuple[int, ...]):
    settings = cfg.child_settings()
    settings = replace(settings, budget=replace(settings.budget, report_at=rungs))
    with_data = tune.with_parameters(train_trial, corpus=corpus, settings=settings)
    return tune.with_resources(with_data, {"cpu": plan.cpus_per_trial, "gpu": plan.gpus_per_trial})


def prepare(cfg: SearchConfig, resume: bool = False) -> tuple[Corpus, int]:
    """Every check that needs no Ray: the experiment folder and the data. Returns the corpus and the children the
    experiment was started with. Raises SearchError/ValueError."""
    started_budget = _started_budget(cfg, resume)
    if cfg.trials < started_budget:
        raise SearchError(f"--trials {cfg.trials} is below the {started_budget} children {cfg.name!r} was started "
                          f"with; give more to extend it, or leave --trials out to finish it")
    if cfg.data.dataset in DATASETS:
        verify(cfg.data.dataset, cfg.data.source)  # a known corpus must be byte-exact (SHA-256)
    return load_corpus(cfg.data.source, cfg.data.level), started_budget


def _trained(cells) -> str:
    """How the children were spent, e.g. "20 trained, 10 stopped early, 2 reused an earlier child's outcome"."""
    reused = cells["reused_from"].notna()
    stopped = (cells["status"] == "stopped").fillna(False) & ~reused
    whole = len(cells) - int(reused.sum()) - int(stopped.sum())
    parts = [f"{whole} trained"] + ([f"{int(stopped.sum())} stopped early"] if stopped.any() else [])
    return ", ".join(parts + ([f"{int(reused.sum())} reused an earlier child's outcome"] if reused.any() else []))


def _recorded(run_dir: Path) -> int:
    """Children with a final record (one per trial)."""
    return len(latest_per_trial(read_children(run_dir)))


def _write_config(cfg: SearchConfig, plan: Plan) -> None:
    # config.json records what runs: "auto" resolved, which is also what a resumed Tuner keeps
    ran = replace(cfg, concurrency=plan.concurrency, gpus_per_trial=plan.gpus_per_trial)
    text = json.dumps(ran.to_dict(), indent=2, default=str) + "\n"
    atomic_write(cfg.run_dir / CONFIG_FILE, lambda p: p.write_text(text))


def run_search(cfg: SearchConfig, resume: bool = False, out: Callable[[str], None] = print) -> SearchOutcome:
    """Run (or resume) a search to its trial budget, then write tables, plot and the best cell's export.

    Resuming continues the Tune run in the folder where it stopped; with ``cfg.trials`` above the budget the search
    was started with, a finished (or resumed-to-finish) search then goes on to the new budget: a new Tune run in the
    same folder whose searcher continues from the saved state (controller, population, RNG, trained specs).
    """
    corpus, started_budget = prepare(cfg, resume)
    top = max_fidelity(cfg, corpus)
    rungs = _rungs(cfg, top)
    joined = _init_ray(cfg)
    plan = plan_resources(cfg, ray.cluster_resources())
    cfg.run_dir.mkdir(parents=True, exist_ok=True)
    if not resume:
        _write_config(cfg, plan)
    out(_start_line(cfg, resume, plan, rungs, top, corpus))
    out(ray_session.describe(local=joined is None))
    elapsed, budget_on_disk = _fit(cfg, resume, started_budget, corpus, plan, rungs, top, out)
    return _finish(cfg, corpus.level, elapsed, budget_on_disk, out)


def _rungs(cfg: SearchConfig, top: int) -> tuple[int, ...]:
    """The early-stopping rungs (training batches) of a child's budget of ``top`` batches; none without ASHA."""
    rungs = cfg.scheduler.rungs(top)
    if cfg.scheduler.kind == "asha" and not rungs:
        raise SearchError(f"scheduler.grace_period: {cfg.scheduler.grace_period} training batches leave no rung "
                          f"before the end of a child's budget ({top} batches); lower the grace period below {top}, "
                          "raise [budget], or set [scheduler] kind = \"none\"")
    return rungs


def _start_line(cfg: SearchConfig, resume: bool, plan: Plan, rungs: tuple[int, ...], top: int, corpus: Corpus) -> str:
    each = f"{plan.cpus_per_trial:g} CPU" + (f", {plan.gpus_per_trial:g} GPU" if plan.gpus_per_trial else "")
    stopping = (f", early stopping at {'/'.join(map(str, rungs))} of {top} batches" if rungs else "")
    return (f"{'resuming' if resume else 'search'} {cfg.name}: {cfg.trials} children, {plan.concurrency} at a time "
            f"({each} each), algo {cfg.algo}{stopping}, data {cfg.data.source} ({corpus.level}, vocab "
            f"{corpus.vocab_size}), results in {shown(cfg.run_dir)}")


def _fit(cfg: SearchConfig, resume: bool, started_budget: int, corpus: Corpus, plan: Plan, rungs: tuple[int, ...],
         top: int, out: Callable[[str], None]) -> tuple[float, int]:
    """The Tune runs of the search: the unfinished one in the folder (on resume), then a new one for the children
    still to train (a fresh search, or an extension). Returns their wall time in seconds and the budget config.json
    holds now (an extension writes its new one when it starts)."""
    run_dir = cfg.run_dir
    progress = SearchProgress(cfg.trials, out, run_dir, cfg.budget.keep_checkpoints)
    run_config = tune.RunConfig(
        name=cfg.name, storage_path=str(run_dir.parent), verbose=0,
        callbacks=[progress, NewestCheckpoint(out)],  # the second acts only when this run is restored
        failure_config=tune.FailureConfig(max_failures=cfg.max_failures),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=1),  # a child resumes from its latest only
    )
    trainable = _trainable(cfg, corpus, plan, rungs)
    start = time.time()
    recorded, tune_run_done, budget_on_disk = _recorded(run_dir), not resume, started_budget
    if resume and recorded < started_budget:  # the Tune run in the folder stopped before its budget: continue it
        # errored trials are not re-run: each is recorded (failed) already, and a re-run would only be a duplicate
        grid = tune.Tuner.restore(str(run_dir), trainable=trainable, resume_unfinished=True,
                                  resume_errored=False).fit()
        recorded = _recorded(run_dir)
        # every trial of the restored run ended: it is done, even if it was an extension that had not yet reached its
        # first checkpoint when the driver died (its budget is in config.json, its Tune run is the one before)
        tune_run_done = grid.num_terminated + grid.num_errors == len(grid)
    elif resume:
        tune_run_done = True
    if recorded < cfg.trials and tune_run_done:  # a fresh search, or an extension
        searcher = _make_searcher(cfg, rungs, corpus.vocab_size)
        searcher.listeners.append(progress.child_recorded)
        if resume:
            searcher.restore_from_dir(str(run_dir))
            _write_config(cfg, plan)  # the new budget, for later resumes
            budget_on_disk = cfg.trials
        tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(search_alg=searcher, num_samples=cfg.trials - recorded,
                                        max_concurrent_trials=plan.concurrency, reuse_actors=True,
                                        scheduler=_scheduler(cfg, top), metric=METRIC, mode="min",
                                        trial_dirname_creator=trial_dirname, trial_name_creator=trial_dirname),
            run_config=run_config,
        ).fit()
    return time.time() - start, budget_on_disk


def _finish(cfg: SearchConfig, level: str, elapsed: float, budget_on_disk: int,
            out: Callable[[str], None]) -> SearchOutcome:
    """Tables, plot and the best cell's export, once Tune returns; the leaderboard and what to do next."""
    run_dir = cfg.run_dir
    run = Run(run_dir)  # opened once the Tune run is over: its records are read once, here
    run.write_tables()
    cells = run.cells
    finished = len(cells)
    interrupted = finished < cfg.trials
    best_export = None
    if (cells["status"] == "completed").any():
        best_export, _ = write_export(run.spec_at_rank(1), run_dir / "best_cell.py")
    board = leaderboard(cells, top=5, level=level)
    out(f"\n{board}\n")
    out(f"{finished} children in {elapsed:.0f} s ({_trained(cells)}); tables and plot in {shown(run_dir)}")
    if best_export:
        out(f"best cell exported to {shown(best_export)}; retrain it to convergence (test perplexity) with "
            f"`nas train {shown(run_dir)}`")
    if interrupted:
        more = f" --trials {cfg.trials}" if cfg.trials > budget_on_disk else ""
        out(f"stopped before the budget ({finished}/{cfg.trials} children); continue with "
            f"`nas search --resume {cfg.name}{more}"
            + (f" --results-dir {cfg.results_dir}`" if cfg.results_dir != "results" else "`"))
    return SearchOutcome(run_dir, finished, interrupted, best_export, board, elapsed)
