"""The LSTM recurrence of N networks as one compiled loop (numba), forward and backward.

Imported only when ``functional_rnn(..., backend="numba")`` runs (it imports numba);
``import adaptmem`` never loads it. Built from the fused CPU kernels' blocks
(:mod:`adaptmem.ops._numba_simd`, :mod:`adaptmem.ops._numba_lanes`): their 8-wide vectors, the
gate nonlinearities ``sigmoid``/``tanh`` (here over 8 consecutive gate values of one sequence,
not 8 sequences, hence ``hidden_size % 8 == 0``) and the kernel decorator.

Only the strictly sequential part is compiled: for every network n, step t and sequence b,
``a = gx[n, t, b] + h_{t-1} W_hh^T`` (a 1 x H by H x 4H product), the gate nonlinearities and the
cell update. Everything that batches over time stays in torch as large GEMMs: the input
projections ``gx`` before the loop (and their gradients), and the recurrent weight gradient
``sum_t h_{t-1}^T da_t`` after the backward loop. Gates are in the order ``i, f, o, g`` (the torch
form's: one sigmoid over the first 3H, one tanh over the last H).

Why a compiled loop: at the zoo sizes (H = 32, one sequence per network) a step is ~4k
multiply-adds per network, so a loop of torch ops spends nearly all its time dispatching seven
ops per step; the compiled loop runs the same arithmetic without that overhead.

Layout: every array keeps its natural C-contiguous ``[N, T, B, ...]`` shape; the vector
helpers address it by flat row of 8 values (``vload(A, r)`` is ``A.ravel()[8 r : 8 r + 8]``).
"""

from __future__ import annotations

import numba
import numpy as np

from adaptmem.ops._numba_lanes import sigmoid, tanh
from adaptmem.ops._numba_simd import LANES, kernel, vfill, vfma, vload, vstore


@numba.njit(inline="always")
def _add_vec_mat(acc, v, m, rows, cols):  # pragma: no cover - compiled
    """``acc[:cols] += v[:rows] @ m[:rows, :cols]`` (one sequence's row vector times the network's
    matrix), as sums of whole rows of ``m``, vectorised by LLVM along ``cols``.

    Eight rows per pass over ``acc`` (unroll-and-jam): every pass is a vectorised loop that
    LLVM enters only after a run-time check that ``acc`` and ``m`` do not overlap, and at
    H = 32 one row per pass spends more time in those checks and in loading and storing ``acc``
    than in the multiply-adds (measured 2.7x slower).
    """
    j = 0
    while j + 8 <= rows:
        v0, v1, v2, v3, v4, v5, v6, v7 = v[j], v[j + 1], v[j + 2], v[j + 3], v[j + 4], v[j + 5], v[j + 6], v[j + 7]
        m0, m1, m2, m3, m4, m5, m6, m7 = m[j], m[j + 1], m[j + 2], m[j + 3], m[j + 4], m[j + 5], m[j + 6], m[j + 7]
        for k in range(cols):
            acc[k] += (v0 * m0[k] + v1 * m1[k] + v2 * m2[k] + v3 * m3[k]) + (
                v4 * m4[k] + v5 * m5[k] + v6 * m6[k] + v7 * m7[k]
            )
        j += 8
    while j < rows:
        vj, mj = v[j], m[j]
        for k in range(cols):
            acc[k] += vj * mj[k]
        j += 1


@numba.njit(inline="always")
def _store4(out, row, a, b, c, d):  # pragma: no cover - compiled
    """Four vectors into rows ``row .. row + 3`` of ``out``."""
    vstore(out, row, a)
    vstore(out, row + 1, b)
    vstore(out, row + 2, c)
    vstore(out, row + 3, d)


