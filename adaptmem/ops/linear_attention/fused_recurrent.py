"""Linear attention on the fused recurrent Triton kernel (``backend="triton"``, any ``mode``).

The kernel, shared with the delta rule, is :mod:`adaptmem.ops._fused_recurrent`; importing this
module imports Triton. The normaliser ``z`` rides along as an extra value column of ones (so
``S`` gains a column holding ``z``), as in the chunk form.
"""

from __future__ import annotations

import torch

from adaptmem.ops._fused_recurrent import fused_recurrent


def linear_attention_fused_recurrent(q, k, v, S0, z0, normalize: bool, reset, eps: float):
    """:func:`adaptmem.ops.linear_attention` on checked inputs; ``reset`` ``[B, T]`` bool or ``None``."""
    if not normalize:
        return fused_recurrent(q, k, v, None, S0, reset)
    # float32 values, so the normaliser column q . z is not rounded to v's dtype before the division.
    v1 = torch.cat((v.float(), v.new_ones(*v.shape[:-1], 1, dtype=torch.float32)), dim=-1)
    h0 = torch.cat((S0.float(), z0.float()[..., None]), dim=-1) if S0 is not None else None
    o, S = fused_recurrent(q, k, v1, None, h0, reset)
    out = (o[..., :-1] / (o[..., -1:] + eps)).to(v.dtype)
    return out, (S[..., :-1], S[..., -1])
