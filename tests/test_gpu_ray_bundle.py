"""The trimmed Ray bundle for the GPU machine (bench/gpu_ray_bundle.sh, issue 21) runs a search: built for this
machine's Python, installed into a fresh environment that holds only what the GPU machine has (torch, numpy,
pandas, pyarrow, matplotlib, ... and no Ray), a 4-child search completes from it.

Skipped unless Ray's wheel for this Python and the small wheels are in the bundle's download cache (this test
downloads nothing): build once with ``bash bench/gpu_ray_bundle.sh local``. Takes about 2 minutes."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import ray
from test_search_e2e import TINY_TOML, write_tiny_corpus

ROOT = Path(__file__).resolve().parent.parent
TAG = f"cp{sys.version_info.major}{sys.version_info.minor}"
CACHE = Path(os.environ.get("NAS_BUNDLE_CACHE", Path.home() / ".cache" / "nas-gpu-ray")) / TAG
GPU_MACHINE_HAS = ["torch==2.13.0", "numpy", "pandas", "pyarrow", "matplotlib", "click", "filelock", "msgpack",
                   "packaging", "protobuf", "pyyaml", "requests", "fsspec", "attrs", "typing_extensions"]
"""Of the GPU machine's packages (../.library/device/KINDS.md), those the product and Ray import."""

cached = list(CACHE.glob(f"ray-{ray.__version__}-{TAG}-*.whl")) and (CACHE / "deps" / ".complete").exists()
uv = shutil.which("uv", path=os.path.dirname(sys.executable)) or shutil.which("uv")
links = subprocess.run([sys.executable, "-m", "pip", "config", "get", "global.find-links"], capture_output=True,
                       text=True).stdout.strip()


@pytest.mark.skipif(not cached, reason=f"Ray {ray.__version__}'s {TAG} wheel is not in {CACHE}: build the bundle "
                    "once with `bash bench/gpu_ray_bundle.sh local`")
@pytest.mark.skipif(uv is None or not links, reason="needs uv and a local find-links folder holding torch's CPU wheel")
def test_a_search_runs_from_the_trimmed_bundle_in_an_environment_without_ray(tmp_path):
    env = {**os.environ, "NAS_BUNDLE_CACHE": str(CACHE.parent), "XZ_LEVEL": "0", "RAY_AIR_NEW_OUTPUT": "0"}
    env.pop("PYTHONPATH", None)
    bundle = tmp_path / "bundle"
    built = subprocess.run(["bash", str(ROOT / "bench" / "gpu_ray_bundle.sh"), "local", str(bundle)], env=env,
                           capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stdout + built.stderr
    assert not (bundle / "ray").exists() and "gpu_ray_bundle: ray=" in built.stdout
    names = {w.name.split("-")[0] for w in (bundle / "wheels").glob("*.whl")}
    assert {"jsonschema", "tensorboardx", "pydantic", "pydantic_core"} <= names and "numpy" not in names

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    py = venv / "bin" / "python"
    subprocess.run([uv, "pip", "install", "-q", "--python", str(py), "--find-links", links, *GPU_MACHINE_HAS, "pip"],
                   check=True, capture_output=True, timeout=600)
    assert subprocess.run([str(py), "-c", "import ray"], capture_output=True).returncode != 0  # no Ray there yet

    data = write_tiny_corpus(tmp_path / "corpus")
    (tmp_path / "tiny.toml").write_text(TINY_TOML.format(data=data))
    site = tmp_path / "site"
    script = (f". {bundle}/install.sh {site} && export PYTHONPATH={ROOT}:$PYTHONPATH && "
              "python -c 'import ray; print(ray.__file__)' && python -m nas.cli search --config tiny.toml")
    env = {**env, "PATH": f"{venv / 'bin'}:{env['PATH']}", "PYTHON": str(py)}
    run = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert run.stdout.splitlines()[0].startswith(str(site / "ray"))  # the bundle's Ray, not this environment's
    assert not (site / "ray" / "rllib").exists() and not (site / "ray" / "jars").exists()
    records = [json.loads(line) for line in (tmp_path / "results" / "tiny" / "children.jsonl").read_text().splitlines()]
    statuses = [r["status"] for r in records]
    assert len(records) == 4 and "failed" not in statuses and "completed" in statuses, records
