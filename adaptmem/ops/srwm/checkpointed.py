"""SRWM's checkpointed form in plain PyTorch (``mode="checkpointed"``, ``backend="torch"``).

The four fast matrices of a head are kept side by side as one matrix
``M = [W_y | W_q | W_k | w_b]`` of shape ``D x E`` with ``E = 3D + 4``, so one step is::

    a = x_t M                                  (y_t = a_y, q = softmax(a_q), k = softmax(a_k), b = sigmoid(a_b))
    d = (q - k) M                              (the paper's v_t - v̄_t, for all four blocks at once)
    M <- M + k^T (r * d)                       (r: each block's rate b_M repeated over its columns)

Memory: the forward keeps the fast weights only every ``checkpoint_every`` steps plus the
per-step vectors (``a`` and ``d``), i.e. O(T*E + T/C*D*E) per head. The backward walks the
chunks in reverse, recomputes each chunk's weights from its checkpoint *forwards* with the same
ops as the forward pass (so they are bit-identical), and back-propagates through the chunk step
by step. It never rebuilds earlier weights by subtracting updates: fast weights can grow by
orders of magnitude and the subtraction would lose all precision.
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable


def _layout(D: int, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """``idx[c]``: which of the 4 rates scales column ``c``; ``ind``: the same as an [E, 4] one-hot."""
    idx = torch.tensor([0] * D + [1] * D + [2] * D + [3] * 4, device=device)
    ind = torch.nn.functional.one_hot(idx, 4).to(dtype)
    return idx, ind


def srwm_forward_loop(x, M, R, reset, C, save):
    """Run the recurrence. ``x`` [N, T, D], ``M``/``R`` [N, D, E], ``reset`` [N, T] bool or None.

    Returns ``(a [T, N, E], d [T, N, E] or None, checkpoints [T//C+1, N, D, E] or None, M_T)``.
    """
    N, T, D = x.shape
    E = M.shape[-1]
    idx, _ = _layout(D, x.device, x.dtype)
    a_all = x.new_empty(T, N, 1, E)
    d_all = x.new_empty(T, N, 1, E) if save else None
    ckpts = x.new_empty((T + C - 1) // C, N, D, E) if save else None
    reset_steps = set(torch.nonzero(reset.any(0)).flatten().tolist()) if reset is not None else set()
    xt = x.transpose(0, 1).contiguous().unsqueeze(2)  # [T, N, 1, D]
    M = M.clone()
    for t in range(T):
        if t in reset_steps:
            M = torch.where(reset[:, t, None, None], R, M)
        if save and t % C == 0:
            ckpts[t // C] = M
        a = torch.bmm(xt[t], M, out=a_all[t])
        qk = a[:, 0, D : 3 * D].view(N, 2, D).softmax(-1)
        b = torch.sigmoid(a[:, 0, 3 * D :])
        d = torch.bmm((qk[:, 0] - qk[:, 1]).unsqueeze(1), M, out=d_all[t] if save else None)
        u = d * b.index_select(1, idx).unsqueeze(1)
        # The rank-one update as an elementwise k^T * u (cheaper than a K=1 batched GEMM); M is
        # this function's own copy, so in place. The backward recomputes with the same op.
        M.addcmul_(qk[:, 1].unsqueeze(2), u)
    return a_all.squeeze(2), (d_all.squeeze(2) if save else None), ckpts, M


class SRWMFunction(torch.autograd.Function):
    """``(x [N, T, D], M0 [N, D, E], R [N, D, E], reset, C) -> (y [N, T, D], M_T [N, D, E])``."""

    @staticmethod
    def forward(ctx, x, M0, R, reset, C):
        with torch.no_grad():
            a, d, ckpts, M_T = srwm_forward_loop(x, M0, R, reset, C, save=True)
        D = x.shape[-1]
        y = a[..., :D].transpose(0, 1).contiguous()
        ctx.save_for_backward(x, a, d, ckpts, R, reset)
        ctx.C = C
        return y, M_T

    @staticmethod
    @once_differentiable
    def backward(ctx, gy, gM):
        x, a_all, d_all, ckpts, R, reset = ctx.saved_tensors
        C = ctx.C
        N, T, D = x.shape
        E = a_all.shape[-1]
        idx, ind = _layout(D, x.device, x.dtype)
        G = gM.clone() if gM is not None else x.new_zeros(N, D, E)
        gy = gy.transpose(0, 1) if gy is not None else x.new_zeros(T, N, D)  # [T, N, D]
        dx = x.new_empty(T, N, D)
        dR = torch.zeros_like(R) if R is not None else None
        reset_steps = set(torch.nonzero(reset.any(0)).flatten().tolist()) if reset is not None else set()
        xt = x.transpose(0, 1)  # [T, N, D]
        # Ms[i]: the weights step t0 + i reads. One buffer for all chunks: a fresh allocation per
        # chunk would pay the kernel's first-touch page faults again each time (~0.25 ms per step).
        Ms_all = x.new_empty(min(C, T), N, D, E)
        for c in reversed(range(ckpts.shape[0])):
            t0, t1 = c * C, min(T, (c + 1) * C)
            # This chunk's per-step vectors, rebuilt from the saved pre-activations: keeping
            # them for the whole sequence would cost several [T, N, E] buffers at once.
            a_c, d_c = a_all[t0:t1], d_all[t0:t1]
            qk_c = a_c[..., D : 3 * D].reshape(t1 - t0, N, 2, D).softmax(-1)  # [L, N, 2, D]
            b_c = torch.sigmoid(a_c[..., 3 * D :])  # [L, N, 4]
            u_c = d_c * b_c.index_select(2, idx)  # [L, N, E]
            sig_grad = b_c * (1 - b_c)
            # P_t = [q - k, x] (D x 2): the two rank-one terms of dL/dM_{t-1} are P_t [dd; da].
            P_c = torch.stack((qk_c[:, :, 0] - qk_c[:, :, 1], xt[t0:t1]), dim=-1)  # [L, N, D, 2]
            Ms = Ms_all[: t1 - t0]
            Ms[0] = ckpts[c]
            for i in range(1, t1 - t0):
                t = t0 + i
                torch.addcmul(Ms[i - 1], qk_c[i - 1, :, 1].unsqueeze(2), u_c[i - 1].unsqueeze(1), out=Ms[i])
                if t in reset_steps:
                    Ms[i] = torch.where(reset[:, t, None, None], R, Ms[i])
            for i in reversed(range(t1 - t0)):
                t = t0 + i
                M, qk, d, u, b_t = Ms[i], qk_c[i], d_c[i], u_c[i], b_c[i]
                du = torch.bmm(qk[:, 1].unsqueeze(1), G).squeeze(1)  # k G            [N, E]
                # Matrix-vector products are written as (row vector) x (matrix)^T: MKL's batched
                # [D, E] x [E, 1] path is ~6x slower than [1, E] x [E, D] at these sizes.
                dk_write = torch.bmm(u.unsqueeze(1), G.mT).squeeze(1)  # G u^T          [N, D]
                dd = du * b_t.index_select(1, idx)
                db = (du * d) @ ind  # each rate's gradient, summed over its block
                dqk_read = torch.bmm(dd.unsqueeze(1), M.mT).squeeze(1)  # M dd^T: d/dq, -d/dk of (q - k) M
                dqk = torch.stack((dqk_read, dk_write - dqk_read), dim=1)  # [N, 2, D]
                da_qk = qk * (dqk - (dqk * qk).sum(-1, keepdim=True))  # softmax backward
                da = torch.cat((gy[t], da_qk.flatten(1), db * sig_grad[i]), dim=1)  # [N, E]
                torch.bmm(da.unsqueeze(1), M.mT, out=dx[t].unsqueeze(1))
                G.baddbmm_(P_c[i], torch.stack((dd, da), dim=1))
                if t in reset_steps:
                    m = reset[:, t, None, None]
                    dR += torch.where(m, G, 0)
                    G = torch.where(m, 0, G)
        return dx.transpose(0, 1), G, dR, None, None


def srwm_checkpointed(
    x: torch.Tensor, M0: torch.Tensor, R: torch.Tensor | None, reset: torch.Tensor | None, checkpoint_every: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Differentiable SRWM on the packed layout (see :func:`adaptmem.ops.srwm`).

    ``x`` ``[N, T, D]``; ``M0`` and ``R`` (the weights a reset sets, or ``None`` without resets)
    ``[N, D, 3D + 4]``; ``reset`` bool ``[N, T]`` or ``None``. Returns ``(y [N, T, D], M_T)``.
    """
    needs_grad = x.requires_grad or M0.requires_grad or (R is not None and R.requires_grad)
    if torch.is_grad_enabled() and needs_grad:
        return SRWMFunction.apply(x, M0, R, reset, checkpoint_every)
    with torch.no_grad():
        a, _, _, M_T = srwm_forward_loop(x, M0, R, reset, checkpoint_every, save=False)
    return a[..., : x.shape[-1]].transpose(0, 1).contiguous(), M_T
