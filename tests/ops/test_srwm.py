import pytest
import torch

from adaptmem.ops import SRWMWeights, srwm, srwm_reference
from tests.ops.helpers import BF16_RTOL, FP32_RTOL, FP32_RTOL_LONG, assert_close, grads, rel_err


def make(B, T, H, D, dtype=torch.float64, batched=False, seed=0, unit_norm=False):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, T, H, D, generator=g, dtype=dtype)
    if unit_norm:  # keeps the fast weights' growth (and float round-off amplification) moderate
        x = torch.nn.functional.normalize(x, dim=-1)
    lead = (B, H) if batched else (H,)
    ws = [torch.randn(*lead, D, D, generator=g, dtype=dtype) / D**0.5 for _ in range(3)]
    ws.append(torch.randn(*lead, D, 4, generator=g, dtype=dtype) / D**0.5)
    return [t.requires_grad_() for t in [x, *ws]]


def flat(out):
    y, state = out
    return (y, *state)


@pytest.mark.parametrize("batched", [False, True])
def test_custom_backward_passes_float64_gradcheck(batched):
    x, *ws = make(2, 6, 1, 3, batched=batched)
    reset_to = [w.detach().clone().requires_grad_() for w in ws]
    reset = torch.tensor([[False, False, True, False, False, True], [True] + [False] * 5])
    fn = lambda x, *a: flat(srwm(x, *a[:4], reset=reset, reset_to=a[4:], backend="torch", checkpoint_every=3))
    assert torch.autograd.gradcheck(fn, (x, *ws, *reset_to))


def test_reference_passes_float64_gradcheck():
    x, *ws = make(1, 4, 2, 3)
    assert torch.autograd.gradcheck(lambda x, *w: flat(srwm_reference(x, *w)), (x, *ws))


@pytest.mark.parametrize("T", [1, 7, 300, 2000])
def test_custom_backward_equals_autograd_through_reference(T):
    x, *ws = make(2, T, 2, 4, unit_norm=True)
    out_ref, out = flat(srwm_reference(x, *ws)), flat(srwm(x, *ws, backend="torch", checkpoint_every=64))
    for a, b in zip(out, out_ref):
        assert_close(a, b, 1e-9, "forward")
    # The random functional includes the final state, so a nonzero incoming state gradient is
    # checked too (the public kernel double-counts it).
    for a, b in zip(grads(out, [x, *ws]), grads(out_ref, [x, *ws])):
        assert_close(a, b, 1e-9, f"gradient at T={T}")


def test_fp32_fast_path_matches_reference_within_1e5():
    x, *ws = make(3, 200, 4, 8, dtype=torch.float32)
    out, out_ref = flat(srwm(x, *ws, backend="torch")), flat(srwm_reference(x, *ws))
    for a, b in zip(out, out_ref):
        assert_close(a, b, FP32_RTOL, "forward")
    for a, b in zip(grads(out, [x, *ws]), grads(out_ref, [x, *ws])):
        assert_close(a, b, FP32_RTOL, "gradient")


def test_gradient_reaches_start_weights_only_through_later_steps():
    # Read before write: W_q, W_k, w_b influence y only from step 2 on.
    x, *ws = make(1, 1, 1, 4)
    y, _ = srwm(x, *ws, backend="torch")
    g = torch.autograd.grad(y.sum(), ws, allow_unused=True)
    assert g[0].abs().sum() > 0 and all(gi.abs().sum() == 0 for gi in g[1:])
    x, *ws = make(1, 2, 1, 4)
    y, _ = srwm(x, *ws, backend="torch")
    assert all(gi.abs().sum() > 0 for gi in torch.autograd.grad(y.sum(), ws))


def test_reset_equals_restarting_the_sequence():
    x, *ws = make(2, 20, 2, 4)
    reset = torch.zeros(2, 20, dtype=torch.bool)
    reset[0, 12] = True
    y, _ = srwm(x, *ws, reset=reset)
    y_fresh, _ = srwm(x[:1, 12:], *ws)
    y_cont, _ = srwm(x[1:], *ws)
    assert torch.allclose(y[0, 12:], y_fresh[0]) and torch.allclose(y[1], y_cont[0])


def test_carried_state_equals_one_long_call_outputs_and_gradients():
    x, *ws = make(2, 30, 2, 4)
    out_full = flat(srwm(x, *ws, checkpoint_every=8))
    y1, s1 = srwm(x[:, :13], *ws, checkpoint_every=8)
    y2, s2 = srwm(x[:, 13:], *s1, checkpoint_every=8)
    out_seg = (torch.cat([y1, y2], 1), *s2)
    for a, b in zip(out_seg, out_full):
        assert_close(a, b, 1e-12, "forward")
    for a, b in zip(grads(out_seg, [x, *ws]), grads(out_full, [x, *ws])):
        assert_close(a, b, 1e-12, "gradient")


def saved_numel(fn) -> int:
    """Elements autograd keeps for the backward of ``fn()`` (shared storages counted once)."""
    seen = {}

    def pack(t):
        seen[(t.untyped_storage().data_ptr(), t.storage_offset(), t.shape)] = t.numel()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(seen.values())


