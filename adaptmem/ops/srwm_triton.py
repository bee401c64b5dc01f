"""SRWM with fused Triton kernels: the ``backend="triton"`` of :func:`adaptmem.ops.srwm`.

Same packed layout and contract as :func:`adaptmem.ops.srwm_torch.srwm_torch`; the kernels are
in :mod:`adaptmem.ops.triton.srwm_kernels`. Importing this module imports Triton, so the public
op imports it only when the Triton backend is chosen.

Memory: the forward keeps per step ``[q | k | b]`` and ``d`` (``5D + 8`` floats) and the fast
weights every C steps, i.e. O(T*(5D+8) + T/C*D*(3D+4)) floats per head, in float32. The
backward adds a transient scratch of C fast-weight matrices per head.

Cases the kernels do not cover run :func:`adaptmem.ops.srwm_torch.srwm_torch` instead (same
results within float rounding): float64 inputs (the kernels accumulate in float32) and head
dims above :data:`MAX_HEAD_DIM` (four D x D fp32 tiles no longer fit in registers).
"""

from __future__ import annotations

import os

import torch
import triton
from torch.autograd.function import once_differentiable

from adaptmem.ops.srwm_torch import srwm_torch
from adaptmem.ops.triton.srwm_kernels import srwm_bwd_kernel, srwm_fwd_kernel

MAX_HEAD_DIM = 128


def default_num_warps(D: int) -> int:
    """Warps per program: enough threads to hold the backward's ``2 x 3 x D x D`` fp32 tiles.

    From ``ptxas -v`` on sm_90 (no GPU needed): with these counts neither kernel spills at
    D <= 64 (the backward uses 128-254 registers per thread); at D = 128 the backward spills
    about 4 KB per thread to local memory (cached in L1/L2).
    """
    BD = triton.next_power_of_2(D)
    return 1 if BD <= 16 else 4 if BD <= 32 else 8 if BD <= 64 else 16


def check_triton_device(fn: str, t: torch.Tensor) -> None:
    """Triton kernels need a CUDA tensor, or CPU tensors under ``TRITON_INTERPRET=1``."""
    if t.device.type == "cuda":
        return
    if t.device.type == "cpu" and os.environ.get("TRITON_INTERPRET") == "1":
        return
    raise ValueError(
        f"{fn}: backend='triton' needs CUDA tensors (or TRITON_INTERPRET=1 for CPU tensors), "
        f"got a tensor on {t.device}; use backend='torch' or 'auto'"
    )


def _forward(x, M0, R, reset, C, save, num_warps):
    N, T, D = x.shape
    E = 3 * D + 4
    NC = (T + C - 1) // C
    f32 = dict(device=x.device, dtype=torch.float32)
    y = torch.empty(N, T, D, device=x.device, dtype=x.dtype)
    M_T = torch.empty(N, D, E, **f32)
    if save:
        V = torch.empty(N, T, 2 * D + 4, **f32)
        d = torch.empty(N, T, E, **f32)
        ckpts = torch.empty(N, NC, D, E, **f32)
    else:  # never written: SAVE=False compiles the stores away
        V = d = ckpts = M_T
    has_reset = reset is not None
    srwm_fwd_kernel[(N,)](
        x, M0, R if has_reset else M0, reset.to(torch.int8).contiguous() if has_reset else M0,
        y, M_T, V, d, ckpts,
        T, C, NC,
        D=D, BD=triton.next_power_of_2(D), HAS_RESET=has_reset, SAVE=save,
        num_warps=num_warps, enable_fp_fusion=True,  # explicit: Triton 3.9 warns when it is left to a default
    )
    return y, M_T, (V, d, ckpts)


def _backward(x, R, reset, saved, gy, gM, C, num_warps):
    V, d, ckpts = saved
    N, T, D = x.shape
    E = 3 * D + 4
    NC = ckpts.shape[1]
    f32 = dict(device=x.device, dtype=torch.float32)
    scratch = torch.empty(N, min(C, T), D, E, **f32)
    dx = torch.empty(N, T, D, **f32)
    dM0 = torch.empty(N, D, E, **f32)
    has_reset = reset is not None
    dR = torch.zeros(N, D, E, **f32) if has_reset else dM0
    gy = gy.contiguous() if gy is not None else torch.zeros(N, T, D, **f32)
    srwm_bwd_kernel[(N,)](
        x, R if has_reset else dM0, reset.to(torch.int8).contiguous() if has_reset else dM0,
        V, d, ckpts,
        gy, gM.contiguous() if gM is not None else dM0, scratch,
        dx, dM0, dR,
        T, min(C, T), NC,
        D=D, BD=triton.next_power_of_2(D), HAS_RESET=has_reset, HAS_GM=gM is not None,
        num_warps=num_warps, enable_fp_fusion=True,  # explicit: Triton 3.9 warns when it is left to a default
    )
    return dx, dM0, (dR if has_reset else None)


class SRWMTritonFunction(torch.autograd.Function):
    """``(x [N, T, D], M0 [N, D, E], R [N, D, E] | None, reset [N, T] | None, C, num_warps) -> (y, M_T)``."""

    @staticmethod
    def forward(ctx, x, M0, R, reset, C, num_warps):
        y, M_T, saved = _forward(x, M0, R, reset, C, True, num_warps)
        ctx.save_for_backward(x, R, reset, *saved)
        ctx.C, ctx.num_warps = C, num_warps
        return y, M_T

    @staticmethod
    @once_differentiable
    def backward(ctx, gy, gM):
        x, R, reset, *saved = ctx.saved_tensors
        dx, dM0, dR = _backward(x, R, reset, saved, gy, gM, ctx.C, ctx.num_warps)
        return dx.to(x.dtype), dM0, dR, None, None, None


def srwm_triton(
    x: torch.Tensor,
    M0: torch.Tensor,
    R: torch.Tensor | None,
    reset: torch.Tensor | None,
    checkpoint_every: int,
    num_warps: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Differentiable SRWM on the packed layout (see :func:`adaptmem.ops.srwm`).

    Args:
        x: ``[N, T, D]`` with ``N = B * H``; float32, bfloat16 or float16 (computed in float32).
        M0: starting fast weights ``[N, D, 3D + 4]`` = ``[W_y | W_q | W_k | w_b]``.
        R: weights a reset sets the state to, ``[N, D, 3D + 4]``, or ``None`` without resets.
        reset: bool ``[N, T]`` (state set to ``R`` before that step) or ``None``.
        checkpoint_every: C, the backward's recomputation chunk.
        num_warps: warps per program (default: :func:`default_num_warps`).

    Returns:
        ``(y [N, T, D]`` in ``x``'s dtype, ``M_T [N, D, 3D + 4]`` in float32).
    """
    check_triton_device("srwm", x)
    D = x.shape[-1]
    if x.dtype == torch.float64 or M0.dtype == torch.float64 or D > MAX_HEAD_DIM:
        return srwm_torch(x, M0, R, reset, checkpoint_every)
    if (reset is None) != (R is None):
        raise ValueError("srwm_triton: reset and R must be given together")
    x = x.contiguous()
    M0 = M0.float().contiguous()
    R = R.float().contiguous() if R is not None else None
    num_warps = num_warps or default_num_warps(D)
    needs_grad = x.requires_grad or M0.requires_grad or (R is not None and R.requires_grad)
    if torch.is_grad_enabled() and needs_grad:
        return SRWMTritonFunction.apply(x, M0, R, reset, checkpoint_every, num_warps)
    with torch.no_grad():
        y, M_T, _ = _forward(x, M0, R, reset, checkpoint_every, False, num_warps)
    return y, M_T
