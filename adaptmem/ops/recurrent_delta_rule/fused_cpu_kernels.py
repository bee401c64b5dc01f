"""The fused CPU Recurrent Delta Net kernels (numba): one compiled loop over time per group of 8 sequences.

Same scheme as :mod:`adaptmem.ops.srwm.fused_cpu_kernels` (8 sequences per SIMD lane group,
natural-layout inputs and outputs, lane-major saved tensors). One step, per sequence (the
recurrence of :mod:`adaptmem.ops.recurrent_delta_rule.reference`)::

    h = tanh(y_{t-1});  f = h Rc,  Rc = [R_q | R_k | R_v | r_b]  (D x F, F = 3D + 1)
    q = softmax(q_in + f_q);  k = softmax(k_in + f_k);  v = v_in + f_v;  beta = sigmoid(b_in + f_b)
    w = v - k S;  u = beta w;  S <- S + k^T u;  y_t = q S

Saved per step for the backward (``P`` [G, T, 4D+1, 8]): q, k, w, h and beta; the states S
read at steps 0, C, 2C, ... (``CK`` [G, nC, D*D, 8]). The backward recomputes each chunk's
states forwards from its checkpoint with the forward's instructions (bit-identical).
"""

from __future__ import annotations

import numpy as np

from adaptmem.ops._numba_lanes import (
    copy_rows,
    gather,
    gather_resets,
    mat_vecT,
    matvec,
    scatter,
    sigmoid,
    softmax,
    softmax_backward,
    tanh,
    write,
    write_then_read,
)
from adaptmem.ops._numba_simd import LANES, kernel, vfill, vfma, vload, vstore, vzeros


@kernel
def _gather_heads(Rc, H, n0, nl, Rl):
    """Each lane's head's feedback weights: ``Rl[r, l] = Rc[(n0 + l) % H, r]`` (sequences are b*H + h)."""
    for l in range(LANES):
        h = (n0 + l) % H
        for r in range(Rc.shape[1]):
            Rl[r, l] = Rc[h, r] if l < nl else 0.0


@kernel
def _zero_lanes(mask, A, arow, n):
    """Rows ``arow .. arow+n`` of ``A`` := 0 in the lanes ``l`` where ``mask[l]``."""
    for l in range(LANES):
        if mask[l]:
            for r in range(n):
                A[arow + r, l] = 0.0


