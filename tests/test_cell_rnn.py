"""Cells as modules: the NAS cell against its published equations, random cells against an independent
tree-walk interpreter, the LSTM and tanh-RNN points against torch's own cells."""

import pytest
import torch

from search_spaces import known_cell, random_cell
from search_spaces.cell import children
from workers.cell_rnn import CellLayer, CellRNN

T, B, IN, H = 6, 3, 5, 4


def nas_cell_reference(x, h, c, W, U, b, bias_on_input=True):
    """tensorflow/addons nas_cell.py `call`, transliterated line by line (kernel = W^T, recurrent_kernel = U^T).

    addons adds the bias to the recurrent product; this project's contract puts it on the input projection.
    """
    sigmoid, tanh, relu = torch.sigmoid, torch.tanh, torch.relu
    m_matrix = h @ U.T
    inputs_matrix = x @ W.T
    if bias_on_input:
        inputs_matrix = inputs_matrix + b
    else:
        m_matrix = m_matrix + b
    m = m_matrix.split(H, dim=1)
    i = inputs_matrix.split(H, dim=1)
    layer1_0 = sigmoid(i[0] + m[0])
    layer1_1 = relu(i[1] + m[1])
    layer1_2 = sigmoid(i[2] + m[2])
    layer1_3 = relu(i[3] * m[3])
    layer1_4 = tanh(i[4] + m[4])
    layer1_5 = sigmoid(i[5] + m[5])
    layer1_6 = tanh(i[6] + m[6])
    layer1_7 = sigmoid(i[7] + m[7])
    l2_0 = tanh(layer1_0 * layer1_1)
    l2_1 = tanh(layer1_2 + layer1_3)
    l2_2 = tanh(layer1_4 * layer1_5)
    l2_3 = sigmoid(layer1_6 + layer1_7)
    l2_0 = tanh(l2_0 + c)
    l3_0_pre = l2_0 * l2_1
    new_c = l3_0_pre
    l3_0 = l3_0_pre
    l3_1 = tanh(l2_2 + l2_3)
    new_m = tanh(l3_0 * l3_1)
    return new_m, new_c


def run_reference(step_fn, layer, x, h, c):
    W, U, b = layer.input_proj.weight, layer.hidden_proj.weight, layer.input_proj.bias
    outs = []
    for t in range(x.shape[0]):
        h, c = step_fn(x[t], h, c, W, U, b)
        outs.append(h)
    return torch.stack(outs), h, c


def make_layer(cell, seed=0, scale=0.5):
    torch.manual_seed(seed)
    layer = CellLayer(cell, IN, H).double()
    with torch.no_grad():
        for p in layer.parameters():
            p.uniform_(-scale, scale)
    x = torch.randn(T, B, IN, dtype=torch.float64)
    h0 = torch.randn(B, H, dtype=torch.float64) * 0.5
    c0 = torch.randn(B, H, dtype=torch.float64) * 0.5
    return layer, x, h0, c0


def test_nascell_matches_published_equations():
    layer, x, h0, c0 = make_layer(known_cell("nascell"))
    out, (h, c) = layer(x, (h0, c0))
    ref_out, ref_h, ref_c = run_reference(nas_cell_reference, layer, x, h0, c0)
    torch.testing.assert_close(out, ref_out, rtol=0, atol=1e-12)
    torch.testing.assert_close(c, ref_c, rtol=0, atol=1e-12)


def test_nascell_without_bias_equals_addons_exactly():
    layer, x, h0, c0 = make_layer(known_cell("nascell"), seed=1)
    with torch.no_grad():
        layer.input_proj.bias.zero_()
    out, _ = layer(x, (h0, c0))
    addons = lambda x, h, c, W, U, b: nas_cell_reference(x, h, c, W, U, b, bias_on_input=False)  # noqa: E731
    ref_out, _, _ = run_reference(addons, layer, x, h0, c0)
    torch.testing.assert_close(out, ref_out, rtol=0, atol=1e-12)


def interpret(cell, x_proj, h_proj, c_prev):
    """An independent tree walk over the cell definition (slow, obvious)."""
    act = {"identity": lambda v: v, "tanh": torch.tanh, "sigmoid": torch.sigmoid, "relu": torch.relu}
    comb = {"add": lambda a, b: a + b, "elem_mult": lambda a, b: a * b}
    xs, hs = x_proj.split(H, 1), h_proj.split(H, 1)
    out, c_next = {}, c_prev
    for k, node in enumerate(cell.nodes):
        kids = children(cell.base, k)
        a, b = (xs[k], hs[k]) if kids is None else (out[kids[0]], out[kids[1]])
        pre = comb[node.comb](a, b)
        out[k] = act[node.act](pre)
        m = cell.memory
        if m is not None:
            if m.output_node == k:
                c_next = pre
            if m.inject_node == k:
                out[k] = act[m.inject_act](comb[m.inject_comb](out[k], c_prev))
    return out[len(cell.nodes) - 1], c_next


