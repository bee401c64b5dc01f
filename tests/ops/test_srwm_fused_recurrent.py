"""SRWM's fused Triton kernels (``adaptmem/ops/srwm/fused_recurrent.py``), run by the Triton interpreter
on CPU, against the float64 step loop."""

from __future__ import annotations

import pytest
import torch

from adaptmem.ops import srwm
from tests.ops.helpers import BF16_RTOL as BF16_TOL
from tests.ops.helpers import FP32_RTOL as FP32_TOL
from tests.ops.helpers import assert_all_close as assert_close
from tests.ops.triton_interpret import run_module_under_interpreter  # noqa: F401  (autouse fixture)

pytest.importorskip("triton")


def make_problem(B, T, H, D, *, batched, seed=0):
    g = torch.Generator().manual_seed(seed)
    lead = (B, H) if batched else (H,)
    x = torch.randn(B, T, H, D, generator=g, dtype=torch.float64)
    weights = [torch.randn(*lead, D, D, generator=g, dtype=torch.float64) / D**0.5 for _ in range(3)]
    weights.append(torch.randn(*lead, D, 4, generator=g, dtype=torch.float64) / D**0.5)
    return x, weights


def run(
    x, weights, *, dtype, backend="auto", mode="checkpointed", reset=None, reset_to=None, checkpoint_every=64, seed=1
):
    """Outputs and every gradient of a loss that also uses the final state (its incoming gradient is nonzero)."""
    leaves = [t.detach().to(dtype).requires_grad_() for t in [x, *weights, *(reset_to or [])]]
    xs, ws, rs = leaves[0], leaves[1:5], leaves[5:] or None
    y, state = srwm(xs, *ws, reset=reset, reset_to=rs, mode=mode, backend=backend, checkpoint_every=checkpoint_every)
    g = torch.Generator().manual_seed(seed)
    loss = (y.double() * torch.randn(y.shape, generator=g, dtype=torch.float64)).sum()
    for M in state:
        loss = loss + (M.double() * torch.randn(M.shape, generator=g, dtype=torch.float64)).sum()
    loss.backward()
    return [y, *state], [t.grad for t in leaves]


def test_triton_matches_reference_across_checkpoints_with_resets_and_final_state_gradient():
    # T = 11 with C = 4: three chunks, the last one partial; D = 5 exercises the masked padding
    # to 8; resets mid-chunk and at a chunk start; batched [B, H, D, D] weights; a separate
    # reset target; the loss uses the final state, so its incoming gradient is nonzero.
    B, T, H, D = 2, 11, 1, 5
    x, weights = make_problem(B, T, H, D, batched=True)
    _, reset_to = make_problem(B, T, H, D, batched=False, seed=5)
    reset = torch.zeros(B, T, dtype=torch.bool)
    reset[0, 3] = reset[0, 8] = reset[1, 4] = True
    kw = dict(reset=reset, reset_to=reset_to)
    out, grads = run(x, weights, backend="triton", dtype=torch.float32, checkpoint_every=4, **kw)
    ref_out, ref_grads = run(x, weights, mode="reference", dtype=torch.float64, **kw)
    assert_close(out, ref_out, FP32_TOL, "outputs")
    assert_close(grads, ref_grads, FP32_TOL, "gradients")
    # All four fast matrices reach the loss (docs/reference.md, pitfall 3).
    assert all(g.abs().sum() > 0 for g in grads[1:5])


def test_triton_matches_reference_at_head_dim_16_over_several_chunks():
    # The head dim of the papers' models (no padding), three full chunks and a partial one.
    B, T, H, D = 1, 19, 1, 16
    x, weights = make_problem(B, T, H, D, batched=False, seed=2)
    reset = torch.zeros(B, T, dtype=torch.bool)
    reset[0, 12] = True
    out, grads = run(x, weights, backend="triton", dtype=torch.float32, reset=reset, checkpoint_every=5)
    ref_out, ref_grads = run(x, weights, mode="reference", dtype=torch.float64, reset=reset)
    assert_close(out, ref_out, FP32_TOL, "outputs")
    assert_close(grads, ref_grads, FP32_TOL, "gradients")


