"""Lane-parallel building blocks of the fused CPU kernels: rows of 8 lanes (one sequence per lane).

Every array here is C-contiguous with the lane as its last axis, addressed by flat row index
(``vload(A, r)`` is ``A.ravel()[8 r : 8 r + 8]``). A matrix ``M`` of ``D x E`` per sequence is
stored as rows ``mrow + d*E + e``. Inputs and outputs of the kernels keep their natural
``[N, ...]`` layout; :func:`gather` and :func:`scatter` move 8 of its rows in and out, a block
of time steps at a time (per step, the 8 rows' short pieces are 8 cache misses).

These are separate functions that LLVM inlines into the kernels (numba-level inlining,
``inline="always"``, measured no faster and compiled ~20% slower). numba's disk cache checks
only each kernel's own file: after editing this module or :mod:`adaptmem.ops._numba_simd` in
a checkout, touch the ``*fused_cpu_kernels.py`` files and ``adaptmem/weights/_lstm_numba.py``
(or clear their ``__pycache__``) so the kernels recompile. (An install rewrites every file,
which invalidates the cache.)
"""

from __future__ import annotations

from adaptmem.ops._numba_simd import LANES, kernel, vexp_neg, vfill, vfma, vload, vmax, vstore, vwhere_nonneg, vzeros


@kernel
def gather(src, n0, nl, col, width, dst, drow):
    """Rows ``n0 .. n0+nl`` of ``src`` [N, W] into lanes: ``dst[drow + c, l] = src[n0 + l, col + c]``
    for ``c < width`` (0 in the unused lanes ``l >= nl``)."""
    for c in range(width):
        for l in range(LANES):
            dst[drow + c, l] = src[n0 + l, col + c] if l < nl else 0.0


@kernel
def scatter(src, srow, width, dst, n0, nl, col):
    """``dst[n0 + l, col + c] = src[srow + c, l]`` for ``c < width``, ``l < nl``."""
    for l in range(nl):
        for c in range(width):
            dst[n0 + l, col + c] = src[srow + c, l]


@kernel
def copy_rows(src, srow, dst, drow, n):
    """``n`` rows of lanes from ``src`` to ``dst``."""
    for r in range(n):
        vstore(dst, drow + r, vload(src, srow + r))


@kernel
def gather_resets(RS, n0, nl, t0, n, rs, rs_any):
    """Steps ``t0 .. t0+n`` of rows ``n0 .. n0+nl`` of the bool ``RS`` [N, T] into ``rs`` [n, 8];
    ``rs_any[i]``: whether any lane is reset before step ``t0 + i``."""
    for i in range(n):
        rs_any[i] = False
        for l in range(LANES):
            rs[i, l] = RS[n0 + l, t0 + i] if l < nl else False
            rs_any[i] |= rs[i, l]


@kernel
def matvec(V, vrow, M, mrow, D, E, out, orow):
    """``out[orow + e] = sum_d V[vrow + d] * M[mrow + d*E + e]`` (row vector times matrix)."""
    z = vzeros(M)
    e = 0
    while e + 4 <= E:  # four columns at once, V loaded once per row; even and odd rows are
        a0, a1, a2, a3 = z, z, z, z  # summed apart: eight independent FMA chains hide the latency
        b0, b1, b2, b3 = z, z, z, z
        d = 0
        while d + 2 <= D:
            v, w = vload(V, vrow + d), vload(V, vrow + d + 1)
            r = mrow + d * E + e
            a0 = vfma(v, vload(M, r), a0)
            a1 = vfma(v, vload(M, r + 1), a1)
            a2 = vfma(v, vload(M, r + 2), a2)
            a3 = vfma(v, vload(M, r + 3), a3)
            b0 = vfma(w, vload(M, r + E), b0)
            b1 = vfma(w, vload(M, r + E + 1), b1)
            b2 = vfma(w, vload(M, r + E + 2), b2)
            b3 = vfma(w, vload(M, r + E + 3), b3)
            d += 2
        if d < D:
            v = vload(V, vrow + d)
            r = mrow + d * E + e
            a0 = vfma(v, vload(M, r), a0)
            a1 = vfma(v, vload(M, r + 1), a1)
            a2 = vfma(v, vload(M, r + 2), a2)
            a3 = vfma(v, vload(M, r + 3), a3)
        vstore(out, orow + e, a0 + b0)
        vstore(out, orow + e + 1, a1 + b1)
        vstore(out, orow + e + 2, a2 + b2)
        vstore(out, orow + e + 3, a3 + b3)
        e += 4
    while e < E:
        a0 = z
        for d in range(D):
            a0 = vfma(vload(V, vrow + d), vload(M, mrow + d * E + e), a0)
        vstore(out, orow + e, a0)
        e += 1


