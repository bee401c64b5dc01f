"""Shared pieces of the op modules: reset masks and compute dtypes."""

from __future__ import annotations

import torch

from adaptmem.utils.checks import fmt_shape


def compute_dtype(*tensors: torch.Tensor | None) -> torch.dtype:
    """fp64 if any input is fp64, else fp32: half-precision inputs are computed in fp32."""
    if any(t is not None and t.dtype == torch.float64 for t in tensors):
        return torch.float64
    return torch.float32


def check_reset(fn: str, reset: torch.Tensor | None, B: int, T: int, device: torch.device) -> torch.Tensor | None:
    """Validate ``reset`` ([B] or [B, T] bool) and return it as [B, T] bool (or ``None``).

    ``reset[b, t]`` set means: the state of row ``b`` is reset before step ``t`` is processed.
    A [B] mask resets before step 0 only.
    """
    if reset is None:
        return None
    if not isinstance(reset, torch.Tensor):
        raise TypeError(f"{fn}: reset must be a bool tensor [B] or [B, T], got {type(reset).__name__}")
    if reset.dtype != torch.bool:
        raise TypeError(f"{fn}: reset must be a bool tensor [B] or [B, T], got dtype {reset.dtype}")
    if reset.device != device:
        raise ValueError(f"{fn}: reset is on {reset.device} but the inputs are on {device}")
    if reset.shape == (B,):
        full = torch.zeros(B, T, dtype=torch.bool, device=device)
        full[:, 0] = reset
        return full
    if reset.shape != (B, T):
        raise ValueError(f"{fn}: reset must be [B] = ({B},) or [B, T] = ({B}, {T}), got shape {fmt_shape(reset)}")
    return reset
