"""The fused CPU Recurrent Delta Net (backend="numba") against the reference and the torch path."""

import pytest
import torch

pytest.importorskip("numba", reason="the fused CPU kernels need numba (the numba extra: pip install 'numba>=0.60')")

from adaptmem.ops import _dispatch, recurrent_delta_rule_reference  # noqa: E402
from tests.ops.helpers import FP32_RTOL, assert_all_close, grads  # noqa: E402
from tests.ops.test_recurrent_delta_rule import make, run  # noqa: E402
from tests.ops.test_srwm import saved_numel  # noqa: E402


def resets(B, T, p=0.15, seed=2):
    r = torch.rand(B, T, generator=torch.Generator().manual_seed(seed)) < p
    r[0, T // 2] = True
    return r


@pytest.mark.parametrize("B, T, H, D, C", [(1, 5, 1, 2, 3), (3, 7, 3, 3, 2), (2, 6, 5, 2, 4)])
def test_passes_float64_gradcheck_with_resets_and_initial_and_final_state(B, T, H, D, C):
    # N = B*H = 1, 9, 10 sequences: lane groups with unused lanes, heads mixed within a group.
    inputs = make(B, T, H, D, seed=T)
    reset = resets(B, T)
    fn = lambda *a: run("checkpointed", *a, checkpoint_every=C, reset=reset, backend="numba")
    assert torch.autograd.gradcheck(fn, inputs)  # a random gradient on every output, final state included


@pytest.mark.parametrize("T, C, p", [(1, 64, 0.0), (50, 16, 0.1), (130, 64, 0.05)])
def test_equals_torch_checkpoint_path_in_float64(T, C, p):
    inputs = make(3, T, 3, 4)
    kw = dict(checkpoint_every=C, reset=resets(3, T, p) if p else None)
    out, out_torch = (
        run("checkpointed", *inputs, backend="numba", **kw),
        run("checkpointed", *inputs, backend="torch", **kw),
    )
    assert_all_close(out, out_torch, 1e-12, "forward")
    assert_all_close(grads(out, inputs), grads(out_torch, inputs), 1e-12, "gradient")


def test_fp32_matches_reference_within_1e5():
    inputs = make(2, 200, 4, 8, dtype=torch.float32)
    reset = resets(2, 200, p=0.02)
    out = run("checkpointed", *inputs, reset=reset, backend="numba")
    o, st = recurrent_delta_rule_reference(*inputs[:8], initial_state=(inputs[8], inputs[9]), reset=reset)
    out_ref = (o, *st)
    assert_all_close(out, out_ref, FP32_RTOL, "forward")
    assert_all_close(grads(out, inputs), grads(out_ref, inputs), FP32_RTOL, "gradient")


def test_an_empty_batch_gives_empty_outputs_and_gradients():
    inputs = make(0, 5, 2, 4)
    out = run("checkpointed", *inputs, backend="numba")
    assert [tuple(o.shape) for o in out] == [(0, 5, 2, 4), (0, 2, 4, 4), (0, 2, 4)]
    assert all(g.shape == t.shape for g, t in zip(grads(out, inputs), inputs))


def test_activation_memory_is_per_step_vectors_plus_checkpoints():
    B, T, H, D, C = 2, 256, 4, 16, 64  # 8 sequences: no unused lanes
    inputs = make(B, T, H, D, dtype=torch.float32)
    saved = saved_numel(lambda: run("checkpointed", *inputs, checkpoint_every=C, backend="numba"))
    N = B * H
    assert saved <= T * N * (4 * D + 1) + -(-T // C) * N * D * D + H * D * (3 * D + 1)


def test_auto_picks_numba_on_cpu_and_the_backend_is_checked(monkeypatch):
    inputs = [t.detach() for t in make(1, 5, 2, 4)]
    auto = run("checkpointed", *inputs)
    numba = run("checkpointed", *inputs, backend="numba")
    assert all(torch.equal(a, b) for a, b in zip(auto, numba))
    with pytest.raises(ValueError, match="backend must be one of"):
        run("checkpointed", *inputs, backend="triton")
    monkeypatch.setattr(_dispatch, "installed", lambda package: False)
    with pytest.raises(
        ImportError, match=r"numba is not installed: pip install 'numba>=0.60' \(the 'numba' extra of adaptmem-torch\)"
    ):
        run("checkpointed", *inputs, backend="numba")
    torch_path = run("checkpointed", *inputs, backend="torch")
    assert all(torch.equal(a, b) for a, b in zip(run("checkpointed", *inputs), torch_path))