@kernel
def mat_vecT(M, mrow, D, E, W, wrow, out, orow):
    """``out[orow + d] = sum_e M[mrow + d*E + e] * W[wrow + e]`` (matrix times column vector)."""
    z = vzeros(M)
    d = 0
    while d + 4 <= D:  # four rows at once, W loaded once per column; even and odd columns are
        a0, a1, a2, a3 = z, z, z, z  # summed apart: eight independent FMA chains
        b0, b1, b2, b3 = z, z, z, z
        r = mrow + d * E
        e = 0
        while e + 2 <= E:
            w, x = vload(W, wrow + e), vload(W, wrow + e + 1)
            a0 = vfma(vload(M, r + e), w, a0)
            a1 = vfma(vload(M, r + E + e), w, a1)
            a2 = vfma(vload(M, r + 2 * E + e), w, a2)
            a3 = vfma(vload(M, r + 3 * E + e), w, a3)
            b0 = vfma(vload(M, r + e + 1), x, b0)
            b1 = vfma(vload(M, r + E + e + 1), x, b1)
            b2 = vfma(vload(M, r + 2 * E + e + 1), x, b2)
            b3 = vfma(vload(M, r + 3 * E + e + 1), x, b3)
            e += 2
        if e < E:
            w = vload(W, wrow + e)
            a0 = vfma(vload(M, r + e), w, a0)
            a1 = vfma(vload(M, r + E + e), w, a1)
            a2 = vfma(vload(M, r + 2 * E + e), w, a2)
            a3 = vfma(vload(M, r + 3 * E + e), w, a3)
        vstore(out, orow + d, a0 + b0)
        vstore(out, orow + d + 1, a1 + b1)
        vstore(out, orow + d + 2, a2 + b2)
        vstore(out, orow + d + 3, a3 + b3)
        d += 4
    while d < D:
        a0 = z
        for e in range(E):
            a0 = vfma(vload(M, mrow + d * E + e), vload(W, wrow + e), a0)
        vstore(out, orow + d, a0)
        d += 1


@kernel
def write(K, krow, U, Msrc, srow, Mdst, drow, D, E):
    """The fast-weight write ``Mdst[d, e] = Msrc[d, e] + K[krow + d] * U[e]`` (``Mdst`` may be ``Msrc``)."""
    for d in range(D):
        k = vload(K, krow + d)
        for e in range(E):
            vstore(Mdst, drow + d * E + e, vfma(k, vload(U, e), vload(Msrc, srow + d * E + e)))