@kernel
def rdelta_forward(g0, g1, D, H, Q, K, V, Bt, Rc, S0, y0, RS, has_reset, C, save, Y, ST, yT, P, CK):
    """Groups ``g0..g1``. ``Q, K, V, Y`` [N, T*D]; ``Bt`` [N, T]; ``Rc`` [H, D*F]; ``S0, ST`` [N, D*D];
    ``y0, yT`` [N, D]; ``RS`` [N, T] bool (read when ``has_reset``); ``P``, ``CK`` written when ``save``."""
    N = Q.shape[0]
    T = Q.shape[1] // D
    F = 3 * D + 1
    DD = D * D
    NP = 4 * D + 1
    nC = CK.shape[1] if save else 1
    Rl = np.empty((D * F, LANES), Q.dtype)
    S = np.empty((DD, LANES), Q.dtype)
    yb = np.empty((D, LANES), Q.dtype)
    f = np.empty((F, LANES), Q.dtype)
    z = np.empty((F, LANES), Q.dtype)
    r = np.empty((D, LANES), Q.dtype)
    u = np.empty((D, LANES), Q.dtype)
    step = np.empty((NP, LANES), Q.dtype)
    qc = np.empty((C * D, LANES), Q.dtype)  # inputs and outputs of a block of C steps
    kc = np.empty((C * D, LANES), Q.dtype)
    vc = np.empty((C * D, LANES), Q.dtype)
    yc = np.empty((C * D, LANES), Q.dtype)
    bc = np.empty((C, LANES), Q.dtype)
    rs = np.zeros((C, LANES), np.bool_)
    rs_any = np.zeros(C, np.bool_)
    P2 = P.reshape(-1, LANES) if save else step
    CK2 = CK.reshape(-1, LANES) if save else S
    for g in range(g0, g1):
        n0 = g * LANES
        nl = min(LANES, N - n0)
        _gather_heads(Rc, H, n0, nl, Rl)
        gather(S0, n0, nl, 0, DD, S, 0)
        gather(y0, n0, nl, 0, D, yb, 0)
        for t in range(T):
            i = t % C
            if i == 0:
                nb = min(C, T - t)
                gather(Q, n0, nl, t * D, nb * D, qc, 0)
                gather(K, n0, nl, t * D, nb * D, kc, 0)
                gather(V, n0, nl, t * D, nb * D, vc, 0)
                gather(Bt, n0, nl, t, nb, bc, 0)
                if has_reset:
                    gather_resets(RS, n0, nl, t, nb, rs, rs_any)
            if has_reset and rs_any[i]:
                _zero_lanes(rs[i], S, 0, DD)
                _zero_lanes(rs[i], yb, 0, D)
            if save and i == 0:
                copy_rows(S, 0, CK2, (g * nC + t // C) * DD, DD)
            prow = (g * T + t) * NP if save else 0
            tanh(yb, 0, D, P2, prow + 3 * D)  # h
            matvec(P2, prow + 3 * D, Rl, 0, D, F, f, 0)
            for j in range(D):  # the pre-activations: inputs plus feedback
                vstore(z, j, vload(qc, i * D + j) + vload(f, j))
                vstore(z, D + j, vload(kc, i * D + j) + vload(f, D + j))
                vstore(z, 2 * D + j, vload(vc, i * D + j) + vload(f, 2 * D + j))
            vstore(z, 3 * D, vload(bc, i) + vload(f, 3 * D))
            softmax(z, 0, D, P2, prow)  # q
            softmax(z, D, D, P2, prow + D)  # k
            sigmoid(z, 3 * D, 1, P2, prow + 4 * D)  # beta
            matvec(P2, prow + D, S, 0, D, D, r, 0)  # k S
            b = vload(P2, prow + 4 * D)
            for j in range(D):
                w = vload(z, 2 * D + j) - vload(r, j)
                vstore(P2, prow + 2 * D + j, w)
                vstore(u, j, b * w)
            write_then_read(P2, prow + D, u, S, 0, P2, prow, D, D, yb)  # S += k^T u; y = q S
            copy_rows(yb, 0, yc, i * D, D)
            if i + 1 == C or t + 1 == T:
                scatter(yc, 0, (i + 1) * D, Y, n0, nl, (t - i) * D)
        scatter(S, 0, DD, ST, n0, nl, 0)
        scatter(yb, 0, D, yT, n0, nl, 0)


@kernel
def rdelta_backward(
    g0, g1, D, H, Rc, RS, has_reset, C, P, CK, gY, gS, has_gS, gy, has_gy, dQ, dK, dV, dB, dRn, dS0, dy0
):
    """Groups ``g0..g1`` of the backward. ``gY`` [N, T*D], ``gS`` [N, D*D] and ``gy`` [N, D] (read
    when ``has_gS`` / ``has_gy``) are the incoming gradients of y and of the final state (S, y).
    Writes the input gradients ``dQ, dK, dV`` [N, T*D], ``dB`` [N, T], the per-sequence gradient
    of the feedback weights ``dRn`` [N, D*F] (the caller sums it over the batch) and ``dS0, dy0``."""
    N = gY.shape[0]
    T = gY.shape[1] // D
    F = 3 * D + 1
    DD = D * D
    NP = 4 * D + 1
    nC = CK.shape[1]
    P2 = P.reshape(-1, LANES)
    CK2 = CK.reshape(-1, LANES)
    Rl = np.empty((D * F, LANES), gY.dtype)
    dRl = np.empty((D * F, LANES), gY.dtype)
    Gs = np.empty((DD, LANES), gY.dtype)
    Ms = np.empty((min(C, T) * DD, LANES), gY.dtype)
    gyf = np.empty((D, LANES), gY.dtype)
    gyt = np.empty((D, LANES), gY.dtype)
    u = np.empty((D, LANES), gY.dtype)
    du = np.empty((D, LANES), gY.dtype)
    dr = np.empty((D, LANES), gY.dtype)
    dq = np.empty((2 * D, LANES), gY.dtype)
    dkr = np.empty((D, LANES), gY.dtype)
    dz = np.empty((F, LANES), gY.dtype)
    dh = np.empty((D, LANES), gY.dtype)
    gyc = np.empty((C * D, LANES), gY.dtype)  # this chunk's output gradient and input gradients
    dqc = np.empty((C * D, LANES), gY.dtype)
    dkc = np.empty((C * D, LANES), gY.dtype)
    dvc = np.empty((C * D, LANES), gY.dtype)
    dbc = np.empty((C, LANES), gY.dtype)
    rs = np.zeros((C, LANES), np.bool_)
    rs_any = np.zeros(C, np.bool_)
    zero, one = vzeros(u), vfill(u, 1.0)
    for g in range(g0, g1):
        n0 = g * LANES
        nl = min(LANES, N - n0)
        _gather_heads(Rc, H, n0, nl, Rl)
        for i in range(D * F):
            vstore(dRl, i, zero)
        if has_gS:
            gather(gS, n0, nl, 0, DD, Gs, 0)
        else:
            for i in range(DD):
                vstore(Gs, i, zero)
        if has_gy:
            gather(gy, n0, nl, 0, D, gyf, 0)
        else:
            for i in range(D):
                vstore(gyf, i, zero)
        for c in range(nC - 1, -1, -1):
            t0 = c * C
            n = min(T, t0 + C) - t0
            gather(gY, n0, nl, t0 * D, n * D, gyc, 0)
            if has_reset:
                gather_resets(RS, n0, nl, t0, n, rs, rs_any)
            # the states read at steps t0 .. t0+n-1, recomputed forwards from the checkpoint
            copy_rows(CK2, (g * nC + c) * DD, Ms, 0, DD)
            for i in range(1, n):
                prow = (g * T + t0 + i - 1) * NP
                b = vload(P2, prow + 4 * D)
                for j in range(D):
                    vstore(u, j, b * vload(P2, prow + 2 * D + j))
                write(P2, prow + D, u, Ms, (i - 1) * DD, Ms, i * DD, D, D)
                if has_reset and rs_any[i]:
                    _zero_lanes(rs[i], Ms, i * DD, DD)
            for i in range(n - 1, -1, -1):
                t = t0 + i
                mrow = i * DD  # S_{t-1}
                prow = (g * T + t) * NP  # q, k, w, h, beta of step t
                b = vload(P2, prow + 4 * D)
                for j in range(D):
                    vstore(u, j, b * vload(P2, prow + 2 * D + j))
                for j in range(D):  # y_t's total gradient: the output's and the next step's feedback
                    vstore(gyt, j, vload(gyc, i * D + j) + vload(gyf, j))
                # y = q S_t with S_t = S_{t-1} + k^T u: dq = gy S_{t-1}^T + (gy . u) k, dS_t += q^T gy
                mat_vecT(Ms, mrow, D, D, gyt, 0, dq, 0)
                s = zero
                for j in range(D):
                    s = vfma(vload(gyt, j), vload(u, j), s)
                for j in range(D):
                    vstore(dq, j, vfma(s, vload(P2, prow + D + j), vload(dq, j)))
                write(P2, prow, gyt, Gs, 0, Gs, 0, D, D)
                # the write S_t = S_{t-1} + k^T u: du = k dS_t, dk = dS_t u^T
                matvec(P2, prow + D, Gs, 0, D, D, du, 0)
                mat_vecT(Gs, 0, D, D, u, 0, dq, D)
                # u = beta (v - k S_{t-1})
                s = zero
                for j in range(D):
                    s = vfma(vload(du, j), vload(P2, prow + 2 * D + j), s)
                vstore(dz, 3 * D, s * (b * (one - b)))  # through the sigmoid
                for j in range(D):
                    dv = b * vload(du, j)
                    vstore(dz, 2 * D + j, dv)
                    vstore(dr, j, zero - dv)
                mat_vecT(Ms, mrow, D, D, dr, 0, dkr, 0)
                for j in range(D):
                    vstore(dq, D + j, vload(dq, D + j) + vload(dkr, j))
                write(P2, prow + D, dr, Gs, 0, Gs, 0, D, D)  # now dS_{t-1}
                softmax_backward(P2, prow, dq, 0, D, dz, 0)
                softmax_backward(P2, prow + D, dq, D, D, dz, D)
                copy_rows(dz, 0, dqc, i * D, D)
                copy_rows(dz, D, dkc, i * D, D)
                copy_rows(dz, 2 * D, dvc, i * D, D)
                copy_rows(dz, 3 * D, dbc, i, 1)
                # f = h Rc with h = tanh(y_{t-1})
                write(P2, prow + 3 * D, dz, dRl, 0, dRl, 0, D, F)
                mat_vecT(Rl, 0, D, F, dz, 0, dh, 0)
                for j in range(D):
                    h = vload(P2, prow + 3 * D + j)
                    vstore(gyf, j, vload(dh, j) * (one - h * h))
                if has_reset and rs_any[i]:  # S and y were zeroed before step t
                    _zero_lanes(rs[i], Gs, 0, DD)
                    _zero_lanes(rs[i], gyf, 0, D)
            scatter(dqc, 0, n * D, dQ, n0, nl, t0 * D)
            scatter(dkc, 0, n * D, dK, n0, nl, t0 * D)
            scatter(dvc, 0, n * D, dV, n0, nl, t0 * D)
            scatter(dbc, 0, n, dB, n0, nl, t0)
        scatter(Gs, 0, DD, dS0, n0, nl, 0)
        scatter(gyf, 0, D, dy0, n0, nl, 0)
        scatter(dRl, 0, D * F, dRn, n0, nl, 0)
