"""The table commands read a results folder without torch or Ray: `nas results`, `nas compare` and `nas show`."""

import json
import subprocess
import sys

from nas.runs.records import ChildRecord, append_child
from search_spaces import ChildSpec, known_cell
from workers.outcome import ChildOutcome

CHECK = """
import sys
from nas.cli import main
for argv in {argvs!r}:
    assert main(argv) == 0, argv
heavy = sorted(m for m in ("torch", "ray", "triton") if m in sys.modules)
assert not heavy, f"imported {{heavy}}"
"""


def test_results_compare_and_show_import_neither_torch_nor_ray(tmp_path):
    run = tmp_path / "results" / "run"
    spec = ChildSpec(known_cell("nascell")).to_dict()
    for i, ppl in enumerate([12.5, 11.0]):
        append_child(run, ChildRecord(f"t{i}", i, ChildOutcome("completed", ppl, 1000, 1.5), 0.5, spec=spec,
                                      formula="n0 = x0 + h0"))
    (run / "config.json").write_text(json.dumps({"algo": "random", "data": {"dataset": "shakespeare"}}))
    (tmp_path / "cell.json").write_text(json.dumps(spec))
    argvs = [["results", str(run)], ["compare", "run", "--results-dir", str(tmp_path / "results")],
             ["show", str(run)], ["show", "nascell"], ["show", str(tmp_path / "cell.json")]]
    p = subprocess.run([sys.executable, "-c", CHECK.format(argvs=argvs)], capture_output=True, text=True,
                       cwd=tmp_path, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "bits/char" in p.stdout  # the run's level read from config.json, without nas.config


def test_reading_search_settings_imports_neither_torch_nor_ray():
    code = ("import sys, nas.config; heavy = sorted(m for m in ('torch', 'ray', 'triton') if m in sys.modules); "
            "assert not heavy, f'nas.config imported {heavy}'")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr


def test_show_of_a_named_cell_needs_no_pandas():
    code = ("import sys; from nas.cli import main; assert main(['show', 'nascell']) == 0; "
            "assert 'pandas' not in sys.modules, 'nas show nascell imported pandas'")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
