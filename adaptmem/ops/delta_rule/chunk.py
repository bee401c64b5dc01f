"""Chunkwise-parallel delta rule (WY form; Yang et al., NeurIPS 2024) in plain PyTorch.

Per chunk of C steps with incoming state ``S0``::

    A  = I + StrictTril(diag(beta) K K^T)     (unit lower-triangular, C x C)
    W  = A^-1 (beta * K)        U = A^-1 (beta * V)
    U' = U - W S0               (row t is u_t = beta_t (v_t - k_t S_{t-1}))
    O  = Q S0 + Tril(Q K^T) U'  S1 = S0 + K^T U'

Everything but the short scan over chunks runs batched over all chunks at once. The last
chunk is padded with k = 0 and beta = 0, which touch neither A nor K^T U'. Resets zero the
state inside a chunk through the masks of :func:`adaptmem.ops._chunk.reset_masks`; a NaN or
overflow never crosses a reset or reaches an earlier step (:func:`adaptmem.ops._chunk.scan_chunks`
reruns such chunks through the step loop).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from adaptmem.ops._chunk import chunk, reset_masks, scan_chunks
from adaptmem.ops._state import compute_dtype, to_heads
from adaptmem.ops.delta_rule.reference import step_loop


def delta_rule_chunk(q, k, v, beta, initial_state, reset, chunk_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`adaptmem.ops.delta_rule` on checked inputs (``reset`` ``[B, T]`` bool or ``None``)."""
    B, T, H, Dk = q.shape
    Dv = v.shape[-1]
    dtype = compute_dtype(q, k, v, beta, initial_state)
    C = min(chunk_size, T)
    Q0, K0, V = (chunk(to_heads(t, dtype), C) for t in (q, k, v))  # [B, H, n, C, D]
    b0 = chunk(beta.to(dtype).transpose(1, 2)[..., None], C)  # [B, H, n, C, 1]
    m = reset_masks(reset, C, dtype) if reset is not None else None
    eye = torch.eye(C, dtype=dtype, device=q.device)

    def build(Q, K, V, b):
        A = (b * (K @ K.transpose(-1, -2))).tril(-1)
        QK = (Q @ K.transpose(-1, -2)).tril()
        K_end, bK = K, b * K
        if m is not None:
            A, QK, Q, K_end, bK = A * m.same, QK * m.same, Q * m.carry, K * m.tail, bK * m.carry
        WU = torch.linalg.solve_triangular(A + eye, torch.cat((bK, b * V), -1), upper=False, unitriangular=True)
        W, U = WU.split([Dk, Dv], dim=-1)

        def step(c, S):
            U_c = U[:, :, c] - W[:, :, c] @ S
            O_c = Q[:, :, c] @ S + QK[:, :, c] @ U_c
            S_in = S * m.carry_end[:, :, c] if m is not None else S
            return O_c, S_in + K_end[:, :, c].transpose(-1, -2) @ U_c

        return step, (Q, QK, WU, K_end)

    def loop(c, bi, hi, S):
        L = min(C, T - c * C)  # the padded steps of the last chunk are left out
        r = reset[bi, c * C : c * C + L] if reset is not None else None
        o, S = step_loop(
            *(t[bi, hi, c, :L][:, None] for t in (Q0, K0, V)), b0[bi, hi, c, :L, 0][:, None], S[:, None], r
        )
        return F.pad(o[:, 0], (0, 0, 0, C - L)), S[:, 0]

    S = initial_state.to(dtype) if initial_state is not None else Q0.new_zeros(B, H, Dk, Dv)
    O, S = scan_chunks(S, (Q0, K0, V, b0), build, loop, None if m is None else m.any)
    O = O.flatten(2, 3)[:, :, :T]
    return O.transpose(1, 2).to(v.dtype), S
