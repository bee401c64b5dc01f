"""A NaN, an infinity or a huge value in one step never reaches another segment or an earlier step.

The chunk forms of ``delta_rule`` and ``linear_attention`` must put their non-finite outputs
exactly where the step loop puts them (and agree with it elsewhere), in the forward and in the
gradients; the layers built on them keep earlier outputs finite when a later input is bad.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from adaptmem.layers import SRWM, DeltaNet, LinearAttention, RecurrentDeltaNet
from adaptmem.ops import delta_rule, linear_attention, recurrent_delta_rule, srwm

POISONS = {"nan": float("nan"), "inf": float("inf"), "-inf": float("-inf"), "huge": 1e30}
N_RANDOM = 24  # random cases per op (the count docs/reliability.md reports)
RTOL = 1e-9  # float64 chunk vs step loop where both are finite


def make_qkv(g, B, T, H, Dk, Dv, dtype=torch.float64):
    q = torch.rand(B, T, H, Dk, generator=g, dtype=dtype)
    k = F.normalize(torch.rand(B, T, H, Dk, generator=g, dtype=dtype), dim=-1)
    v = torch.randn(B, T, H, Dv, generator=g, dtype=dtype)
    beta = torch.rand(B, T, H, generator=g, dtype=dtype)
    return q, k, v, beta


def random_case(seed):
    """Random sizes, reset pattern and 1-3 poisoned entries in random inputs."""
    g = torch.Generator().manual_seed(seed)
    ri = lambda lo, hi: int(torch.randint(lo, hi + 1, (1,), generator=g))
    B, T, H, Dk, Dv, C = ri(1, 3), ri(5, 150), ri(1, 3), ri(1, 6), ri(1, 6), (4, 16, 32, 64)[ri(0, 3)]
    q, k, v, beta = make_qkv(g, B, T, H, Dk, Dv)
    reset = torch.rand(B, T, generator=g) < (0.0, 0.02, 0.1)[ri(0, 2)]
    tensors = {"q": q, "k": k, "v": v, "beta": beta}
    for _ in range(ri(1, 3)):
        name = ("q", "k", "v", "beta")[ri(0, 3)]
        t = tensors[name]
        index = tuple(ri(0, s - 1) for s in t.shape)
        t[index] = list(POISONS.values())[ri(0, 3)]
    return (q, k, v, beta), reset, C


def assert_same_finiteness(got, want, what):
    bad_got, bad_want = ~torch.isfinite(got), ~torch.isfinite(want)
    assert torch.equal(bad_got, bad_want), (
        f"{what}: {int(bad_got.sum())} non-finite entries, the step loop has {int(bad_want.sum())}; "
        f"{int((bad_got & ~bad_want).sum())} where the step loop is finite"
    )
    ok = ~bad_want
    if ok.any():
        a, b = got[ok].double(), want[ok].double()
        err = ((a - b).abs() / (b.abs() + b.abs().mean() + 1e-30)).max().item()
        assert err < RTOL, f"{what}: relative error {err:.3g} where both are finite"


def run_both(op, args, reset, C, **kw):
    fn = delta_rule if op == "delta_rule" else linear_attention
    chunk = fn(*args, reset=reset, mode="chunk", chunk_size=C, **kw)
    loop = fn(*args, reset=reset, mode="recurrent", **kw)
    return chunk, loop


def flat(out):
    o, S = out
    return [o, *(S if isinstance(S, tuple) else (S,))]


@pytest.mark.parametrize("seed", range(N_RANDOM))
@pytest.mark.parametrize(
    "op, normalize", [("delta_rule", False), ("linear_attention", False), ("linear_attention", True)]
)
def test_chunk_is_finite_exactly_where_the_step_loop_is(op, normalize, seed):
    (q, k, v, beta), reset, C = random_case(seed)
    if op == "delta_rule":
        args, kw = (q, k, v, beta), {}
    else:
        args, kw = (q.abs() + 0.1, k.abs(), v), {"normalize": normalize}  # positive features for the normaliser
    chunk, loop = run_both(op, args, reset, C, **kw)
    for i, (a, b) in enumerate(zip(flat(chunk), flat(loop))):
        assert_same_finiteness(a, b, f"{op} seed {seed} output {i}")


@pytest.mark.parametrize("op", ["delta_rule", "linear_attention"])
@pytest.mark.parametrize("poison", list(POISONS))
def test_bad_value_before_a_reset_does_not_cross_it(op, poison):
    # The case: v[0, 3] bad, reset before step 10, float32, all in one chunk of 64.
    q, k, v, beta = make_qkv(torch.Generator().manual_seed(0), 2, 100, 2, 8, 8, torch.float32)
    v[0, 3] = POISONS[poison]
    reset = torch.zeros(2, 100, dtype=torch.bool)
    reset[0, 10] = True
    args = (q, k, v, beta) if op == "delta_rule" else (q, k, v)
    (o, _), (o_ref, _) = run_both(op, args, reset, 64)
    assert torch.isfinite(o[0, 10:]).all() and torch.isfinite(o[0, :3]).all()
    assert torch.isfinite(o[1]).all()
    assert torch.equal(torch.isfinite(o), torch.isfinite(o_ref))


@pytest.mark.parametrize("op", ["delta_rule", "linear_attention"])
@pytest.mark.parametrize("poison", list(POISONS))
def test_bad_value_never_reaches_earlier_steps(op, poison):
    q, k, v, beta = make_qkv(torch.Generator().manual_seed(1), 1, 64, 2, 8, 8, torch.float32)
    k[0, 40] = POISONS[poison]  # a bad (or 1e30) key: K K^T overflows inside the chunk
    args = (q, k, v, beta) if op == "delta_rule" else (q, k, v)
    (o, S), (o_ref, S_ref) = run_both(op, args, None, 64)
    assert torch.isfinite(o[0, :40]).all()
    assert torch.equal(torch.isfinite(o), torch.isfinite(o_ref))
    assert torch.equal(torch.isfinite(S), torch.isfinite(S_ref))


@pytest.mark.parametrize("op", ["delta_rule", "linear_attention"])
def test_gradients_of_a_later_segment_stay_finite(op):
    # Loss on the outputs after the reset only: the step loop's gradients of those steps are
    # finite, and so must the chunk form's be (no 0 * NaN in its backward).
    base = make_qkv(torch.Generator().manual_seed(2), 1, 100, 1, 4, 4)
    base[2][0, 3] = float("nan")
    reset = torch.zeros(1, 100, dtype=torch.bool)
    reset[0, 10] = True
    result = {}
    for mode in ("chunk", "recurrent"):
        inputs = [t.clone().requires_grad_() for t in (base if op == "delta_rule" else base[:3])]
        fn = delta_rule if op == "delta_rule" else linear_attention
        o, _ = fn(*inputs, reset=reset, mode=mode, chunk_size=32)
        o[:, 10:].sum().backward()
        result[mode] = [t.grad for t in inputs]
    for g_chunk, g_loop in zip(result["chunk"], result["recurrent"]):
        assert torch.isfinite(g_loop[:, 10:]).all()
        assert_same_finiteness(g_chunk, g_loop, f"{op} gradient")


def test_isolation_keeps_the_float64_gradcheck():
    # Gradients with respect to the steps after a reset, with a NaN before it (the steps
    # before the reset are constants here: the step loop's own gradients there are NaN too).
    full = make_qkv(torch.Generator().manual_seed(3), 1, 9, 1, 3, 2)
    full[2][0, 1] = float("nan")
    reset = torch.zeros(1, 9, dtype=torch.bool)
    reset[0, 4] = True
    tails = [t[:, 4:].clone().requires_grad_() for t in full]

    def after_reset(*tails):
        args = [torch.cat((t[:, :4], tail), 1) for t, tail in zip(full, tails)]
        o, _ = delta_rule(*args, reset=reset, mode="chunk", chunk_size=8)
        return o[:, 4:]

    assert torch.autograd.gradcheck(after_reset, tails)


@pytest.mark.parametrize("layer_cls", [DeltaNet, LinearAttention])
@pytest.mark.parametrize("poison", ["nan", "huge"])
def test_layer_outputs_before_a_bad_input_stay_finite(layer_cls, poison):
    # The case: x[40] = 1e30 (LayerNorm overflows there) in a 640-step DeltaNet call.
    layer = layer_cls(32, 4)
    x = torch.randn(1, 640, 32)
    x[0, 40] = POISONS[poison]
    with torch.no_grad():
        y, _ = layer(x)
        layer.mode = "recurrent"
        y_loop, _ = layer(x)
    assert torch.isfinite(y[0, :40]).all()
    assert torch.equal(torch.isfinite(y), torch.isfinite(y_loop))


@pytest.mark.parametrize("layer_cls", [DeltaNet, LinearAttention, SRWM, RecurrentDeltaNet])
def test_layer_reset_drops_an_earlier_bad_input(layer_cls):
    layer = layer_cls(16, 2)
    x = torch.randn(2, 80, 16)
    x[0, 5] = float("nan")
    reset = torch.zeros(2, 80, dtype=torch.bool)
    reset[0, 30] = True
    with torch.no_grad():
        y, state = layer(x, reset=reset)
    assert torch.isfinite(y[0, 30:]).all() and torch.isfinite(y[0, :5]).all() and torch.isfinite(y[1]).all()
    assert all(torch.isfinite(s).all() for s in state)


def test_sequential_ops_keep_a_bad_input_inside_its_segment():
    # SRWM and the Recurrent Delta Net have no chunk form; their fast (checkpointed) forms
    # select resets with where too.
    g = torch.Generator().manual_seed(4)
    B, T, H, D = 2, 60, 2, 4
    x = torch.softmax(torch.randn(B, T, H, D, generator=g), -1)
    x[0, 5, 0, 1] = float("nan")
    ws = [torch.randn(H, D, D, generator=g) / 2 for _ in range(3)] + [torch.randn(H, D, 4, generator=g) / 2]
    reset = torch.zeros(B, T, dtype=torch.bool)
    reset[0, 20] = True
    y, _ = srwm(x, *ws, reset=reset, checkpoint_every=16)
    assert torch.isfinite(y[0, 20:]).all() and torch.isfinite(y[0, :5]).all() and torch.isfinite(y[1]).all()
    q, k, v = (torch.randn(B, T, H, D, generator=g) for _ in range(3))
    v[0, 5] = float("nan")
    R = [torch.randn(H, D, D, generator=g) / 2 for _ in range(3)]
    y, _ = recurrent_delta_rule(
        q, k, v, torch.randn(B, T, H, generator=g), *R, torch.randn(H, D, generator=g), reset=reset, checkpoint_every=16
    )
    assert torch.isfinite(y[0, 20:]).all() and torch.isfinite(y[0, :5]).all() and torch.isfinite(y[1]).all()