@kernel
def _rows_mat4(out, ob, X, xb, V, vb, M, D, Er):  # pragma: no cover - compiled
    """``out[ob + s] = X[xb + s] + V[vb + s, :D] @ M`` for the 4 sequences ``s < 4``; ``M`` is one
    network's ``[D, 8 Er]`` matrix, rows of ``out``/``X`` are ``8 Er`` long.

    Register-blocked: 4 vectors of columns for 4 sequences (16 accumulators), so every vector
    of ``M`` loaded is used by 4 multiply-adds (one sequence at a time, :func:`_add_vec_mat`,
    uses it once). Measured: the backward's ``dh = da W_hh`` 1.7-1.9x faster at 8 and 32
    sequences per network; in the forward (``h W_hh^T``) no faster, so it is not used there:
    the forward's step time is mostly its gate nonlinearities, not the product.
    """
    e = 0
    while e + 4 <= Er:
        o0, o1, o2, o3 = (ob * Er + e, (ob + 1) * Er + e, (ob + 2) * Er + e, (ob + 3) * Er + e)
        x0, x1, x2, x3 = (xb * Er + e, (xb + 1) * Er + e, (xb + 2) * Er + e, (xb + 3) * Er + e)
        a0, a1, a2, a3 = vload(X, x0), vload(X, x0 + 1), vload(X, x0 + 2), vload(X, x0 + 3)
        b0, b1, b2, b3 = vload(X, x1), vload(X, x1 + 1), vload(X, x1 + 2), vload(X, x1 + 3)
        c0, c1, c2, c3 = vload(X, x2), vload(X, x2 + 1), vload(X, x2 + 2), vload(X, x2 + 3)
        d0, d1, d2, d3 = vload(X, x3), vload(X, x3 + 1), vload(X, x3 + 2), vload(X, x3 + 3)
        for j in range(D):
            r = j * Er + e
            m0, m1, m2, m3 = vload(M, r), vload(M, r + 1), vload(M, r + 2), vload(M, r + 3)
            v = vfill(M, V[vb, j])
            a0, a1, a2, a3 = vfma(v, m0, a0), vfma(v, m1, a1), vfma(v, m2, a2), vfma(v, m3, a3)
            v = vfill(M, V[vb + 1, j])
            b0, b1, b2, b3 = vfma(v, m0, b0), vfma(v, m1, b1), vfma(v, m2, b2), vfma(v, m3, b3)
            v = vfill(M, V[vb + 2, j])
            c0, c1, c2, c3 = vfma(v, m0, c0), vfma(v, m1, c1), vfma(v, m2, c2), vfma(v, m3, c3)
            v = vfill(M, V[vb + 3, j])
            d0, d1, d2, d3 = vfma(v, m0, d0), vfma(v, m1, d1), vfma(v, m2, d2), vfma(v, m3, d3)
        _store4(out, o0, a0, a1, a2, a3)
        _store4(out, o1, b0, b1, b2, b3)
        _store4(out, o2, c0, c1, c2, c3)
        _store4(out, o3, d0, d1, d2, d3)
        e += 4
    while e < Er:  # the last columns, one vector at a time
        a0, b0 = vload(X, xb * Er + e), vload(X, (xb + 1) * Er + e)
        c0, d0 = vload(X, (xb + 2) * Er + e), vload(X, (xb + 3) * Er + e)
        for j in range(D):
            m0 = vload(M, j * Er + e)
            a0 = vfma(vfill(M, V[vb, j]), m0, a0)
            b0 = vfma(vfill(M, V[vb + 1, j]), m0, b0)
            c0 = vfma(vfill(M, V[vb + 2, j]), m0, c0)
            d0 = vfma(vfill(M, V[vb + 3, j]), m0, d0)
        vstore(out, ob * Er + e, a0)
        vstore(out, (ob + 1) * Er + e, b0)
        vstore(out, (ob + 2) * Er + e, c0)
        vstore(out, (ob + 3) * Er + e, d0)
        e += 1


@kernel
def lstm_forward(n0, n1, gx, w, h0, c0, hs, cs, acts):  # pragma: no cover - compiled
    """Run the recurrence of networks ``n0 .. n1`` over all steps.

    Inputs: ``gx [N, T, B, 4H]`` (``x_t W_ih^T + b``), ``w [N, H, 4H]`` (``W_hh^T``), ``h0, c0
    [N, 1, B, H]``. Outputs, written in place: ``hs [N, T, B, H]`` (``h_t``); ``cs [N, S, B, H]``
    and ``acts [N, S, B, 4H]`` (``c_t`` and the gates after their nonlinearities) in slot
    ``t % S``: ``S = T`` keeps every step for the backward, ``S = 2`` only the last two (no grad).
    """
    N, T, B, G = gx.shape
    S = cs.shape[1]
    H = G // 4
    R = H // LANES  # rows of 8 per gate
    # the sum accumulates in a scratch row of the kernel's own rather than in acts: measured
    # 1.5x faster (with two argument arrays LLVM checks them for overlap at every pass)
    acc = np.empty(G, gx.dtype)
    for n in range(n0, n1):
        for t in range(T):
            s, sp = t % S, (t - 1) % S
            for b in range(B):
                hp = h0[n, 0, b] if t == 0 else hs[n, t - 1, b]
                cp, cprow = (c0, (n * B + b) * R) if t == 0 else (cs, ((n * S + sp) * B + b) * R)
                x = gx[n, t, b]
                for k in range(G):  # an explicit loop: acc[:] = x would copy through a temporary
                    acc[k] = x[k]
                _add_vec_mat(acc, hp, w[n], H, G)
                arow = ((n * S + s) * B + b) * 4 * R
                sigmoid(acc, 0, 3 * R, acts, arow)  # i, f, o
                tanh(acc, 3 * R, R, acts, arow + 3 * R)  # g
                crow, hrow = ((n * S + s) * B + b) * R, ((n * T + t) * B + b) * R
                for r in range(R):  # c = f c + i g
                    ig = vload(acts, arow + r) * vload(acts, arow + 3 * R + r)
                    vstore(cs, crow + r, vfma(vload(acts, arow + R + r), vload(cp, cprow + r), ig))
                tanh(cs, crow, R, hs, hrow)
                for r in range(R):  # h = o tanh(c)
                    vstore(hs, hrow + r, vload(acts, arow + 2 * R + r) * vload(hs, hrow + r))


