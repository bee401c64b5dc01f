"""The fused recurrent Triton kernel of the delta rule and linear attention (``backend="triton"``).

One kernel serves both ops (linear attention is the delta rule without the delta term); the
family modules :mod:`adaptmem.ops.delta_rule.fused_recurrent` and
:mod:`adaptmem.ops.linear_attention.fused_recurrent` call it. Importing this module imports Triton.

Row vectors, state ``S`` (``Dk x Dv``), write then read::

    delta rule:        r_t = v_t - k_t S     S <- S + k_t^T (beta_t r_t)     o_t = q_t S
    linear attention:                        S <- S + k_t^T v_t              o_t = q_t S

Inputs stay in the library's ``[B, T, H, D]`` layout (no transposes); one program owns one
(batch, head) and one tile of ``BV`` value columns (the columns of ``S`` evolve independently),
keeps its ``[BK, BV]`` slice of the state in float32 registers and loops over time. A reset
zeroes the state before its step. Inputs in float32, bfloat16 or float16 are computed with a
float32 state; outputs come back in ``v``'s dtype and the final state in float32.

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

import torch
import triton
import triton.language as tl
from torch.autograd.function import once_differentiable

from adaptmem.ops._triton_utils import rsum


@triton.jit
def recurrent_fwd_kernel(
    q_ptr,
    k_ptr,
    v_ptr,
    beta_ptr,
    h0_ptr,
    reset_ptr,  # q, k [B, T, H, K]; v [B, T, H, V]; beta [B, T, H]; h0 [B, H, K, V]; reset [B, T] int8
    o_ptr,
    ht_ptr,
    r_ptr,  # o [B, T, H, V]; hT [B, H, K, V] fp32; r [B, T, H, V] fp32
    T,
    H,
    K: tl.constexpr,
    V: tl.constexpr,
    BK: tl.constexpr,
    BV: tl.constexpr,
    IS_DELTA: tl.constexpr,
    HAS_H0: tl.constexpr,
    HAS_RESET: tl.constexpr,
    SAVE_R: tl.constexpr,
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
    q_ptr,
    k_ptr,
    v_ptr,
    beta_ptr,
    r_ptr,
    reset_ptr,
    do_ptr,
    dht_ptr,
    dk_ptr,
    dv_ptr,
    dbeta_ptr,
    dh0_ptr,  # dk [NV, B, T, H, K]; dv [B, T, H, V]; dbeta [NV, B, T, H]; dh0 [B, H, K, V]; all fp32
    T,
    H,
    B,
    K: tl.constexpr,
    V: tl.constexpr,
    BK: tl.constexpr,
    BV: tl.constexpr,
    IS_DELTA: tl.constexpr,
    HAS_DHT: tl.constexpr,
    HAS_RESET: tl.constexpr,
    STORE_DH0: tl.constexpr,
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
    q_ptr,
    k_ptr,
    v_ptr,
    beta_ptr,
    r_ptr,
    h0_ptr,
    reset_ptr,
    do_ptr,
    dv_ptr,
    dq_ptr,
    dk_ptr,  # dq, dk [NV, B, T, H, K] fp32 (dk holds pass 1's partials and is updated)
    T,
    H,
    B,
    K: tl.constexpr,
    V: tl.constexpr,
    BK: tl.constexpr,
    BV: tl.constexpr,
    IS_DELTA: tl.constexpr,
    HAS_H0: tl.constexpr,
    HAS_RESET: tl.constexpr,
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


# Launch code.


def _tiles(K: int, V: int) -> tuple[int, int, int, int]:
    """``(BK, BV, NV, num_warps)``: the whole key dim per program, value columns in tiles."""
    BK = triton.next_power_of_2(K)
    BV = min(triton.next_power_of_2(V), 32)
    elems = BK * BV
    num_warps = 1 if elems <= 1024 else 2 if elems <= 2048 else 4
    return BK, BV, triton.cdiv(V, BV), num_warps


def _forward(q, k, v, beta, h0, reset8, save: bool):
    """Launch the forward; returns ``(o, S_T, r)`` with ``r`` (delta rule, ``save``) or ``None``."""
    B, T, H, K = q.shape
    V = v.shape[-1]
    BK, BV, NV, num_warps = _tiles(K, V)
    is_delta = beta is not None
    save_r = is_delta and save
    o = torch.empty_like(v)
    hT = torch.empty(B, H, K, V, device=q.device, dtype=torch.float32)
    r = torch.empty(B, T, H, V, device=q.device, dtype=torch.float32) if save_r else None
    dummy = hT  # stands in for absent pointers; the kernel's flags compile their uses away
    recurrent_fwd_kernel[(B * H, NV)](
        q,
        k,
        v,
        beta if is_delta else dummy,
        h0 if h0 is not None else dummy,
        reset8 if reset8 is not None else dummy,
        o,
        hT,
        r if save_r else dummy,
        T,
        H,
        K=K,
        V=V,
        BK=BK,
        BV=BV,
        IS_DELTA=is_delta,
        HAS_H0=h0 is not None,
        HAS_RESET=reset8 is not None,
        SAVE_R=save_r,
        num_warps=num_warps,
        enable_fp_fusion=True,  # explicit: Triton 3.9 warns when it is left to a default
    )
    return o, hT, r


class FusedRecurrentFunction(torch.autograd.Function):
    """``(q, k, v, beta | None, h0 | None, reset [B, T] | None) -> (o, S_T)``; ``beta=None``: linear attention."""

    @staticmethod
    def forward(ctx, q, k, v, beta, h0, reset):
        reset8 = reset.to(torch.int8).contiguous() if reset is not None else None
        o, hT, r = _forward(q, k, v, beta, h0, reset8, save=True)
        ctx.save_for_backward(q, k, v, beta, h0, reset8, r)
        return o, hT

    @staticmethod
    @once_differentiable
    def backward(ctx, do, dhT):
        q, k, v, beta, h0, reset8, r = ctx.saved_tensors
        B, T, H, K = q.shape
        V = v.shape[-1]
        BK, BV, NV, num_warps = _tiles(K, V)
        is_delta = beta is not None
        f32 = dict(device=q.device, dtype=torch.float32)
        do = do.contiguous() if do is not None else torch.zeros(B, T, H, V, **f32)
        dk = torch.empty(NV, B, T, H, K, **f32)
        dq = torch.empty(NV, B, T, H, K, **f32)
        dv = torch.empty(B, T, H, V, **f32)
        dbeta = torch.empty(NV, B, T, H, **f32) if is_delta else dv
        store_dh0 = h0 is not None and ctx.needs_input_grad[4]
        dh0 = torch.empty(B, H, K, V, **f32) if store_dh0 else dv
        dummy = dv
        common = dict(
            K=K,
            V=V,
            BK=BK,
            BV=BV,
            IS_DELTA=is_delta,
            HAS_RESET=reset8 is not None,
            num_warps=num_warps,
            enable_fp_fusion=True,
        )
        recurrent_bwd_reverse_kernel[(B * H, NV)](
            q,
            k,
            v,
            beta if is_delta else dummy,
            r if is_delta else dummy,
            reset8 if reset8 is not None else dummy,
            do,
            dhT.contiguous() if dhT is not None else dummy,
            dk,
            dv,
            dbeta,
            dh0,
            T,
            H,
            B,
            HAS_DHT=dhT is not None,
            STORE_DH0=store_dh0,
            **common,
        )
        recurrent_bwd_forward_kernel[(B * H, NV)](
            q,
            k,
            v,
            beta if is_delta else dummy,
            r if is_delta else dummy,
            h0 if h0 is not None else dummy,
            reset8 if reset8 is not None else dummy,
            do,
            dv,
            dq,
            dk,
            T,
            H,
            B,
            HAS_H0=h0 is not None,
            **common,
        )
        dq, dk = dq.sum(0).to(q.dtype), dk.sum(0).to(k.dtype)
        dbeta = dbeta.sum(0).to(beta.dtype) if is_delta else None
        return dq, dk, dv.to(v.dtype), dbeta, (dh0.to(h0.dtype) if store_dh0 else None), None


def fused_recurrent(q, k, v, beta, h0, reset) -> tuple[torch.Tensor, torch.Tensor]:
    """The kernel on checked inputs: ``beta=None`` is linear attention; ``reset`` ``[B, T]`` bool or ``None``.

    Returns ``(o [B, T, H, Dv]`` in ``v``'s dtype, ``S_T [B, H, Dk, Dv]`` in float32).
    """
    q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
    beta = beta.contiguous() if beta is not None else None
    h0 = h0.contiguous() if h0 is not None else None
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (q, k, v, beta, h0)):
        return FusedRecurrentFunction.apply(q, k, v, beta, h0, reset)
    reset8 = reset.to(torch.int8).contiguous() if reset is not None else None
    o, hT, _ = _forward(q, k, v, beta, h0, reset8, save=False)
    return o, hT
