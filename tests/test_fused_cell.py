"""The fused layer-sequence (default) equals the reference path (the exported step under plain autograd)."""

import pytest
import torch
from cell_grads import outputs_and_grads

from search_spaces import known_cell, random_cell
from workers.cell_rnn import CellLayer, CellRNN
from workers.fused_cell import CellSequence, backward_source, compile_cell, forward_source

CELLS = [known_cell(name) for name in ("nascell", "lstm", "tanh_rnn")] + [
    random_cell(base, seed) for base in (2, 4, 8) for seed in range(12)]


def _pair(cell, layers=1, dropout=0.0):
    torch.manual_seed(0)
    fused = CellRNN(cell, 4, 5, layers, dropout, kernels="torch").double()
    ref = CellRNN(cell, 4, 5, layers, dropout, fused=False).double()
    ref.load_state_dict(fused.state_dict())
    return fused, ref


@pytest.mark.parametrize("cell", CELLS, ids=lambda c: f"base{c.base}-{abs(hash(c)) % 10**6}")
def test_fused_outputs_states_and_every_gradient_equal_the_reference(cell):
    fused, ref = _pair(cell, layers=2)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(6, 3, 4, generator=g, dtype=torch.double)
    state = tuple(torch.randn(2, 3, 5, generator=g, dtype=torch.double) for _ in range(2))
    weights = [torch.randn(s, generator=g, dtype=torch.double) for s in [(6, 3, 5), (2, 3, 5), (2, 3, 5)]]
    got, got_grads = outputs_and_grads(fused, x, state, weights)
    want, want_grads = outputs_and_grads(ref, x, state, weights)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    for a, b in zip(got_grads, want_grads):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("name", ["nascell", "tanh_rnn"])
def test_fused_backward_passes_gradcheck(name):
    cell = known_cell(name)
    torch.manual_seed(0)
    n = cell.base
    x_proj = torch.randn(4, 2, n * 3, dtype=torch.double, requires_grad=True)
    w = (0.5 * torch.randn(n * 3, 3, dtype=torch.double)).requires_grad_()
    h0 = torch.randn(2, 3, dtype=torch.double, requires_grad=True)
    c0 = torch.randn(2, 3, dtype=torch.double, requires_grad=True)
    assert torch.autograd.gradcheck(lambda *a: CellSequence.apply(*a, compile_cell(cell)), (x_proj, w, h0, c0))


def test_fused_float32_matches_the_reference_to_float_tolerance_and_runs_without_grad():
    cell = random_cell(8, 3)
    torch.manual_seed(0)
    fused = CellLayer(cell, 16, 32, kernels="torch")
    ref = CellLayer(cell, 16, 32, fused=False)
    ref.load_state_dict(fused.state_dict())
    x, z = torch.randn(35, 8, 16), torch.zeros(8, 32)
    with torch.no_grad():
        out, (h, c) = fused(x, (z, z))
        want, (h2, c2) = ref(x, (z, z))
    assert not out.requires_grad
    torch.testing.assert_close(out, want)
    torch.testing.assert_close(c, c2)


def test_the_default_is_fused_and_the_state_dict_is_the_reference_one():
    rnn = CellRNN(known_cell("nascell"), 4, 5, 2)
    assert all(layer.fused for layer in rnn.layers)
    assert set(rnn.state_dict()) == set(CellRNN(known_cell("nascell"), 4, 5, 2, fused=False).state_dict())


def test_generated_sources_name_every_node():
    cell = known_cell("nascell")
    fwd, bwd = forward_source(cell), backward_source(cell)
    for k in range(2 * cell.base - 1):
        assert f"y{k} = " in fwd and f"gp{k} = " in bwd
    assert "torch.ops.aten.tanh_backward" in bwd


def test_saved_step_tensors_are_freed_with_the_outputs():
    """No reference cycle: a carried (h, c) must not keep every earlier step's saved tensors alive (a leak that
    grew ~50 MB per training step at search sizes before the returned state was made a fresh tensor)."""
    import weakref

    layer = CellLayer(known_cell("nascell"), 4, 5, kernels="torch")
    z = torch.zeros(3, 5)
    out, (h, c) = layer(torch.randn(6, 3, 4), (z, z))
    saved = weakref.ref(out.grad_fn.saved_tensors[-1])  # a step's node output
    (out.sum() + h.sum() + c.sum()).backward()
    h, c = h.detach(), c.detach()  # what the training loop keeps
    del out
    assert saved() is None


def test_backward_frees_the_step_tensors_even_while_the_outputs_live():
    """The previous step's logits/loss are still alive during the next training step; its saved step tensors
    must not be (autograd frees what save_for_backward holds once backward has run)."""
    import weakref

    forward_step, backward_step = compile_cell(known_cell("nascell"))
    refs = []

    def spy(xp, hp, c_prev):  # the real step, remembering a weak reference to what it saves
        h, c, saved = forward_step(xp, hp, c_prev)
        refs.extend(weakref.ref(t) for t in saved)
        return h, c, saved

    x_proj = torch.randn(6, 3, 8 * 5, requires_grad=True)
    w, z = torch.randn(8 * 5, 5, requires_grad=True), torch.zeros(3, 5)
    out, h, c = CellSequence.apply(x_proj, w, z, z, (spy, backward_step))
    assert all(r() is not None for r in refs)
    out.sum().backward()
    assert all(r() is None for r in refs)  # out is alive, the step tensors are not
