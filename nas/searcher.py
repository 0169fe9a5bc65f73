"""Ray Tune searchers: the REINFORCE controller and the random-search baseline, as thin adapters.

``suggest(trial_id)`` samples a child from the newest policy and remembers (trial id -> index, actions, spec);
``on_trial_complete`` turns the child's last result into a reward and updates the controller at once (or every
``update_every`` children): asynchronous, no batch barrier. Every finished child and every controller update is
appended as a record to ``children.jsonl`` / ``controller.jsonl`` in the run folder; tables are built from those.

Rewards (see ``nas.reinforce.reward_of``): completed children get c/ppl^2 (or c/ppl); diverged, failed and NaN
children get 0. Children stopped before they finished (a scheduler, Ctrl-C) are recorded but do not update the
controller: a partial budget is no measurement of the architecture.

``save``/``restore`` cover the controller, its optimizer, the baseline, the sampling RNG, pending updates and the
trials still in flight, written atomically (temp file + rename).
"""

from __future__ import annotations

import math
import os
import pickle
import random
import time
from pathlib import Path
from typing import Any

import torch
from ray.tune.search import Searcher

from nas.controller import Controller, ControllerConfig
from nas.reinforce import EMABaseline, make_optimizer, reinforce_step, reward_of
from nas.results import append_record, read_records
from search_spaces.space import ChildSpec, SearchSpace
from workers.trainable import METRIC

STATE_VERSION = 1


def child_seed(seed: int, index: int) -> int:
    """The training seed of child ``index`` in a search seeded with ``seed``."""
    return seed * 1_000_003 + index


def _status_of(result: dict[str, Any] | None, error: bool) -> tuple[str, float, str]:
    """(status, val_ppl, error text) from a trial's last result."""
    if error or not result:
        return "failed", math.nan, (result or {}).get("error", "") or "the trial raised an error in Ray (see its error.txt)"
    status = result.get("status", "stopped")
    ppl = result.get(METRIC)
    ppl = float(ppl) if isinstance(ppl, (int, float)) else math.nan
    if status == "running":  # ended before its final report: stopped by a scheduler or by Ctrl-C
        status = "stopped"
    if status == "completed" and not (math.isfinite(ppl) and ppl > 0):
        return "failed", math.nan, f"reported a non-finite validation perplexity ({ppl})"
    return status, ppl, str(result.get("error") or "")


