"""The LSTM layer follows the layer contract: resets inside a call, state carry, gradients, and a
stack of them is nn.LSTM(num_layers, dropout)."""

import pytest
import torch

from adaptmem.layers import LSTM, FastWeightStack, LSTMState, index_state, state_tensors
from tests.ops.helpers import assert_close

TOL64 = 1e-12


def make(d_model=5, hidden_size=4, **kw):
    torch.manual_seed(0)
    return LSTM(d_model, hidden_size, **kw).double()


def random_state(layer, B):
    return LSTMState(*(torch.randn(s, dtype=torch.float64) for s in layer.state_shapes(B)))


def test_resets_inside_one_call_equal_separate_segments_from_fresh_states():
    layer = make()
    B, T = 3, 12
    x = torch.randn(B, T, 5, dtype=torch.float64)
    state = random_state(layer, B)
    reset = torch.zeros(B, T, dtype=torch.bool)
    reset[0, 3] = reset[0, 7] = True  # row 0: three segments
    reset[1, 0] = reset[1, 5] = True  # row 1: restarts at once, then again at 5
    y, (h, c) = layer(x, state, reset)  # row 2: never resets
    for b in range(B):
        starts = [0] + [t for t in range(1, T) if reset[b, t]]
        s = None if reset[b, 0] else index_state(state, slice(b, b + 1))
        for t0, t1 in zip(starts, starts[1:] + [T]):
            want, end = layer(x[b : b + 1, t0:t1], s)
            assert_close(y[b : b + 1, t0:t1], want, TOL64, f"row {b} steps {t0}:{t1}")
            s = None  # the next segment starts from a fresh state
        assert_close(h[b], end.h[0], TOL64, f"row {b} final h")
        assert_close(c[b], end.c[0], TOL64, f"row {b} final c")


def test_a_b_mask_resets_before_the_first_step_only():
    layer = make()
    x = torch.randn(2, 6, 5, dtype=torch.float64)
    state = random_state(layer, 2)
    y, _ = layer(x, state, torch.tensor([True, False]))
    assert_close(y[:1], layer(x[:1])[0], TOL64, "reset row")
    assert_close(y[1:], layer(x[1:], LSTMState(state.h[1:], state.c[1:]))[0], TOL64, "kept row")


def test_state_carry_across_calls_equals_one_long_call_with_gradients():
    layer = make()
    x = torch.randn(2, 15, 5, dtype=torch.float64, requires_grad=True)
    reset = torch.zeros(2, 15, dtype=torch.bool)
    reset[1, 9] = True
    y, s = layer(x, None, reset)
    y1, s1 = layer(x[:, :6], None, reset[:, :6])
    y2, s2 = layer(x[:, 6:], s1, reset[:, 6:])
    assert_close(torch.cat([y1, y2], 1), y, TOL64, "outputs")
    for a, b in zip(state_tensors(s2), state_tensors(s)):
        assert_close(a, b, TOL64, "state")
    params = list(layer.parameters())
    g_one = torch.autograd.grad((y**2).sum() + s.c.sum(), [x, *params])
    g_seg = torch.autograd.grad((torch.cat([y1, y2], 1) ** 2).sum() + s2.c.sum(), [x, *params])
    for a, b in zip(g_seg, g_one):
        assert_close(a, b, 1e-10, "gradients")


