"""The state containers the ops return, and the dtype and layout their forms compute in."""

from __future__ import annotations

from typing import NamedTuple

import torch


class SRWMWeights(NamedTuple):
    """The four fast weights of an SRWM: ``W_y, W_q, W_k`` [.., H, D, D] and ``w_b`` [.., H, D, 4]."""

    W_y: torch.Tensor
    W_q: torch.Tensor
    W_k: torch.Tensor
    w_b: torch.Tensor


class RecurrentDeltaState(NamedTuple):
    """State of the Recurrent Delta Net: the fast weights and the last output."""

    S: torch.Tensor  # [B, H, D, D] fast weights
    y: torch.Tensor  # [B, H, D] last output (fed back through tanh)


def compute_dtype(*tensors: torch.Tensor | None) -> torch.dtype:
    """fp64 if any input is fp64, else fp32: half-precision inputs are computed in fp32."""
    if any(t is not None and t.dtype == torch.float64 for t in tensors):
        return torch.float64
    return torch.float32


def to_heads(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``[B, T, H, ...]`` -> ``[B, H, T, ...]`` in the compute dtype."""
    return t.to(dtype).transpose(1, 2)