@kernel
def write_then_read(K, krow, U, M, mrow, V, vrow, D, E, out):
    """:func:`write` in place, then ``out = V[vrow:] M`` with the new ``M``, in one sweep over ``M``."""
    z = vzeros(M)
    e = 0
    while e + 4 <= E:
        u0, u1, u2, u3 = vload(U, e), vload(U, e + 1), vload(U, e + 2), vload(U, e + 3)
        a0, a1, a2, a3 = z, z, z, z
        for d in range(D):
            k, v = vload(K, krow + d), vload(V, vrow + d)
            r = mrow + d * E + e
            m0 = vfma(k, u0, vload(M, r))
            m1 = vfma(k, u1, vload(M, r + 1))
            m2 = vfma(k, u2, vload(M, r + 2))
            m3 = vfma(k, u3, vload(M, r + 3))
            vstore(M, r, m0)
            vstore(M, r + 1, m1)
            vstore(M, r + 2, m2)
            vstore(M, r + 3, m3)
            a0 = vfma(v, m0, a0)
            a1 = vfma(v, m1, a1)
            a2 = vfma(v, m2, a2)
            a3 = vfma(v, m3, a3)
        vstore(out, e, a0)
        vstore(out, e + 1, a1)
        vstore(out, e + 2, a2)
        vstore(out, e + 3, a3)
        e += 4
    while e < E:
        u0 = vload(U, e)
        a0 = z
        for d in range(D):
            r = mrow + d * E + e
            m0 = vfma(vload(K, krow + d), u0, vload(M, r))
            vstore(M, r, m0)
            a0 = vfma(vload(V, vrow + d), m0, a0)
        vstore(out, e, a0)
        e += 1


@kernel
def softmax(A, arow, D, P, prow):
    """``P[prow + i] = softmax_i(A[arow + i])`` over ``i < D``, per lane."""
    m = vload(A, arow)
    for i in range(1, D):
        m = vmax(m, vload(A, arow + i))
    s = vzeros(A)
    for i in range(D):
        z = vexp_neg(vload(A, arow + i) - m)
        vstore(P, prow + i, z)
        s = s + z
    inv = vfill(A, 1.0) / s
    for i in range(D):
        vstore(P, prow + i, vload(P, prow + i) * inv)


@kernel
def softmax_backward(P, prow, dP, dprow, D, out, orow):
    """``out = p * (dp - sum(dp * p))``: the softmax's input gradient from its output gradient ``dp``."""
    s = vzeros(P)
    for i in range(D):
        s = vfma(vload(dP, dprow + i), vload(P, prow + i), s)
    for i in range(D):
        vstore(out, orow + i, vload(P, prow + i) * (vload(dP, dprow + i) - s))


@kernel
def sigmoid(A, arow, n, out, orow):
    """``out[orow + i] = sigmoid(A[arow + i])``, through ``exp(-|a|) <= 1`` (it cannot overflow)."""
    zero, one = vzeros(A), vfill(A, 1.0)
    for i in range(n):
        z = vload(A, arow + i)
        ez = vexp_neg(zero - vmax(z, zero - z))
        r = one / (one + ez)
        vstore(out, orow + i, vwhere_nonneg(z, r, ez * r))


# tanh x = x (1 + c1 x^2 + c2 x^4 + ...): its Taylor series, used for |x| < 0.1 where
# (1 - e^{-2|x|}) / (1 + e^{-2|x|}) would cancel; the first omitted term is < 2e-17 relative.
_TANH_SERIES = (1.0, -1 / 3, 2 / 15, -17 / 315, 62 / 2835, -1382 / 155925, 21844 / 6081075)


@kernel
def tanh(A, arow, n, out, orow):
    """``out[orow + i] = tanh(A[arow + i])`` (within 3 ulp of float64 numpy over 1e-6 <= |x| <= 100)."""
    zero, one, small = vzeros(A), vfill(A, 1.0), vfill(A, 0.1)
    c1, c2, c3 = vfill(A, _TANH_SERIES[1]), vfill(A, _TANH_SERIES[2]), vfill(A, _TANH_SERIES[3])
    c4, c5, c6 = vfill(A, _TANH_SERIES[4]), vfill(A, _TANH_SERIES[5]), vfill(A, _TANH_SERIES[6])
    two = vfill(A, 2.0)
    for i in range(n):
        x = vload(A, arow + i)
        ax = vmax(x, zero - x)
        e = vexp_neg(zero - two * ax)
        big = (one - e) / (one + e)
        x2 = x * x
        series = x * vfma(vfma(vfma(vfma(vfma(vfma(c6, x2, c5), x2, c4), x2, c3), x2, c2), x2, c1), x2, one)
        vstore(out, orow + i, vwhere_nonneg(small - ax, series, vwhere_nonneg(x, big, zero - big)))
