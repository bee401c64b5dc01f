"""Chunkwise-parallel linear attention in plain PyTorch.

Per chunk of C steps with incoming state ``S0`` (row vectors)::

    O  = Q S0 + Tril(Q K^T) V          (Tril includes the diagonal: write, then read)
    S1 = S0 + K^T V

The normaliser ``z`` rides along as an extra all-ones value column. Resets zero the state
inside a chunk through the masks of :func:`adaptmem.ops._chunk.reset_masks`.
"""

from __future__ import annotations

import torch

from adaptmem.ops._chunk import chunk, reset_masks
from adaptmem.ops._state import compute_dtype, to_heads


def linear_attention_chunk(q, k, v, S0, z0, normalize: bool, reset, chunk_size: int, eps: float):
    """:func:`adaptmem.ops.linear_attention` on checked inputs (``reset`` ``[B, T]`` bool or ``None``)."""
    B, T, H, Dk = q.shape
    Dv = v.shape[-1]
    dtype = compute_dtype(q, k, v, S0)
    C = min(chunk_size, T)
    Q, K, V = (chunk(to_heads(t, dtype), C) for t in (q, k, v))  # [B, H, n, C, D]
    S = S0.to(dtype) if S0 is not None else Q.new_zeros(B, H, Dk, Dv)
    if normalize:
        V = torch.cat((V, torch.ones_like(V[..., :1])), dim=-1)
        z = z0.to(dtype) if z0 is not None else Q.new_zeros(B, H, Dk)
        S = torch.cat((S, z[..., None]), dim=-1)
    QK = (Q @ K.transpose(-1, -2)).tril()
    if reset is not None:
        m = reset_masks(reset, C, dtype)
        Q, QK, K_end = Q * m.carry, QK * m.same, K * m.tail
    else:
        K_end = K
    outs = []
    for c in range(Q.shape[2]):
        outs.append(Q[:, :, c] @ S + QK[:, :, c] @ V[:, :, c])
        S_in = S * m.carry_end[:, :, c] if reset is not None else S
        S = S_in + K_end[:, :, c].transpose(-1, -2) @ V[:, :, c]
    O = torch.stack(outs, dim=2).flatten(2, 3)[:, :, :T]
    if normalize:
        O = O[..., :Dv] / (O[..., Dv:] + eps)
        S = (S[..., :Dv], S[..., Dv])
    return O.transpose(1, 2).to(v.dtype), S
