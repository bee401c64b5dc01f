"""The LSTM recurrence of N networks as one compiled loop (numba), forward and backward.

Imported only when ``functional_rnn(..., backend="numba")`` runs (it imports numba);
``import adaptmem`` never loads it.

Only the strictly sequential part is compiled: for every network n, step t and sequence b,
``a = gx[n, t, b] + h_{t-1} W_hh^T`` (a 1 x H by H x 4H product), the gate nonlinearities and the
cell update. Everything that batches over time stays in torch as large GEMMs: the input
projections ``gx`` before the loop (and their gradients), and the recurrent weight gradient
``sum_t h_{t-1}^T da_t`` after the backward loop. Gates are in PyTorch's order ``i, f, g, o``.

Why a compiled loop: at the zoo sizes (H = 32, one sequence per network) a step is ~4k
multiply-adds per network, so a loop of torch ops spends nearly all its time dispatching seven
ops per step; the compiled loop runs the same arithmetic without that overhead.

Why our own ``exp``: numba calls libm's scalar ``expf``/``tanhf`` (5 and 23 ns each here), which
LLVM cannot vectorise; the polynomial below is branch-free, so the gate loops compile to SIMD
code (~1 ns per value), and it is within 1 ulp of float64 ``exp`` over the range it is used on.
float64 (used by gradcheck) calls ``math.exp``/``math.tanh`` instead.
"""

from __future__ import annotations

import math
import warnings

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic, overload

_F = np.float32


