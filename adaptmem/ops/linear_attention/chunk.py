"""Chunkwise-parallel linear attention in plain PyTorch.

Per chunk of C steps with incoming state ``S0`` (row vectors)::

    O  = Q S0 + Tril(Q K^T) V          (Tril includes the diagonal: write, then read)
    S1 = S0 + K^T V

The normaliser ``z`` rides along as an extra all-ones value column. Resets zero the state
inside a chunk through the masks of :func:`adaptmem.ops._chunk.reset_masks`; a NaN or
overflow never crosses a reset or reaches an earlier step (:func:`adaptmem.ops._chunk.scan_chunks`
reruns such chunks through the step loop).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from adaptmem.ops._chunk import chunk, reset_masks, scan_chunks
from adaptmem.ops._state import compute_dtype, to_heads
from adaptmem.ops.linear_attention.reference import step_loop


def linear_attention_chunk(q, k, v, S0, z0, normalize: bool, reset, chunk_size: int, eps: float):
    """:func:`adaptmem.ops.linear_attention` on checked inputs (``reset`` ``[B, T]`` bool or ``None``)."""
    B, T, H, Dk = q.shape
    Dv = v.shape[-1]
    dtype = compute_dtype(q, k, v, S0)
    C = min(chunk_size, T)
    Q0, K0, V = (chunk(to_heads(t, dtype), C) for t in (q, k, v))  # [B, H, n, C, D]
    S = S0.to(dtype) if S0 is not None else Q0.new_zeros(B, H, Dk, Dv)
    if normalize:
        V = torch.cat((V, torch.ones_like(V[..., :1])), dim=-1)
        z = z0.to(dtype) if z0 is not None else Q0.new_zeros(B, H, Dk)
        S = torch.cat((S, z[..., None]), dim=-1)
    m = reset_masks(reset, C, dtype) if reset is not None else None

    def build(Q, K, V):
        QK = (Q @ K.transpose(-1, -2)).tril()
        K_end = K
        if m is not None:
            Q, QK, K_end = Q * m.carry, QK * m.same, K * m.tail

        def step(c, S):
            O_c = Q[:, :, c] @ S + QK[:, :, c] @ V[:, :, c]
            S_in = S * m.carry_end[:, :, c] if m is not None else S
            return O_c, S_in + K_end[:, :, c].transpose(-1, -2) @ V[:, :, c]

        return step, (Q, QK, V, K_end)

    def loop(c, bi, hi, S):
        L = min(C, T - c * C)  # the padded steps of the last chunk are left out
        r = reset[bi, c * C : c * C + L] if reset is not None else None
        o, S, _ = step_loop(*(t[bi, hi, c, :L][:, None] for t in (Q0, K0, V)), S[:, None], None, r)
        return F.pad(o[:, 0], (0, 0, 0, C - L)), S[:, 0]

    O, S = scan_chunks(S, (Q0, K0, V), build, loop, None if m is None else m.any)
    O = O.flatten(2, 3)[:, :, :T]
    if normalize:
        O = O[..., :Dv] / (O[..., Dv:] + eps)
        S = (S[..., :Dv], S[..., Dv])
    return O.transpose(1, 2).to(v.dtype), S
