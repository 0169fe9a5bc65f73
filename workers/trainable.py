"""The Ray Tune entry point for one child: a function trainable around :func:`workers.train.train_child`.

The corpus and the shared settings arrive through ``tune.with_parameters`` (Ray's object store), so a worker on a
remote node needs no files. Each epoch and each rung of ``budget.report_at`` is reported with
``status="running"``; rung reports carry the ``fidelity`` (training batches done) an early-stopping scheduler
decides on (its ``time_attr``); a final report carries the outcome (:class:`workers.outcome.ChildOutcome`:
``completed``, ``diverged`` or ``failed`` with the error text). Errors inside training are caught and reported,
so one bad child never takes the search down (an out-of-memory child is recorded as
``failed`` with an error text that starts with "out of memory"); a dead worker process is Ray's to retry.

Checkpoints: every ``budget.checkpoint_every`` seconds of training (and at epoch ends) the child reports a
checkpoint (:mod:`workers.checkpoint`) with a "running" result; Tune keeps the latest in the trial's folder. A
retried child (its worker or node died) and an unfinished child of a resumed search start from it and end as they
would have without the fault; their outcome says where they resumed (``resumed_from``). A checkpoint that cannot
be read is ignored: that child trains from the start again.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from typing import Any

import ray
import torch
from ray import tune

from search_spaces.space import ChildSpec
from workers.checkpoint import read_checkpoint, write_checkpoint
from workers.child_settings import ChildSettings
from workers.data import Corpus
from workers.outcome import METRIC, ChildOutcome
from workers.train import EpochReport, RungReport, failure_text, outcome_of, perplexity, train_child


def _assigned() -> dict[str, float]:
    """The resources Ray reserved for this trial ({} outside Ray)."""
    try:
        return dict(ray.get_runtime_context().get_assigned_resources())
    except Exception:  # noqa: BLE001 - not inside a Ray worker
        return {}


OOM_HINT = ("out of memory: this child's model or batch does not fit; lower the searched hidden_size / batch_size "
            "or give each child more memory (fewer children at a time, more cpus/gpus per trial)")


def _latest_checkpoint() -> dict[str, Any] | None:
    """The payload of this trial's latest checkpoint (a retried or resumed child), None when there is none or it
    cannot be read (then a line on the worker's stderr says why)."""
    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        return None
    try:
        with checkpoint.as_directory() as folder:
            return read_checkpoint(folder)
    except ValueError as e:
        print(f"nas: {e}; this child trains from the start", file=sys.stderr)
        return None


def train_trial(config: dict[str, Any], corpus: Corpus, settings: ChildSettings) -> None:
    """Train the child described by ``config["spec"]`` and report to Tune."""
    started = time.time()
    assigned = _assigned()
    # torch threads = CPUs Ray reserved (at least 1); reset every time, as reuse_actors shares the process
    torch.set_num_threads(max(1, int(assigned.get("CPU", os.cpu_count() or 1))))
    common = {"index": config.get("index", -1), "started_at": started, "pid": os.getpid(),
              "node_ip": ray.util.get_node_ip_address() if ray.is_initialized() else "",
              "node_id": ray.get_runtime_context().get_node_id() if ray.is_initialized() else "",
              "cpus": assigned.get("CPU", 0.0), "gpus": assigned.get("GPU", 0.0)}

    def on_epoch(r: EpochReport) -> None:
        # "batches", not "fidelity": an early-stopping scheduler decides at rungs only (and never at the end)
        tune.report({**common, "status": "running", METRIC: r.val_ppl, "batches": r.batches, "epoch": r.epoch,
                     "train_loss": r.train_loss, "val_loss": r.val_loss, "tokens_per_second": r.tokens_per_second,
                     "train_seconds": r.train_seconds})

    resume = _latest_checkpoint()
    rung_ppl = {str(r["batches"]): r["val_ppl"] for r in resume["position"]["rungs"]} if resume else {}

    storage_unreachable: list[str] = []

    def on_checkpoint(payload: dict[str, Any]) -> None:
        if storage_unreachable:
            return
        position = payload["position"]
        with tempfile.TemporaryDirectory(prefix="nas-checkpoint-") as folder:
            write_checkpoint(payload, folder)  # Tune copies it into the trial's folder before report returns
            try:
                tune.report({**common, "status": "running", METRIC: perplexity(position["best_loss"]),
                             "batches": position["done"], "epoch": position["epoch"], "checkpoint": True,
                             "train_seconds": position["train_seconds"] + position["epoch_seconds"]},
                            checkpoint=tune.Checkpoint.from_directory(folder))
            except RuntimeError as e:  # a node that cannot reach the run's storage (a local path on a cluster)
                storage_unreachable.append(str(e))
                print(f"nas: this child cannot store checkpoints here ({str(e)[:300]}); it trains on without them "
                      "(give the search a --results-dir that every node can reach)", file=sys.stderr)

    def on_rung(r: RungReport) -> None:  # an early-stopping scheduler decides here whether the child goes on
        rung_ppl[str(r.batches)] = r.val_ppl
        tune.report({**common, "status": "running", METRIC: r.val_ppl, "fidelity": r.batches, "epoch": r.epoch,
                     "val_loss": r.val_loss, "train_seconds": r.train_seconds, "params": r.params,
                     "rung_ppl": dict(rung_ppl)})

    try:
        spec = ChildSpec.from_dict(config["spec"])
        result = train_child(spec.cell, corpus, spec.hparams.as_dict(), settings.budget, settings.model,
                             settings.train, seed=int(config.get("seed", 0)), device=settings.device,
                             on_epoch=on_epoch, on_rung=on_rung, resume=resume, on_checkpoint=on_checkpoint)
        outcome = outcome_of(result)
    except Exception as e:  # noqa: BLE001 - any error in a child is recorded, never fatal to the search
        # failure_text frees memory after an OOM: the next child may reuse this process
        outcome = ChildOutcome("failed", error=failure_text(e, OOM_HINT))
    tune.report({**common, **outcome.to_dict(), "finished_at": time.time()})
