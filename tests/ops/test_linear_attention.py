import pytest
import torch

from adaptmem.ops import linear_attention, linear_attention_reference
from tests.ops.helpers import FP32_RTOL, FP32_RTOL_LONG, assert_close, grads


def make(B, T, H, Dk, Dv, dtype=torch.float64, seed=0, normalize=False):
    g = torch.Generator().manual_seed(seed)
    # positive features, as after ELU+1, so the normaliser is well defined
    q = torch.rand(B, T, H, Dk, generator=g, dtype=dtype) + 0.1
    k = torch.rand(B, T, H, Dk, generator=g, dtype=dtype) / Dk
    v = torch.randn(B, T, H, Dv, generator=g, dtype=dtype)
    S0 = torch.randn(B, H, Dk, Dv, generator=g, dtype=dtype)
    z0 = torch.rand(B, H, Dk, generator=g, dtype=dtype)
    ts = [t.requires_grad_() for t in (q, k, v, S0, z0)]
    return ts if normalize else ts[:4]


def run(mode, q, k, v, S0, z0=None, **kw):
    state = (S0, z0) if z0 is not None else S0
    o, S = linear_attention(q, k, v, initial_state=state, normalize=z0 is not None, mode=mode, **kw)
    return (o, *S) if z0 is not None else (o, S)


@pytest.mark.parametrize("mode", ["chunk", "recurrent"])
@pytest.mark.parametrize("normalize", [False, True])
def test_passes_float64_gradcheck_including_initial_state(mode, normalize):
    inputs = make(2, 5, 1, 3, 2, normalize=normalize)
    reset = torch.tensor([[False, False, True, False, False], [False] * 5])
    assert torch.autograd.gradcheck(lambda *a: run(mode, *a, chunk_size=2, reset=reset), inputs)


@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize("T, C", [(1, 64), (37, 16), (1000, 64)])
def test_chunk_equals_recurrent(T, C, normalize):
    inputs = make(2, T, 2, 8, 6, dtype=torch.float32, normalize=normalize)
    reset = torch.rand(2, T, generator=torch.Generator().manual_seed(1)) < 0.05
    out_c = run("chunk", *inputs, chunk_size=C, reset=reset)
    out_r = run("recurrent", *inputs, reset=reset)
    for a, b in zip(out_c, out_r):
        assert_close(a, b, FP32_RTOL, "forward")
    for a, b in zip(grads(out_c, inputs), grads(out_r, inputs)):
        assert_close(a, b, FP32_RTOL, "gradient")


def test_reference_is_the_sum_of_outer_products():
    q, k, v, _ = (t.detach() for t in make(1, 6, 1, 3, 2))
    o, S = linear_attention_reference(q, k, v)
    S_manual = torch.einsum("btk,btv->kv", k[:, :, 0], v[:, :, 0])
    assert torch.allclose(S[0, 0], S_manual)
    assert torch.allclose(o[0, -1, 0], q[0, -1, 0] @ S_manual)


def test_normalize_requires_state_tuple():
    q, k, v, S0 = (t.detach() for t in make(1, 3, 1, 2, 2))
    with pytest.raises(TypeError, match=r"initial_state must be a tuple \(S, z\)"):
        linear_attention(q, k, v, initial_state=S0, normalize=True)
    with pytest.raises(TypeError, match="must be a tensor S"):
        linear_attention(q, k, v, initial_state=(S0, S0[..., 0]), normalize=False)


@pytest.mark.slow
def test_ten_thousand_steps_chunk_matches_recurrent():
    inputs = make(1, 10_000, 2, 8, 8, dtype=torch.float32, normalize=True)
    out_c, out_r = run("chunk", *inputs), run("recurrent", *inputs)
    for a, b in zip(out_c, out_r):
        assert torch.isfinite(a).all()
        assert_close(a, b, FP32_RTOL_LONG, "forward")
    for a, b in zip(grads(out_c, inputs), grads(out_r, inputs)):
        assert torch.isfinite(a).all()
        assert_close(a, b, FP32_RTOL_LONG, "gradient")
