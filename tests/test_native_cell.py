"""The generated C kernels (workers/native_cell.py) equal the reference path: outputs, states and every gradient,
for the known cells and 36 random cells of bases 2, 4 and 8 (every combination and activation among them), in
float64 and at float32 tolerance; and when they cannot run (no compiler, a compile error, an unsupported dtype)
the torch path runs with one warning, and a corrupt cached library is rebuilt, never loaded."""

import os
import shutil
import stat
import warnings

import pytest
import torch
from cell_grads import outputs_and_grads

from search_spaces import known_cell, random_cell
from workers import cell_rnn, native_cell
from workers.cell_rnn import CellLayer, CellRNN, check_kernels, kernel_path
from workers.kernel_sequence import KernelSequence

needs_cc = pytest.mark.skipif(shutil.which(os.environ.get("CC") or "cc") is None,
                              reason="no C compiler (cc or $CC) on this machine: the C kernels cannot be built")

CELLS = [known_cell(name) for name in ("nascell", "lstm", "tanh_rnn")] + [
    random_cell(base, seed) for base in (2, 4, 8) for seed in range(12)]


@pytest.fixture
def fresh(monkeypatch, tmp_path):
    """An empty kernel cache and nothing remembered in this process about compilers, cells or warnings."""
    monkeypatch.setenv("NAS_KERNEL_CACHE", str(tmp_path / "cells"))
    monkeypatch.setattr(native_cell, "_toolchains", {})
    monkeypatch.setattr(native_cell, "_loaded", {})
    monkeypatch.setattr(cell_rnn, "_warned", set())
    return tmp_path


def _pair(cell, dtype, layers=2, hidden=5, inputs=4):
    torch.manual_seed(0)
    native = CellRNN(cell, inputs, hidden, layers, kernels="native").to(dtype)
    ref = CellRNN(cell, inputs, hidden, layers, fused=False).to(dtype)
    ref.load_state_dict(native.state_dict())
    return native, ref


def _inputs(dtype, steps=6, batch=3, inputs=4, hidden=5, layers=2, scale=1.0):
    g = torch.Generator().manual_seed(1)
    x = scale * torch.randn(steps, batch, inputs, generator=g, dtype=torch.float64)
    state = tuple(torch.randn(layers, batch, hidden, generator=g, dtype=torch.float64) for _ in range(2))
    weights = [torch.randn(s, generator=g, dtype=torch.float64)
               for s in [(steps, batch, hidden), (layers, batch, hidden), (layers, batch, hidden)]]
    return x.to(dtype), tuple(s.to(dtype) for s in state), [w.to(dtype) for w in weights]


def test_the_cells_cover_every_combination_and_activation():
    nodes = [node for cell in CELLS for node in cell.nodes]
    assert {node.comb for node in nodes} == {"add", "elem_mult"}
    assert {node.act for node in nodes} == {"identity", "tanh", "sigmoid", "relu"}
    mems = [cell.memory for cell in CELLS if cell.memory is not None]
    assert {m.inject_comb for m in mems} == {"add", "elem_mult"}
    assert {m.inject_act for m in mems} == {"identity", "tanh", "sigmoid", "relu"}
    assert any(cell.memory is None for cell in CELLS)


@needs_cc
@pytest.mark.parametrize("cell", CELLS, ids=lambda c: f"base{c.base}-{abs(hash(c)) % 10**6}")
def test_native_outputs_states_and_every_gradient_equal_the_reference_in_float64(cell):
    native, ref = _pair(cell, torch.float64)
    x, state, weights = _inputs(torch.float64)
    got, got_grads = outputs_and_grads(native, x, state, weights)
    want, want_grads = outputs_and_grads(ref, x, state, weights)
    assert kernel_path("native", cell, x) == "native"
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    for a, b in zip(got_grads, want_grads):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11)


