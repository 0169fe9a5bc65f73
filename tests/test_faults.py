"""Faults a long search meets: children that raise or diverge, and children running on another Ray node."""


from test_search_e2e import write_tiny_corpus

from nas.config import config_from_dict
from nas.runs.records import read_records
from nas.search import ray_session
from nas.search.driver import run_search


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


def search_on_local_ray(cfg, out=lambda line: None):
    """run_search on a fresh local Ray with 2 CPUs (shut down afterwards); the outcome and its child records."""
    import ray

    ray_session.start_local(num_cpus=2)
    try:
        outcome = run_search(cfg, out=out)
    finally:
        ray.shutdown()
    return outcome, read_records(outcome.run_dir / "children.jsonl")


def test_children_that_raise_or_diverge_are_recorded_and_the_search_finishes(tmp_path):
    # a batch size larger than the corpus makes a child raise inside training; lr 1e30 makes one diverge
    cfg = tiny_config(tmp_path, space={"base": 2, "layers": {"lr": [5.0, 1e30], "batch_size": [4, 100000]}},
                      trials=8)
    outcome, rows = search_on_local_ray(cfg)
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
    import ray
    from ray.cluster_utils import Cluster

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


def test_a_child_that_runs_out_of_memory_is_recorded_and_the_search_finishes(tmp_path):
    # hidden size 2e6 asks the allocator for terabytes: a real out-of-memory error from torch on any machine
    cfg = tiny_config(tmp_path, trials=6, space={"base": 2, "layers": {"hidden_size": [16, 2_000_000]}})
    outcome, rows = search_on_local_ray(cfg)
    assert len(rows) == 6 and not outcome.interrupted
    big = [r for r in rows if r["spec"]["hparams"]["hidden_size"] == 2_000_000]
    small = [r for r in rows if r["spec"]["hparams"]["hidden_size"] == 16]
    assert big and small, "the seed should sample both sizes"
    for r in big:
        assert r["status"] == "failed" and r["reward"] == 0.0
        assert r["error"].startswith("out of memory") and "hidden_size" in r["error"]
    assert all(r["status"] == "completed" for r in small)
    assert len(read_records(outcome.run_dir / "controller.jsonl")) == 6


