"""Ray Tune searchers, as thin adapters: the REINFORCE controller, the random-search baseline and regularized
evolution (:mod:`nas.search.evolution`).

``suggest(trial_id)`` proposes a child and remembers (trial id -> index, actions); ``on_trial_complete`` turns
the child's last result into a reward and updates the searcher at once (the controller: or every
``update_every`` children): asynchronous, no batch barrier. Every finished child and every controller update is
appended as a record to ``children.jsonl`` / ``controller.jsonl`` in the run folder; tables are built from those.

Rewards (see ``nas.search.reinforce.reward_of``): completed children get c/ppl^2 (or c/ppl); diverged, failed and NaN
children get 0. A child an early-stopping scheduler stopped at one of ``rungs`` earns the reward of its perplexity
at that rung and teaches the searcher at that fidelity: its advantage is measured against the baseline of every
child's measurement at that rung (each child reports the perplexity at every rung it passed, so the children that
went on count too, when they finish). (Children cut off by Ctrl-C reach no searcher: Tune runs them again on
resume.)

No child is trained twice: a proposal whose spec was already trained in this search (completed, diverged, or
stopped at a rung; a failure may be transient, so a failed spec is trained again) reuses the recorded outcome as a
new child with ``reused_from`` (the earlier child's index) and no training time; the searcher does not learn from
it again (an outcome teaches once, when its child trained; ``ControllerConfig.learn_from_reused`` turns that
off); a proposal whose twin is still training is redrawn.

Initial children (a warm start, ``initial``) are proposed first, in the order given, before the searcher's own
proposals; they are children like any other (indices 0, 1, ...; trained, recorded, learned from: the controller
updates on their actions as on its own samples). A resumed search has its ``next_index`` past them and does not
propose them again.

``save``/``restore`` cover the searcher's own state (the controller, its optimizer, the baselines, the sampling
RNG, pending updates) and the trials still in flight, written atomically (temp file + rename); restore then
replays ``children.jsonl`` for what finished after the last save. The controller's elite (its best children so
far, ``ControllerConfig.elite_size``) is not saved: restore rebuilds it from ``children.jsonl``.
"""

from __future__ import annotations

import dataclasses
import math
import os
import pickle
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from ray.tune.search import Searcher

from nas.runs.records import ChildRecord, append_child, append_record, read_children
from nas.search.controller import Controller
from nas.search.controller_config import ControllerConfig
from nas.search.evolution import EvolutionConfig, Population
from nas.search.reinforce import FINAL, Baselines, Elite, baseline_key, make_optimizer, reinforce_step, reward_of
from search_spaces.space import ChildSpec, SearchSpace
from workers.outcome import METRIC, ChildOutcome

STATE_VERSION = 2
REDRAWS = 20
"""Proposals drawn in a row while each one's twin is still training, before one is trained anyway."""
MAX_REUSED_IN_A_ROW = 10_000
"""Reused proposals in a row after which a searcher without a children budget says it is finished (its policy
proposes nothing new)."""


def child_seed(seed: int, index: int) -> int:
    """The training seed of child ``index`` in a search seeded with ``seed``."""
    return seed * 1_000_003 + index


