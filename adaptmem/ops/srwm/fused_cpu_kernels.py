"""The fused CPU SRWM kernels (numba): one compiled loop over time per group of 8 sequences.

The N = B*H sequences are taken 8 at a time, one per SIMD lane (see
:mod:`adaptmem.ops._numba_simd`). Inputs and outputs keep their natural layout
(``x``, ``y`` as ``[N, T*D]``, the fast weights as ``[N, D*E]`` with ``E = 3D + 4``); each group
gathers its 8 rows into lane-major buffers (last axis = lane) as it goes. What the backward
needs is saved lane-major, per group ``g``:

    P   [G, T, 2D+4, 8]   q_t, k_t, b_t (so that the backward needs no exp)
    Dd  [G, T, E, 8]      d_t = (q_t - k_t) M_{t-1}
    CK  [G, nC, D*E, 8]   the fast weights read at steps 0, C, 2C, ...

One step is the one of :mod:`adaptmem.ops.srwm.checkpointed` (same names: ``a = x M``,
``d = (q - k) M``, ``u = d * rate``, ``M += k^T u``). The backward recomputes each chunk's weights
forwards from its checkpoint with the same instructions as the forward, so they are
bit-identical (it never subtracts updates). Where a step's write and the next step's read
both sweep the matrix, they are fused into one pass (``write_then_read``, ``_grad_write_then_read``).

Each kernel handles the groups ``g0 <= g < g1``, so that callers can split groups over threads.
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
    write,
    write_then_read,
)
from adaptmem.ops._numba_simd import LANES, kernel, vfill, vfma, vload, vstore, vzeros


@kernel
def _reset_lanes(mask, Mw, mrow, R, n0, nl, DE):
    """Where ``mask[l]``, lane ``l`` of rows ``mrow .. mrow+D*E`` of ``Mw`` takes row ``n0 + l`` of
    ``R`` [N, D*E]."""
    for l in range(nl):
        if mask[l]:
            for r in range(DE):
                Mw[mrow + r, l] = R[n0 + l, r]


@kernel
def _rates(P, prow, D, src, srow, dst):
    """``dst[e] = src[srow + e] * b[block of e]``: W_y, W_q, W_k and w_b each have their own rate."""
    for j in range(4):
        b = vload(P, prow + 2 * D + j)
        for e in range(j * D, 3 * D + 4 if j == 3 else (j + 1) * D):
            vstore(dst, e, vload(src, srow + e) * b)


@kernel
def _step_vectors(a, D, P, prow, pq):
    """From ``a = x M``: q, k, the rates b into ``P[prow:]``, and ``q - k`` into ``pq``."""
    softmax(a, D, D, P, prow)
    softmax(a, 2 * D, D, P, prow + D)
    sigmoid(a, 3 * D, 4, P, prow + 2 * D)
    for i in range(D):
        vstore(pq, i, vload(P, prow + i) - vload(P, prow + D + i))


@kernel
def srwm_forward(g0, g1, D, X, M0, R, RS, has_reset, C, save, Y, MT, P, Dd, CK):
    """Groups ``g0..g1`` of the forward. ``X``, ``Y`` [N, T*D]; ``M0``, ``R``, ``MT`` [N, D*E];
    ``RS`` [N, T] bool (read only when ``has_reset``); ``P``, ``Dd``, ``CK`` written when ``save``.
    Inputs and outputs move in blocks of C steps (``xc``, ``yc``)."""
    N = X.shape[0]
    T = X.shape[1] // D
    E = 3 * D + 4
    DE = D * E
    NP = 2 * D + 4
    nC = CK.shape[1] if save else 1
    Mw = np.empty((DE, LANES), X.dtype)
    a = np.empty((E, LANES), X.dtype)
    u = np.empty((E, LANES), X.dtype)
    xc = np.empty((C * D, LANES), X.dtype)
    yc = np.empty((C * D, LANES), X.dtype)
    rs = np.zeros((C, LANES), np.bool_)
    rs_any = np.zeros(C, np.bool_)
    pq = np.empty((D, LANES), X.dtype)
    qkb = np.empty((NP, LANES), X.dtype)
    dv = np.empty((E, LANES), X.dtype)
    P2 = P.reshape(-1, LANES) if save else qkb
    Dd2 = Dd.reshape(-1, LANES) if save else dv
    CK2 = CK.reshape(-1, LANES) if save else Mw
    for g in range(g0, g1):
        n0 = g * LANES
        nl = min(LANES, N - n0)
        gather(M0, n0, nl, 0, DE, Mw, 0)
        for t in range(T):
            i = t % C
            if t == 0:
                gather(X, n0, nl, 0, min(C, T) * D, xc, 0)
                if has_reset:
                    gather_resets(RS, n0, nl, 0, min(C, T), rs, rs_any)
                    if rs_any[0]:
                        _reset_lanes(rs[0], Mw, 0, R, n0, nl, DE)
                matvec(xc, 0, Mw, 0, D, E, a, 0)
            if save and i == 0:  # the weights read at steps 0, C, 2C, ...
                copy_rows(Mw, 0, CK2, (g * nC + t // C) * DE, DE)
            # here a = x_t M_{t-1}, with M_{t-1} already reset where a reset precedes step t
            copy_rows(a, 0, yc, i * D, D)
            prow = (g * T + t) * NP if save else 0
            drow = (g * T + t) * E if save else 0
            _step_vectors(a, D, P2, prow, pq)
            matvec(pq, 0, Mw, 0, D, E, Dd2, drow)
            _rates(P2, prow, D, Dd2, drow, u)
            if i + 1 == C or t + 1 == T:
                scatter(yc, 0, (i + 1) * D, Y, n0, nl, (t - i) * D)
            if t + 1 == T:
                write(P2, prow + D, u, Mw, 0, Mw, 0, D, E)
                break
            j = (t + 1) % C
            if j == 0:  # x_{t+1} is in the next block
                gather(X, n0, nl, (t + 1) * D, min(C, T - t - 1) * D, xc, 0)
                if has_reset:
                    gather_resets(RS, n0, nl, t + 1, min(C, T - t - 1), rs, rs_any)
            if has_reset and rs_any[j]:
                write(P2, prow + D, u, Mw, 0, Mw, 0, D, E)
                _reset_lanes(rs[j], Mw, 0, R, n0, nl, DE)
                matvec(xc, j * D, Mw, 0, D, E, a, 0)
            else:
                write_then_read(P2, prow + D, u, Mw, 0, xc, j * D, D, E, a)
        scatter(Mw, 0, DE, MT, n0, nl, 0)


@kernel
def _grad_read(K, krow, U, G, D, E, du, dkw):
    """The gradients of step t's reads of k and u from G = dL/dM_t: ``du = k G``, ``dkw = G u^T``."""
    matvec(K, krow, G, 0, D, E, du, 0)
    mat_vecT(G, 0, D, E, U, 0, dkw, 0)


