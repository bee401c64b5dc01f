"""Validation shared by the linear-attention and delta-rule ops."""

from __future__ import annotations

import torch

from adaptmem.utils.checks import check_floating, check_same_device, check_shape, fmt_shape


def check_qkv(fn: str, q, k, v, beta=None, initial_state=None) -> tuple[int, int, int, int, int]:
    """q, k ``[B, T, H, Dk]``, v ``[B, T, H, Dv]``, beta ``[B, T, H]``, state ``[B, H, Dk, Dv]``.

    Returns ``(B, T, H, Dk, Dv)``.
    """
    check_floating(fn, "q", q)
    if q.dim() != 4:
        raise ValueError(f"{fn}: q must be [B, T, H, Dk], got shape {fmt_shape(q)}")
    B, T, H, Dk = q.shape
    if T == 0:
        raise ValueError(f"{fn}: q must have at least one time step, got shape {fmt_shape(q)}")
    check_shape(fn, "k", k, (B, T, H, Dk), "[B, T, H, Dk] like q")
    check_floating(fn, "v", v)
    if v.dim() != 4 or v.shape[:3] != (B, T, H):
        raise ValueError(f"{fn}: v must be [B, T, H, Dv] = ({B}, {T}, {H}, *), got shape {fmt_shape(v)}")
    Dv = v.shape[-1]
    if beta is not None:
        check_shape(fn, "beta", beta, (B, T, H), "[B, T, H]")
    if initial_state is not None:
        check_shape(fn, "initial_state", initial_state, (B, H, Dk, Dv), "[B, H, Dk, Dv]")
    check_same_device(fn, q=q, k=k, v=v, beta=beta, initial_state=initial_state)
    return B, T, H, Dk, Dv


def to_heads(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``[B, T, H, ...]`` -> ``[B, H, T, ...]`` in the compute dtype."""
    return t.to(dtype).transpose(1, 2)