class NasSearcher(Searcher):
    """What every searcher shares: trial bookkeeping, records, reuse of trained specs, save/restore. Subclasses
    propose and learn."""

    def __init__(self, space: SearchSpace, run_dir: str | os.PathLike, config: ControllerConfig = ControllerConfig(),
                 seed: int = 0, max_children: int | None = None, rungs: tuple[int, ...] = (),
                 max_params: int | None = None, count_params: Callable[[ChildSpec], int] | None = None,
                 initial: tuple[ChildSpec, ...] = ()) -> None:
        super().__init__(metric=METRIC, mode="min")
        if max_params is not None and count_params is None:
            raise ValueError("max_params needs count_params, the parameter count of a proposed child")
        self.space, self.run_dir, self.config, self.seed = space, str(run_dir), config, seed
        self.max_children, self.rungs = max_children, tuple(rungs)
        self.max_params, self.count_params = max_params, count_params
        self.initial = tuple(tuple(space.encode(spec)) for spec in initial)  # actions of the warm-start children
        self.next_index = 0
        self.live: dict[str, tuple[int, list[int]]] = {}  # trial id -> (index, actions)
        self.finished: set[str] = set()
        self.trained: dict[str, dict[str, Any]] = {}  # spec JSON -> the record of the child that trained it
        self.listeners: list[Callable[[ChildRecord], None]] = []  # told of each record as it is written (progress)

    # -- subclass hooks --
    def _propose(self) -> list[int]:
        raise NotImplementedError

    def _learn(self, trial_id: str, actions: list[int], reward: float, key: str) -> None:
        """Called for every child with a measured outcome (completed, diverged, failed, stopped at a rung), with
        its fidelity's baseline key (:func:`nas.search.reinforce.baseline_key`)."""

    def _observe(self, reward: float, key: str) -> None:
        """A measurement at a rung the child passed on its way (no update of its own: it moves that rung's
        baseline)."""

    def _recall(self, actions: list[int], reward: float, key: str) -> None:
        """On restore, for every recorded child the searcher learns from (also those learned from before the saved
        state), in file order, before the replay teaches the ones the state has not learned from yet."""

    def _state(self) -> dict[str, Any]:
        return {}

    def _set_state(self, state: dict[str, Any]) -> None:
        pass

    # -- Searcher API --
    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        in_flight = {self.space.decode(a).to_json() for _, a in self.live.values()}
        redraws = reused = 0
        while True:
            if self.max_children is not None and self.next_index >= self.max_children:
                return Searcher.FINISHED
            if reused >= MAX_REUSED_IN_A_ROW:
                return Searcher.FINISHED
            warm = getattr(self, "initial", ())  # a searcher pickled by an older version has none
            actions = list(warm[self.next_index]) if self.next_index < len(warm) else self._propose()
            spec = self.space.decode(actions)
            key = spec.to_json()
            if key in in_flight and redraws < REDRAWS:
                redraws += 1
                continue
            index = self.next_index
            self.next_index += 1
            earlier = self.trained.get(key)
            if earlier is not None:
                self._reuse(index, spec, earlier)
            elif self.max_params is not None and (params := self.count_params(spec)) > self.max_params:
                self._over_budget(index, spec, params)
            else:
                self.live[trial_id] = (index, actions)
                return {"spec": spec.to_dict(), "index": index, "seed": child_seed(self.seed, index)}
            reused += 1

    def _over_budget(self, index: int, spec: ChildSpec, params: int) -> None:
        """Record child ``index`` as over the parameter budget, untrained, and teach the controller its reward 0."""
        outcome = ChildOutcome("over_budget", params=params,
                               error=f"{params:,} parameters, above max_params {self.max_params:,}: not trained")
        trial_id = f"over-budget-{index}"
        self.finished.add(trial_id)
        self._record(trial_id, index, spec, outcome, {"finished_at": time.time()})

    def _reuse(self, index: int, spec: ChildSpec, earlier: dict[str, Any]) -> None:
        """Record child ``index`` with the outcome of the earlier child of the same spec (it teaches only if
        ``learn_from_reused``)."""
        outcome = dataclasses.replace(ChildOutcome.from_result(earlier), train_seconds=0.0)
        trial_id = f"reused-{index}"
        self.finished.add(trial_id)
        self._record(trial_id, index, spec, outcome, {"finished_at": time.time()}, reused_from=earlier["index"])

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False) -> None:
        if trial_id in self.finished or trial_id not in self.live:
            return  # a duplicate completion, or a trial this searcher never suggested
        index, actions = self.live.pop(trial_id)
        self.finished.add(trial_id)
        self._record(trial_id, index, self.space.decode(actions), ChildOutcome.from_result(result, error),
                     result or {})

    def _record(self, trial_id: str, index: int, spec: ChildSpec, outcome: ChildOutcome, result: dict[str, Any],
                reused_from: int | None = None) -> None:
        """Append the child's record, remember its spec as trained, learn from it."""
        measured = self._learns(outcome.status, outcome.fidelity)
        reward = reward_of(outcome.val_ppl, "completed" if outcome.status == "stopped" else outcome.status,
                           self.config) if measured else math.nan
        child = ChildRecord(
            trial_id, index, outcome, reward, reused_from, seed=child_seed(self.seed, index),
            formula="; ".join(spec.cell.formula().splitlines()), spec=spec.to_dict(),
            started_at=result.get("started_at"), finished_at=result.get("finished_at", time.time()),
            node_ip=result.get("node_ip"), node_id=result.get("node_id"), gpus=result.get("gpus"),
        )
        append_child(self.run_dir, child)
        for listener in getattr(self, "listeners", ()):  # a searcher pickled by an older version has none
            listener(child)
        record = child.to_dict()
        self._remember(record)
        if self._teaches(record):
            self._teach(trial_id, self.space.encode(spec), record)

    def _teach(self, trial_id: str, actions: list[int], record: dict[str, Any]) -> None:
        """Learn from a child's record: first its measurements at the rungs it passed (a reused child's were
        counted with the earlier child), then its outcome at its own fidelity."""
        status, fidelity = record["status"], int(record.get("fidelity") or 0)
        if record.get("reused_from") is None:
            for passed, ppl in sorted((int(f), p) for f, p in (record.get("rung_ppl") or {}).items()):
                if passed in self.rungs and (status != "stopped" or passed < fidelity):
                    self._observe(reward_of(ppl, "completed", self.config), str(passed))
        self._learn(trial_id, actions, float(record["reward"] or 0.0), baseline_key(status, fidelity))

    def _learns(self, status: str, fidelity: int) -> bool:
        """Whether a child's outcome measures its architecture: any but one stopped off a rung."""
        return status != "stopped" or fidelity in self.rungs

    def _teaches(self, record: dict[str, Any]) -> bool:
        """Whether the searcher learns from a child's record: it measures the architecture, and it is not a reused
        outcome (one the searcher already learned from when its child trained) unless ``learn_from_reused``."""
        if record.get("reused_from") is not None and not self.config.learn_from_reused:
            return False
        return self._learns(record.get("status"), int(record.get("fidelity") or 0))

    def _remember(self, record: dict[str, Any]) -> None:
        """Keep the record as its spec's outcome for later proposals: completed, diverged and rung-stopped ones
        (a failure may be transient: out of memory, a lost node), the highest fidelity winning."""
        status, fidelity = record["status"], int(record.get("fidelity") or 0)
        if record.get("reused_from") is not None or status == "failed" or not self._learns(status, fidelity):
            return
        key = ChildSpec.from_dict(record["spec"]).to_json()
        known = self.trained.get(key)
        if known is None or int(known.get("fidelity") or 0) < fidelity:
            self.trained[key] = record

    def save(self, checkpoint_path: str) -> None:
        state = {"version": STATE_VERSION, "kind": type(self).__name__, "next_index": self.next_index,
                 "live": self.live, "finished": self.finished, "seed": self.seed, **self._state()}
        tmp = f"{checkpoint_path}.tmp-{os.getpid()}"
        with open(tmp, "wb") as f:
            pickle.dump(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, checkpoint_path)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            state = pickle.load(f)
        if state.get("version") != STATE_VERSION or state.get("kind") != type(self).__name__:
            raise ValueError(f"{checkpoint_path}: searcher state of another kind or version; cannot resume from it")
        self.next_index, self.live, self.finished = state["next_index"], state["live"], state["finished"]
        self.seed = state["seed"]
        self._set_state(state)
        self._replay_records()

    def _replay_records(self) -> None:
        """Catch up with children that finished after the saved state (the driver was killed in between).

        ``children.jsonl`` is written (and fsynced) the moment a child finishes, so it is the source of truth:
        each record this state has not learned from yet is marked finished and learned from, in file order,
        exactly as it was before the crash. Tune may still re-run such a trial; its completion is then a
        duplicate and ignored. Every record also marks its spec as trained.
        """
        self.trained = {}
        for r in (c.to_dict() for c in read_children(self.run_dir)):
            self._remember(r)
            if self._teaches(r):
                self._recall(self.space.encode(ChildSpec.from_dict(r["spec"])), float(r["reward"] or 0.0),
                             baseline_key(r["status"], int(r.get("fidelity") or 0)))
            trial_id = r.get("trial_id")
            if trial_id in self.finished:
                continue
            if trial_id in self.live:
                index, actions = self.live.pop(trial_id)
            else:  # suggested after the saved state
                index, actions = int(r["index"]), self.space.encode(ChildSpec.from_dict(r["spec"]))
            self.finished.add(trial_id)
            self.next_index = max(self.next_index, index + 1)
            if self._teaches(r):
                self._teach(trial_id, actions, r)


