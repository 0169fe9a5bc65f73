"""The generated Triton kernels equal the reference path: outputs, states and every gradient, on random cells of
bases 2, 4 and 8 and the known cells. On a CPU they run in Triton's interpreter (conftest sets
TRITON_INTERPRET=1); with ``NAS_TEST_DEVICE=cuda`` they are compiled and run on the GPU."""

import pytest
import torch

pytest.importorskip("triton")

from search_spaces import known_cell, random_cell  # noqa: E402
from workers.cell_rnn import CellLayer, CellRNN, check_kernels  # noqa: E402
from workers.kernel_sequence import KernelSequence  # noqa: E402
from workers.triton_cell import (  # noqa: E402
    backward_kernel_source,
    compile_kernels,
    forward_kernel_source,
    use_triton,
)

CELLS = [known_cell(name) for name in ("nascell", "lstm", "tanh_rnn")] + [
    random_cell(base, seed) for base in (2, 4, 8) for seed in range(4)]


def _rnns(cell, device, dtype, layers=2, hidden=5, inputs=4):
    torch.manual_seed(0)
    triton = CellRNN(cell, inputs, hidden, layers, kernels="triton").to(device, dtype)
    ref = CellRNN(cell, inputs, hidden, layers, fused=False).to(device, dtype)
    ref.load_state_dict(triton.state_dict())
    return triton, ref


def _outputs_and_grads(rnn, x, state, weights):
    h0, c0 = (s.clone().requires_grad_() for s in state)
    out, (h, c) = rnn(x, (h0, c0))
    loss = sum((t.float() * w).sum() for t, w in zip((out, h, c), weights))
    params = list(rnn.parameters())
    grads = torch.autograd.grad(loss, [h0, c0] + params, allow_unused=True)
    return (out, h, c), [torch.zeros_like(p) if g is None else g for g, p in zip(grads, [h0, c0] + params)]


def _random_inputs(device, dtype, steps=6, batch=3, inputs=4, hidden=5, layers=2, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(steps, batch, inputs, generator=g, dtype=torch.float64)
    state = tuple(torch.randn(layers, batch, hidden, generator=g, dtype=torch.float64) for _ in range(2))
    weights = [torch.randn(s, generator=g, dtype=torch.float64)
               for s in [(steps, batch, hidden), (layers, batch, hidden), (layers, batch, hidden)]]
    return (x.to(device, dtype), tuple(s.to(device, dtype) for s in state),
            [w.to(device, torch.float32 if dtype != torch.float64 else dtype) for w in weights])


@pytest.mark.parametrize("cell", CELLS, ids=lambda c: f"base{c.base}-{abs(hash(c)) % 10**6}")
def test_triton_outputs_states_and_every_gradient_equal_the_reference_in_float64(cell, device):
    triton, ref = _rnns(cell, device, torch.float64)
    x, state, weights = _random_inputs(device, torch.float64)
    got, got_grads = _outputs_and_grads(triton, x, state, weights)
    want, want_grads = _outputs_and_grads(ref, x, state, weights)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    for a, b in zip(got_grads, want_grads):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("cell", [known_cell("nascell"), random_cell(8, 7), random_cell(4, 7)],
                         ids=["nascell", "base8", "base4"])
def test_triton_float32_matches_the_reference_at_float32_tolerance(cell, device):
    """float32 everywhere, at sizes where the kernel's block covers a partial row (H=40: one block of 64)."""
    triton, ref = _rnns(cell, device, torch.float32, hidden=40, inputs=16)
    x, state, weights = _random_inputs(device, torch.float32, steps=8, batch=4, inputs=16, hidden=40)
    got, got_grads = _outputs_and_grads(triton, x, state, weights)
    want, want_grads = _outputs_and_grads(ref, x, state, weights)
    for a, b in zip(got + tuple(got_grads), want + tuple(want_grads)):
        assert torch.linalg.vector_norm(a - b) <= 1e-4 * torch.linalg.vector_norm(b) + 1e-6


def test_triton_under_bfloat16_autocast_matches_the_reference_and_reaches_float32_weights(device):
    cell = known_cell("nascell")
    triton, ref = _rnns(cell, device, torch.float32, hidden=16, inputs=8)
    x = torch.randn(10, 4, 8, device=device)
    with torch.autocast(device.type, dtype=torch.bfloat16):
        got, (h, c) = triton(x)
        want, _ = ref(x)
    assert got.dtype == torch.bfloat16 and c.dtype == torch.bfloat16
    torch.testing.assert_close(got.float(), want.float(), atol=0.05, rtol=0.05)
    got.float().sum().backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 and torch.isfinite(p.grad).all()
               for p in triton.parameters())


