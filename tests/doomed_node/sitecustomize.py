"""Makes every child that starts on one Ray node block until the node is removed (tests/test_faults.py).

Python imports ``sitecustomize`` at start-up from the first folder on ``sys.path`` that has one. The node-loss test
starts one worker node with this folder first on ``PYTHONPATH`` and ``NAS_TEST_BLOCKED_CHILDREN`` naming a folder;
the node's raylet, and so every Ray worker process it spawns, inherits both. In those processes, importing
``workers.trainable`` swaps its module-level ``train_child`` for :func:`_blocked`: the child writes one marker file
into that folder and then waits forever, so it cannot finish there, only die with the node. Without the variable
(any other process that happens to see this folder) nothing is installed.
"""

import importlib.abc
import os
import sys
import threading

TARGET = "workers.trainable"
MARKERS = os.environ.get("NAS_TEST_BLOCKED_CHILDREN")


def _blocked(*args, **kwargs):
    """Stand-in for workers.train.train_child: report "started and blocked" with a marker file, then never return."""
    import ray

    node_id = ray.get_runtime_context().get_node_id() if ray.is_initialized() else ""
    name = f"child-{os.getpid()}-{threading.get_ident()}"
    tmp = os.path.join(MARKERS, f".{name}.tmp")
    with open(tmp, "w") as f:
        f.write(node_id)
    os.replace(tmp, os.path.join(MARKERS, name))  # the marker appears whole
    threading.Event().wait()


class _PatchTrainable(importlib.abc.MetaPathFinder):
    """Finds workers.trainable with the other finders, then patches the module right after it executes."""

    def find_spec(self, name, path, target=None):
        if name != TARGET:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                break
        else:
            return None
        execute = spec.loader.exec_module

        def exec_module(module):
            execute(module)
            module.train_child = _blocked

        spec.loader.exec_module = exec_module
        return spec


if MARKERS:
    sys.meta_path.insert(0, _PatchTrainable())
