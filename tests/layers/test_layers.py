import pytest
import torch

from adaptmem.layers import (
    LAYERS,
    SRWM,
    DeltaNet,
    FastWeightBlock,
    FastWeightStack,
    LinearAttention,
    RecurrentDeltaNet,
    SRWMState,
    detach_state,
    mask_state,
)
from tests.ops.helpers import assert_close

KINDS = list(LAYERS)


def flat_state(state):
    if isinstance(state, torch.Tensor):
        return [state]
    return [t for s in state for t in flat_state(s)]


def make_stack(kind, dtype=torch.float64, **kw):
    torch.manual_seed(0)
    return FastWeightStack(kind, num_layers=2, d_model=16, num_heads=2, d_ff=32, **kw).to(dtype)


@pytest.mark.parametrize("kind", KINDS)
def test_segment_carry_equals_one_call_outputs_and_gradients(kind):
    stack = make_stack(kind)
    x = torch.randn(2, 40, 16, dtype=torch.float64, requires_grad=True)
    params = list(stack.parameters())

    def loss_and_grads(y, state):
        g = torch.Generator().manual_seed(5)
        outs = [y, *flat_state(state)]
        loss = sum((o * torch.randn(o.shape, generator=g, dtype=o.dtype)).sum() for o in outs)
        return torch.autograd.grad(loss, [x, *params], allow_unused=True)

    y, s = stack(x)
    y1, s1 = stack(x[:, :17])
    y2, s2 = stack(x[:, 17:], s1)
    y_seg = torch.cat([y1, y2], 1)
    assert_close(y_seg, y, 1e-12, f"{kind} outputs")
    for a, b in zip(flat_state(s2), flat_state(s)):
        assert_close(a, b, 1e-12, f"{kind} state")
    for a, b in zip(loss_and_grads(y_seg, s2), loss_and_grads(y, s)):
        if b is not None:
            assert_close(a, b, 1e-10, f"{kind} gradients")


@pytest.mark.parametrize("kind", KINDS)
def test_reset_mask_restarts_rows_at_given_steps(kind):
    stack = make_stack(kind)
    x = torch.randn(2, 20, 16, dtype=torch.float64)
    _, state = stack(torch.randn(2, 5, 16, dtype=torch.float64))
    reset = torch.zeros(2, 20, dtype=torch.bool)
    reset[0, 8] = True
    y, _ = stack(x, state, reset=reset)
    y_fresh, _ = stack(x[:1, 8:])
    y_kept, _ = stack(x[1:], [type(s)(*(t[1:] for t in s)) for s in state])
    assert torch.allclose(y[0, 8:], y_fresh[0])
    assert torch.allclose(y[1], y_kept[0])
    # a [B] mask resets before the first step only
    y_b, _ = stack(x, state, reset=torch.tensor([True, False]))
    assert torch.allclose(y_b[0], stack(x[:1])[0][0])


@pytest.mark.parametrize("kind", KINDS)
def test_zero_init_state_is_the_fresh_state(kind):
    stack = make_stack(kind)
    x = torch.randn(3, 6, 16, dtype=torch.float64)
    y0, _ = stack(x)
    y1, _ = stack(x, stack.init_state(3, dtype=torch.float64))
    assert torch.allclose(y0, y1)


def test_srwm_state_is_the_shift_so_initial_weights_train_after_detach():
    layer = SRWM(16, 2).double()
    x = torch.randn(2, 10, 16, dtype=torch.float64)
    _, state = layer(x)
    y, _ = layer(x, detach_state(state))
    grads = torch.autograd.grad(y.sum(), [layer.W_y, layer.W_q, layer.W_k, layer.w_b])
    assert all(g.abs().sum() > 0 for g in grads)


def test_every_srwm_fast_matrix_gets_gradient_through_a_stack():
    stack = make_stack("srwm", dtype=torch.float32)
    y, _ = stack(torch.randn(2, 12, 16))
    y.pow(2).mean().backward()
    for block in stack.blocks:
        for name in ("W_y", "W_q", "W_k", "w_b"):
            g = getattr(block.fast, name).grad
            assert g is not None and g.abs().sum() > 0, name


