"""V-trace off-policy value targets (Espeholt et al., "IMPALA", ICML 2018), batch-first."""

from __future__ import annotations

from typing import NamedTuple

import torch

from adaptmem.utils.checks import check_float, check_shape


class VTraceReturns(NamedTuple):
    vs: torch.Tensor  # [B, T] value targets
    pg_advantages: torch.Tensor  # [B, T] policy-gradient advantages


def _clip(x: torch.Tensor, threshold: float | None) -> torch.Tensor:
    return x if threshold is None else x.clamp(max=threshold)


@torch.no_grad()
def vtrace(
    log_rhos: torch.Tensor,
    discounts: torch.Tensor,
    rewards: torch.Tensor,
    values: torch.Tensor,
    bootstrap_value: torch.Tensor,
    *,
    clip_rho: float | None = 1.0,
    clip_pg_rho: float | None = 1.0,
    clip_c: float | None = 1.0,
) -> VTraceReturns:
    r"""V-trace targets and policy-gradient advantages.

    With :math:`\rho_t = \min(\bar\rho, \pi(a_t|x_t)/\mu(a_t|x_t))`, :math:`c_t = \min(\bar c, \cdot)`,
    :math:`\delta_t = \rho_t (r_t + \gamma_t V(x_{t+1}) - V(x_t))` and :math:`V(x_T)` the bootstrap:

    .. math::
        v_t = V(x_t) + \delta_t + \gamma_t c_t (v_{t+1} - V(x_{t+1})), \qquad v_T = V(x_T) \\
        A_t = \rho^{pg}_t (r_t + \gamma_t v_{t+1} - V(x_t))

    :math:`\gamma_t` is the per-step discount (0 where the transition ended the episode). All
    inputs are treated as constants (computed under ``no_grad``).

    Args:
        log_rhos: ``[B, T]`` log importance ratios ``log pi(a_t) - log mu(a_t)``.
        discounts: ``[B, T]``.
        rewards: ``[B, T]``.
        values: ``[B, T]`` the learner's ``V(x_t)``.
        bootstrap_value: ``[B]`` the learner's ``V(x_T)``.
        clip_rho, clip_pg_rho, clip_c: truncation thresholds :math:`\bar\rho`,
            :math:`\bar\rho^{pg}`, :math:`\bar c` (``None``: no truncation).

    Returns:
        :class:`VTraceReturns` ``(vs, pg_advantages)``, both ``[B, T]``.
    """
    for name, c in (("clip_rho", clip_rho), ("clip_pg_rho", clip_pg_rho), ("clip_c", clip_c)):
        if c is not None:
            check_float("vtrace", name, c, lo=0.0, lo_open=True)
    check_shape("vtrace", "log_rhos", log_rhos, (None, None), "[B, T]")
    B, T = log_rhos.shape
    for name, t in (("discounts", discounts), ("rewards", rewards), ("values", values)):
        check_shape("vtrace", name, t, (B, T), "[B, T]")
    check_shape("vtrace", "bootstrap_value", bootstrap_value, (B,), "[B]")
    rhos = log_rhos.exp()
    clipped_rhos, cs = _clip(rhos, clip_rho), _clip(rhos, clip_c)
    next_values = torch.cat([values[:, 1:], bootstrap_value[:, None]], dim=1)
    deltas = clipped_rhos * (rewards + discounts * next_values - values)

    corrections = torch.zeros_like(values)  # v_t - V(x_t), built backwards in time
    acc = torch.zeros_like(bootstrap_value)
    for t in reversed(range(T)):
        acc = deltas[:, t] + discounts[:, t] * cs[:, t] * acc
        corrections[:, t] = acc
    vs = values + corrections

    next_vs = torch.cat([vs[:, 1:], bootstrap_value[:, None]], dim=1)
    pg_advantages = _clip(rhos, clip_pg_rho) * (rewards + discounts * next_vs - values)
    return VTraceReturns(vs, pg_advantages)
