"""V-trace: a hand-computed example, an independent implementation, and its on-policy limit."""

from __future__ import annotations

import math

import pytest
import torch

from adaptmem.rl import vtrace

ATOL = 1e-10


def vtrace_by_definition(log_rhos, discounts, rewards, values, bootstrap, clip_rho=1.0, clip_pg_rho=1.0, clip_c=1.0):
    """Espeholt et al. (2018), eq. (1), summed term by term (no recursion):
    v_s = V(x_s) + sum_{t>=s} (prod_{i<t} gamma_i) (prod_{s<=i<t} c_i) delta_t."""
    B, T = rewards.shape
    rho = log_rhos.exp()

    def clip(x: float, c: float | None) -> float:
        return x if c is None else min(x, c)

    vs = torch.zeros(B, T, dtype=torch.float64)
    adv = torch.zeros(B, T, dtype=torch.float64)
    for b in range(B):
        V = [float(v) for v in values[b]] + [float(bootstrap[b])]
        delta = [
            clip(float(rho[b, t]), clip_rho) * (float(rewards[b, t]) + float(discounts[b, t]) * V[t + 1] - V[t])
            for t in range(T)
        ]
        for s in range(T):
            total, weight = 0.0, 1.0
            for t in range(s, T):
                total += weight * delta[t]
                weight *= float(discounts[b, t]) * clip(float(rho[b, t]), clip_c)
            vs[b, s] = V[s] + total
        for s in range(T):
            v_next = float(vs[b, s + 1]) if s + 1 < T else V[T]
            target = float(rewards[b, s]) + float(discounts[b, s]) * v_next
            adv[b, s] = clip(float(rho[b, s]), clip_pg_rho) * (target - V[s])
    return vs, adv


def test_vtrace_matches_hand_computed_example():
    # T = 2, gamma = 0.9, rho = (2, 0.5) -> clipped rho = c = (1, 0.5).
    # delta_1 = 0.5 * (2 + 0.9 * 2.0 - 1.0) = 1.4          v_1 = 1.0 + 1.4 = 2.4
    # delta_0 = 1.0 * (1 + 0.9 * 1.0 - 0.5) = 1.4          v_0 = 0.5 + 1.4 + 0.9 * 1 * 1.4 = 3.16
    # A_1 = 0.5 * (2 + 0.9 * 2.0 - 1.0) = 1.4              A_0 = 1.0 * (1 + 0.9 * 2.4 - 0.5) = 2.66
    f64 = dict(dtype=torch.float64)
    out = vtrace(
        torch.tensor([[math.log(2.0), math.log(0.5)]], **f64),
        torch.full((1, 2), 0.9, **f64),
        torch.tensor([[1.0, 2.0]], **f64),
        torch.tensor([[0.5, 1.0]], **f64),
        torch.tensor([2.0], **f64),
    )
    torch.testing.assert_close(out.vs, torch.tensor([[3.16, 2.4]], **f64), atol=ATOL, rtol=0)
    torch.testing.assert_close(out.pg_advantages, torch.tensor([[2.66, 1.4]], **f64), atol=ATOL, rtol=0)


def test_vtrace_hand_computed_episode_end_cuts_the_bootstrap():
    # The first transition ends the episode (discount 0): v_0 = r_0 = 1 whatever comes after.
    f64 = dict(dtype=torch.float64)
    out = vtrace(
        torch.zeros(1, 2, **f64),
        torch.tensor([[0.0, 0.5]], **f64),
        torch.tensor([[1.0, 3.0]], **f64),
        torch.tensor([[7.0, 2.0]], **f64),
        torch.tensor([4.0], **f64),
    )
    # v_1 = 3 + 0.5 * 4 = 5; v_0 = 1; A_0 = 1 - 7 = -6; A_1 = 5 - 2 = 3
    torch.testing.assert_close(out.vs, torch.tensor([[1.0, 5.0]], **f64), atol=ATOL, rtol=0)
    torch.testing.assert_close(out.pg_advantages, torch.tensor([[-6.0, 3.0]], **f64), atol=ATOL, rtol=0)


@pytest.mark.parametrize("clips", [(1.0, 1.0, 1.0), (2.0, 0.5, 0.8), (None, None, None)])
def test_vtrace_equals_definition_with_random_episode_ends(clips):
    g = torch.Generator().manual_seed(1)
    B, T = 3, 7
    log_rhos = torch.randn(B, T, generator=g, dtype=torch.float64)
    discounts = 0.95 * (torch.rand(B, T, generator=g, dtype=torch.float64) > 0.25)
    rewards = torch.randn(B, T, generator=g, dtype=torch.float64)
    values = torch.randn(B, T, generator=g, dtype=torch.float64)
    bootstrap = torch.randn(B, generator=g, dtype=torch.float64)
    out = vtrace(
        log_rhos, discounts, rewards, values, bootstrap, clip_rho=clips[0], clip_pg_rho=clips[1], clip_c=clips[2]
    )
    vs, adv = vtrace_by_definition(log_rhos, discounts, rewards, values, bootstrap, *clips)
    torch.testing.assert_close(out.vs, vs, atol=ATOL, rtol=0)
    torch.testing.assert_close(out.pg_advantages, adv, atol=ATOL, rtol=0)


def test_on_policy_vtrace_targets_are_bootstrapped_discounted_returns():
    g = torch.Generator().manual_seed(2)
    B, T, gamma = 2, 5, 0.9
    rewards = torch.randn(B, T, generator=g, dtype=torch.float64)
    values = torch.randn(B, T, generator=g, dtype=torch.float64)
    bootstrap = torch.randn(B, generator=g, dtype=torch.float64)
    out = vtrace(
        torch.zeros(B, T, dtype=torch.float64),
        torch.full((B, T), gamma, dtype=torch.float64),
        rewards,
        values,
        bootstrap,
    )
    for s in range(T):
        ret = sum(gamma ** (t - s) * rewards[:, t] for t in range(s, T)) + gamma ** (T - s) * bootstrap
        torch.testing.assert_close(out.vs[:, s], ret, atol=ATOL, rtol=0)


def test_vtrace_does_not_track_gradients():
    values = torch.randn(2, 3, requires_grad=True)
    out = vtrace(torch.zeros(2, 3), torch.ones(2, 3), torch.zeros(2, 3), values, torch.zeros(2))
    assert not out.vs.requires_grad and not out.pg_advantages.requires_grad


def test_vtrace_rejects_mismatched_shapes_with_named_argument():
    with pytest.raises(ValueError, match="vtrace: rewards must be"):
        vtrace(torch.zeros(2, 3), torch.ones(2, 3), torch.zeros(3, 2), torch.zeros(2, 3), torch.zeros(2))
    with pytest.raises(ValueError, match="vtrace: bootstrap_value must be"):
        vtrace(torch.zeros(2, 3), torch.ones(2, 3), torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2, 1))
