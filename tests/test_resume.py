"""Stopping and resuming: Ctrl-C leaves a resumable experiment and says how to resume; SIGKILL of the driver
loses nothing either. After the last resume every child is in the table exactly once and the controller's
update count equals the number of children it learned from: every child but those that reused an earlier
child's outcome (an outcome teaches once)."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pandas as pd
from test_search_e2e import ENV, write_tiny_corpus

TOML = """
name = "long"
trials = 14
concurrency = 2
[data]
dataset = "{data}"
[space]
base = 4
[space.layers]
hidden_size = [32]
[budget]
max_batches = 40
epochs = 2
"""


def start(args, cwd):
    return subprocess.Popen([sys.executable, "-m", "nas.cli", *args], cwd=cwd, env=ENV, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)


def lines(path):
    return path.read_text().splitlines() if path.exists() else []


def wait_for_children(path, n, proc, timeout=300):
    deadline = time.time() + timeout
    while len(lines(path)) < n:
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline, "the search made no progress"
        time.sleep(0.5)


def ray_stop():
    ray = shutil.which("ray", path=os.path.dirname(sys.executable))
    subprocess.run([ray, "stop", "--force"], capture_output=True, timeout=120)


def test_ctrl_c_then_sigkill_then_resume_loses_nothing(tmp_path):
    data = write_tiny_corpus(tmp_path / "corpus")
    (tmp_path / "long.toml").write_text(TOML.format(data=data))
    run_dir = tmp_path / "results" / "long"
    children = run_dir / "children.jsonl"

    # 1. Ctrl-C: a clean stop that says how to resume
    p = start(["search", "--config", "long.toml"], tmp_path)
    wait_for_children(children, 2, p)
    os.killpg(p.pid, signal.SIGINT)
    out, err = p.communicate(timeout=300)
    assert "Traceback" not in err, err
    assert "nas search --resume long" in out, out
    assert p.returncode == 130, out + err  # resumable, but not done
    stopped_at = len(lines(children))
    assert 2 <= stopped_at < 14

    # 2. resume, then kill the driver outright in the middle
    p = start(["search", "--resume", "long"], tmp_path)
    wait_for_children(children, stopped_at + 3, p)
    os.killpg(p.pid, signal.SIGKILL)
    p.communicate(timeout=60)
    ray_stop()  # a SIGKILLed driver leaves its local Ray processes behind
    assert not list(run_dir.glob("*.tmp*")), "no half-written file may be left behind"

    # 3. resume to the end
    p = start(["search", "--resume", "long"], tmp_path)
    out, err = p.communicate(timeout=600)
    assert p.returncode == 0, out + err
    assert "[ 14/14]" in out and "[  1/14]" not in out, out  # the progress count continues across resumes
    cells = pd.read_csv(run_dir / "cells.csv")
    assert len(cells) == 14 and cells["trial_id"].is_unique
    assert sorted(cells["index"]) == list(range(14))
    assert set(cells["status"]) <= {"completed", "diverged", "failed"}
    controller = pd.read_csv(run_dir / "controller.csv")
    assert controller["step"].is_unique and controller["step"].max() == len(controller)
    learned = {t for ids in controller["trial_ids"] for t in ids.split(";")}
    trained = set(cells.loc[cells["reused_from"].isna(), "trial_id"])  # a reused outcome does not teach again
    assert len(controller) == len(learned) and learned == trained  # one update per trained child, none twice
    assert json.loads((run_dir / "config.json").read_text())["name"] == "long"


LONG_CHILD_TOML = """
name = "ckpt"
trials = 1
concurrency = 1
[data]
dataset = "{data}"
[space]
base = 2
[space.layers]
hidden_size = [16]
[budget]
epochs = 60               # of the tiny corpus (a few windows of batch 32 each)
checkpoint_every = 0.3
"""


def test_a_driver_killed_mid_child_resumes_the_child_from_its_checkpoint(tmp_path):
    """SIGKILL of the driver while a long child trains, once Tune's experiment state knows the child's latest
    checkpoint; `--resume` continues that child from its checkpoint (not from batch 0)."""
    data = write_tiny_corpus(tmp_path / "corpus")
    (tmp_path / "ckpt.toml").write_text(LONG_CHILD_TOML.format(data=data))
    run_dir = tmp_path / "results" / "ckpt"
    p = start(["search", "--config", "ckpt.toml"], tmp_path)
    deadline = time.time() + 180
    while not any("checkpoint_0" in f.read_text(errors="replace") for f in run_dir.glob("experiment_state-*.json")):
        assert p.poll() is None, p.communicate()
        assert time.time() < deadline, "no checkpoint reached Tune's experiment state"
        time.sleep(0.2)
    os.killpg(p.pid, signal.SIGKILL)
    p.communicate(timeout=60)
    ray_stop()
    assert not lines(run_dir / "children.jsonl")  # the child had not finished

    p = start(["search", "--resume", "ckpt"], tmp_path)
    out, err = p.communicate(timeout=600)
    assert p.returncode == 0, out + err
    # often the child checkpointed again after Tune's last snapshot, which named a checkpoint since deleted: the
    # resume then starts it from the newest one on disk (nas.search.restored_checkpoints) and says so
    repointed = [line for line in out.splitlines() if "named in Tune's experiment state is gone" in line]
    print("\n".join(repointed) or "the checkpoint Tune's experiment state named was there")
    assert all("resuming from checkpoint_" in line for line in repointed), repointed
    [row] = [json.loads(line) for line in lines(run_dir / "children.jsonl")]
    assert row["status"] == "completed", row["error"]
    assert row["epochs"] == 60 and 0 < row["resumed_from"] < row["fidelity"]
    assert not list(run_dir.glob("child_*/checkpoint_*"))  # removed once the child finished
