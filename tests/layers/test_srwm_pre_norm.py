"""SRWM's pre_norm option: the layer reads LayerNorm(x) instead of the raw residual stream."""

import torch

from adaptmem.layers import SRWM


def test_pre_norm_feeds_the_layer_norm_of_the_input_and_keeps_the_raw_skip():
    torch.manual_seed(0)
    pre = SRWM(16, 2, pre_norm=True, norm_skip=False)
    raw = SRWM(16, 2, norm_skip=False)
    raw.load_state_dict({k: v for k, v in pre.state_dict().items() if not k.startswith("norm.")})
    with torch.no_grad():
        pre.norm.weight.uniform_(0.5, 1.5)
        pre.norm.bias.normal_()
    x = 3.0 * torch.randn(2, 7, 16) + 1.0
    y, state = pre(x)
    normed = pre.norm(x)
    y_ref, state_ref = raw(normed)
    torch.testing.assert_close(y, x + (y_ref - normed))
    for s, s_ref in zip(state, state_ref):
        torch.testing.assert_close(s, s_ref)


def test_pre_norm_with_norm_skip_uses_the_normalised_input_on_both_paths():
    torch.manual_seed(0)
    both = SRWM(16, 2, pre_norm=True, norm_skip=True)
    skip_only = SRWM(16, 2, norm_skip=True)
    skip_only.load_state_dict(both.state_dict())
    x = 3.0 * torch.randn(2, 7, 16) + 1.0
    y, _ = both(x)
    y_ref, _ = skip_only(both.norm(x))
    # skip_only(LN x) = LN(LN x) + W_o SRWM(LN x); LN is idempotent up to its affine (identity at init).
    torch.testing.assert_close(y, y_ref, atol=1e-4, rtol=1e-4)
    assert set(both.state_dict()) == set(skip_only.state_dict())
