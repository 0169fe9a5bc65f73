"""Faults a long search meets: children that raise or diverge, and children running on another Ray node."""

import pytest

from nas.config import config_from_dict
from nas.results import read_records
from nas.search import run_search
from test_search_e2e import write_tiny_corpus


def tiny_config(tmp_path, **over):
    d = {
        "name": "faults", "trials": 6, "concurrency": 2, "results_dir": str(tmp_path / "results"), "seed": 2,
        "data": {"dataset": str(write_tiny_corpus(tmp_path / "corpus"))},
        "space": {"base": 2, "layers": {"hidden_size": [16]}},
        "model": {"num_layers": 1},
        "train": {"batch_size": 4, "eval_batch_size": 4},
        "budget": {"max_batches": 5},
    }
    d.update(over)
    return config_from_dict(d)


def test_children_that_raise_or_diverge_are_recorded_and_the_search_finishes(tmp_path):
    import ray

    # a batch size larger than the corpus makes a child raise inside training; lr 1e30 makes one diverge
    cfg = tiny_config(tmp_path, space={"base": 2, "layers": {"lr": [5.0, 1e30], "batch_size": [4, 100000]}},
                      trials=8)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    try:
        outcome = run_search(cfg, out=lambda line: None)
    finally:
        ray.shutdown()
    rows = read_records(outcome.run_dir / "children.jsonl")
    assert len(rows) == 8 and outcome.finished == 8 and not outcome.interrupted
    by_status = {}
    for r in rows:
        by_status.setdefault(r["status"], []).append(r)
        if r["status"] != "completed":
            assert r["reward"] == 0.0 and r["error"]
    assert "failed" in by_status and "completed" in by_status
    assert all("batch" in r["error"] for r in by_status["failed"])
    for r in by_status.get("diverged", []):
        assert "became" in r["error"]
    # every finished child updated the controller exactly once
    steps = read_records(outcome.run_dir / "controller.jsonl")
    assert [s["step"] for s in steps] == list(range(1, 9))
    assert sorted(t for s in steps for t in s["trial_ids"]) == sorted(r["trial_id"] for r in rows)


def test_children_land_on_a_non_head_node_of_a_multi_node_cluster(tmp_path):
    from ray.cluster_utils import Cluster
    import ray

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})  # the head trains nothing
    worker = cluster.add_node(num_cpus=2)
    try:
        ray.init(address=cluster.address, log_to_driver=False, logging_level="ERROR")
        head_id = ray.get_runtime_context().get_node_id()
        outcome = run_search(tiny_config(tmp_path, trials=4), out=lambda line: None)
        rows = read_records(outcome.run_dir / "children.jsonl")
        assert len(rows) == 4 and all(r["status"] == "completed" for r in rows)
        assert {r["node_id"] for r in rows} == {worker.node_id} != {head_id}
    finally:
        ray.shutdown()
        cluster.shutdown()