@pytest.mark.parametrize("base", [2, 4, 8, 16])
@pytest.mark.parametrize("seed", range(6))
def test_random_cells_match_interpreter(base, seed):
    cell = random_cell(base, seed, memory=seed != 5)
    layer, x, h0, c0 = make_layer(cell, seed)
    out, (h, c) = layer(x, (h0, c0))

    def step(x_t, h, c, W, U, b):
        return interpret(cell, x_t @ W.T + b, h @ U.T, c)

    ref_out, ref_h, ref_c = run_reference(step, layer, x, h0, c0)
    torch.testing.assert_close(out, ref_out, rtol=0, atol=1e-12)
    torch.testing.assert_close(c, ref_c, rtol=0, atol=1e-12)


def test_lstm_point_equals_torch_lstm_cell():
    layer, x, h0, c0 = make_layer(known_cell("lstm"), seed=3)
    torch.manual_seed(4)
    ref = torch.nn.LSTMCell(IN, H).double()
    W_i, W_f, W_g, W_o = ref.weight_ih.chunk(4)
    U_i, U_f, U_g, U_o = ref.weight_hh.chunk(4)
    b = (ref.bias_ih + ref.bias_hh).chunk(4)
    zeros_w, zeros_u, zeros_b = torch.zeros_like(W_i), torch.zeros_like(U_i), torch.zeros_like(b[0])
    # leaves: f = 0 (+1 spare), i = 2, g = 3, o = 4 (+5, 6, 7 spare)
    leaf_w = [W_f, zeros_w, W_i, W_g, W_o, zeros_w, zeros_w, zeros_w]
    leaf_u = [U_f, zeros_u, U_i, U_g, U_o, zeros_u, zeros_u, zeros_u]
    leaf_b = [b[1], zeros_b, b[0], b[2], b[3], zeros_b, zeros_b, zeros_b]
    with torch.no_grad():
        layer.input_proj.weight.copy_(torch.cat(leaf_w))
        layer.hidden_proj.weight.copy_(torch.cat(leaf_u))
        layer.input_proj.bias.copy_(torch.cat(leaf_b))
    out, (h, c) = layer(x, (h0, c0))
    hr, cr = h0, c0
    for t in range(T):
        hr, cr = ref(x[t], (hr, cr))
    torch.testing.assert_close(h, hr, rtol=0, atol=1e-12)
    torch.testing.assert_close(c, cr, rtol=0, atol=1e-12)


def test_tanh_rnn_point_equals_torch_rnn_cell_and_keeps_c():
    layer, x, h0, c0 = make_layer(known_cell("tanh_rnn"), seed=5)
    ref = torch.nn.RNNCell(IN, H).double()
    with torch.no_grad():
        layer.input_proj.weight.copy_(torch.cat([ref.weight_ih, torch.zeros_like(ref.weight_ih)]))
        layer.hidden_proj.weight.copy_(torch.cat([ref.weight_hh, torch.zeros_like(ref.weight_hh)]))
        layer.input_proj.bias.copy_(torch.cat([ref.bias_ih + ref.bias_hh, torch.zeros(H, dtype=torch.float64)]))
    out, (h, c) = layer(x, (h0, c0))
    hr = h0
    for t in range(T):
        hr = ref(x[t], hr)
    torch.testing.assert_close(h, hr, rtol=0, atol=1e-12)
    assert torch.equal(c, c0)


def test_multilayer_rnn_interface_matches_nn_lstm():
    torch.manual_seed(0)
    rnn = CellRNN(known_cell("nascell"), IN, H, num_layers=3, dropout=0.1)
    x = torch.randn(T, B, IN)
    out, (h, c) = rnn(x)
    assert out.shape == (T, B, H) and h.shape == c.shape == (3, B, H)
    torch.testing.assert_close(out[-1], h[-1])
    # the state carries across calls: running 2 halves equals running the whole sequence
    rnn.eval()
    full, _ = rnn(x)
    first, state = rnn(x[:3])
    second, _ = rnn(x[3:], state)
    torch.testing.assert_close(torch.cat([first, second]), full)
    out.sum().backward()
    assert all(p.grad is not None for p in rnn.parameters())


def test_parameter_contract():
    layer = CellLayer(known_cell("nascell"), IN, H)
    assert layer.input_proj.weight.shape == (8 * H, IN) and layer.input_proj.bias.shape == (8 * H,)
    assert layer.hidden_proj.weight.shape == (8 * H, H) and layer.hidden_proj.bias is None
