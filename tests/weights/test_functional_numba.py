"""functional_rnn(backend="numba"): the compiled LSTM loop against nn.LSTM, the torch form and gradcheck."""

import pytest
import torch

from adaptmem.weights import BatchedRNN, WeightSpec, flatten, functional_rnn
from adaptmem.weights import functional as functional_module

pytest.importorskip("numba")

ATOL = 1e-5  # the tolerance against nn.LSTM in fp32


def _modules(spec, n, scale=1.0):
    mods = [spec.build() for _ in range(n)]
    with torch.no_grad():
        for m in mods:
            for p in m.parameters():
                p.mul_(scale)
    return mods, torch.stack([flatten(m) for m in mods]).detach()


@pytest.mark.parametrize("batch,T", [(1, 41), (5, 7), (2, 1)])
def test_numba_equals_each_nn_lstm_with_state(batch, T):
    # the zoo's LSTM with weights 3x their initial size (as after training); T = 1 and odd T
    # cover the no-grad path's two-slot ring of gates and cell states
    spec = WeightSpec("lstm", 6, 32, num_layers=2, output_size=6)
    mods, v = _modules(spec, 4, scale=3.0)
    x = torch.randn(4, batch, T, 6)
    h0, c0 = torch.randn(2, 4, batch, 32), torch.randn(2, 4, batch, 32)
    with torch.no_grad():
        y, (h, c) = functional_rnn(spec, v, x, (h0, c0), backend="numba", return_state=True)
        for n, m in enumerate(mods):
            ym, (hn, cn) = m(x[n], (h0[:, n].contiguous(), c0[:, n].contiguous()))
            torch.testing.assert_close(y[n], ym, atol=ATOL, rtol=0)
            torch.testing.assert_close(h[:, n], hn, atol=ATOL, rtol=0)
            torch.testing.assert_close(c[:, n], cn, atol=ATOL, rtol=0)
    # with a gradient to take, the forward keeps every step and gives the same values
    y2, (h2, c2) = functional_rnn(spec, v.requires_grad_(), x, (h0, c0), backend="numba", return_state=True)
    torch.testing.assert_close(y2, y, atol=1e-6, rtol=0)
    torch.testing.assert_close(c2, c, atol=1e-6, rtol=0)


@pytest.mark.parametrize("batch", [2, 9])  # the backward takes 4 sequences at once, then one by one
def test_numba_gradients_match_the_torch_form(batch):
    spec = WeightSpec("lstm", 5, 16, num_layers=2, output_size=3)
    _, v0 = _modules(spec, 3, scale=2.0)
    x0 = torch.randn(3, batch, 9, 5)
    # states as transposed views: the kernels read (and write the gradients of) C-ordered copies
    s0 = (torch.randn(3, 2, batch, 16).transpose(0, 1), torch.randn(2, 3, 16, batch).transpose(2, 3))
    wy, wh, wc = torch.randn(3, batch, 9, 3), torch.randn(2, 3, batch, 16), torch.randn(2, 3, batch, 16)
    grads = {}
    for backend in ("numba", "batched"):
        v, x = v0.clone().requires_grad_(), x0.clone().requires_grad_()
        h0, c0 = (s.clone().requires_grad_() for s in s0)
        y, (h, c) = functional_rnn(spec, v, x, (h0, c0), backend=backend, return_state=True)
        ((y * wy).sum() + (h * wh).sum() + (c * wc).sum()).backward()
        grads[backend] = [t.grad for t in (v, x, h0, c0)]
    for got, want in zip(grads["numba"], grads["batched"]):
        assert want.abs().sum() > 0
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)


def test_numba_float64_gradcheck_with_initial_and_final_state():
    spec = WeightSpec("lstm", 3, 8, num_layers=2, output_size=2)
    v = spec.init_vectors(2, dtype=torch.float64).requires_grad_()
    x = torch.randn(2, 5, 4, 3, dtype=torch.float64, requires_grad=True)  # 5 sequences: a block of 4 and one
    h0 = torch.randn(2, 2, 5, 8, dtype=torch.float64, requires_grad=True)
    c0 = torch.randn(2, 2, 5, 8, dtype=torch.float64, requires_grad=True)

    def run(v, x, h0, c0):
        y, (h, c) = functional_rnn(spec, v, x, (h0, c0), backend="numba", return_state=True)
        return y, h, c

    assert torch.autograd.gradcheck(run, (v, x, h0, c0))


