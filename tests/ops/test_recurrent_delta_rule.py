import pytest
import torch

from adaptmem.ops import RecurrentDeltaState, recurrent_delta_rule, recurrent_delta_rule_reference
from tests.ops.helpers import assert_close, grads


def make(B, T, H, D, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    vec = [torch.randn(B, T, H, D, generator=g, dtype=dtype) for _ in range(3)]
    beta = torch.randn(B, T, H, generator=g, dtype=dtype)
    rec = [torch.randn(H, D, D, generator=g, dtype=dtype) / D**0.5 for _ in range(3)]
    r_b = torch.randn(H, D, generator=g, dtype=dtype) / D**0.5
    S0 = torch.randn(B, H, D, D, generator=g, dtype=dtype)
    y0 = torch.randn(B, H, D, generator=g, dtype=dtype)
    return [t.requires_grad_() for t in (*vec, beta, *rec, r_b, S0, y0)]


def run(mode, *a, **kw):
    o, st = recurrent_delta_rule(*a[:8], initial_state=RecurrentDeltaState(a[8], a[9]), mode=mode, **kw)
    return o, *st


@pytest.mark.parametrize("mode", ["checkpointed", "reference"])
def test_passes_float64_gradcheck_including_initial_state(mode):
    inputs = make(1, 4, 1, 2)
    reset = torch.tensor([[False, False, True, False]])
    assert torch.autograd.gradcheck(lambda *a: run(mode, *a, checkpoint_every=3, reset=reset), inputs)


def test_checkpointed_equals_reference_outputs_and_gradients():
    inputs = make(2, 50, 2, 4)
    reset = torch.rand(2, 50, generator=torch.Generator().manual_seed(2)) < 0.1
    out_c = run("checkpointed", *inputs, checkpoint_every=16, reset=reset)
    out_r = recurrent_delta_rule_reference(*inputs[:8], initial_state=(inputs[8], inputs[9]), reset=reset)
    out_r = (out_r[0], *out_r[1])
    for a, b in zip(out_c, out_r):
        assert_close(a, b, 1e-12, "forward")
    for a, b in zip(grads(out_c, inputs), grads(out_r, inputs)):
        assert_close(a, b, 1e-12, "gradient")


def test_bad_recurrent_weight_shape():
    a = [t.detach() for t in make(1, 3, 2, 4)]
    with pytest.raises(ValueError, match=r"R_k must be \[H, D, D\] = \(2, 4, 4\)"):
        recurrent_delta_rule(a[0], a[1], a[2], a[3], a[4], a[5][:1], a[6], a[7])


@pytest.mark.parametrize("old, new", [("checkpoint", "checkpointed"), ("recurrent", "reference")])
def test_old_mode_names_warn_and_give_identical_results(old, new):
    inputs = make(2, 9, 2, 3)
    with pytest.warns(DeprecationWarning, match=f"recurrent_delta_rule: mode='{old}' is deprecated; use mode='{new}'"):
        got = run(old, *inputs, checkpoint_every=4)
    want = run(new, *inputs, checkpoint_every=4)
    assert all(torch.equal(a, b) for a, b in zip(got, want))
    assert all(torch.equal(a, b) for a, b in zip(grads(got, inputs), grads(want, inputs)))
