"""Exported cells: the generated standalone file against the in-project modules, TorchScript, the spec round trip,
and write_export's refusals."""

import ast
import importlib.util
import json
import os
import subprocess
import sys
import uuid

import pytest
import torch

from nas.runs import export
from nas.runs.export import export_source, write_export
from search_spaces import ChildSpec, HParams, known_cell, random_cell
from workers.cell_code import step_source
from workers.cell_rnn import CellRNN

# torch 2.13 deprecates torch.jit.script; the export still promises TorchScript, so the warning is expected here.
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")

T, B, IN, H = 6, 3, 5, 4


@pytest.fixture
def load_export(tmp_path, monkeypatch):
    """Write an export to tmp_path and import it under a fresh module name, removed from sys.modules afterwards.

    The module is registered while the test runs because torch.jit.script reads class sources through
    ``sys.modules[cls.__module__]``, as it would for a user's ``import my_cell``.
    """

    def load(spec, class_name="SearchedCell"):
        name = f"exported_{uuid.uuid4().hex}"
        py_path, _ = write_export(spec, tmp_path / f"{name}.py", class_name)
        module_spec = importlib.util.spec_from_file_location(name, py_path)
        module = importlib.util.module_from_spec(module_spec)
        monkeypatch.setitem(sys.modules, name, module)
        module_spec.loader.exec_module(module)
        return module

    return load


def in_project_rnn(cell, num_layers=2, dropout=0.0, seed=0):
    torch.manual_seed(seed)
    rnn = CellRNN(cell, IN, H, num_layers=num_layers, dropout=dropout).double()
    with torch.no_grad():
        for p in rnn.parameters():
            p.uniform_(-0.5, 0.5)
    return rnn


