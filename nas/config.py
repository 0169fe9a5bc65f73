"""The configuration of a search: one frozen dataclass per component, read from TOML and/or CLI flags.

A TOML file mirrors :class:`SearchConfig`: top-level keys for the run, then one table per component::

    name = "ptb-base8"
    trials = 200
    concurrency = 8
    gpus_per_trial = 0.25

    [data]
    dataset = "ptb"
    data_dir = "/data/ptb"

    [space]
    base = 8
    [space.layers]          # the layer hyperparameters the controller decides
    num_layers = [1, 2]
    hidden_size = [200, 400]

    [model]   # fixed child sizes (workers.child_settings.ModelConfig)
    [train]   # child optimisation (workers.child_settings.TrainConfig)
    [budget]  # per-child budget (workers.child_settings.Budget)
    [controller]  # nas.search.controller_config.ControllerConfig
    [scheduler]   # early stopping of children (SchedulerConfig: ASHA)
    [evolution]   # algo = "evolution" (nas.search.evolution.EvolutionConfig)
    [retrain]     # `nas train`: epochs and patience of a retraining (RetrainSettings)

Unknown keys, wrong types and out-of-range values are errors that name the key and the fix.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import itertools
import json
import math
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nas.runs.records import CONFIG_FILE  # noqa: F401 - also imported from here
from nas.search.controller_config import ControllerConfig
from nas.search.evolution import EvolutionConfig
from search_spaces.cell import CellSpace
from search_spaces.hparams import HParams, LayerSpace
from search_spaces.known import load_spec
from search_spaces.space import ChildSpec, SearchSpace
from workers.child_settings import Budget, ChildSettings, ModelConfig, TrainConfig, split_hparams
from workers.corpora import DataConfig
from workers.setting import check, fields, optional, setting

ALGOS = ("reinforce", "random", "evolution")
SCHEDULERS = ("none", "asha")


@dataclass(frozen=True)
class SpaceConfig:
    """The search space: cell base and the layer hyperparameters the controller decides."""

    base: int = 8
    """Leaves of the cell tree (Zoph & Le 2017 searched base 8)."""
    layers: Mapping[str, tuple] = field(
        default_factory=lambda: {"num_layers": (1, 2), "hidden_size": (64, 128), "dropout": (0.0, 0.1)}
    )
    """Name -> allowed values; names are fields of [model] or [train]."""

    def __post_init__(self) -> None:
        CellSpace(self.base)  # validates base
        layer_space = LayerSpace.of(self.layers)  # validates the choices
        # every name must be something a child understands, and every choice must be a valid value
        for name, values in layer_space.choices:
            for v in values:
                try:
                    split_hparams({name: v}, ModelConfig(), TrainConfig())
                except ValueError as e:
                    raise ValueError(f"space.layers.{name}: {e}") from None

    def search_space(self) -> SearchSpace:
        return SearchSpace(CellSpace(self.base), LayerSpace.of(self.layers))


@dataclass(frozen=True)
class SchedulerConfig:
    """Early stopping of children (multi-fidelity) through Ray Tune's ASHA (Li et al. 2020, "A System for
    Massively Parallel Hyperparameter Tuning"). Fidelity counts training batches; the max fidelity is the child
    budget's total ([budget] epochs x max_batches, or whole epochs). Each child also measures its validation
    perplexity at every rung (grace_period x reduction_factor^k batches below the max), inside an epoch if need be,
    and ASHA stops it there unless it is in the best 1/reduction_factor of the children that reached that rung."""

    kind: str = setting("none", choices=SCHEDULERS)
    """"asha" or "none". Off by default, by measurement (bench/RESULTS.md, 2026-11-27: the default controller with
    ASHA, grace 20 of 60 batches, found 14.33 ± 0.52 against 13.63 ± 0.65 without, 100 children x 3 seeds; random
    search 15.08 ± 1.13 with, 14.34 ± 0.32 without): at these short budgets a cell's rank after a third of its
    training says too little about its rank at the end. Worth trying with long children."""
    grace_period: int = setting(50, low=1)
    """Training batches before the first rung (ASHA's minimum resource)."""
    reduction_factor: int = setting(3, low=2)
    """Keep the best 1/reduction_factor at each rung; rungs are this factor apart (Li et al.: 3 or 4)."""

    def __post_init__(self) -> None:
        check(self, "scheduler")

    def rungs(self, max_fidelity: int) -> tuple[int, ...]:
        """The rung milestones below ``max_fidelity`` (empty when off), as Ray's ASHA computes them for
        ``max_t = max_fidelity + 1`` (one past the last report, so that ASHA never stops a child at its end)."""
        if self.kind == "none":
            return ()
        count = int(math.log((max_fidelity + 1) / self.grace_period) / math.log(self.reduction_factor) + 1)
        return tuple(m for k in range(max(count, 0)) if (m := self.grace_period * self.reduction_factor ** k)
                     < max_fidelity)


@dataclass(frozen=True)
class RetrainSettings:
    """How ``nas train`` retrains a cell to convergence (its --epochs and --patience flags override these)."""

    epochs: int = setting(40, low=1, flag=True)
    """Most epochs per seed (pytorch/examples word_language_model trains 40; Zaremba et al. 2014's small LSTM 13)."""
    patience: int = setting(3, low=0, note="0: never stop early", flag=True)
    """Stop after this many epochs in a row without a better validation loss (0: never). With the "plateau"
    schedule, 3 such epochs mean the learning rate fell 64-fold (at lr_decay 4) without any gain: converged."""

    def __post_init__(self) -> None:
        check(self, "retrain")


def default_name() -> str:
    return "search-" + _dt.datetime.now().strftime("%Y%m%d-%H%M%S")


@dataclass(frozen=True)
class SearchConfig:
    """Everything a search needs. Defaults are the built-in default run: bundled corpus, local Ray, CPU."""

    name: str = setting(factory=default_name, flag=True)
    """Experiment name; results go to <results_dir>/<name>/ (default: search-<date>-<time>)."""
    trials: int = setting(16, low=1, flag=True)
    """Children in total; with ``--resume``, a larger number extends the search. A proposal whose spec an earlier
    child already trained reuses that outcome and counts as a child without training (so a search that converges
    ends sooner instead of training copies)."""
    concurrency: int | None = setting(None, low=1, none="auto", flag=True)
    """Children training at once; "auto" (None): as many as the machine's or cluster's CPUs (and GPUs) hold at
    cpus_per_trial / gpus_per_trial each. Tune's max_concurrent_trials (see nas.search.driver.plan_resources)."""
    cpus_per_trial: float = setting(1.0, above=0, flag=True)
    """CPUs reserved per child; torch uses that many threads."""
    gpus_per_trial: float | None = setting(None, low=0, none="auto", flag=True)
    """GPUs per child; a fraction packs several children on one GPU (0.25: four per GPU), and "auto" (None) is
    1/16 when the cluster has GPUs, else 0. The 1/16 is AUTO_GPUS_PER_TRIAL, measured."""
    algo: str = setting("reinforce", choices=ALGOS, flag=True)
    """"reinforce" (the controller), "random" (the baseline every NAS claim is measured against) or "evolution"
    (regularized evolution, settings in [evolution]). Regularized evolution (Real et al. 2019) is the strongest
    small-budget baseline."""
    seed: int = setting(0, flag=True)
    """Seeds the controller's sampling and every child's training."""
    results_dir: str = setting("results", flag=True)
    """Folder holding one sub-folder per experiment."""
    address: str | None = setting(None, flag=True)
    """Ray cluster to join ("auto", "ray://host:10001", ...); none (None) starts a local Ray."""
    max_failures: int = setting(2, low=0)
    """Retries of a child whose worker died (Ray FailureConfig); errors inside training are not retried."""
    max_params: int | None = setting(None, low=1)
    """Parameter budget of a child model (None: none). A proposal above it is recorded as ``over_budget`` without
    training, with reward 0, so that the controller, which also picks hidden_size, compares cells at a bounded size
    (Zoph & Le compare cells at matched size)."""
    initial: tuple[ChildSpec | str, ...] = setting((), flag=True)
    """Children trained first, before the searcher proposes any: known cell names or spec JSON files (a warm
    start; on the command line comma-separated, e.g. lstm,nascell,my.json). As Optuna's ``enqueue_trial``; in TOML
    ``initial = ["lstm", "my_cell.json"]``. They are read into specs when the settings are read (every entry is a
    :class:`ChildSpec` afterwards; ``config.json`` keeps the specs: a resumed search needs no file and does not
    train them again). They count as children and the searcher learns from them (the controller as from its own
    samples, evolution as members). A spec's layer choices apply; a choice it lacks is the fixed
    ``[model]``/``[train]`` value when that is one of the choices, else the first choice."""
    data: DataConfig = field(default_factory=DataConfig)
    space: SpaceConfig = field(default_factory=SpaceConfig)
    model: ModelConfig = field(default_factory=lambda: ModelConfig(num_layers=2, hidden_size=128, dropout=0.1))
    train: TrainConfig = field(default_factory=lambda: TrainConfig(lr=5.0, batch_size=32, eval_batch_size=32))
    budget: Budget = field(default_factory=lambda: Budget(epochs=1, max_batches=200, max_eval_tokens=20000))
    controller: ControllerConfig = field(default_factory=ControllerConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    evolution: EvolutionConfig = field(default_factory=EvolutionConfig)
    retrain: RetrainSettings = field(default_factory=RetrainSettings)

    def __post_init__(self) -> None:
        name = self.name
        if not isinstance(name, str) or not name or any(c in name for c in "/\\") or name in (".", ".."):
            raise ValueError(f"name: {self.name!r} is not allowed; use a plain folder name like my-search")
        check(self, "")
        gpus = self.gpus_per_trial
        if gpus is not None and not (gpus <= 1 or float(gpus).is_integer()):
            raise ValueError(
                f"gpus_per_trial: {self.gpus_per_trial} is not allowed; use 0, a fraction up to 1, or a whole number"
            )
        object.__setattr__(self, "initial", self._initial_in_space())
        if len(self.initial) > self.trials:
            raise ValueError(f"initial: {len(self.initial)} children, more than trials ({self.trials}); give at most "
                             f"{self.trials} or raise trials")
        self._check_searched_children()

    def _initial_in_space(self) -> tuple[ChildSpec, ...]:
        """The initial children as points of this search's space, their missing layer choices filled in."""
        layers = self.space.search_space().layers
        fixed = {**dataclasses.asdict(self.train), **dataclasses.asdict(self.model)}
        out: list[ChildSpec] = []
        for i, item in enumerate(self.initial):
            try:
                spec = _as_spec(item)
            except (ValueError, TypeError) as e:
                raise ValueError(f"initial[{i}]: {e}") from None
            if spec.cell.base != self.space.base:
                raise ValueError(f"initial[{i}]: a base-{spec.cell.base} cell, but this search's space is base "
                                 f"{self.space.base}; give a base-{self.space.base} cell or change [space] base")
            given = spec.hparams.as_dict()
            extra = sorted(set(given) - set(layers.names))
            if extra:
                raise ValueError(f"initial[{i}]: hyperparameter {extra[0]} is not searched here (the searched ones: "
                                 f"{', '.join(layers.names) or 'none'}); drop it from the spec or add it to "
                                 "[space.layers]")
            values = {}
            for name, choices in layers.choices:
                value = given.get(name, fixed.get(name) if fixed.get(name) in choices else choices[0])
                if value not in choices:
                    raise ValueError(f"initial[{i}]: {name}={value!r} is not one of the searched choices "
                                     f"{list(choices)}")
                values[name] = value
            filled = ChildSpec(spec.cell, HParams.of(values))
            if filled in out:
                raise ValueError(f"initial[{i}]: the same child as initial[{out.index(filled)}]; give each once")
            out.append(filled)
        return tuple(out)

    def _check_searched_children(self) -> None:
        """Every child the space can propose must be valid with this [model] and [train]: each choice, and every
        combination of the choices that ModelConfig checks together (tie_weights, embedding_size, hidden_size)."""
        choices = self.space.search_space().layers.choices
        joint = [(name, values) for name, values in choices if name in _CHECKED_TOGETHER]
        singles = [[(name, v)] for name, values in choices if name not in _CHECKED_TOGETHER for v in values]
        combos = itertools.product(*([(name, v) for v in values] for name, values in joint))
        for combo in itertools.chain(singles, combos):
            try:
                split_hparams(dict(combo), self.model, self.train)
            except ValueError as e:
                picked = ", ".join(f"{k}={v!r}" for k, v in combo)
                raise ValueError(f"space.layers: a child with {picked} is invalid with the [model] and [train] "
                                 f"settings ({e}); change those choices or the fixed settings") from None

    @property
    def run_dir(self) -> Path:
        return Path(self.results_dir).resolve() / self.name

    def child_settings(self) -> ChildSettings:
        return ChildSettings(self.model, self.train, self.budget)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["space"]["layers"] = {k: list(v) for k, v in self.space.layers.items()}
        d["initial"] = [spec.to_dict() for spec in self.initial]
        for section, cls in _SECTIONS.items():  # derived fields are set by the search, not settings
            for f in dataclasses.fields(cls):
                if f.metadata.get("derived"):
                    d[section].pop(f.name, None)
        return d


# ---- reading TOML tables into dataclasses ---------------------------------------------------------------------

_SECTIONS = {"data": DataConfig, "space": SpaceConfig, "model": ModelConfig, "train": TrainConfig,
             "budget": Budget, "controller": ControllerConfig, "scheduler": SchedulerConfig,
             "evolution": EvolutionConfig, "retrain": RetrainSettings}


_CHECKED_TOGETHER = ("tie_weights", "embedding_size", "hidden_size")
"""ModelConfig fields validated against each other: searched choices of these are checked in every combination."""

def _spelled(cls: type, key: str, value: Any) -> Any:
    """A TOML value as the field ``key`` of ``cls`` takes it: TOML has no null, so the string "none" (or, where None
    means "pick for the machine", "auto") is None; the class's own check judges everything else."""
    if optional(cls, key) and value in ("none", fields(cls)[key].metadata.get("none", "none")):
        return None
    return value


def _build(cls: type, table: Any, section: str, base: Any = None) -> Any:
    """``cls`` from ``table``; a setting the table leaves out keeps its value in ``base`` (a section's default in
    SearchConfig, e.g. the search's lr of 5.0 when a ``[train]`` table sets only ``precision``), else the class's
    default."""
    prefix = f"{section}." if section else ""
    if not isinstance(table, dict):
        raise ValueError(f"[{section}]: expected a table of settings, got {table!r}")
    names = [f.name for f in dataclasses.fields(cls) if f.init and not f.metadata.get("derived")]
    unknown = sorted(set(table) - set(names))
    if unknown:
        where = f"[{section}]" if section else "the top level"
        raise ValueError(f"{prefix}{unknown[0]}: unknown setting; allowed in {where}: "
                         f"{', '.join(names)}")
    kwargs = {}
    for key, value in table.items():
        if cls is SearchConfig and key == "initial":
            kwargs[key] = _initial_list(value)
        elif cls is SpaceConfig and key == "layers":
            if not isinstance(value, dict):
                raise ValueError(f"space.layers: expected a table of name = [choices], got {value!r}")
            kwargs[key] = value
        elif cls is SearchConfig and key in _SECTIONS:
            kwargs[key] = _build(_SECTIONS[key], value, key, base=getattr(SearchConfig(), key))
        else:
            kwargs[key] = _spelled(cls, key, value)
    return cls(**kwargs) if base is None else dataclasses.replace(base, **kwargs)


def _initial_list(value: Any) -> tuple[Any, ...]:
    """``initial`` as read: a TOML list, or the comma-separated text of ``--initial a,b,c``."""
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"initial: {value!r} is not a list; give known cell names or spec JSON files, e.g. "
                         '["lstm", "my_cell.json"]')
    return tuple(value)


def _as_spec(item: Any) -> ChildSpec:
    """An initial child: a spec, a known cell name or spec JSON file, or (in ``config.json``) a spec's dict."""
    if isinstance(item, ChildSpec):
        return item
    if isinstance(item, dict):
        return ChildSpec.from_dict(item)
    if isinstance(item, str):
        return load_spec(item)[1]
    raise ValueError(f"{item!r} is not a cell; give a known cell name or a spec JSON file")


def config_from_dict(d: Mapping[str, Any]) -> SearchConfig:
    """A SearchConfig from a TOML-shaped dict; raises ValueError naming the first bad key."""
    return _build(SearchConfig, dict(d), "")


def load_config(path: str | Path, overrides: Mapping[str, Any] | None = None) -> SearchConfig:
    """Read a TOML file and apply top-level ``overrides`` (e.g. from CLI flags)."""
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"config file {p} does not exist; check the path given to --config")
    try:
        d = tomllib.loads(p.read_text())
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"{p}: not valid TOML ({e})") from None
    return config_from_dict(merge_overrides(d, overrides or {}))


def merge_overrides(d: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Apply dotted-key overrides (``{"data.dataset": "ptb", "trials": 4}``) to a TOML-shaped dict."""
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in d.items()}
    for key, value in overrides.items():
        if value is None:
            continue
        head, _, tail = key.partition(".")
        if tail:
            section = out.setdefault(head, {})
            if not isinstance(section, dict):
                raise ValueError(f"{head}: expected a table, got {section!r}")
            section[tail] = value
        else:
            out[head] = value
    return out


def load_run_config(results_dir: str | os.PathLike, name: str) -> SearchConfig:
    """The config the experiment ``name`` was started with (what ``--resume`` continues and ``nas train`` reuses)."""
    path = Path(results_dir).resolve() / name / CONFIG_FILE
    if not path.is_file():
        existing = sorted(p.parent.name for p in Path(results_dir).resolve().glob(f"*/{CONFIG_FILE}"))
        raise ValueError(f"no experiment named {name!r} in {Path(results_dir).resolve()}; check the name given to "
                         f"--resume (existing: {', '.join(existing) or 'none'})")
    d = json.loads(path.read_text())
    d["results_dir"] = str(results_dir)
    return config_from_dict(d)