def test_triton_single_step_with_weights_shared_over_the_batch():
    B, T, H, D = 2, 1, 2, 4
    x, weights = make_problem(B, T, H, D, batched=False)
    out, grads = run(x, weights, backend="triton", dtype=torch.float32)
    ref_out, ref_grads = run(x, weights, mode="reference", dtype=torch.float64)
    assert out[1].shape == (B, H, D, D)
    assert_close(out, ref_out, FP32_TOL, "outputs")
    assert_close(grads, ref_grads, FP32_TOL, "gradients")


def test_triton_resets_to_starting_weights_with_one_step_chunks():
    # reset_to defaults to the starting weights: their gradient collects both uses.
    B, T, H, D = 1, 5, 1, 4
    x, weights = make_problem(B, T, H, D, batched=False, seed=3)
    reset = torch.tensor([[False, False, True, False, True]])
    out, grads = run(x, weights, backend="triton", dtype=torch.float32, reset=reset, checkpoint_every=1)
    ref_out, ref_grads = run(x, weights, mode="reference", dtype=torch.float64, reset=reset)
    assert_close(out, ref_out, FP32_TOL, "outputs")
    assert_close(grads, ref_grads, FP32_TOL, "gradients")


def test_triton_bfloat16_inputs_keep_a_float32_state():
    B, T, H, D = 1, 6, 1, 4
    x, weights = make_problem(B, T, H, D, batched=False, seed=4)
    x = x.to(torch.bfloat16).double()  # the reference sees the same rounded inputs
    weights = [w.to(torch.bfloat16).double() for w in weights]
    out, grads = run(x, weights, backend="triton", dtype=torch.bfloat16, checkpoint_every=4)
    ref_out, ref_grads = run(x, weights, mode="reference", dtype=torch.float64)
    assert out[0].dtype == torch.bfloat16 and out[1].dtype == torch.float32
    assert all(g.dtype == torch.bfloat16 for g in grads)
    assert_close(out, ref_out, BF16_TOL, "outputs")
    assert_close(grads, ref_grads, BF16_TOL, "gradients")


def test_triton_inference_without_grad_matches_the_torch_backend():
    B, T, H, D = 1, 7, 2, 4
    x, weights = make_problem(B, T, H, D, batched=True, seed=6)
    reset = torch.tensor([[False, False, False, True, False, False, False]])
    x, weights = x.float(), [w.float() for w in weights]
    with torch.no_grad():
        y, state = srwm(x, *weights, reset=reset, backend="triton")
        y_ref, state_ref = srwm(x, *weights, reset=reset, backend="torch")
    assert_close([y, *state], [y_ref, *state_ref], FP32_TOL, "outputs")


def test_triton_backend_runs_float64_and_large_heads_on_the_torch_path():
    B, T, H, D = 1, 3, 1, 4
    x, weights = make_problem(B, T, H, D, batched=False, seed=7)
    y, state = srwm(x, *weights, backend="triton")  # float64: the kernels accumulate in float32
    y_ref, state_ref = srwm(x, *weights, backend="torch")
    assert y.dtype == torch.float64
    assert torch.equal(y, y_ref) and all(torch.equal(a, b) for a, b in zip(state, state_ref))
    x, weights = make_problem(1, 2, 1, 129, batched=False, seed=8)  # above the kernel's 128
    x, weights = x.float(), [w.float() for w in weights]
    y, state = srwm(x, *weights, backend="triton")
    y_ref, state_ref = srwm(x, *weights, backend="torch")
    assert torch.equal(y, y_ref) and all(torch.equal(a, b) for a, b in zip(state, state_ref))


def test_triton_backend_on_cpu_without_the_interpreter_names_the_fix(monkeypatch):
    x, weights = make_problem(1, 2, 1, 4, batched=False)
    monkeypatch.delenv("TRITON_INTERPRET")
    with pytest.raises(ValueError, match="backend='triton' cannot run this call: Triton needs CUDA tensors"):
        srwm(x.float(), *[w.float() for w in weights], backend="triton")