def test_triton_runs_without_grad_and_gradcheck_passes(device):
    cell = random_cell(4, 2)  # small: every gradcheck perturbation reruns the sequence (slow when interpreted)
    torch.manual_seed(0)
    n, hidden = cell.base, 2
    kw = dict(dtype=torch.float64, device=device)
    x_proj = torch.randn(3, 2, n * hidden, **kw, requires_grad=True)
    w = (0.5 * torch.randn(n * hidden, hidden, **kw)).requires_grad_()
    h0 = torch.randn(2, hidden, **kw, requires_grad=True)
    c0 = torch.randn(2, hidden, **kw, requires_grad=True)
    kernels = compile_kernels(cell)
    assert torch.autograd.gradcheck(lambda *a: KernelSequence.apply(*a, kernels), (x_proj, w, h0, c0))
    with torch.no_grad():
        out, h, c = KernelSequence.apply(x_proj, w, h0, c0, kernels)
    assert not out.requires_grad and torch.equal(out[-1], h)


def test_every_output_element_is_written(device):
    """Outputs start as NaN-poisoned buffers in the kernels' contract: every element must be overwritten."""
    cell = random_cell(8, 3)
    kernels = compile_kernels(cell)
    batch, hidden = 3, 37  # 37: a partial block
    g = torch.Generator().manual_seed(0)
    xp, hp = (torch.randn(batch, 8 * hidden, generator=g).to(device) for _ in range(2))
    c_prev, g_out, gh, gc = (torch.randn(batch, hidden, generator=g).to(device) for _ in range(4))
    h_out, c_out, gc_prev = (torch.full((batch, hidden), float("nan"), device=device) for _ in range(3))
    g_xp, g_hp = (torch.full((batch, 8 * hidden), float("nan"), device=device) for _ in range(2))
    kernels.forward(xp, hp, c_prev, h_out, c_out)
    kernels.backward(g_out, gh, gc, xp, hp, c_prev, g_xp, g_hp, gc_prev)
    written = [h_out, c_out, gc_prev, g_xp] + ([] if kernels.shared_grad else [g_hp])
    assert all(torch.isfinite(t).all() for t in written)


def test_kernel_sources_name_every_node_and_the_auto_choice():
    cell = known_cell("nascell")
    fwd, bwd = forward_kernel_source(cell), backward_kernel_source(cell)
    for k in range(2 * cell.base - 1):
        assert f"y{k} = " in fwd and f"gp{k} = " in bwd
    assert fwd.startswith("@triton.jit") and "tl.store(c_out" in fwd and "tl.store(gc_prev" in bwd
    assert use_triton("triton", torch.zeros(1)) and not use_triton("torch", torch.zeros(1))
    assert not use_triton("auto", torch.zeros(1))  # auto: torch ops on a CPU tensor
    with pytest.raises(ValueError, match="cell kernels: 'cuda' is not one of auto, torch, triton, native"):
        check_kernels("cuda")
    with pytest.raises(ValueError, match="cell kernels"):
        CellLayer(cell, 4, 5, kernels="fast")