@intrinsic
def _float32_from_bits(typingctx, bits):
    """The float32 whose IEEE bit pattern is the low 32 bits of the integer ``bits`` (one LLVM
    bitcast; numba has no such operation on scalars)."""
    if not isinstance(bits, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        low = context.cast(builder, args[0], signature.args[0], types.int32)
        return builder.bitcast(low, ir.FloatType())

    return types.float32(bits), codegen


def _exp_nonpositive(x):  # pragma: no cover - only its numba overload below ever runs
    """``exp(x)`` for ``x <= 0``."""
    raise NotImplementedError


def _sigmoid(x):  # pragma: no cover - numba overload below
    raise NotImplementedError


def _tanh(x):  # pragma: no cover - numba overload below
    raise NotImplementedError


@overload(_exp_nonpositive, inline="always")
def _exp_nonpositive_impl(x):
    if x != types.float32:
        return lambda x: math.exp(x)

    def exp32(x):
        # exp(x) = 2^t * exp(r), t = round(x / ln 2), |r| <= ln(2) / 2; ln 2 split in two parts
        # (Cody-Waite) so that r is exact; exp(r) by a degree-7 polynomial (Cephes' expf
        # coefficients); 2^t (t in [-126, 0]) written straight into a float's exponent bits.
        x = max(x, _F(-87.0))  # exp(-87) is the smallest normal float32; NaN stays NaN
        t = np.floor(x * _F(1.4426950408889634) + _F(0.5))  # float32 (math.floor gives an int64)
        r = x - t * _F(0.693359375)
        r = r - t * _F(-2.12194440e-4)
        p = _F(1.9875691500e-4)
        p = p * r + _F(1.3981999507e-3)
        p = p * r + _F(8.3334519073e-3)
        p = p * r + _F(4.1665795894e-2)
        p = p * r + _F(1.6666665459e-1)
        p = p * r + _F(5.0000001201e-1)
        p = p * r * r + r + _F(1.0)
        return p * _float32_from_bits((int(t) + 127) << 23)  # p * 2^t

    return exp32


# The selects below are arithmetic, ``a * (1 - m) + b * m`` with ``m = float(cond)`` (exact: one
# term is zero), rather than ``b if cond else a``:
# numba's IR inlining (inline="always", without which the gate loops do not vectorise and run
# 2.4x slower) warns about conditional expressions in inlined code.
@overload(_sigmoid, inline="always")
def _sigmoid_impl(x):
    f = np.float32 if x == types.float32 else np.float64

    def sigmoid(x):
        e = _exp_nonpositive(-abs(x))  # <= 1: no overflow for any x
        m = f(x < 0)
        return (f(1.0) - m + e * m) / (f(1.0) + e)  # 1 / (1 + e) or e / (1 + e)

    return sigmoid


@overload(_tanh, inline="always")
def _tanh_impl(x):
    if x != types.float32:
        return lambda x: math.tanh(x)

    def tanh32(x):
        # |x| >= 0.625: (1 - e) / (1 + e) with e = exp(-2|x|) <= 1; below, where 1 - e would lose
        # digits, Cephes' tanhf polynomial (of min(|x|, 0.625), so that it stays finite). Both
        # are computed, so that the select vectorises.
        a = abs(x)
        e = _exp_nonpositive(_F(-2.0) * a)
        big = (_F(1.0) - e) / (_F(1.0) + e)
        s = min(a, _F(0.625))
        z = s * s
        small = ((((_F(-5.70498872745e-3) * z + _F(2.06390887954e-2)) * z - _F(5.37397155531e-2)) * z
                  + _F(1.33314422036e-1)) * z - _F(3.33332819422e-1)) * z * s + s
        m = _F(a < _F(0.625))
        return math.copysign(big * (_F(1.0) - m) + small * m, x)

    return tanh32


@numba.njit(inline="always")
def _add_vec_mat(acc, v, m, rows, cols):  # pragma: no cover - compiled
    """``acc[:cols] += v[:rows] @ m[:rows, :cols]``, as sums of whole rows of ``m``.

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
            acc[k] += (v0 * m0[k] + v1 * m1[k] + v2 * m2[k] + v3 * m3[k]) + (v4 * m4[k] + v5 * m5[k] + v6 * m6[k]
                                                                           + v7 * m7[k])
        j += 8
    while j < rows:
        vj, mj = v[j], m[j]
        for k in range(cols):
            acc[k] += vj * mj[k]
        j += 1


@numba.njit(inline="always", fastmath={"reassoc", "contract"})
def _mat_vec(m, v, rows, cols, out):  # pragma: no cover - compiled
    """``out[:rows] = m[:rows, :cols] @ v[:cols]``: dot products with the rows of ``m``, eight per
    pass over ``v`` (as in :func:`_add_vec_mat`; ``reassoc`` lets LLVM vectorise the sums)."""
    j = 0
    while j + 8 <= rows:
        m0, m1, m2, m3, m4, m5, m6, m7 = m[j], m[j + 1], m[j + 2], m[j + 3], m[j + 4], m[j + 5], m[j + 6], m[j + 7]
        v0 = v[0]
        s0, s1, s2, s3, s4, s5, s6, s7 = v0 * m0[0], v0 * m1[0], v0 * m2[0], v0 * m3[0], v0 * m4[0], v0 * m5[0], \
            v0 * m6[0], v0 * m7[0]
        for k in range(1, cols):
            vk = v[k]
            s0 += vk * m0[k]
            s1 += vk * m1[k]
            s2 += vk * m2[k]
            s3 += vk * m3[k]
            s4 += vk * m4[k]
            s5 += vk * m5[k]
            s6 += vk * m6[k]
            s7 += vk * m7[k]
        out[j], out[j + 1], out[j + 2], out[j + 3] = s0, s1, s2, s3
        out[j + 4], out[j + 5], out[j + 6], out[j + 7] = s4, s5, s6, s7
        j += 8
    while j < rows:
        mj = m[j]
        s = v[0] * mj[0]
        for k in range(1, cols):
            s += v[k] * mj[k]
        out[j] = s
        j += 1


def _kernel(**options):
    """``numba.njit`` with the GIL released (callers may split N over threads), numpy's
    error model (no ZeroDivisionError checks in the loops) and an on-disk cache. numba refuses
    ``cache=True`` where no cache directory is writable; the kernels then compile per process."""

    def wrap(fn):
        opts = dict(nogil=True, error_model="numpy", **options)
        try:
            return numba.njit(cache=True, **opts)(fn)
        except RuntimeError as e:  # "cannot cache function ...: no locator available for file ..."
            warnings.warn(f"adaptmem: {e}; the numba LSTM kernels compile in every process (a few seconds). "
                          "Set NUMBA_CACHE_DIR to a writable directory to cache them.", RuntimeWarning, stacklevel=2)
            return numba.njit(cache=False, **opts)(fn)

    return wrap


@_kernel()
def lstm_forward(gx, w, h0, c0, hs, cs, acts, tcs):  # pragma: no cover - compiled
    """Run the recurrence of every network n over all steps.

    Inputs: ``gx [N, T, B, 4H]`` (``x_t W_ih^T + b``, gates ``i, f, g, o``), ``w [N, H, 4H]``
    (``W_hh^T``), ``h0, c0 [N, B, H]``. Outputs, written in place: ``hs, cs [N, T, B, H]``
    (``h_t``, ``c_t``), ``acts [N, T, B, 4H]`` (the gates after their nonlinearities) and
    ``tcs [N, T, B, H]`` (``tanh(c_t)``); the last three are what the backward reads.
    """
    N, T, B, G = gx.shape
    H = G // 4
    # The sum accumulates in a scratch row of the kernel's own rather than in acts: measured
    # 1.5x faster (LLVM keeps the vectorised loop; with two argument arrays it checks overlap).
    acc = np.empty(G, gx.dtype)
    for n in range(N):
        for t in range(T):
            for b in range(B):
                hp = h0[n, b] if t == 0 else hs[n, t - 1, b]
                cp = c0[n, b] if t == 0 else cs[n, t - 1, b]
                x = gx[n, t, b]
                for k in range(G):  # an explicit loop: acc[:] = x would copy through a temporary
                    acc[k] = x[k]
                _add_vec_mat(acc, hp, w[n], H, G)
                a = acts[n, t, b]
                for k in range(2 * H):
                    a[k] = _sigmoid(acc[k])
                for k in range(2 * H, 3 * H):
                    a[k] = _tanh(acc[k])
                for k in range(3 * H, G):
                    a[k] = _sigmoid(acc[k])
                h, c, tc = hs[n, t, b], cs[n, t, b], tcs[n, t, b]
                for k in range(H):  # c = f c + i g;  h = o tanh(c)
                    ck = a[H + k] * cp[k] + a[k] * a[2 * H + k]
                    c[k] = ck
                    tck = _tanh(ck)
                    tc[k] = tck
                    h[k] = a[3 * H + k] * tck


# reassoc: lets LLVM vectorise the dot products of the backward (a sum in another order, within
# rounding); the forward has no reductions and keeps IEEE order, so it needs no flags.
@_kernel(fastmath={"reassoc", "contract"})
def lstm_backward(dhs, dcT, w, c0, cs, acts, tcs, da, dh0, dc0):  # pragma: no cover - compiled
    """Backpropagate through the recurrence of :func:`lstm_forward`.

    Inputs: ``dhs [N, T, B, H]`` (the loss's gradient with respect to every ``h_t``, from later
    layers and the final state), ``dcT [N, B, H]`` (with respect to the final cell state), and
    what the forward saved. Outputs, written in place: ``da [N, T, B, 4H]`` (with respect to the
    gate pre-activations, which is also the gradient of ``gx``) and ``dh0, dc0 [N, B, H]``.
    """
    N, T, B, G = da.shape
    H = G // 4
    dh = np.empty((B, H), da.dtype)  # the gradient reaching h_t through step t + 1
    dc = np.empty((B, H), da.dtype)  # ... and reaching c_t
    d = np.empty(G, da.dtype)  # scratch rows of the kernel's own, as in the forward
    for n in range(N):
        for b in range(B):
            for k in range(H):
                dh[b, k] = 0
                dc[b, k] = dcT[n, b, k]
        for t in range(T - 1, -1, -1):
            for b in range(B):
                a, tc, g_h = acts[n, t, b], tcs[n, t, b], dhs[n, t, b]
                cp = c0[n, b] if t == 0 else cs[n, t - 1, b]
                for k in range(H):
                    i, f, g, o = a[k], a[H + k], a[2 * H + k], a[3 * H + k]
                    dhk = g_h[k] + dh[b, k]
                    dho = dhk * o
                    dck = dc[b, k] + dho - dho * tc[k] * tc[k]  # + dh * o * (1 - tanh(c)^2)
                    di, df, dg, do = dck * g, dck * cp[k], dck * i, dhk * tc[k]
                    dc[b, k] = dck * f
                    d[k] = di * i - di * i * i  # sigmoid' = s (1 - s); tanh' = 1 - g^2
                    d[H + k] = df * f - df * f * f
                    d[2 * H + k] = dg - dg * g * g
                    d[3 * H + k] = do * o - do * o * o
                out = da[n, t, b]
                for k in range(G):
                    out[k] = d[k]
                _mat_vec(w[n], d, H, G, dh[b])  # dh_{t-1} = da W_hh
        for b in range(B):
            for k in range(H):
                dh0[n, b, k] = dh[b, k]
                dc0[n, b, k] = dc[b, k]