def test_numba_results_do_not_depend_on_the_thread_count():
    spec = WeightSpec("lstm", 4, 8, output_size=2)
    v = spec.init_vectors(5)
    x = torch.randn(5, 3, 6, 4)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = functional_rnn(spec, v, x, backend="numba")
        torch.set_num_threads(2)
        two = functional_rnn(spec, v, x, backend="numba")
    finally:
        torch.set_num_threads(before)
    assert torch.equal(one, two)  # networks are split over threads, each computed the same way


def test_numba_step_equals_the_whole_sequence():
    spec = WeightSpec("lstm", 4, 8, num_layers=2, output_size=3)
    nets = BatchedRNN(spec, spec.init_vectors(2), backend="numba")
    x = torch.randn(2, 3, 5, 4)
    y, state = nets(x)
    ys, s = [], None
    for t in range(5):
        yt, s = nets.step(x[:, :, t], s)
        ys.append(yt)
    torch.testing.assert_close(torch.stack(ys, 2), y, atol=1e-6, rtol=0)
    for a, b in zip(s, state):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)


def test_auto_picks_numba_where_it_runs_and_the_torch_form_elsewhere():
    lstm = WeightSpec("lstm", 4, 16)
    assert BatchedRNN(lstm, lstm.init_vectors(2)).backend == "numba"
    assert BatchedRNN(lstm, lstm.init_vectors(2, dtype=torch.float64)).backend == "numba"
    assert BatchedRNN(lstm, lstm.init_vectors(2).bfloat16()).backend == "batched"
    odd = WeightSpec("lstm", 4, 12)
    assert BatchedRNN(odd, odd.init_vectors(2)).backend == "batched"
    gru = WeightSpec("gru", 4, 16)
    assert BatchedRNN(gru, gru.init_vectors(2)).backend == "batched"


def test_explicit_numba_that_cannot_run_says_why(monkeypatch):
    gru = WeightSpec("gru", 4, 16)
    with pytest.raises(ValueError, match=r"backend='numba' cannot run: the numba kernel runs LSTMs, got cell 'gru'"):
        functional_rnn(gru, gru.init_vectors(2), torch.randn(2, 5, 4), backend="numba")
    odd = WeightSpec("lstm", 4, 12)
    with pytest.raises(ValueError, match="multiples of 8, got hidden_size 12"):
        BatchedRNN(odd, odd.init_vectors(2), backend="numba")
    lstm = WeightSpec("lstm", 4, 16)
    with pytest.raises(ValueError, match="float32 and float64, got dtype torch.bfloat16"):
        functional_rnn(lstm, lstm.init_vectors(2).bfloat16(), torch.randn(2, 5, 4).bfloat16(), backend="numba")
    with pytest.raises(ValueError, match="backend must be one of"):
        BatchedRNN(lstm, lstm.init_vectors(2), backend="reference")
    monkeypatch.setattr(functional_module, "fused_cpu_available", lambda: False)
    with pytest.raises(ImportError, match="numba is not installed"):
        functional_rnn(lstm, lstm.init_vectors(2), torch.randn(2, 5, 4), backend="numba")
    with pytest.raises(ValueError, match="got hidden_size 12"):  # bad networks stay a ValueError without numba
        BatchedRNN(odd, odd.init_vectors(2), backend="numba")
    assert BatchedRNN(lstm, lstm.init_vectors(2)).backend == "batched"


@pytest.mark.parametrize("backend", ["numba", "batched"])
def test_empty_batches_run(backend):
    spec = WeightSpec("lstm", 4, 8, output_size=2)
    y, (h, c) = functional_rnn(spec, spec.init_vectors(2), torch.randn(2, 0, 3, 4), backend=backend, return_state=True)
    assert y.shape == (2, 0, 3, 2) and h.shape == c.shape == (1, 2, 0, 8)