@needs_cc
@pytest.mark.parametrize("cell", CELLS, ids=lambda c: f"base{c.base}-{abs(hash(c)) % 10**6}")
def test_native_float32_matches_the_reference_at_float32_tolerance(cell):
    """float32 (the vectorised exp and tanh), at a hidden size that leaves a partial vector (H = 37)."""
    native, ref = _pair(cell, torch.float32, hidden=37, inputs=16)
    x, state, weights = _inputs(torch.float32, steps=8, batch=4, inputs=16, hidden=37)
    got, got_grads = outputs_and_grads(native, x, state, weights)
    want, want_grads = outputs_and_grads(ref, x, state, weights)
    for a, b in zip(got + tuple(got_grads), want + tuple(want_grads)):
        assert torch.isfinite(b).all()
        assert torch.linalg.vector_norm(a - b) <= 1e-5 * torch.linalg.vector_norm(b) + 1e-6


@needs_cc
@pytest.mark.parametrize("name", ["nascell", "tanh_rnn", "lstm"])
def test_native_backward_passes_gradcheck(name):
    cell = known_cell(name)
    torch.manual_seed(0)
    n = cell.base
    x_proj = torch.randn(4, 2, n * 3, dtype=torch.double, requires_grad=True)
    w = (0.5 * torch.randn(n * 3, 3, dtype=torch.double)).requires_grad_()
    h0 = torch.randn(2, 3, dtype=torch.double, requires_grad=True)
    c0 = torch.randn(2, 3, dtype=torch.double, requires_grad=True)
    kernels = native_cell.load(cell)
    assert torch.autograd.gradcheck(lambda *a: KernelSequence.apply(*a, kernels), (x_proj, w, h0, c0))


@needs_cc
def test_activations_keep_nan_and_infinity_as_torch_does():
    """No -ffast-math: a NaN stays NaN (a diverging child fails as on the torch path); +-inf saturate."""
    cell = known_cell("nascell")
    native = CellLayer(cell, 4, 8, kernels="native")
    torch_path = CellLayer(cell, 4, 8, kernels="torch")
    torch_path.load_state_dict(native.state_dict())
    x = torch.randn(3, 2, 4)
    x[1, 0, 0], x[1, 1, 1], x[0, 1, 2] = float("nan"), float("inf"), -1e30
    z = torch.zeros(2, 8)
    with torch.no_grad():
        got, (_, c) = native(x, (z, z))
        want, (_, c_want) = torch_path(x, (z, z))
    assert torch.equal(got.isnan(), want.isnan()) and got.isnan().any()
    torch.testing.assert_close(got.nan_to_num(), want.nan_to_num(), rtol=1e-5, atol=1e-6)


@needs_cc
def test_native_runs_without_grad_and_is_what_auto_picks_on_a_cpu(fresh):
    cell = random_cell(8, 3)
    x = torch.randn(5, 2, 4)
    assert kernel_path("auto", cell, x) == "native"
    assert kernel_path("torch", cell, x) == "torch"
    assert kernel_path("auto", cell, x.double()) == "native"
    layer = CellLayer(cell, 4, 6)
    with torch.no_grad():
        out, _ = layer(x, (torch.zeros(2, 6), torch.zeros(2, 6)))
    assert not out.requires_grad and out.shape == (5, 2, 6)


@needs_cc
def test_an_unsupported_dtype_falls_back_to_torch_with_one_warning(fresh):
    cell = known_cell("nascell")
    x = torch.randn(5, 2, 4, dtype=torch.bfloat16)
    with pytest.warns(UserWarning, match="C kernels exist for float32 and float64, not bfloat16"):
        assert kernel_path("auto", cell, x) == "torch"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # said once per process
        assert kernel_path("native", cell, x) == "torch"


