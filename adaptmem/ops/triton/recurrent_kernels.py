"""The delta rule and linear attention as fused recurrent Triton kernels.

Row vectors, state ``S`` (``Dk x Dv``), write then read::

    delta rule:        r_t = v_t - k_t S     S <- S + k_t^T (beta_t r_t)     o_t = q_t S
    linear attention:                        S <- S + k_t^T v_t              o_t = q_t S

Inputs stay in the library's ``[B, T, H, D]`` layout (no transposes); one program owns one
(batch, head) and one tile of ``BV`` value columns (the columns of ``S`` evolve independently),
keeps its ``[BK, BV]`` slice of the state in float32 registers and loops over time. A reset
zeroes the state before its step.

Backward, in two launches, neither of which reconstructs a state by undoing an update:

1. reverse in time, carrying ``dS`` (which, unlike ``S``, needs no state): ``dS += q^T do``;
   ``du = k dS``; ``dv = beta du``; ``dbeta = du . r``; ``dk = dS (beta r)^T``; then
   ``dS -= k^T dv`` (the delta term); a reset stops ``dS``. The final ``dS`` is ``dh0``.
2. forwards in time, recomputing ``S`` from ``h0`` and the saved ``r``: ``dk -= S_{t-1} dv^T``
   (the delta rule's read) and ``dq = do S_t^T``.

``dq``, ``dk`` and ``dbeta`` are sums over value tiles: each tile writes its own partial
(``[NV, ...]``) and the caller adds them up.
"""

from __future__ import annotations

import triton
import triton.language as tl

from adaptmem.ops.triton._utils import rsum


@triton.jit
def recurrent_fwd_kernel(
    q_ptr, k_ptr, v_ptr, beta_ptr, h0_ptr, reset_ptr,  # q, k [B, T, H, K]; v [B, T, H, V]; beta [B, T, H]; h0 [B, H, K, V]; reset [B, T] int8
    o_ptr, ht_ptr, r_ptr,  # o [B, T, H, V]; hT [B, H, K, V] fp32; r [B, T, H, V] fp32
    T, H,
    K: tl.constexpr, V: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
    IS_DELTA: tl.constexpr, HAS_H0: tl.constexpr, HAS_RESET: tl.constexpr, SAVE_R: tl.constexpr,
):
    n = tl.program_id(0).to(tl.int64)
    iv = tl.program_id(1).to(tl.int64)
    b = n // H
    h = n % H
    ik = tl.arange(0, BK)
    jv = iv * BV + tl.arange(0, BV)
    mk = ik < K
    mv = jv < V
    mkv = mk[:, None] & mv[None, :]
    off_s = n * K * V + ik[:, None] * V + jv[None, :]
    if HAS_H0:
        S = tl.load(h0_ptr + off_s, mask=mkv, other=0.0).to(tl.float32)
    else:
        S = tl.full([BK, BV], 0.0, tl.float32)
    for t in range(T):
        if HAS_RESET:
            if tl.load(reset_ptr + b * T + t) != 0:
                S = tl.full([BK, BV], 0.0, tl.float32)
        row = (b * T + t) * H + h
        kt = tl.load(k_ptr + row * K + ik, mask=mk, other=0.0).to(tl.float32)
        vt = tl.load(v_ptr + row * V + jv, mask=mv, other=0.0).to(tl.float32)
        if IS_DELTA:
            rt = vt - rsum(kt[:, None] * S, axis=0)
            if SAVE_R:
                tl.store(r_ptr + row * V + jv, rt, mask=mv)
            ut = tl.load(beta_ptr + row).to(tl.float32) * rt
        else:
            ut = vt
        S += kt[:, None] * ut[None, :]
        qt = tl.load(q_ptr + row * K + ik, mask=mk, other=0.0).to(tl.float32)
        ot = rsum(qt[:, None] * S, axis=0)
        tl.store(o_ptr + row * V + jv, ot.to(o_ptr.dtype.element_ty), mask=mv)
    tl.store(ht_ptr + off_s, S, mask=mkv)


