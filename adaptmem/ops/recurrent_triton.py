"""The delta rule and linear attention on our fused recurrent Triton kernels (``backend="triton"``).

Same contracts as :func:`adaptmem.ops.delta_rule` and :func:`adaptmem.ops.linear_attention`
(inputs already validated by them); the kernels are in
:mod:`adaptmem.ops.triton.recurrent_kernels`. Importing this module imports Triton.

Inputs in float32, bfloat16 or float16 are computed with a float32 state; outputs come back in
``v``'s dtype and the final state in float32. Float64 inputs and key dims above
:data:`MAX_KEY_DIM` run the PyTorch chunk form instead (same results within rounding).
"""

from __future__ import annotations

import torch
import triton
from torch.autograd.function import once_differentiable

from adaptmem.ops.srwm_triton import check_triton_device
from adaptmem.ops.triton.recurrent_kernels import (
    recurrent_bwd_forward_kernel,
    recurrent_bwd_reverse_kernel,
    recurrent_fwd_kernel,
)

MAX_KEY_DIM = 256


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
        q, k, v, beta if is_delta else dummy, h0 if h0 is not None else dummy,
        reset8 if reset8 is not None else dummy,
        o, hT, r if save_r else dummy,
        T, H,
        K=K, V=V, BK=BK, BV=BV,
        IS_DELTA=is_delta, HAS_H0=h0 is not None, HAS_RESET=reset8 is not None, SAVE_R=save_r,
        num_warps=num_warps, enable_fp_fusion=True,  # explicit: Triton 3.9 warns when it is left to a default
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
        common = dict(K=K, V=V, BK=BK, BV=BV, IS_DELTA=is_delta, HAS_RESET=reset8 is not None, num_warps=num_warps,
                      enable_fp_fusion=True)
        recurrent_bwd_reverse_kernel[(B * H, NV)](
            q, k, v, beta if is_delta else dummy, r if is_delta else dummy,
            reset8 if reset8 is not None else dummy, do, dhT.contiguous() if dhT is not None else dummy,
            dk, dv, dbeta, dh0,
            T, H, B,
            HAS_DHT=dhT is not None, STORE_DH0=store_dh0, **common,
        )
        recurrent_bwd_forward_kernel[(B * H, NV)](
            q, k, v, beta if is_delta else dummy, r if is_delta else dummy, h0 if h0 is not None else dummy,
            reset8 if reset8 is not None else dummy, do, dv,
            dq, dk,
            T, H, B,
            HAS_H0=h0 is not None, **common,
        )
        dq, dk = dq.sum(0).to(q.dtype), dk.sum(0).to(k.dtype)
        dbeta = dbeta.sum(0).to(beta.dtype) if is_delta else None
        return dq, dk, dv.to(v.dtype), dbeta, (dh0.to(h0.dtype) if store_dh0 else None), None


def _fallback(q, k, v, *others) -> bool:
    return any(t is not None and t.dtype == torch.float64 for t in (q, k, v, *others)) or q.shape[-1] > MAX_KEY_DIM


def _run(q, k, v, beta, h0, reset):
    check_triton_device("delta_rule" if beta is not None else "linear_attention", q)
    q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
    beta = beta.contiguous() if beta is not None else None
    h0 = h0.contiguous() if h0 is not None else None
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (q, k, v, beta, h0)):
        return FusedRecurrentFunction.apply(q, k, v, beta, h0, reset)
    reset8 = reset.to(torch.int8).contiguous() if reset is not None else None
    o, hT, _ = _forward(q, k, v, beta, h0, reset8, save=False)
    return o, hT


def delta_rule_triton(q, k, v, beta, *, initial_state=None, reset=None):
    """:func:`adaptmem.ops.delta_rule` on the fused recurrent kernel; ``reset`` is ``[B, T]`` bool or ``None``."""
    if _fallback(q, k, v, beta, initial_state):
        from adaptmem.ops.delta_rule_chunk import delta_rule_chunk

        return delta_rule_chunk(q, k, v, beta, initial_state=initial_state, reset=reset)
    return _run(q, k, v, beta, initial_state, reset)


def linear_attention_triton(q, k, v, *, initial_state=None, normalize=False, reset=None, eps=1e-6):
    """:func:`adaptmem.ops.linear_attention` on the fused recurrent kernel.

    The normaliser ``z`` rides along as an extra value column of ones (so ``S`` gains a
    column holding ``z``), as in the chunk form.
    """
    from adaptmem.ops.linear_attention_reference import split_state

    S0, z0 = split_state("linear_attention", initial_state, normalize)
    if _fallback(q, k, v, S0):
        from adaptmem.ops.linear_attention_chunk import linear_attention_chunk

        return linear_attention_chunk(q, k, v, initial_state=initial_state, normalize=normalize,
                                      reset=reset, eps=eps)
    if not normalize:
        return _run(q, k, v, None, S0, reset)
    B, T, H, K = q.shape
    # float32 values, so the normaliser column q . z is not rounded to v's dtype before the division.
    v1 = torch.cat((v.float(), v.new_ones(*v.shape[:-1], 1, dtype=torch.float32)), dim=-1)
    h0 = None
    if S0 is not None:
        h0 = torch.cat((S0.float(), z0.float()[..., None]), dim=-1)
    o, S = _run(q, k, v1, None, h0, reset)
    out = (o[..., :-1] / (o[..., -1:] + eps)).to(v.dtype)
    return out, (S[..., :-1], S[..., -1])
