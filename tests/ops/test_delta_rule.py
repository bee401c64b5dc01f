import pytest
import torch
import torch.nn.functional as F

from adaptmem.ops import delta_rule, delta_rule_reference
from tests.ops.helpers import BF16_RTOL, FP32_RTOL, FP32_RTOL_LONG, assert_close, grads, rel_err


def make(B, T, H, Dk, Dv, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(B, T, H, Dk, generator=g, dtype=dtype)
    k = F.normalize(torch.randn(B, T, H, Dk, generator=g, dtype=dtype), dim=-1)
    v = torch.randn(B, T, H, Dv, generator=g, dtype=dtype)
    beta = torch.rand(B, T, H, generator=g, dtype=dtype)
    S0 = torch.randn(B, H, Dk, Dv, generator=g, dtype=dtype)
    return [t.requires_grad_() for t in (q, k, v, beta, S0)]


def run(mode, q, k, v, beta, S0, **kw):
    o, S = delta_rule(q, k, v, beta, initial_state=S0, mode=mode, **kw)
    return o, S


@pytest.mark.parametrize("mode", ["chunk", "recurrent"])
def test_passes_float64_gradcheck_including_initial_state(mode):
    q, k, v, beta, S0 = make(2, 6, 1, 3, 2)
    reset = torch.tensor([[False, False, False, True, False, False], [False] * 6])
    fn = lambda *a: run(mode, *a, chunk_size=4, reset=reset)
    assert torch.autograd.gradcheck(fn, (q, k, v, beta, S0))


@pytest.mark.parametrize("T, C", [(1, 64), (37, 16), (100, 64), (1000, 64), (64, 64), (5, 2)])
def test_chunk_equals_recurrent_at_any_length(T, C):
    inputs = make(2, T, 2, 8, 6, dtype=torch.float32)
    out_c, out_r = run("chunk", *inputs, chunk_size=C), run("recurrent", *inputs)
    for a, b in zip(out_c, out_r):
        assert_close(a, b, FP32_RTOL, f"forward T={T}")
    for a, b in zip(grads(out_c, inputs), grads(out_r, inputs)):
        assert_close(a, b, FP32_RTOL, f"gradient T={T}")


def test_chunk_equals_recurrent_with_resets_inside_chunks():
    inputs = make(3, 90, 2, 4, 4)
    reset = torch.rand(3, 90, generator=torch.Generator().manual_seed(3)) < 0.08
    reset[0, 0] = reset[1, 32] = reset[2, 89] = True  # chunk starts, ends and the last step
    out_c, out_r = run("chunk", *inputs, chunk_size=32, reset=reset), run("recurrent", *inputs, reset=reset)
    for a, b in zip(out_c, out_r):
        assert_close(a, b, 1e-12, "forward")
    for a, b in zip(grads(out_c, inputs), grads(out_r, inputs)):
        assert_close(a, b, 1e-12, "gradient")


def test_reset_zeroes_the_state_before_that_step():
    q, k, v, beta, S0 = make(1, 12, 1, 4, 4)
    reset = torch.zeros(1, 12, dtype=torch.bool)
    reset[0, 5] = True
    o, _ = delta_rule(q, k, v, beta, initial_state=S0, reset=reset)
    o_fresh, _ = delta_rule(q[:, 5:], k[:, 5:], v[:, 5:], beta[:, 5:])
    assert torch.allclose(o[:, 5:], o_fresh)


def test_padded_last_chunk_does_not_touch_the_state():
    # T = 65 with C = 64 leaves one real step in a chunk of 63 padded ones.
    inputs = make(1, 65, 1, 4, 4)
    _, S_c = run("chunk", *inputs, chunk_size=64)
    _, S_r = run("recurrent", *inputs)
    assert_close(S_c, S_r, 1e-12, "final state")


def test_segment_carry_equals_one_call():
    q, k, v, beta, S0 = make(2, 50, 2, 4, 3)
    full = delta_rule(q, k, v, beta, initial_state=S0, chunk_size=16)
    o1, S1 = delta_rule(q[:, :21], k[:, :21], v[:, :21], beta[:, :21], initial_state=S0, chunk_size=16)
    o2, S2 = delta_rule(q[:, 21:], k[:, 21:], v[:, 21:], beta[:, 21:], initial_state=S1, chunk_size=16)
    seg = (torch.cat([o1, o2], 1), S2)
    for a, b in zip(seg, full):
        assert_close(a, b, 1e-12, "forward")
    for a, b in zip(grads(seg, [q, k, v, beta, S0]), grads(full, [q, k, v, beta, S0])):
        assert_close(a, b, 1e-12, "gradient")


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_inputs(dtype):
    q, k, v, beta, _ = make(2, 70, 2, 8, 8, dtype=torch.float32)
    half = [t.detach().to(dtype) for t in (q, k, v, beta)]
    o, S = delta_rule(*half)
    o_ref, _ = delta_rule_reference(*[t.float() for t in half])
    assert o.dtype == dtype and S.dtype == torch.float32
    assert rel_err(o, o_ref) < BF16_RTOL


@pytest.mark.slow
def test_ten_thousand_steps_chunk_matches_recurrent():
    inputs = make(1, 10_000, 2, 8, 8, dtype=torch.float32)
    out_c, out_r = run("chunk", *inputs), run("recurrent", *inputs)
    assert all(torch.isfinite(o).all() for o in out_c)
    for a, b in zip(out_c, out_r):
        assert_close(a, b, FP32_RTOL_LONG, "forward")
    for a, b in zip(grads(out_c, inputs), grads(out_r, inputs)):
        assert torch.isfinite(a).all()
        assert_close(a, b, FP32_RTOL_LONG, "gradient")


@pytest.mark.parametrize(
    "mutate, err, match",
    [
        (lambda a: {**a, "q": a["q"][0]}, ValueError, r"q must be \[B, T, H, Dk\]"),
        (
            lambda a: {**a, "k": a["k"][..., :3]},
            ValueError,
            r"k must be \[B, T, H, Dk\] like q = \(2, 5, 2, 4\), got shape \(2, 5, 2, 3\)",
        ),
        (lambda a: {**a, "v": a["v"][:, :, :1]}, ValueError, r"v must be \[B, T, H, Dv\] = \(2, 5, 2, \*\)"),
        (lambda a: {**a, "beta": a["beta"][..., None]}, ValueError, r"beta must be \[B, T, H\]"),
        (lambda a: {**a, "q": a["q"].long()}, TypeError, "q must be a floating-point tensor"),
        (lambda a: {**a, "v": a["v"].to("meta")}, ValueError, "one device"),
        (
            lambda a: {**a, "initial_state": a["initial_state"][:, :1]},
            ValueError,
            r"initial_state must be \[B, H, Dk, Dv\]",
        ),
    ],
)
def test_bad_input_gets_a_clear_error(mutate, err, match):
    q, k, v, beta, S0 = (t.detach() for t in make(2, 5, 2, 4, 3))
    args = mutate(dict(q=q, k=k, v=v, beta=beta, initial_state=S0))
    with pytest.raises(err, match=match):
        delta_rule(args["q"], args["k"], args["v"], args["beta"], initial_state=args["initial_state"])


def test_bad_mode_and_chunk_size():
    q, k, v, beta, _ = make(1, 3, 1, 2, 2)
    with pytest.raises(ValueError, match="mode must be one of"):
        delta_rule(q, k, v, beta, mode="parallel")
    with pytest.raises(ValueError, match="chunk_size must be a positive int"):
        delta_rule(q, k, v, beta, chunk_size=0)
