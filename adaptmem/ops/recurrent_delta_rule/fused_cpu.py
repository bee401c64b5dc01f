"""The fused CPU Recurrent Delta Net: forward and backward as compiled loops over time (numba).

The mechanism of :mod:`adaptmem.ops.srwm.fused_cpu` (8 sequences per SIMD lane group, groups
split over torch's threads, kernels compiled on first use and cached) applied to
:func:`adaptmem.ops.recurrent_delta_rule`: the forward keeps the per-step vectors and the state
every ``checkpoint_every`` steps, the backward recomputes each chunk's states forwards from
its checkpoint (activation memory O(T*D + T/C*D^2) per sequence, like ``mode="checkpointed"`` on ``backend="torch"``).
"""

from __future__ import annotations

from functools import cache

import torch
from torch.autograd.function import once_differentiable

from adaptmem.ops._fused_cpu import LANES, fused_cpu_available, numpy_rows, run_in_threads
from adaptmem.ops._state import RecurrentDeltaState
from adaptmem.ops.recurrent_delta_rule.reference import prepare

__all__ = ["fused_cpu_available", "recurrent_delta_fused_cpu", "recurrent_delta_rule_fused_cpu"]


@cache
def _kernels():
    from adaptmem.ops.recurrent_delta_rule import fused_cpu_kernels  # lazy: imports numba

    return fused_cpu_kernels


_NO_RESET = torch.zeros(1, 1, dtype=torch.bool)


def _forward(q, k, v, beta, Rc, S0, y0, reset, C, save):
    N, T, D = q.shape
    H = Rc.shape[0]
    G = -(-N // LANES)
    has_reset = reset is not None and bool(reset.any())
    y, S_T, y_T = torch.empty_like(q), torch.empty_like(S0), torch.empty_like(y0)
    if save:
        P = q.new_empty(G, T, 4 * D + 1, LANES)
        CK = q.new_empty(G, -(-T // C), D * D, LANES)
    else:
        P = CK = q.new_empty(0, 0, 0, LANES)
    run_in_threads(
        _kernels().rdelta_forward,
        G,
        T,
        D,
        H,
        *numpy_rows(q, k, v, beta, Rc, S0, y0),
        (reset if has_reset else _NO_RESET).numpy(),
        has_reset,
        C,
        save,
        *numpy_rows(y, S_T, y_T),
        P.numpy(),
        CK.numpy(),
    )
    return y, S_T, y_T, (P, CK, has_reset)


class RecurrentDeltaFusedCPUFunction(torch.autograd.Function):
    """``(q, k, v [N, T, D], beta [N, T], Rc [H, D, 3D+1], S0 [N, D, D], y0 [N, D], reset, C)
    -> (y [N, T, D], S_T, y_T)``; sequence ``n`` uses head ``n % H``."""

    @staticmethod
    def forward(ctx, q, k, v, beta, Rc, S0, y0, reset, C):
        y, S_T, y_T, (P, CK, has_reset) = _forward(q, k, v, beta, Rc, S0, y0, reset, C, save=True)
        ctx.save_for_backward(Rc, reset if has_reset else None, P, CK)
        ctx.has_reset, ctx.C, ctx.shape = has_reset, C, q.shape
        return y, S_T, y_T

    @staticmethod
    @once_differentiable
    def backward(ctx, gy, gS, gyT):
        Rc, reset, P, CK = ctx.saved_tensors
        N, T, D = ctx.shape
        H = Rc.shape[0]
        gy = gy.contiguous() if gy is not None else Rc.new_zeros(N, T, D)
        has_gS, has_gy = gS is not None, gyT is not None
        gS = gS.contiguous() if has_gS else Rc.new_zeros(1, 1)
        gyT = gyT.contiguous() if has_gy else Rc.new_zeros(1, 1)
        dq, dk, dv = (Rc.new_empty(N, T, D) for _ in range(3))
        dbeta, dRn = Rc.new_empty(N, T), Rc.new_empty(N, D, 3 * D + 1)
        dS0, dy0 = Rc.new_empty(N, D, D), Rc.new_empty(N, D)
        run_in_threads(
            _kernels().rdelta_backward,
            P.shape[0],
            T,
            D,
            H,
            *numpy_rows(Rc),
            (reset if ctx.has_reset else _NO_RESET).numpy(),
            ctx.has_reset,
            ctx.C,
            P.numpy(),
            CK.numpy(),
            *numpy_rows(gy, gS),
            has_gS,
            *numpy_rows(gyT),
            has_gy,
            *numpy_rows(dq, dk, dv, dbeta, dRn, dS0, dy0),
        )
        dRc = dRn.view(N // H, H, D, 3 * D + 1).sum(0)
        return dq, dk, dv, dbeta, dRc, dS0, dy0, None, None


def recurrent_delta_fused_cpu(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    beta: torch.Tensor,
    Rc: torch.Tensor,
    S0: torch.Tensor,
    y0: torch.Tensor,
    reset: torch.Tensor | None,
    checkpoint_every: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Fused CPU Recurrent Delta Net on sequences ``n = b*H + h``: ``q, k, v`` ``[N, T, D]``,
    ``beta`` ``[N, T]`` (pre-sigmoid), ``Rc = [R_q | R_k | R_v | r_b]`` ``[H, D, 3D+1]``,
    ``S0`` ``[N, D, D]``, ``y0`` ``[N, D]``, ``reset`` ``[N, T]`` bool or ``None``; CPU float32 or
    float64. Returns ``(y [N, T, D], S_T, y_T)``. Inputs are validated by the caller
    (:func:`adaptmem.ops.recurrent_delta_rule`)."""
    tensors = [t.contiguous() for t in (q, k, v, beta, Rc, S0, y0)]
    reset = reset.contiguous() if reset is not None else None
    if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
        return RecurrentDeltaFusedCPUFunction.apply(*tensors, reset, checkpoint_every)
    with torch.no_grad():
        return _forward(*tensors, reset, checkpoint_every, save=False)[:3]


def recurrent_delta_rule_fused_cpu(
    q, k, v, beta, R_q, R_k, R_v, r_b, initial_state, reset, checkpoint_every: int
) -> tuple[torch.Tensor, RecurrentDeltaState]:
    """:func:`adaptmem.ops.recurrent_delta_rule` on checked CPU inputs (``reset`` ``[B, T]`` bool or
    ``None``), the signature of
    :func:`adaptmem.ops.recurrent_delta_rule.checkpointed.recurrent_delta_rule_checkpointed`."""
    B, T, H, D = q.shape
    heads, rec, S, y = prepare(q, k, v, beta, R_q, R_k, R_v, r_b, initial_state)  # [B, H, T, ...]
    N = B * H  # sequence b*H + h
    out, S, y = recurrent_delta_fused_cpu(
        *[h.reshape(N, T, D) for h in heads[:3]],
        heads[3].reshape(N, T),
        torch.cat((*rec[:3], rec[3][..., None]), dim=-1),
        S.reshape(N, D, D),
        y.reshape(N, D),
        reset.repeat_interleave(H, dim=0) if reset is not None else None,
        checkpoint_every,
    )
    return out.view(B, H, T, D).transpose(1, 2).to(v.dtype), RecurrentDeltaState(S.view(B, H, D, D), y.view(B, H, D))
