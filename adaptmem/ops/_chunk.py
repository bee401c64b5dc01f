"""Helpers of the chunkwise-parallel forms: padding to whole chunks and reset masks."""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F


def chunk(t: torch.Tensor, C: int) -> torch.Tensor:
    """``[B, H, T, ...]`` -> ``[B, H, n, C, ...]``, zero-padding the last chunk."""
    T = t.shape[2]
    n = math.ceil(T / C)
    pad = n * C - T
    if pad:
        t = F.pad(t, (0, 0) * (t.dim() - 3) + (0, pad))
    return t.reshape(*t.shape[:2], n, C, *t.shape[3:])


class ResetMasks(NamedTuple):
    """Within-chunk masks for state resets (``reset[b, t]``: state zeroed before step t).

    ``carry[i]``: no reset at or before i in the chunk, so step i still sees the incoming state.
    ``same[i, j]``: no reset in (j, i], so step j's write is visible at step i.
    ``tail[j]``: no reset after j, so step j's write survives to the chunk's end.
    ``carry_end``: the incoming state survives the whole chunk.
    """

    carry: torch.Tensor  # [B, 1, n, C, 1]
    same: torch.Tensor  # [B, 1, n, C, C]
    tail: torch.Tensor  # [B, 1, n, C, 1]
    carry_end: torch.Tensor  # [B, 1, n, 1, 1]


def reset_masks(reset: torch.Tensor, C: int, dtype: torch.dtype) -> ResetMasks:
    """Build :class:`ResetMasks` from a ``[B, T]`` bool mask (padded steps never reset)."""
    seg = chunk(reset[:, None, :, None].to(torch.int32), C)[:, :, :, :, 0].cumsum(-1)  # [B, 1, n, C]
    carry = (seg == 0).to(dtype)[..., None]
    same = (seg[..., :, None] == seg[..., None, :]).to(dtype)
    tail = (seg == seg[..., -1:]).to(dtype)[..., None]
    return ResetMasks(carry, same, tail, carry[..., -1:, :])