class NasSearcher(Searcher):
    """What both searchers share: trial bookkeeping, records, save/restore. Subclasses propose and learn."""

    def __init__(self, space: SearchSpace, run_dir: str | os.PathLike, config: ControllerConfig = ControllerConfig(),
                 seed: int = 0, max_children: int | None = None) -> None:
        super().__init__(metric=METRIC, mode="min")
        self.space, self.run_dir, self.config, self.seed = space, str(run_dir), config, seed
        self.max_children = max_children
        self.next_index = 0
        self.live: dict[str, tuple[int, list[int]]] = {}  # trial id -> (index, actions)
        self.finished: set[str] = set()

    # -- subclass hooks --
    def _propose(self) -> list[int]:
        raise NotImplementedError

    def _learn(self, trial_id: str, actions: list[int], reward: float) -> None:
        """Called for every child with a measured outcome (completed, diverged, failed)."""

    def _state(self) -> dict[str, Any]:
        return {}

    def _set_state(self, state: dict[str, Any]) -> None:
        pass

    # -- Searcher API --
    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        if self.max_children is not None and self.next_index >= self.max_children:
            return Searcher.FINISHED
        actions = self._propose()
        index = self.next_index
        self.next_index += 1
        self.live[trial_id] = (index, actions)
        spec = self.space.decode(actions)
        return {"spec": spec.to_dict(), "index": index, "seed": child_seed(self.seed, index)}

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False) -> None:
        if trial_id in self.finished or trial_id not in self.live:
            return  # a duplicate completion, or a trial this searcher never suggested
        index, actions = self.live.pop(trial_id)
        self.finished.add(trial_id)
        status, ppl, message = _status_of(result, error)
        reward = math.nan if status == "stopped" else reward_of(ppl, status, self.config)
        spec = self.space.decode(actions)
        r = result or {}
        append_record(Path(self.run_dir) / "children.jsonl", {
            "trial_id": trial_id, "index": index, "status": status, "val_ppl": ppl, "reward": reward,
            "params": r.get("params"), "train_seconds": r.get("train_seconds"), "epochs": r.get("epochs", 0),
            "seed": child_seed(self.seed, index), "formula": "; ".join(spec.cell.formula().splitlines()),
            "spec": spec.to_dict(), "error": message, "started_at": r.get("started_at"),
            "finished_at": r.get("finished_at", time.time()), "node_ip": r.get("node_ip"),
            "node_id": r.get("node_id"), "gpus": r.get("gpus"),
        })
        if status != "stopped":
            self._learn(trial_id, actions, reward)

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
        duplicate and ignored.
        """
        for r in read_records(Path(self.run_dir) / "children.jsonl"):
            trial_id = r.get("trial_id")
            if trial_id in self.finished:
                continue
            if trial_id in self.live:
                index, actions = self.live.pop(trial_id)
            else:  # suggested after the saved state
                index, actions = int(r["index"]), self.space.encode(ChildSpec.from_dict(r["spec"]))
            self.finished.add(trial_id)
            self.next_index = max(self.next_index, index + 1)
            if r.get("status") != "stopped":
                self._learn(trial_id, actions, float(r["reward"] or 0.0))


class ControllerSearcher(NasSearcher):
    """Zoph & Le: an LSTM controller trained with REINFORCE and an EMA baseline, updated asynchronously."""

    def __init__(self, space: SearchSpace, run_dir: str | os.PathLike, config: ControllerConfig = ControllerConfig(),
                 seed: int = 0, max_children: int | None = None) -> None:
        super().__init__(space, run_dir, config, seed, max_children)
        torch.manual_seed(seed)  # controller init
        self.controller = Controller(space.decisions, config)
        self.optimizer = make_optimizer(self.controller, config)
        self.baseline = EMABaseline(decay=config.baseline_decay)
        self.generator = torch.Generator().manual_seed(seed)
        self.pending: list[tuple[str, list[int], float]] = []  # finished children not yet learned from
        self.step = 0

    def _propose(self) -> list[int]:
        with torch.no_grad():
            return list(self.controller.sample(self.generator).actions)

    def _learn(self, trial_id: str, actions: list[int], reward: float) -> None:
        self.pending.append((trial_id, actions, reward))
        if len(self.pending) < self.config.update_every:
            return
        batch, self.pending = self.pending, []
        diagnostics = reinforce_step(self.controller, self.optimizer, self.baseline,
                                     [(a, r) for _, a, r in batch], self.config)
        self.step += 1
        append_record(Path(self.run_dir) / "controller.jsonl",
                      {"step": self.step, "trial_ids": [t for t, _, _ in batch], **diagnostics})

    def _state(self) -> dict[str, Any]:
        return {"controller": self.controller.state_dict(), "optimizer": self.optimizer.state_dict(),
                "baseline": self.baseline.value, "generator": self.generator.get_state(),
                "pending": self.pending, "step": self.step}

    def _set_state(self, state: dict[str, Any]) -> None:
        self.controller.load_state_dict(state["controller"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.baseline.value = state["baseline"]
        self.generator.set_state(state["generator"])
        self.pending, self.step = state["pending"], state["step"]


class RandomSearcher(NasSearcher):
    """Uniform random search over the same space: the baseline every NAS result should beat."""

    def __init__(self, space: SearchSpace, run_dir: str | os.PathLike, config: ControllerConfig = ControllerConfig(),
                 seed: int = 0, max_children: int | None = None) -> None:
        super().__init__(space, run_dir, config, seed, max_children)
        self.rng = random.Random(seed)

    def _propose(self) -> list[int]:
        return [self.rng.randrange(d.size) for d in self.space.decisions]

    def _state(self) -> dict[str, Any]:
        return {"rng": self.rng.getstate()}

    def _set_state(self, state: dict[str, Any]) -> None:
        self.rng.setstate(state["rng"])
