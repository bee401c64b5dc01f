"""SRWM's initial fast weights learn at the rate of the model's dense layers (w0_multiplier).

The property, not a number: on synthetic 5-way 1-shot episodes (a new random prototype per
class and episode, so the task can only be solved by storing the support set in fast weights),
the default parametrization learns the task within a few hundred Adam steps where the paper's
(``w0_multiplier=1``) is still at chance.
"""

import pytest
import torch
from torch import nn

from adaptmem.layers import SRWM
from adaptmem.models.fewshot import SequentialFewShotLearner

WAYS, DIM, NOISE, BATCH, STEPS = 5, 32, 0.5, 16, 400


def episodes(g: torch.Generator):
    protos = torch.randn(BATCH, WAYS, DIM, generator=g)
    sy = torch.argsort(torch.rand(BATCH, WAYS, generator=g), dim=1)
    qy = torch.argsort(torch.rand(BATCH, WAYS, generator=g), dim=1)

    def draw(y):
        x = protos.gather(1, y[..., None].expand(BATCH, WAYS, DIM))
        return (x + NOISE * torch.randn(BATCH, WAYS, DIM, generator=g)).view(BATCH, WAYS, DIM, 1, 1)

    return draw(sy), sy, draw(qy), qy


def late_training_accuracy(w0_multiplier: float | None) -> float:
    torch.manual_seed(0)
    net = SequentialFewShotLearner(
        nn.Flatten(), DIM, WAYS, model="srwm", d_model=64, num_heads=4, num_layers=1, w0_multiplier=w0_multiplier
    )
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(1)
    accs = []
    for _ in range(STEPS):
        sx, sy, qx, qy = episodes(g)
        logits = net(sx, sy, qx)
        loss = nn.functional.cross_entropy(logits.flatten(0, 1), qy.flatten())
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        accs.append((logits.argmax(-1) == qy).float().mean().item())
    return sum(accs[-100:]) / 100


def test_default_parametrization_learns_in_context_where_the_papers_stays_at_chance():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        new, old = late_training_accuracy(None), late_training_accuracy(1.0)
    finally:
        torch.set_num_threads(threads)
    # Measured: default (m = 8) ~0.8, w0_multiplier=1 0.22 (chance 0.2), mean over steps 301-400.
    assert new > 0.6, f"default SRWM reached only {new:.3f} (> 0.6 expected)"
    assert old < 0.4, f"w0_multiplier=1 reached {old:.3f}: the task no longer separates the two"


def test_default_multiplier_is_32_over_sqrt_head_dim_and_the_function_at_init_is_the_papers():
    torch.manual_seed(0)
    paper = SRWM(64, num_heads=4, w0_multiplier=1.0)
    torch.manual_seed(0)
    ours = SRWM(64, num_heads=4)
    assert float(ours.w0_multiplier) == 32 / 16**0.5
    assert float(SRWM(64, num_heads=2).w0_multiplier) == pytest.approx(32 / 32**0.5)
    for a, b in zip(paper.initial_weights(), ours.initial_weights()):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=0)
    x = torch.randn(2, 7, 64)
    torch.testing.assert_close(paper(x)[0], ours(x)[0], rtol=1e-5, atol=1e-6)


def test_state_dict_without_multiplier_loads_as_the_old_parametrization():
    torch.manual_seed(0)
    old = SRWM(32, num_heads=2, w0_multiplier=1.0)  # exactly the layer before w0_multiplier
    sd = {k: v for k, v in old.state_dict().items() if k != "w0_multiplier"}
    new = SRWM(32, num_heads=2)
    new.load_state_dict(sd)  # strict
    x = torch.randn(3, 9, 32)
    torch.testing.assert_close(new(x)[0], old(x)[0], rtol=1e-5, atol=1e-6)
    assert float(new.w0_multiplier) == 8.0  # 32 / sqrt(16)


def test_state_dict_with_another_multiplier_is_converted():
    src = SRWM(32, num_heads=4, w0_multiplier=3.0)
    dst = SRWM(32, num_heads=4, w0_multiplier=5.0)
    dst.load_state_dict(src.state_dict())
    for a, b in zip(src.initial_weights(), dst.initial_weights()):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=0)
    assert float(dst.w0_multiplier) == 5.0


def test_bad_multiplier_and_beta_init_raise_value_error():

    for bad in (0.0, -1.0, float("nan"), float("inf"), True, "8"):
        with pytest.raises(ValueError, match="w0_multiplier"):
            SRWM(32, num_heads=2, w0_multiplier=bad)
    with pytest.raises(ValueError, match="beta_init"):
        SRWM(32, num_heads=2, beta_init=float("nan"))


def test_save_load_round_trip_is_bit_exact_for_a_multiplier_float32_cannot_hold():
    src = SRWM(64, num_heads=2)  # m = 32 / sqrt(32), not a float32 number
    dst = SRWM(64, num_heads=2)
    dst.load_state_dict(src.state_dict())
    for name in ("W_y", "W_q", "W_k", "w_b"):
        assert torch.equal(getattr(src, name), getattr(dst, name))


def test_layer_builds_on_the_meta_device():
    with torch.device("meta"):
        layer = SRWM(32, num_heads=2)
    assert layer.W_y.is_meta and "w0_multiplier=8" in repr(layer)