def test_no_compiler_falls_back_under_auto_and_is_an_error_when_asked_for(fresh, monkeypatch):
    monkeypatch.setenv("CC", "/nonexistent/cc")
    cell = known_cell("nascell")
    with pytest.warns(UserWarning, match="no C compiler: '/nonexistent/cc' is not on PATH"):
        assert kernel_path("auto", cell, torch.zeros(1)) == "torch"
    with pytest.raises(ValueError, match="cell kernels 'native' need a C compiler"):
        check_kernels("native")
    with pytest.raises(ValueError, match="need a C compiler"):
        CellLayer(cell, 4, 5, kernels="native")
    layer = CellLayer(cell, 4, 5)  # "auto" still trains, on torch operations
    out, _ = layer(torch.randn(3, 2, 4), (torch.zeros(2, 5), torch.zeros(2, 5)))
    out.sum().backward()


def _fake_compiler(tmp_path, body: str):
    path = tmp_path / "fake-cc"
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_a_compile_error_falls_back_under_auto_and_raises_when_asked_for(fresh, monkeypatch):
    cc = _fake_compiler(fresh, 'if [ "$1" = --version ]; then echo fake 1.0; exit 0; fi\n'
                               'echo "cell.c:1: error: the compiler broke" >&2; exit 1')
    monkeypatch.setenv("CC", str(cc))
    cell = known_cell("nascell")
    with pytest.warns(UserWarning, match="compiling the cell's kernels failed .*exit 1.*the compiler broke"):
        assert kernel_path("auto", cell, torch.zeros(1)) == "torch"
    with pytest.raises(native_cell.NativeUnavailable, match="the compiler broke"):
        kernel_path("native", cell, torch.zeros(1))
    assert not list((fresh / "cells").glob("*.so"))  # nothing half-written is left in the cache


@needs_cc
def test_the_cache_is_used_and_a_corrupt_library_is_rebuilt_not_loaded(fresh, monkeypatch):
    real = shutil.which(os.environ.get("CC") or "cc")
    calls = fresh / "calls"
    cc = _fake_compiler(fresh, f'[ "$1" = --version ] || echo x >> {calls}\nexec {real} "$@"')
    monkeypatch.setenv("CC", str(cc))
    cell = random_cell(4, 5)
    lib = native_cell.build(cell)
    assert lib.is_file() and lib.with_suffix(".c").read_text() == native_cell.c_source(cell)
    assert native_cell.build(cell) == lib and calls.read_text().count("x") == 1  # second use: from the cache
    lib.write_bytes(lib.read_bytes()[:100])  # truncated: its digest no longer matches
    assert native_cell.build(cell) == lib and calls.read_text().count("x") == 2  # rebuilt
    kernels = native_cell.load(cell)
    native, ref = CellLayer(cell, 3, 4, kernels="native"), CellLayer(cell, 3, 4, fused=False)
    ref.load_state_dict(native.state_dict())
    x, z = torch.randn(4, 2, 3), torch.zeros(2, 4)
    with torch.no_grad():
        torch.testing.assert_close(native(x, (z, z))[0], ref(x, (z, z))[0])
    assert kernels.functions[torch.float32]


@needs_cc
def test_the_cache_key_changes_with_the_cell_and_the_compiler(fresh, monkeypatch):
    a, b = native_cell.library_path(known_cell("nascell")), native_cell.library_path(known_cell("lstm"))
    assert a != b and a.parent == fresh / "cells"
    cc = _fake_compiler(fresh, f'exec {shutil.which(os.environ.get("CC") or "cc")} "$@"')
    monkeypatch.setenv("CC", str(cc))
    assert native_cell.library_path(known_cell("nascell")) != a


@needs_cc
def test_a_trained_child_records_the_native_path():
    from workers.child_settings import Budget, ModelConfig
    from workers.data import Corpus
    from workers.train import train_child

    ids = torch.arange(800) % 20
    corpus = Corpus("tiny", "char", tuple("abcdefghijklmnopqrst"), ids[:600], ids[600:], ids[600:])
    result = train_child(known_cell("nascell"), corpus, budget=Budget(epochs=1, max_batches=3),
                         model_config=ModelConfig(num_layers=1, hidden_size=8), device="cpu")
    assert result.status == "completed" and result.kernels == "native"
