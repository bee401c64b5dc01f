"""The fused CPU SRWM: forward and backward as compiled loops over time (numba), no per-step Python.

Same contract as :func:`adaptmem.ops.srwm.checkpointed.srwm_checkpointed` (packed layout
``M = [W_y | W_q | W_k | w_b]``, ``[N, D, E]`` with ``E = 3D + 4``, ``N = B*H``), same memory
profile (the forward keeps the per-step vectors and the fast weights every ``checkpoint_every``
steps; the backward recomputes each chunk forwards from its checkpoint, never by subtracting
updates), results equal to the torch path within floating-point round-off.

Why it is faster: the torch path launches ~20 small batched matrix products per step, and at
SRWM's sizes (D = 16) their overhead dominates. Here the whole recurrence of 8 sequences runs in
one compiled loop, the 8 sequences side by side in the SIMD lanes (see
:mod:`adaptmem.ops._numba_simd`), and groups of 8 are split over ``torch.get_num_threads()``
threads (:func:`adaptmem.ops._fused_cpu.run_in_threads`). The kernels
(:mod:`adaptmem.ops.srwm.fused_cpu_kernels`) are compiled by numba's own LLVM on first use (no
system compiler) and cached on disk (next to the source, else the user's cache directory or
``NUMBA_CACHE_DIR``; see :func:`adaptmem.ops._numba_simd.kernel`).
"""

from __future__ import annotations

from functools import cache

import torch
from torch.autograd.function import once_differentiable

from adaptmem.ops._fused_cpu import LANES, fused_cpu_available, num_workers, numpy_rows, run_in_threads
from adaptmem.utils.checks import check_positive_int, fmt_shape

__all__ = ["fused_cpu_available", "num_workers", "srwm_fused_cpu"]

_NO_RESET = torch.zeros(1, 1, dtype=torch.bool)  # stands in for reset in calls without one


@cache
def _kernels():
    from adaptmem.ops import _numba_simd  # lazy: imports numba
    from adaptmem.ops.srwm import fused_cpu_kernels

    if _numba_simd.LANES != LANES:
        raise RuntimeError(f"srwm_fused_cpu: LANES {LANES} != the kernels' {_numba_simd.LANES}")
    return fused_cpu_kernels


def _forward(x, M0, R, reset, C, save):
    N, T, D = x.shape
    E = 3 * D + 4
    G = -(-N // LANES)
    has_reset = reset is not None and bool(reset.any())
    y = torch.empty_like(x)
    M_T = torch.empty_like(M0)
    if save:
        P = x.new_empty(G, T, 2 * D + 4, LANES)
        Dd = x.new_empty(G, T, E, LANES)
        CK = x.new_empty(G, -(-T // C), D * E, LANES)
    else:
        P = Dd = CK = x.new_empty(0, 0, 0, LANES)
    run_in_threads(
        _kernels().srwm_forward,
        G,
        T,
        D,
        *numpy_rows(x, M0, R if has_reset else M0),
        (reset if has_reset else _NO_RESET).numpy(),
        has_reset,
        C,
        save,
        *numpy_rows(y, M_T),
        P.numpy(),
        Dd.numpy(),
        CK.numpy(),
    )
    return y, M_T, (P, Dd, CK, has_reset)


class SRWMFusedCPUFunction(torch.autograd.Function):
    """``(x [N, T, D], M0 [N, D, E], R [N, D, E] or None, reset, C) -> (y [N, T, D], M_T [N, D, E])``."""

    @staticmethod
    def forward(ctx, x, M0, R, reset, C):
        y, M_T, (P, Dd, CK, has_reset) = _forward(x, M0, R, reset, C, save=True)
        ctx.save_for_backward(x, R if has_reset else None, reset if has_reset else None, P, Dd, CK)
        ctx.has_reset, ctx.R_given, ctx.C = has_reset, R is not None, C
        return y, M_T

    @staticmethod
    @once_differentiable
    def backward(ctx, gy, gM):
        x, R, reset, P, Dd, CK = ctx.saved_tensors
        N, T, D = x.shape
        E = 3 * D + 4
        gy = gy.contiguous() if gy is not None else torch.zeros_like(x)
        has_gM = gM is not None
        gM = gM.contiguous() if has_gM else x.new_zeros(1, 1)
        dx = torch.empty_like(x)
        dM0 = x.new_empty(N, D, E)
        dR = x.new_zeros(N, D, E) if ctx.R_given else None
        has_reset = ctx.has_reset
        run_in_threads(
            _kernels().srwm_backward,
            P.shape[0],
            T,
            D,
            *numpy_rows(x, R if has_reset else dM0),
            (reset if has_reset else _NO_RESET).numpy(),
            has_reset,
            ctx.C,
            P.numpy(),
            Dd.numpy(),
            CK.numpy(),
            *numpy_rows(gy, gM),
            has_gM,
            *numpy_rows(dx, dM0, dR if has_reset else dM0),
        )
        return dx, dM0, dR, None, None


def srwm_fused_cpu(
    x: torch.Tensor, M0: torch.Tensor, R: torch.Tensor | None, reset: torch.Tensor | None, checkpoint_every: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fused CPU SRWM on the packed layout; same contract as :func:`adaptmem.ops.srwm.checkpointed.srwm_checkpointed`.

    ``x`` ``[N, T, D]``, ``M0``/``R`` ``[N, D, 3D+4]``, ``reset`` ``[N, T]`` bool or ``None``, all on
    the CPU in float32 or float64 (one dtype). Returns ``(y [N, T, D], M_T [N, D, 3D+4])``.
    """
    _check(x, M0, R, reset, checkpoint_every)
    x, M0 = x.contiguous(), M0.contiguous()
    R = R.contiguous() if R is not None else None
    reset = reset.contiguous() if reset is not None else None
    needs_grad = x.requires_grad or M0.requires_grad or (R is not None and R.requires_grad)
    if torch.is_grad_enabled() and needs_grad:
        return SRWMFusedCPUFunction.apply(x, M0, R, reset, checkpoint_every)
    with torch.no_grad():
        y, M_T, _ = _forward(x, M0, R, reset, checkpoint_every, save=False)
    return y, M_T


def _check(x, M0, R, reset, C) -> None:
    fn = "srwm_fused_cpu"
    if x.device.type != "cpu":
        raise ValueError(f"{fn}: x must be on the CPU, got device {x.device}")
    if x.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"{fn}: x must be float32 or float64, got dtype {x.dtype}")
    if x.dim() != 3:
        raise ValueError(f"{fn}: x must be [N, T, D], got shape {fmt_shape(x)}")
    N, T, D = x.shape
    for name, t in (("M0", M0), ("R", R)):
        if t is None:
            continue
        if t.dtype != x.dtype or t.device != x.device:
            raise TypeError(f"{fn}: {name} must be {x.dtype} on cpu like x, got dtype {t.dtype} device {t.device}")
        if t.shape != (N, D, 3 * D + 4):
            raise ValueError(f"{fn}: {name} must be [N, D, 3D+4] = ({N}, {D}, {3 * D + 4}), got shape {fmt_shape(t)}")
    if reset is not None:
        if reset.dtype != torch.bool or reset.device != x.device:
            raise TypeError(f"{fn}: reset must be a bool tensor on cpu, got dtype {reset.dtype} device {reset.device}")
        if reset.shape != (N, T):
            raise ValueError(f"{fn}: reset must be [N, T] = ({N}, {T}), got shape {fmt_shape(reset)}")
        if R is None:
            raise ValueError(f"{fn}: reset needs R, the weights to reset to, got R=None")
    check_positive_int(fn, "checkpoint_every", C)