@triton.jit
def recurrent_bwd_reverse_kernel(
    q_ptr, k_ptr, v_ptr, beta_ptr, r_ptr, reset_ptr, do_ptr, dht_ptr,
    dk_ptr, dv_ptr, dbeta_ptr, dh0_ptr,  # dk [NV, B, T, H, K]; dv [B, T, H, V]; dbeta [NV, B, T, H]; dh0 [B, H, K, V]; all fp32
    T, H, B,
    K: tl.constexpr, V: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
    IS_DELTA: tl.constexpr, HAS_DHT: tl.constexpr, HAS_RESET: tl.constexpr, STORE_DH0: tl.constexpr,
):
    n = tl.program_id(0).to(tl.int64)
    iv = tl.program_id(1).to(tl.int64)
    b = n // H
    h = n % H
    ik = tl.arange(0, BK)
    jv = iv * BV + tl.arange(0, BV)
    mk = ik < K
    mv = jv < V
    mkv = mk[:, None] & mv[None, :]
    off_s = n * K * V + ik[:, None] * V + jv[None, :]
    if HAS_DHT:
        dS = tl.load(dht_ptr + off_s, mask=mkv, other=0.0).to(tl.float32)
    else:
        dS = tl.full([BK, BV], 0.0, tl.float32)
    part = iv * B * T * H  # this value tile's slice of the partial sums
    for j in range(T):
        t = T - 1 - j
        row = (b * T + t) * H + h
        qt = tl.load(q_ptr + row * K + ik, mask=mk, other=0.0).to(tl.float32)
        kt = tl.load(k_ptr + row * K + ik, mask=mk, other=0.0).to(tl.float32)
        dot = tl.load(do_ptr + row * V + jv, mask=mv, other=0.0).to(tl.float32)
        dS += qt[:, None] * dot[None, :]
        du = rsum(kt[:, None] * dS, axis=0)
        if IS_DELTA:
            bt = tl.load(beta_ptr + row).to(tl.float32)
            rt = tl.load(r_ptr + row * V + jv, mask=mv, other=0.0)
            dvt = bt * du
            tl.store(dbeta_ptr + part + row, rsum(du * rt, axis=0))
            dkt = rsum(dS * (bt * rt)[None, :], axis=1)
            dS -= kt[:, None] * dvt[None, :]
        else:
            vt = tl.load(v_ptr + row * V + jv, mask=mv, other=0.0).to(tl.float32)
            dvt = du
            dkt = rsum(dS * vt[None, :], axis=1)
        tl.store(dv_ptr + row * V + jv, dvt, mask=mv)
        tl.store(dk_ptr + (part + row) * K + ik, dkt, mask=mk)
        if HAS_RESET:
            if tl.load(reset_ptr + b * T + t) != 0:
                dS = tl.full([BK, BV], 0.0, tl.float32)
    if STORE_DH0:
        tl.store(dh0_ptr + off_s, dS, mask=mkv)


@triton.jit
def recurrent_bwd_forward_kernel(
    q_ptr, k_ptr, v_ptr, beta_ptr, r_ptr, h0_ptr, reset_ptr, do_ptr, dv_ptr,
    dq_ptr, dk_ptr,  # dq, dk [NV, B, T, H, K] fp32 (dk holds pass 1's partials and is updated)
    T, H, B,
    K: tl.constexpr, V: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
    IS_DELTA: tl.constexpr, HAS_H0: tl.constexpr, HAS_RESET: tl.constexpr,
):
    n = tl.program_id(0).to(tl.int64)
    iv = tl.program_id(1).to(tl.int64)
    b = n // H
    h = n % H
    ik = tl.arange(0, BK)
    jv = iv * BV + tl.arange(0, BV)
    mk = ik < K
    mv = jv < V
    mkv = mk[:, None] & mv[None, :]
    if HAS_H0:
        S = tl.load(h0_ptr + n * K * V + ik[:, None] * V + jv[None, :], mask=mkv, other=0.0).to(tl.float32)
    else:
        S = tl.full([BK, BV], 0.0, tl.float32)
    part = iv * B * T * H
    for t in range(T):
        if HAS_RESET:
            if tl.load(reset_ptr + b * T + t) != 0:
                S = tl.full([BK, BV], 0.0, tl.float32)
        row = (b * T + t) * H + h
        kt = tl.load(k_ptr + row * K + ik, mask=mk, other=0.0).to(tl.float32)
        if IS_DELTA:
            dvt = tl.load(dv_ptr + row * V + jv, mask=mv, other=0.0)
            dk_read = rsum(S * dvt[None, :], axis=1)
            p_dk = dk_ptr + (part + row) * K + ik
            tl.store(p_dk, tl.load(p_dk, mask=mk, other=0.0) - dk_read, mask=mk)
            ut = tl.load(beta_ptr + row).to(tl.float32) * tl.load(r_ptr + row * V + jv, mask=mv, other=0.0)
        else:
            ut = tl.load(v_ptr + row * V + jv, mask=mv, other=0.0).to(tl.float32)
        S += kt[:, None] * ut[None, :]
        dot = tl.load(do_ptr + row * V + jv, mask=mv, other=0.0).to(tl.float32)
        tl.store(dq_ptr + (part + row) * K + ik, rsum(S * dot[None, :], axis=1), mask=mk)
