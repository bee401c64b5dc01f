"""The delta rule as a plain step loop: the specification (and ``mode="recurrent"`` on ``"torch"``).

Schlag, Irie, Schmidhuber, "Linear Transformers Are Secretly Fast Weight Programmers", ICML
2021. State ``S`` is ``Dk x Dv`` (row vectors); write, then read::

    u_t = beta_t (v_t - k_t S)
    S  <- S + k_t^T u_t             = (I - beta_t k_t^T k_t) S + beta_t k_t^T v_t
    o_t = q_t S
"""

from __future__ import annotations

import torch

from adaptmem.ops import _checks
from adaptmem.ops._state import compute_dtype, to_heads


def delta_rule_reference(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    beta: torch.Tensor,
    *,
    initial_state: torch.Tensor | None = None,
    reset: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Step-loop delta rule; same contract as :func:`adaptmem.ops.delta_rule`."""
    B, T, _, _, _ = _checks.check_qkv("delta_rule_reference", q, k, v, beta, initial_state)
    reset = _checks.check_reset("delta_rule_reference", reset, B, T, q.device)
    return _reference_impl(q, k, v, beta, initial_state, reset)


def _reference_impl(q, k, v, beta, initial_state, reset) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`delta_rule_reference` on checked inputs (``reset`` ``[B, T]`` bool or ``None``)."""
    B, T, H, Dk = q.shape
    Dv = v.shape[-1]
    dtype = compute_dtype(q, k, v, beta, initial_state)
    qh, kh, vh = to_heads(q, dtype), to_heads(k, dtype), to_heads(v, dtype)
    S = initial_state.to(dtype) if initial_state is not None else qh.new_zeros(B, H, Dk, Dv)
    o, S = step_loop(qh, kh, vh, beta.to(dtype).transpose(1, 2), S, reset)
    return o.transpose(1, 2).to(v.dtype), S


def step_loop(qh, kh, vh, bh, S, reset) -> tuple[torch.Tensor, torch.Tensor]:
    """The loop on head-first tensors: q, k ``[B, H, T, Dk]``, v ``[B, H, T, Dv]``, beta
    ``[B, H, T]``, ``S`` ``[B, H, Dk, Dv]``, ``reset`` ``[B, T]`` bool or ``None``.

    Returns ``(o [B, H, T, Dv], S_T)``. The chunk form reruns chunks through it where it must
    match the loop's non-finite values exactly (:func:`adaptmem.ops._chunk.scan_chunks`).
    """
    outs = []
    for t in range(qh.shape[2]):
        if reset is not None:  # selected, not multiplied: a NaN before the reset stays there
            S = torch.where(reset[:, t, None, None, None], 0.0, S)
        k_t = kh[:, :, t]
        u = bh[:, :, t, None] * (vh[:, :, t] - torch.einsum("bhk,bhkv->bhv", k_t, S))
        S = S + torch.einsum("bhk,bhv->bhkv", k_t, u)
        outs.append(torch.einsum("bhk,bhkv->bhv", qh[:, :, t], S))
    return torch.stack(outs, dim=2), S
