"""The fused recurrent Triton kernel of the delta rule and linear attention (``adaptmem/ops/_fused_recurrent.py``,
``linear_attention/fused_recurrent.py``), run by the Triton interpreter on CPU against the references."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from adaptmem.ops import delta_rule, linear_attention
from tests.ops.helpers import BF16_RTOL as BF16_TOL
from tests.ops.helpers import FP32_RTOL as FP32_TOL
from tests.ops.helpers import assert_all_close as assert_close
from tests.ops.helpers import rel_err
from tests.ops.triton_interpret import run_module_under_interpreter  # noqa: F401  (autouse fixture)

pytest.importorskip("triton")


def make_inputs(B, T, H, K, V, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.rand(B, T, H, K, generator=g, dtype=torch.float64)
    k = F.normalize(torch.rand(B, T, H, K, generator=g, dtype=torch.float64), dim=-1)
    v = torch.randn(B, T, H, V, generator=g, dtype=torch.float64)
    beta = torch.rand(B, T, H, generator=g, dtype=torch.float64)
    S0 = torch.randn(B, H, K, V, generator=g, dtype=torch.float64)
    z0 = torch.rand(B, H, K, generator=g, dtype=torch.float64)
    return dict(q=q, k=k, v=v, beta=beta, S0=S0, z0=z0)


def run(op, inputs, dtype, *, backend, reset=None, use_state=True, **kw):
    """Outputs and gradients of a loss on the outputs *and* the final state."""
    names = ["q", "k", "v"] + (["beta"] if op is delta_rule else []) + (["S0"] if use_state else [])
    if kw.get("normalize") and use_state:
        names.append("z0")
    leaves = {n: inputs[n].detach().to(dtype).requires_grad_() for n in names}
    state = None
    if use_state:
        state = (leaves["S0"], leaves["z0"]) if kw.get("normalize") else leaves["S0"]
    args = [leaves["q"], leaves["k"], leaves["v"]] + ([leaves["beta"]] if op is delta_rule else [])
    o, S = op(*args, initial_state=state, reset=reset, backend=backend, **kw)
    outs = [o, *(S if isinstance(S, tuple) else (S,))]
    g = torch.Generator().manual_seed(1)
    loss = sum((t.double() * torch.randn(t.shape, generator=g, dtype=torch.float64)).sum() for t in outs)
    loss.backward()
    return outs, [leaves[n].grad for n in names]


def test_triton_delta_rule_matches_reference_with_resets_state_and_two_value_tiles():
    # Dv = 33 splits into two value tiles of 32 (partial dq/dk/dbeta are summed); Dk = 5 pads to 8.
    inputs = make_inputs(2, 6, 1, 5, 33)
    reset = torch.tensor([[False, False, True, False, False, False], [False, False, False, False, True, False]])
    out, grads = run(delta_rule, inputs, torch.float32, backend="triton", reset=reset)
    ref_out, ref_grads = run(delta_rule, inputs, torch.float64, backend="torch", reset=reset, mode="recurrent")
    assert out[0].dtype == torch.float32 and out[1].dtype == torch.float32
    assert_close(out, ref_out, FP32_TOL, "outputs")
    assert_close(grads, ref_grads, FP32_TOL, "gradients")


def test_triton_delta_rule_single_step_without_initial_state():
    inputs = make_inputs(1, 1, 2, 4, 4, seed=2)
    out, grads = run(delta_rule, inputs, torch.float32, backend="triton", use_state=False)
    ref_out, ref_grads = run(delta_rule, inputs, torch.float64, backend="torch", use_state=False)
    assert_close(out, ref_out, FP32_TOL, "outputs")
    assert_close(grads, ref_grads, FP32_TOL, "gradients")


def test_triton_normalised_linear_attention_matches_reference_with_resets():
    inputs = make_inputs(1, 7, 2, 4, 3, seed=3)
    reset = torch.tensor([[False, False, False, True, False, False, False]])
    kw = dict(normalize=True, reset=reset)
    out, grads = run(linear_attention, inputs, torch.float32, backend="triton", **kw)
    ref_out, ref_grads = run(linear_attention, inputs, torch.float64, backend="torch", mode="recurrent", **kw)
    assert len(out) == 3  # o, S, z
    assert_close(out, ref_out, FP32_TOL, "outputs")
    assert_close(grads, ref_grads, FP32_TOL, "gradients")


def test_triton_linear_attention_bfloat16_inputs():
    inputs = {n: t.to(torch.bfloat16).double() for n, t in make_inputs(1, 5, 1, 4, 4, seed=4).items()}
    out, grads = run(linear_attention, inputs, torch.bfloat16, backend="triton")
    ref_out, ref_grads = run(linear_attention, inputs, torch.float64, backend="torch")
    assert out[0].dtype == torch.bfloat16 and out[1].dtype == torch.float32
    assert all(g.dtype == torch.bfloat16 for g in grads)
    assert_close(out, ref_out, BF16_TOL, "outputs")
    assert_close(grads, ref_grads, BF16_TOL, "gradients")


def test_triton_inference_without_grad_matches_the_chunk_form():
    inputs = {n: t.float() for n, t in make_inputs(2, 9, 1, 4, 6, seed=5).items()}
    reset = torch.tensor([True, False])  # [B]: reset before step 0 only
    args = (inputs["q"], inputs["k"], inputs["v"], inputs["beta"])
    with torch.no_grad():
        o, S = delta_rule(*args, initial_state=inputs["S0"], reset=reset, backend="triton")
        o_ref, S_ref = delta_rule(*args, initial_state=inputs["S0"], reset=reset, backend="torch", chunk_size=4)
    assert rel_err(o, o_ref) < FP32_TOL and rel_err(S, S_ref) < FP32_TOL
