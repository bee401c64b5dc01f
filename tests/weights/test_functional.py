import pytest
import torch

from adaptmem.weights import BatchedRNN, WeightSpec, flatten, functional_rnn

ATOL = 1e-5  # the tolerance against nn.LSTM in fp32
CELLS = ["lstm", "gru", "rnn_tanh", "rnn_relu"]


def _modules(spec, n):
    mods = [spec.build() for _ in range(n)]
    return mods, torch.stack([flatten(m) for m in mods]).detach()


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("out", [None, 4])
def test_batched_equals_each_pytorch_module(cell, out):
    spec = WeightSpec(cell, 5, 7, num_layers=2, output_size=out)
    mods, v = _modules(spec, 3)
    x = torch.randn(3, 4, 9, 5)  # 4 sequences per network
    y = functional_rnn(spec, v, x)
    for n, m in enumerate(mods):
        torch.testing.assert_close(y[n], m(x[n])[0], atol=ATOL, rtol=0)
    torch.testing.assert_close(functional_rnn(spec, v, x, backend="reference"), y, atol=ATOL, rtol=0)


def test_formal_language_lstms_match_nn_lstm_to_1e5():
    spec = WeightSpec("lstm", 6, 32, num_layers=2, output_size=6)
    mods, v = _modules(spec, 8)
    v = v * 3  # larger weights than at initialisation, as after training
    for m, w in zip(mods, v):
        from adaptmem.weights import load_into

        load_into(w, m)
    x = torch.randn(8, 41, 6)
    y = functional_rnn(spec, v, x)
    ref = torch.stack([m(x[n : n + 1])[0][0] for n, m in enumerate(mods)])
    assert (y - ref).abs().max() < ATOL


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_initial_and_final_state_match_pytorch(cell):
    spec = WeightSpec(cell, 3, 6, num_layers=2)
    mods, v = _modules(spec, 2)
    x = torch.randn(2, 5, 7, 3)
    h0 = torch.randn(2, 2, 5, 6)
    state = (h0, torch.randn(2, 2, 5, 6)) if cell == "lstm" else h0
    y, last = functional_rnn(spec, v, x, state, return_state=True)
    for n, m in enumerate(mods):
        s = (state[0][:, n], state[1][:, n]) if cell == "lstm" else state[:, n]
        ym, sm = m(x[n], s)
        torch.testing.assert_close(y[n], ym, atol=ATOL, rtol=0)
        if cell == "lstm":
            torch.testing.assert_close(last[0][:, n], sm[0], atol=ATOL, rtol=0)
            torch.testing.assert_close(last[1][:, n], sm[1], atol=ATOL, rtol=0)
        else:
            torch.testing.assert_close(last[:, n], sm, atol=ATOL, rtol=0)


@pytest.mark.parametrize("cell", CELLS)
def test_step_by_step_equals_whole_sequence(cell):
    spec = WeightSpec(cell, 4, 5, num_layers=3, output_size=2)
    nets = BatchedRNN(spec, spec.init_vectors(3))
    x = torch.randn(3, 2, 6, 4)
    y, last = nets(x)
    state, ys = None, []
    for t in range(6):
        yt, state = nets.step(x[:, :, t], state)
        ys.append(yt)
    torch.testing.assert_close(torch.stack(ys, 2), y, atol=1e-6, rtol=0)
    torch.testing.assert_close(state, last, atol=1e-6, rtol=0)


def test_gradients_reach_weights_and_inputs_and_match_the_reference():
    spec = WeightSpec("lstm", 6, 8, num_layers=2, output_size=6)
    v = spec.init_vectors(3).requires_grad_()
    x = torch.randn(3, 10, 6, requires_grad=True)
    w = torch.randn(3, 10, 6)
    (functional_rnn(spec, v, x) * w).sum().backward()
    gv, gx = v.grad.clone(), x.grad.clone()
    v.grad = x.grad = None
    (functional_rnn(spec, v, x, backend="reference") * w).sum().backward()
    assert gv.abs().sum() > 0 and gx.abs().sum() > 0
    torch.testing.assert_close(gv, v.grad, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(gx, x.grad, atol=1e-5, rtol=1e-4)


def test_float64_gradcheck_through_the_batched_cell():
    spec = WeightSpec("gru", 2, 3, num_layers=2, output_size=2)
    v = spec.init_vectors(2, dtype=torch.float64).requires_grad_()
    x = torch.randn(2, 4, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: functional_rnn(spec, a, b), (v, x))


def test_bad_inputs_raise_clear_errors():
    spec = WeightSpec("lstm", 6, 8, output_size=6)
    v = spec.init_vectors(2)
    with pytest.raises(ValueError, match=r"functional_rnn: inputs must be \[N, T, input_size\]"):
        functional_rnn(spec, v, torch.randn(3, 5, 6))
    with pytest.raises(ValueError, match="functional_rnn: vectors must be"):
        functional_rnn(spec, v[:, :-1], torch.randn(2, 5, 6))
    with pytest.raises(TypeError, match="share a dtype"):
        functional_rnn(spec, v, torch.randn(2, 5, 6, dtype=torch.float64))
    with pytest.raises(ValueError, match="backend must be one of"):
        functional_rnn(spec, v, torch.randn(2, 5, 6), backend="cuda")
    with pytest.raises(ValueError, match="state tensors must be"):
        functional_rnn(spec, v, torch.randn(2, 5, 6), (torch.zeros(1, 2, 1, 4), torch.zeros(1, 2, 1, 4)))