def test_gradcheck_through_resets_and_the_initial_state():
    layer = make(d_model=3, hidden_size=2)
    x = torch.randn(2, 5, 3, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(2, 2, dtype=torch.float64, requires_grad=True)
    c0 = torch.randn(2, 2, dtype=torch.float64, requires_grad=True)
    reset = torch.tensor([[False, False, True, False, False], [False, False, False, False, True]])

    def f(x, h0, c0):
        y, (h, c) = layer(x, LSTMState(h0, c0), reset)
        return y, h, c

    assert torch.autograd.gradcheck(f, (x, h0, c0))
    assert torch.autograd.gradcheck(
        lambda w: torch.func.functional_call(layer, {"lstm.weight_hh_l0": w}, (x,))[0],
        (layer.lstm.weight_hh_l0.detach().clone().requires_grad_(),),
    )


def test_one_nn_lstm_call_per_run_of_steps_between_resets():
    layer = make()
    calls = []
    layer.lstm.register_forward_hook(lambda m, inp, out: calls.append(inp[0].shape[1]))
    reset = torch.zeros(4, 20, dtype=torch.bool)
    reset[0, 5] = reset[2, 5] = reset[3, 12] = True  # two distinct reset steps -> three runs
    layer(torch.randn(4, 20, 5, dtype=torch.float64), None, reset)
    assert calls == [5, 7, 8]
    calls.clear()
    layer(torch.randn(4, 20, 5, dtype=torch.float64))
    assert calls == [20]


def test_a_stack_of_lstm_layers_is_nn_lstm_with_num_layers_and_dropout():
    torch.manual_seed(3)
    ref = torch.nn.LSTM(6, 8, num_layers=3, batch_first=True, dropout=0.25)
    torch.manual_seed(3)
    stack = FastWeightStack("lstm", 3, 6, num_heads=4, d_ff=99, dropout=0.25, final_norm=True, hidden_size=8)
    # the same initial weights from the same seed, layer by layer
    for i, layer in enumerate(stack.blocks):
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            assert torch.equal(getattr(layer.lstm, f"{name}_l0"), getattr(ref, f"{name}_l{i}")), (i, name)
    assert stack.out_dim == 8 and stack.norm is None  # bare layers: no feed-forward, no final norm
    x = torch.randn(2, 7, 6)
    torch.manual_seed(11)
    want, (h, c) = ref(x)
    torch.manual_seed(11)
    got, state = stack(x)  # training mode: dropout between layers draws the same masks
    torch.testing.assert_close(got, want, atol=1e-6, rtol=0)
    torch.testing.assert_close(torch.stack([s.h for s in state]), h, atol=1e-6, rtol=0)  # nn.LSTM: [L, B, H]
    torch.testing.assert_close(torch.stack([s.c for s in state]), c, atol=1e-6, rtol=0)
    stack.eval(), ref.eval()
    torch.testing.assert_close(stack(x)[0], ref(x)[0], atol=1e-6, rtol=0)


def test_a_stack_loads_the_state_dict_of_the_nn_lstm_it_replaced():
    ref = torch.nn.LSTM(6, 8, num_layers=2, batch_first=True).eval()
    stack = FastWeightStack("lstm", 2, 6, num_heads=1, hidden_size=8).eval()
    assert str(stack.load_state_dict(ref.state_dict())) == "<All keys matched successfully>"
    x = torch.randn(3, 4, 6)
    torch.testing.assert_close(stack(x)[0], ref(x)[0], atol=1e-6, rtol=0)


def test_hidden_size_sets_the_output_width_and_repr():
    layer = LSTM(5, hidden_size=7)
    y, state = layer(torch.randn(2, 3, 5))
    assert y.shape == (2, 3, 7) and layer.out_dim == 7 and state.h.shape == state.c.shape == (2, 7)
    assert "d_model=5, hidden_size=7" in repr(layer)
    assert LSTM(5).out_dim == 5


def test_bad_input_gets_a_clear_error():
    layer = LSTM(4, 3)
    with pytest.raises(ValueError, match=r"LSTM: x must be \[B, T, d_model\] = \(\*, >0, 4\), got shape \(2, 5, 3\)"):
        layer(torch.randn(2, 5, 3))
    with pytest.raises(TypeError, match="LSTM: x must be a floating-point tensor"):
        layer(torch.zeros(2, 5, 4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"LSTM: state.h must have shape \(2, 3\) for batch size 2, got \(3, 3\)"):
        layer(torch.randn(2, 5, 4), layer.init_state(3))
    with pytest.raises(TypeError, match=r"LSTM: state must be a LSTMState\('h', 'c'\)"):
        layer(torch.randn(2, 5, 4), torch.zeros(2, 3))
    with pytest.raises(TypeError, match="LSTM: reset must be a bool tensor"):
        layer(torch.randn(2, 5, 4), None, torch.zeros(2, 5))
    with pytest.raises(ValueError, match=r"LSTM: reset must be \[B\] = \(2,\) or \[B, T\] = \(2, 5\)"):
        layer(torch.randn(2, 5, 4), None, torch.zeros(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="LSTM: hidden_size must be a positive int, got 0"):
        LSTM(4, 0)