class ControllerSearcher(NasSearcher):
    """Zoph & Le: an LSTM controller trained with REINFORCE and a moving-average baseline (one per fidelity),
    updated asynchronously. Each update's diagnostics also go to TensorBoard (``<run>/controller/``, next to Tune's
    trial logs: ``tensorboard --logdir results/<name>``)."""

    def __init__(self, space: SearchSpace, run_dir: str | os.PathLike, config: ControllerConfig = ControllerConfig(),
                 seed: int = 0, max_children: int | None = None, rungs: tuple[int, ...] = (),
                 max_params: int | None = None, count_params: Callable[[ChildSpec], int] | None = None,
                 initial: tuple[ChildSpec, ...] = ()) -> None:
        super().__init__(space, run_dir, config, seed, max_children, rungs, max_params, count_params, initial)
        torch.manual_seed(seed)  # controller init
        self.controller = Controller(space.decisions, config)
        self.optimizer = make_optimizer(self.controller, config)
        self.baselines = Baselines(config.baseline_decay, config.normalize_advantage, risk=config.risk_seeking)
        self.generator = torch.Generator().manual_seed(seed)
        self.pending: list[tuple[str, list[int], float, str]] = []  # finished children not yet learned from
        self.elite = Elite(config.elite_size)  # the best children so far, imitated at every update
        self.step = 0
        self._writer = None

    def __getstate__(self) -> dict[str, Any]:  # Tune pickles the searcher: the open event file stays behind
        return {**self.__dict__, "_writer": None}

    def _propose(self) -> list[int]:
        with torch.no_grad():
            return list(self.controller.sample(self.generator).actions)

    def _observe(self, reward: float, key: str) -> None:
        self.baselines.update(reward, key)

    def _recall(self, actions: list[int], reward: float, key: str) -> None:
        if key == FINAL:  # a child stopped at a rung is measured on another scale: it never joins the elite
            self._elite().add(actions, reward)

    def _elite(self) -> Elite:
        if not hasattr(self, "elite"):  # a searcher pickled by an older version has none
            self.elite = Elite(getattr(self.config, "elite_size", 0))
        return self.elite

    def _learn(self, trial_id: str, actions: list[int], reward: float, key: str) -> None:
        self._recall(actions, reward, key)
        self.pending.append((trial_id, actions, reward, key))
        if len(self.pending) < self.config.update_every:
            return
        batch, self.pending = self.pending, []
        diagnostics = reinforce_step(self.controller, self.optimizer, self.baselines,
                                     [(a, r, k) for _, a, r, k in batch], self.config, self._elite().actions())
        self.step += 1
        append_record(Path(self.run_dir) / "controller.jsonl",
                      {"step": self.step, "trial_ids": [t for t, _, _, _ in batch], **diagnostics})
        self._tensorboard(diagnostics)

    def _tensorboard(self, diagnostics: dict[str, float]) -> None:
        """One TensorBoard event per update, written synchronously (tensorboardX's SummaryWriter queues events in a
        thread, which a killed driver would lose)."""
        try:
            from tensorboardX.event_file_writer import EventsWriter
            from tensorboardX.proto import event_pb2, summary_pb2
        except ImportError:  # tensorboardX comes with ray[tune]; without it, controller.jsonl still has everything
            return
        if self._writer is None:
            folder = Path(self.run_dir) / "controller"
            folder.mkdir(parents=True, exist_ok=True)
            self._writer = EventsWriter(str(folder / "events"))
        values = [summary_pb2.Summary.Value(tag=k, simple_value=v) for k, v in diagnostics.items()]
        self._writer.write_event(event_pb2.Event(wall_time=time.time(), step=self.step,
                                                 summary=summary_pb2.Summary(value=values)))
        self._writer.flush()

    def _state(self) -> dict[str, Any]:
        return {"controller": self.controller.state_dict(), "optimizer": self.optimizer.state_dict(),
                "baselines": self.baselines.state_dict(), "generator": self.generator.get_state(),
                "pending": self.pending, "step": self.step}

    def _set_state(self, state: dict[str, Any]) -> None:
        self.controller.load_state_dict(state["controller"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.baselines.load_state_dict(state["baselines"])
        self.generator.set_state(state["generator"])
        self.pending, self.step = state["pending"], state["step"]
        self.elite = Elite(self.config.elite_size)  # refilled from children.jsonl by the replay that follows


class RandomSearcher(NasSearcher):
    """Uniform random search over the same space: the baseline every NAS result should beat."""

    def __init__(self, space: SearchSpace, run_dir: str | os.PathLike, config: ControllerConfig = ControllerConfig(),
                 seed: int = 0, max_children: int | None = None, rungs: tuple[int, ...] = (),
                 max_params: int | None = None, count_params: Callable[[ChildSpec], int] | None = None,
                 initial: tuple[ChildSpec, ...] = ()) -> None:
        super().__init__(space, run_dir, config, seed, max_children, rungs, max_params, count_params, initial)
        self.rng = random.Random(seed)

    def _propose(self) -> list[int]:
        return [self.rng.randrange(d.size) for d in self.space.decisions]

    def _state(self) -> dict[str, Any]:
        return {"rng": self.rng.getstate()}

    def _set_state(self, state: dict[str, Any]) -> None:
        self.rng.setstate(state["rng"])


class EvolutionSearcher(NasSearcher):
    """Regularized evolution (Real et al. 2019; :class:`nas.search.evolution.Population`): a random start, then each
    child a one-decision mutation of a tournament winner, the oldest member aging out. A child's fitness is its
    reward."""

    def __init__(self, space: SearchSpace, run_dir: str | os.PathLike, config: ControllerConfig = ControllerConfig(),
                 seed: int = 0, max_children: int | None = None, rungs: tuple[int, ...] = (),
                 evolution: EvolutionConfig = EvolutionConfig(), max_params: int | None = None,
                 count_params: Callable[[ChildSpec], int] | None = None, initial: tuple[ChildSpec, ...] = ()) -> None:
        super().__init__(space, run_dir, config, seed, max_children, rungs, max_params, count_params, initial)
        self.population = Population([d.size for d in space.decisions], evolution, random.Random(seed))

    def _propose(self) -> list[int]:
        return self.population.propose()

    def _learn(self, trial_id: str, actions: list[int], reward: float, key: str) -> None:
        self.population.add(actions, reward)

    def _state(self) -> dict[str, Any]:
        return {"population": self.population.state_dict()}

    def _set_state(self, state: dict[str, Any]) -> None:
        self.population.load_state_dict(state["population"])