@kernel
def lstm_backward(n0, n1, dhs, dcT, w_hh, c0, cs, acts, da, dh0, dc0):  # pragma: no cover - compiled
    """Backpropagate through the recurrence of :func:`lstm_forward` (run with ``S = T``).

    Inputs: ``dhs [N, T, B, H]`` (the loss's gradient with respect to every ``h_t``, from later
    layers and the final state), ``dcT [N, 1, B, H]`` (with respect to the final cell state),
    ``w_hh [N, 4H, H]`` (not transposed) and what the forward saved. Outputs, written in place:
    ``da [N, T, B, 4H]`` (with respect to the gate pre-activations, which is also the gradient of
    ``gx``) and ``dh0, dc0 [N, 1, B, H]``. ``tanh(c_t)`` is recomputed by the forward's own code,
    so it is bit-identical to the forward's.
    """
    N, T, B, G = da.shape
    H = G // 4
    R = H // LANES
    dh = np.empty((B, H), da.dtype)  # the gradient reaching h_t through step t + 1
    dc = np.empty((B, H), da.dtype)  # ... and reaching c_t
    tc = np.empty(H, da.dtype)
    zeros = np.zeros((4, H), da.dtype)
    for n in range(n0, n1):
        for b in range(B):
            for k in range(H):
                dh[b, k] = 0
                dc[b, k] = dcT[n, 0, b, k]
        for t in range(T - 1, -1, -1):
            for b in range(B):
                row = ((n * T + t) * B + b) * R  # the row of h_t, c_t; the gates' is 4 * row
                cp, cprow = (c0, (n * B + b) * R) if t == 0 else (cs, row - B * R)
                tanh(cs, row, R, tc, 0)
                for r in range(R):
                    ar = 4 * row + r
                    i, f, o, g = vload(acts, ar), vload(acts, ar + R), vload(acts, ar + 2 * R), vload(acts, ar + 3 * R)
                    tcr = vload(tc, r)
                    dhk = vload(dhs, row + r) + vload(dh, b * R + r)
                    dho = dhk * o
                    dck = vload(dc, b * R + r) + dho - dho * tcr * tcr  # + dh * o * (1 - tanh(c)^2)
                    di, df, dg, do = dck * g, dck * vload(cp, cprow + r), dck * i, dhk * tcr
                    vstore(dc, b * R + r, dck * f)
                    vstore(da, ar, di * i - di * i * i)  # sigmoid' = s (1 - s); tanh' = 1 - g^2
                    vstore(da, ar + R, df * f - df * f * f)
                    vstore(da, ar + 2 * R, do * o - do * o * o)
                    vstore(da, ar + 3 * R, dg - dg * g * g)
            b = 0  # dh_{t-1} = da W_hh, for every sequence once all have read dh_t
            while b < B:
                if b + 4 <= B:
                    _rows_mat4(dh, b, zeros, 0, da[n, t], b, w_hh[n], G, R)
                    b += 4
                else:
                    d = dh[b]
                    for k in range(H):
                        d[k] = 0
                    _add_vec_mat(d, da[n, t, b], w_hh[n], G, H)
                    b += 1
        for b in range(B):
            for k in range(H):
                dh0[n, 0, b, k] = dh[b, k]
                dc0[n, 0, b, k] = dc[b, k]