@kernel
def _grad_write(PQ, XB, xrow, dd, da, G, D, E):
    """dL/dM_{t-1} from dL/dM_t: ``G += (q - k)^T dd + x^T da`` (the two reads of M_{t-1})."""
    for d in range(D):
        p, x = vload(PQ, d), vload(XB, xrow + d)
        for e in range(E):
            vstore(G, d * E + e, vfma(x, vload(da, e), vfma(p, vload(dd, e), vload(G, d * E + e))))


@kernel
def _grad_write_then_read(PQ, XB, xrow, dd, da, G, D, E, K, krow, U, du, dkw):
    """:func:`_grad_write` for step t, then :func:`_grad_read` for step t-1, in one sweep over G."""
    z = vzeros(G)
    for d in range(D):
        vstore(dkw, d, z)
    e = 0
    while e + 4 <= E:
        dd0, dd1, dd2, dd3 = vload(dd, e), vload(dd, e + 1), vload(dd, e + 2), vload(dd, e + 3)
        da0, da1, da2, da3 = vload(da, e), vload(da, e + 1), vload(da, e + 2), vload(da, e + 3)
        u0, u1, u2, u3 = vload(U, e), vload(U, e + 1), vload(U, e + 2), vload(U, e + 3)
        a0, a1, a2, a3 = z, z, z, z
        for d in range(D):
            p, x, k = vload(PQ, d), vload(XB, xrow + d), vload(K, krow + d)
            r = d * E + e
            h0 = vfma(x, da0, vfma(p, dd0, vload(G, r)))
            h1 = vfma(x, da1, vfma(p, dd1, vload(G, r + 1)))
            h2 = vfma(x, da2, vfma(p, dd2, vload(G, r + 2)))
            h3 = vfma(x, da3, vfma(p, dd3, vload(G, r + 3)))
            vstore(G, r, h0)
            vstore(G, r + 1, h1)
            vstore(G, r + 2, h2)
            vstore(G, r + 3, h3)
            a0 = vfma(k, h0, a0)
            a1 = vfma(k, h1, a1)
            a2 = vfma(k, h2, a2)
            a3 = vfma(k, h3, a3)
            vstore(dkw, d, vfma(h0, u0, vfma(h1, u1, vfma(h2, u2, vfma(h3, u3, vload(dkw, d))))))
        vstore(du, e, a0)
        vstore(du, e + 1, a1)
        vstore(du, e + 2, a2)
        vstore(du, e + 3, a3)
        e += 4
    while e < E:
        dd0, da0, u0 = vload(dd, e), vload(da, e), vload(U, e)
        a0 = z
        for d in range(D):
            r = d * E + e
            h0 = vfma(vload(XB, xrow + d), da0, vfma(vload(PQ, d), dd0, vload(G, r)))
            vstore(G, r, h0)
            a0 = vfma(vload(K, krow + d), h0, a0)
            vstore(dkw, d, vfma(h0, u0, vload(dkw, d)))
        vstore(du, e, a0)
        e += 1