def test_a_worker_node_lost_mid_child_is_retried_and_no_child_is_lost_or_doubled(tmp_path):
    import os
    import subprocess
    import time
    from pathlib import Path

    import ray
    from ray.cluster_utils import Cluster
    from test_search_e2e import ENV, NAS, TINY_TOML

    # fast node-death detection, so the test does not wait for the default health-check timeout
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 0, "_system_config": {"health_check_period_ms": 500, "health_check_failure_threshold": 3}})
    # The doomed node's children must still be running when it is removed, whatever the machine's speed: its raylet
    # (and so every Ray worker it spawns) starts with tests/doomed_node/ first on PYTHONPATH, whose sitecustomize.py
    # makes each child there write a marker file into `markers` and block forever. The replacement node is added
    # with the environment restored, so the retried children train normally.
    markers = tmp_path / "blocked_children"
    markers.mkdir()
    saved = {k: os.environ.get(k) for k in ("PYTHONPATH", "NAS_TEST_BLOCKED_CHILDREN")}
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [str(Path(__file__).parent / "doomed_node")] + ([saved["PYTHONPATH"]] if saved["PYTHONPATH"] else []))
    os.environ["NAS_TEST_BLOCKED_CHILDREN"] = str(markers)
    try:
        doomed = cluster.add_node(num_cpus=2)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    search = None
    try:
        ray.init(address=cluster.address, log_to_driver=False, logging_level="ERROR")
        data = write_tiny_corpus(tmp_path / "corpus")
        toml = TINY_TOML.format(data=data).replace("base = 8", "base = 2")
        (tmp_path / "lost.toml").write_text(toml.replace('name = "tiny"', 'name = "lost"'))
        # the search is a separate driver process, as on a real cluster
        search = subprocess.Popen(NAS + ["search", "--config", "lost.toml", "--address", cluster.address],
                                  cwd=tmp_path, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        run_dir = tmp_path / "results" / "lost"
        deadline = time.time() + 120
        while time.time() < deadline:  # wait until both children are blocked on the doomed node (the only CPUs)
            if len(list(markers.glob("child-*"))) == 2:
                break
            assert search.poll() is None, search.stdout.read()
            time.sleep(0.2)
        else:
            raise AssertionError("no child started on the worker node")
        assert {p.read_text() for p in markers.glob("child-*")} == {doomed.node_id}
        assert search.poll() is None and read_records(run_dir / "children.jsonl") == []  # nothing finished yet
        cluster.remove_node(doomed, allow_graceful=False)  # mid-child: the two running children die with it
        cluster.add_node(num_cpus=2)
        out, _ = search.communicate(timeout=300)
        assert search.returncode == 0, out
        assert len(list(markers.glob("child-*"))) == 2  # the retried and later children trained on the new node
        rows = read_records(run_dir / "children.jsonl")
        assert sorted(r["index"] for r in rows) == [0, 1, 2, 3], out  # none missing, none twice
        assert len({r["trial_id"] for r in rows}) == 4
        assert all(r["status"] in ("completed", "diverged") for r in rows), \
            [(r["status"], r["error"], r["node_id"]) for r in rows]
        assert all(r["node_id"] != doomed.node_id for r in rows)
        # the first two children were cut off by the node loss and retried (Tune kept the error of the first try)
        assert "node" in (next(run_dir.glob("child_0000_*")) / "error.txt").read_text()
        steps = read_records(run_dir / "controller.jsonl")
        assert [s["step"] for s in steps] == [1, 2, 3, 4]
    finally:
        if search is not None and search.poll() is None:
            search.kill()
        ray.shutdown()
        cluster.shutdown()


def test_a_child_whose_worker_is_killed_resumes_from_its_checkpoint_and_ends_as_without_the_fault(tmp_path):
    """The worker is SIGKILLed right after the child's first checkpoint: Tune retries the child, which resumes
    from that checkpoint (not from batch 0) and reaches the very perplexity of the same child trained here without
    a fault; its checkpoint is deleted once it has finished."""
    import json
    import os
    import signal
    import threading
    import time

    import pytest
    import torch

    from search_spaces import ChildSpec
    from workers.data import load_corpus
    from workers.train import train_child

    # the tiny corpus has 38 training windows: 40 epochs of them, a checkpoint at each epoch's end and every 0.3 s
    cfg = tiny_config(tmp_path, trials=1, concurrency=1, budget={"epochs": 40, "checkpoint_every": 0.3})
    run_dir = tmp_path / "results" / "faults"
    killed: list[int] = []

    def kill_after_the_first_checkpoint() -> None:
        deadline = time.time() + 120
        while time.time() < deadline:
            for checkpoint in run_dir.glob("child_*/checkpoint_*"):
                try:
                    pid = json.loads((checkpoint.parent / "result.json").read_text().splitlines()[-1])["pid"]
                except (OSError, IndexError, KeyError, ValueError):  # Tune has not written it (whole) yet
                    continue
                if pid:
                    killed.append(pid)
                    os.kill(killed[-1], signal.SIGKILL)
                    return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_after_the_first_checkpoint, daemon=True)
    killer.start()
    outcome, rows = search_on_local_ray(cfg)
    killer.join()
    assert killed, "no checkpoint appeared"
    [row] = rows
    assert row["status"] == "completed", row
    assert not list(run_dir.glob("child_*/checkpoint_*"))

    spec = ChildSpec.from_dict(row["spec"])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the trial ran (one CPU)
    try:
        undisturbed = train_child(spec.cell, load_corpus(cfg.data.source, cfg.data.level), spec.hparams.as_dict(),
                                  cfg.budget, cfg.model, cfg.train, seed=row["seed"], device="cpu")
    finally:
        torch.set_num_threads(threads)
    assert row["fidelity"] == undisturbed.batches == 40 * 38 and 0 < row["resumed_from"] < undisturbed.batches
    assert row["val_ppl"] == pytest.approx(undisturbed.val_ppl, rel=1e-6)


def test_keep_checkpoints_keeps_each_finished_childs_last_checkpoint(tmp_path):
    from workers.checkpoint import read_checkpoint

    cfg = tiny_config(tmp_path, trials=2, budget={"epochs": 2, "max_batches": 5, "keep_checkpoints": True})
    outcome, rows = search_on_local_ray(cfg)
    assert len(rows) == 2 and all(r["status"] == "completed" and r["resumed_from"] == 0 for r in rows)
    kept = sorted(outcome.run_dir.glob("child_*/checkpoint_*"))
    assert len(kept) == 2  # one per child: the end of its first epoch (Tune keeps the latest only)
    assert all(read_checkpoint(k)["position"]["done"] == 5 for k in kept)