@pytest.mark.parametrize("kind", KINDS)
def test_ten_thousand_steps_give_finite_outputs_and_gradients(kind):
    layer = FastWeightBlock(kind, d_model=8, num_heads=2, d_ff=16)
    x = torch.nn.functional.normalize(torch.randn(1, 10_000, 8), dim=-1).requires_grad_()
    y, state = layer(x)
    assert torch.isfinite(y).all() and all(torch.isfinite(t).all() for t in flat_state(state))
    y.pow(2).mean().backward()
    assert torch.isfinite(x.grad).all()
    assert all(torch.isfinite(p.grad).all() for p in layer.parameters() if p.grad is not None)


@pytest.mark.parametrize("kind", KINDS)
def test_bf16_autocast_matches_fp32(kind):
    stack = make_stack(kind, dtype=torch.float32)
    x = torch.randn(2, 30, 16)
    y32, _ = stack(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y16, state = stack(x)
    assert y16.dtype in (torch.bfloat16, torch.float32)
    assert ((y16.float() - y32).norm() / y32.norm()).item() < 2e-2 * 5  # bf16 weights in the projections too
    y16.float().sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in stack.parameters() if p.grad is not None)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("kind", KINDS)
def test_half_precision_modules_run_on_cpu(kind, dtype):
    stack = make_stack(kind, dtype=dtype)
    y, state = stack(torch.randn(2, 9, 16, dtype=dtype))
    assert y.dtype == dtype and torch.isfinite(y.float()).all()
    y.float().sum().backward()


def test_mask_state_zeroes_rows():
    stack = make_stack("deltanet")
    _, state = stack(torch.randn(3, 4, 16, dtype=torch.float64))
    masked = mask_state(state, torch.tensor([True, False, True]))
    assert masked[0].S[1].abs().sum() == 0 and torch.equal(masked[0].S[0], state[0].S[0])


@pytest.mark.parametrize("cls", [SRWM, DeltaNet, LinearAttention, RecurrentDeltaNet])
def test_bad_input_gets_a_clear_error(cls):
    layer = cls(16, 2)
    name = cls.__name__
    with pytest.raises(
        ValueError, match=rf"{name}: x must be \[B, T, d_model\] = \(\*, >0, 16\), got shape \(2, 5, 8\)"
    ):
        layer(torch.randn(2, 5, 8))
    with pytest.raises(ValueError, match=r"x must be \[B, T, d_model\]"):
        layer(torch.randn(5, 16))
    with pytest.raises(TypeError, match="x must be a floating-point tensor.*int64"):
        layer(torch.zeros(2, 5, 16, dtype=torch.long))
    state = layer.init_state(3)
    with pytest.raises(ValueError, match=f"{name}: state.* must have shape .* for batch size 2"):
        layer(torch.randn(2, 5, 16), state)
    with pytest.raises(ValueError, match="is on meta but x is on cpu"):
        layer(torch.randn(3, 5, 16), type(state)(*(t.to("meta") for t in state)))
    with pytest.raises(TypeError, match="state must be a"):
        layer(torch.randn(3, 5, 16), "not a state")


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match=r"d_model \(10\) must be divisible by num_heads \(4\)"):
        SRWM(10, 4)
    with pytest.raises(ValueError, match="kind must be one of"):
        FastWeightStack("gru", 1, 8, 2)  # not a registered kind
    with pytest.raises(ValueError, match="num_layers must be a positive int"):
        FastWeightStack("srwm", 0, 8, 2)
    stack = FastWeightStack("srwm", 2, 8, 2)
    with pytest.raises(ValueError, match="state must be a list of 2 per-layer states"):
        stack(torch.randn(1, 3, 8), [None])


def test_srwm_with_head_dim_adds_input_projection_and_repr():
    layer = SRWM(16, num_heads=4, head_dim=8)
    assert layer.in_proj is not None and layer.in_proj.out_features == 32
    y, state = layer(torch.randn(2, 3, 16))
    assert isinstance(state, SRWMState) and state.dW_y.shape == (2, 4, 8, 8)
    assert "num_heads=4, head_dim=8" in repr(layer)