def test_activation_memory_is_linear_in_T_not_quadratic_in_D():
    B, T, H, D, C = 2, 512, 2, 16, 64
    x, *ws = make(B, T, H, D, dtype=torch.float32)
    custom = saved_numel(lambda: srwm(x, *ws, backend="torch", checkpoint_every=C))
    reference = saved_numel(lambda: srwm_reference(x, *ws))
    N, E = B * H, 3 * D + 4
    per_step_vectors = T * N * (D + 2 * E)  # inputs, pre-activations, diffs
    checkpoints = -(-T // C) * N * D * E
    assert custom <= per_step_vectors + checkpoints + N * D * E
    assert custom * 4 <= reference


def test_inputs_are_not_mutated():
    x, *ws = make(2, 10, 2, 4)
    before = [t.detach().clone() for t in [x, *ws]]
    srwm(x, *ws, reset=torch.tensor([True, False]))
    assert all(torch.equal(a, b) for a, b in zip(before, [x, *ws]))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_inputs_are_computed_in_fp32(dtype):
    x, *ws = make(2, 50, 2, 8, dtype=torch.float32)
    y32, s32 = srwm(x, *ws)
    y, s = srwm(x.to(dtype), *[w.to(dtype) for w in ws])
    assert y.dtype == dtype and s.W_y.dtype == torch.float32
    y_ref, _ = srwm(x.to(dtype).float(), *[w.to(dtype).float() for w in ws])
    assert rel_err(y, y_ref) < BF16_RTOL
    gx = torch.autograd.grad(y.float().sum(), x)[0]
    assert torch.isfinite(gx).all()


def test_modes_agree_and_unknown_mode_or_backend_is_rejected():
    x, *ws = make(1, 5, 1, 4)
    assert torch.allclose(srwm(x, *ws, mode="reference")[0], srwm(x, *ws, backend="torch")[0])
    with pytest.raises(ValueError, match="backend must be one of"):
        srwm(x, *ws, backend="cuda")
    with pytest.raises(ValueError, match="mode must be one of"):
        srwm(x, *ws, mode="chunk")


def test_old_backend_reference_warns_and_gives_identical_results():
    x, *ws = make(2, 6, 2, 3)
    reset = torch.tensor([[False, False, True, False, False, False], [False] * 6])
    with pytest.warns(DeprecationWarning, match="srwm: backend='reference' is deprecated; use mode='reference'") as rec:
        old = flat(srwm(x, *ws, reset=reset, backend="reference"))
    assert rec[0].filename == __file__  # the warning points at the caller
    new = flat(srwm(x, *ws, reset=reset, mode="reference"))
    assert all(torch.equal(a, b) for a, b in zip(old, new))
    assert all(torch.equal(a, b) for a, b in zip(grads(old, [x, *ws]), grads(new, [x, *ws])))


def test_state_is_a_named_tuple_of_batched_fp32_weights():
    x, *ws = make(3, 4, 2, 5, dtype=torch.float32)
    _, s = srwm(x, *ws)
    assert isinstance(s, SRWMWeights)
    assert [tuple(t.shape) for t in s] == [(3, 2, 5, 5)] * 3 + [(3, 2, 5, 4)]


@pytest.mark.parametrize(
    "mutate, err, match",
    [
        (lambda x, ws: (x[0], ws), ValueError, r"x must be \[B, T, H, D\], got shape \(7, 2, 4\)"),
        (lambda x, ws: (x.long(), ws), TypeError, "x must be a floating-point tensor.*int64"),
        (lambda x, ws: (x, [ws[0][:1]] + ws[1:]), ValueError, r"W_y must be \[H, D, D\] = \(2, 4, 4\)"),
        (lambda x, ws: (x, ws[:3] + [ws[3][..., :3]]), ValueError, r"w_b must be \[H, D, 4\]"),
        (lambda x, ws: (x, ws[:2] + [ws[2].int()] + ws[3:]), TypeError, "W_k must be a floating-point"),
        (lambda x, ws: (x, ws[:1] + [ws[1].to("meta")] + ws[2:]), ValueError, "one device.*W_q is on meta"),
        (lambda x, ws: (x[:, :0], ws), ValueError, "at least one time step"),
    ],
)
def test_bad_input_gets_a_clear_error(mutate, err, match):
    x, *ws = make(1, 7, 2, 4)
    x, ws = mutate(x.detach(), [w.detach() for w in ws])
    with pytest.raises(err, match=match):
        srwm(x, *ws)


def test_bad_reset_gets_a_clear_error():
    x, *ws = make(2, 7, 2, 4)
    with pytest.raises(TypeError, match="reset must be a bool tensor"):
        srwm(x, *ws, reset=torch.zeros(2, 7))
    with pytest.raises(ValueError, match=r"reset must be \[B\] = \(2,\) or \[B, T\] = \(2, 7\)"):
        srwm(x, *ws, reset=torch.zeros(3, dtype=torch.bool))


@pytest.mark.slow
def test_ten_thousand_steps_stay_finite_and_match_autograd():
    B, T, H, D = 1, 10_000, 2, 8
    x, *ws = make(B, T, H, D, dtype=torch.float32)
    with torch.no_grad():
        x.copy_(torch.nn.functional.normalize(x, dim=-1))  # unit-norm inputs
    out = flat(srwm(x, *ws, backend="torch"))
    out_ref = flat(srwm_reference(x, *ws))
    assert all(torch.isfinite(o).all() for o in out)
    g, g_ref = grads(out, [x, *ws]), grads(out_ref, [x, *ws])
    assert all(torch.isfinite(t).all() for t in g)
    for a, b in zip(g, g_ref):
        assert_close(a, b, FP32_RTOL_LONG, "gradient at T=10k")