def inputs(num_layers=2, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(T, B, IN, generator=g, dtype=torch.float64)
    h0 = torch.randn(num_layers, B, H, generator=g, dtype=torch.float64) * 0.5
    c0 = torch.randn(num_layers, B, H, generator=g, dtype=torch.float64) * 0.5
    return x, (h0, c0)


def assert_same(actual, expected):
    """Same (out, (h, c)) structure and values to 1e-12."""
    out, (h, c) = actual
    ref_out, (ref_h, ref_c) = expected
    torch.testing.assert_close(out, ref_out, rtol=0, atol=1e-12)
    torch.testing.assert_close(h, ref_h, rtol=0, atol=1e-12)
    torch.testing.assert_close(c, ref_c, rtol=0, atol=1e-12)


def check_equals_in_project(module, cell, class_name="SearchedCell"):
    """The exported RNN (given weights) and the exported cell (step by step) equal CellRNN and CellLayer."""
    ref = in_project_rnn(cell)
    rnn = getattr(module, f"{class_name}RNN")(IN, H, num_layers=2).double()
    rnn.load_state_dict(ref.state_dict())  # strict: same keys and shapes
    x, state = inputs()
    assert_same(rnn(x, state), ref(x, state))
    assert_same(rnn(x), ref(x))

    layer = ref.layers[0]
    step = getattr(module, class_name)(IN, H).double()
    step.load_state_dict(layer.state_dict())
    h, c = ref_h, ref_c = state[0][0], state[1][0]
    for t in range(T):
        out, (h, c) = step(x[t], (h, c))
        ref_out, (ref_h, ref_c) = layer(x[t : t + 1], (ref_h, ref_c))
        assert_same((out, (h, c)), (ref_out[0], (ref_h, ref_c)))


def test_nascell_equals_in_project_rnn_and_layer(load_export):
    cell = known_cell("nascell")
    check_equals_in_project(load_export(ChildSpec(cell)), cell)


@pytest.mark.parametrize("base", [2, 4, 8])
@pytest.mark.parametrize("seed", range(3))
def test_random_cells_equal_in_project(load_export, base, seed):
    cell = random_cell(base, seed, memory=seed != 2)
    check_equals_in_project(load_export(ChildSpec(cell)), cell)


def test_dropout_between_layers_matches_in_project(load_export):
    cell = known_cell("nascell")
    ref = in_project_rnn(cell, num_layers=3, dropout=0.3)
    rnn = load_export(ChildSpec(cell)).SearchedCellRNN(IN, H, num_layers=3, dropout=0.3).double()
    rnn.load_state_dict(ref.state_dict())
    x, state = inputs(num_layers=3)
    torch.manual_seed(7)
    expected = ref(x, state)
    torch.manual_seed(7)
    assert_same(rnn(x, state), expected)  # same masks drawn in the same order


def test_generated_file_imports_only_torch(tmp_path):
    py_path, _ = write_export(ChildSpec(known_cell("nascell")), tmp_path / "my_cell.py")
    tree = ast.parse(py_path.read_text(encoding="utf-8"))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "relative import in the generated file"
            imported.add(node.module.split(".")[0])
    assert imported == {"torch", "typing"}

    # And it runs in a fresh interpreter where importing the project's packages fails.
    script = f"""
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in {{"search_spaces", "workers", "nas"}}:
            raise ImportError("blocked: " + name)
sys.meta_path.insert(0, Block())
sys.path.insert(0, {str(tmp_path)!r})
import torch, my_cell
out, (h, c) = my_cell.SearchedCellRNN(3, 4, num_layers=2)(torch.randn(5, 2, 3))
assert out.shape == (5, 2, 4) and h.shape == c.shape == (2, 2, 4)
"""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


JIT_CELLS = {
    "nascell": known_cell("nascell"),
    "no_memory": known_cell("tanh_rnn"),
    "random2": random_cell(2, 0),
    "random4": random_cell(4, 0),
}


@pytest.mark.parametrize("name", list(JIT_CELLS))
def test_torchscript_matches_eager_forward_and_backward(load_export, name):
    module = load_export(ChildSpec(JIT_CELLS[name]))
    torch.manual_seed(0)
    rnn = module.SearchedCellRNN(IN, H, num_layers=2).double()
    step = module.SearchedCell(IN, H).double()
    scripted_rnn, scripted_step = torch.jit.script(rnn), torch.jit.script(step)
    x, state = inputs()
    h_c = (state[0][0], state[1][0])
    # Several calls: TorchScript's profiling executor optimizes (and once broke, see script_safe_step) on call 2+.
    for _ in range(3):
        assert_same(scripted_rnn(x, state), rnn(x, state))
        assert_same(scripted_rnn(x), rnn(x))
        assert_same(scripted_step(x[0], h_c), step(x[0], h_c))
        assert_same(scripted_step.unroll(x, h_c), step.unroll(x, h_c))
    # Training through the scripted module gives eager's gradients.
    for _ in range(3):
        rnn.zero_grad()
        out, (h, c) = scripted_rnn(x, state)
        (out.sum() + c.sum()).backward()
        scripted_grads = [p.grad.clone() for p in rnn.parameters()]
        rnn.zero_grad()
        out, (h, c) = rnn(x, state)
        (out.sum() + c.sum()).backward()
        for got, p in zip(scripted_grads, rnn.parameters()):
            torch.testing.assert_close(got, p.grad, rtol=0, atol=1e-12)


def test_step_is_step_source_with_tensor_split(tmp_path):
    cell = known_cell("nascell")
    py_path, _ = write_export(ChildSpec(cell), tmp_path / "my_cell.py")
    generated = export.script_safe_step(step_source(cell, "cell_step"))
    assert generated in py_path.read_text(encoding="utf-8")
    assert generated.replace(".tensor_split(", ".chunk(") == step_source(cell, "cell_step")
    assert ".chunk(" not in py_path.read_text(encoding="utf-8")


def test_spec_round_trips_through_module_and_json(load_export, tmp_path):
    hparams = HParams.of({"num_layers": 2, "hidden_size": 64, "dropout": 0.1, "note": 'quotes """ and \\ '})
    spec = ChildSpec(random_cell(8, seed=11), hparams)
    module = load_export(spec)
    assert ChildSpec.from_dict(module.SPEC) == spec
    (json_path,) = tmp_path.glob("*.json")
    assert ChildSpec.from_json(json_path.read_text()) == spec
    # The docstring carries the formula, the hyperparameters, the spec JSON and where it came from.
    doc = module.__doc__
    assert spec.cell.formula() in "\n".join(line.strip() for line in doc.splitlines())
    assert spec.to_json() in doc and "dropout=0.1" in doc and "nas export" in doc


def test_write_export_names_the_json_next_to_the_module(tmp_path):
    py_path, json_path = write_export(ChildSpec(known_cell("lstm")), str(tmp_path / "my_cell.py"))
    assert (py_path, json_path) == (tmp_path / "my_cell.py", tmp_path / "my_cell.json")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["my_cell.json", "my_cell.py"]
    assert json.loads(json_path.read_text())["cell"]["base"] == 8


@pytest.mark.parametrize(
    "out, class_name, message",
    [
        ("my_cell.txt", "SearchedCell", "does not end in .py"),
        ("my_cell", "SearchedCell", "does not end in .py"),
        ("missing/my_cell.py", "SearchedCell", "does not exist"),
        ("my_cell.py", "3Cell", "not a valid Python class name"),
        ("my_cell.py", "my-cell", "not a valid Python class name"),
        ("my_cell.py", "class", "not a valid Python class name"),
        ("my_cell.py", "", "not a valid Python class name"),
        ("my_cell.py", "Tensor", "pick another name"),
        ("my_cell.py", "int", "pick another name"),
    ],
)
def test_write_export_refuses_bad_arguments_and_writes_nothing(tmp_path, out, class_name, message):
    old = tmp_path / "my_cell.py"
    old.write_text("# previous export\n")
    with pytest.raises(ValueError, match=message):
        write_export(ChildSpec(known_cell("nascell")), tmp_path / out, class_name)
    assert [p.name for p in tmp_path.iterdir()] == ["my_cell.py"]
    assert old.read_text() == "# previous export\n"


def test_write_export_refuses_a_directory(tmp_path):
    (tmp_path / "cells.py").mkdir()
    with pytest.raises(ValueError, match="is a directory"):
        write_export(ChildSpec(known_cell("nascell")), tmp_path / "cells.py")
    assert [p.name for p in tmp_path.iterdir()] == ["cells.py"] and not any((tmp_path / "cells.py").iterdir())


def test_write_export_failure_while_writing_leaves_old_files(tmp_path, monkeypatch):
    (tmp_path / "my_cell.py").write_text("old py\n")
    (tmp_path / "my_cell.json").write_text("old json\n")

    def fail(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(export.os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        write_export(ChildSpec(known_cell("nascell")), tmp_path / "my_cell.py")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["my_cell.json", "my_cell.py"]  # no temp files
    assert (tmp_path / "my_cell.py").read_text() == "old py\n"
    assert (tmp_path / "my_cell.json").read_text() == "old json\n"


def test_non_finite_hyperparameter_is_refused():
    spec = ChildSpec(known_cell("nascell"), HParams.of({"dropout": float("nan")}))
    with pytest.raises(ValueError, match="hparams.dropout"):
        export_source(spec)


def test_custom_class_name(load_export):
    cell = random_cell(4, seed=5)
    module = load_export(ChildSpec(cell), class_name="MyNASCell")
    assert module.__all__ == ["SPEC", "cell_step", "MyNASCell", "MyNASCellRNN"]
    assert not hasattr(module, "SearchedCell") and not hasattr(module, "SearchedCellRNN")
    check_equals_in_project(module, cell, class_name="MyNASCell")
    scripted = torch.jit.script(module.MyNASCellRNN(IN, H).double())
    x, _ = inputs()
    assert scripted(x)[0].shape == (T, B, H)