@kernel
def srwm_backward(g0, g1, D, X, R, RS, has_reset, C, P, Dd, CK, gY, gM, has_gM, dX, dM0, dR):
    """Groups ``g0..g1`` of the backward (shapes as in :func:`srwm_forward`). ``gY`` [N, T*D] and
    ``gM`` [N, D*E] (read when ``has_gM``) are the incoming gradients of y and M_T; writes
    ``dX`` [N, T*D], ``dM0`` [N, D*E] and, when ``has_reset``, ``dR`` [N, D*E]."""
    N = X.shape[0]
    T = X.shape[1] // D
    E = 3 * D + 4
    DE = D * E
    NP = 2 * D + 4
    nC = CK.shape[1]
    P2 = P.reshape(-1, LANES)
    Dd2 = Dd.reshape(-1, LANES)
    CK2 = CK.reshape(-1, LANES)
    Gw = np.empty((DE, LANES), X.dtype)
    dRw = np.empty((DE if has_reset else 1, LANES), X.dtype)
    Ms = np.empty((min(C, T) * DE, LANES), X.dtype)
    u = np.empty((E, LANES), X.dtype)
    du = np.empty((E, LANES), X.dtype)
    dd = np.empty((E, LANES), X.dtype)
    da = np.empty((E, LANES), X.dtype)
    dkw = np.empty((D, LANES), X.dtype)
    dq = np.empty((2 * D, LANES), X.dtype)
    pq = np.empty((D, LANES), X.dtype)
    xc = np.empty((C * D, LANES), X.dtype)  # this chunk's x, dL/dy and dL/dx
    gyc = np.empty((C * D, LANES), X.dtype)
    dxc = np.empty((C * D, LANES), X.dtype)
    rs = np.zeros((C, LANES), np.bool_)
    rs_any = np.zeros(C, np.bool_)
    z, one = vzeros(u), vfill(u, 1.0)
    for g in range(g0, g1):
        n0 = g * LANES
        nl = min(LANES, N - n0)
        if has_gM:
            gather(gM, n0, nl, 0, DE, Gw, 0)
        else:
            for r in range(DE):
                vstore(Gw, r, z)
        if has_reset:
            for r in range(DE):
                vstore(dRw, r, z)
        prow = (g * T + T - 1) * NP
        _rates(P2, prow, D, Dd2, (g * T + T - 1) * E, u)
        _grad_read(P2, prow + D, u, Gw, D, E, du, dkw)
        for c in range(nC - 1, -1, -1):
            t0 = c * C
            n = min(T, t0 + C) - t0
            gather(X, n0, nl, t0 * D, n * D, xc, 0)
            gather(gY, n0, nl, t0 * D, n * D, gyc, 0)
            if has_reset:
                gather_resets(RS, n0, nl, t0, n, rs, rs_any)
            # the weights read at steps t0 .. t0+n-1, recomputed forwards from the checkpoint
            copy_rows(CK2, (g * nC + c) * DE, Ms, 0, DE)
            for i in range(1, n):
                prow = (g * T + t0 + i - 1) * NP
                _rates(P2, prow, D, Dd2, (g * T + t0 + i - 1) * E, u)
                write(P2, prow + D, u, Ms, (i - 1) * DE, Ms, i * DE, D, E)
                if has_reset and rs_any[i]:
                    _reset_lanes(rs[i], Ms, i * DE, R, n0, nl, DE)
            for i in range(n - 1, -1, -1):
                t = t0 + i
                mrow = i * DE
                prow = (g * T + t) * NP
                drow = (g * T + t) * E
                # du = k_t G and dkw = G u_t^T are ready (G = dL/dM_t)
                _rates(P2, prow, D, du, 0, dd)
                for j in range(4):  # the rates' gradients, through the sigmoid
                    s = z
                    for e in range(j * D, 3 * D + 4 if j == 3 else (j + 1) * D):
                        s = vfma(vload(du, e), vload(Dd2, drow + e), s)
                    b = vload(P2, prow + 2 * D + j)
                    vstore(da, 3 * D + j, s * (b * (one - b)))
                mat_vecT(Ms, mrow, D, E, dd, 0, dq, 0)  # M dd^T: the gradient of (q - k) M wrt q
                for d in range(D):
                    vstore(dq, D + d, vload(dkw, d) - vload(dq, d))
                softmax_backward(P2, prow, dq, 0, D, da, D)
                softmax_backward(P2, prow + D, dq, D, D, da, 2 * D)
                copy_rows(gyc, i * D, da, 0, D)
                mat_vecT(Ms, mrow, D, E, da, 0, dxc, i * D)
                for d in range(D):
                    vstore(pq, d, vload(P2, prow + d) - vload(P2, prow + D + d))
                reset_t = has_reset and rs_any[i]
                if t > 0 and not reset_t:
                    _rates(P2, prow - NP, D, Dd2, drow - E, u)
                    _grad_write_then_read(pq, xc, i * D, dd, da, Gw, D, E, P2, prow - NP + D, u, du, dkw)
                    continue
                _grad_write(pq, xc, i * D, dd, da, Gw, D, E)
                if reset_t:  # the reset lanes' gradient goes to R, none to the weights before
                    for l in range(nl):
                        if rs[i, l]:
                            for r in range(DE):
                                dRw[r, l] += Gw[r, l]
                                Gw[r, l] = 0.0
                if t > 0:
                    _rates(P2, prow - NP, D, Dd2, drow - E, u)
                    _grad_read(P2, prow - NP + D, u, Gw, D, E, du, dkw)
            scatter(dxc, 0, n * D, dX, n0, nl, t0 * D)
        scatter(Gw, 0, DE, dM0, n0, nl, 0)
        if has_reset:
            scatter(dRw, 0, DE, dR, n0, nl, 0)
