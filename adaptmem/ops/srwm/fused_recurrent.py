"""SRWM as fused Triton kernels: the ``backend="triton"`` of :func:`adaptmem.ops.srwm`.

Same packed layout and contract as :func:`adaptmem.ops.srwm.checkpointed.srwm_checkpointed`.
Importing this module imports Triton, so the public op imports it only when the Triton backend
is chosen.

Per (batch, head) the fast weights are ``M = [W_y | W_q | W_k | w_b]`` (``D x E``, ``E = 3D + 4``)
and one step is::

    a = x_t M          y_t = a_y   q = softmax(a_q)   k = softmax(a_k)   b = sigmoid(a_b)
    d = (q - k) M      M <- M + k^T (r * d)     (r: each block's rate b_M repeated over its columns)

One program owns one (batch, head) and keeps the four blocks in registers for the whole
sequence: ``W_y, W_q, W_k`` as ``[BD, BD]`` tiles and ``w_b`` as a ``[BD, 4]`` tile, where
``BD`` is ``D`` rounded up to a power of two. Padded rows and columns are masked to zero on
load, and padded softmax logits to ``-inf``, so they never touch the result; keeping the blocks
apart (rather than one ``[BD, next_pow2(3D + 4)]`` tile) wastes no registers on padding of E.
There is no ``tl.dot``: every product is a vector times a matrix, done as a broadcast and a
reduction, so no block dimension has to be 16 or more.

The forward saves per step ``V = [q | k | b]`` (2D + 4 floats) and ``d`` (E floats), and the
fast weights every C steps, i.e. O(T*(5D+8) + T/C*D*(3D+4)) floats per head, in float32. The
backward walks the chunks in reverse; for each chunk it recomputes the fast weights *forwards*
from the chunk's checkpoint with the forward's update (writing the weights each step reads into
a per-program scratch of C fast-weight matrices), then walks the chunk backwards. It never
rebuilds earlier weights by subtracting updates (docs/reference.md, section 1). The math of the
backward is that of :class:`adaptmem.ops.srwm.checkpointed.SRWMFunction`.

The dispatch table (:data:`adaptmem.ops._dispatch.TABLE`) sends what the kernels do not cover
to the PyTorch form: float64 inputs (the kernels accumulate in float32) and head dims above 128
(four D x D fp32 tiles no longer fit in registers).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch.autograd.function import once_differentiable

from adaptmem.ops._triton_utils import device_fn, rmax, rsum, sigmoid


@device_fn
def _block_layout(D: tl.constexpr, BD: tl.constexpr):
    """Offsets of the four blocks inside a row-major ``[D, 3D + 4]`` matrix, and their masks."""
    E: tl.constexpr = 3 * D + 4
    rows = tl.arange(0, BD)
    cols = tl.arange(0, BD)
    c4 = tl.arange(0, 4)
    off = rows[:, None] * E + cols[None, :]
    off_b = rows[:, None] * E + 3 * D + c4[None, :]
    mask = (rows[:, None] < D) & (cols[None, :] < D)
    mask_b = (rows[:, None] < D) & (c4[None, :] < 4)
    return off, off_b, mask, mask_b


@device_fn
def _load_blocks(ptr, off, off_b, mask, mask_b, D: tl.constexpr):
    My = tl.load(ptr + off, mask=mask, other=0.0).to(tl.float32)
    Mq = tl.load(ptr + D + off, mask=mask, other=0.0).to(tl.float32)
    Mk = tl.load(ptr + 2 * D + off, mask=mask, other=0.0).to(tl.float32)
    Mb = tl.load(ptr + off_b, mask=mask_b, other=0.0).to(tl.float32)
    return My, Mq, Mk, Mb


@device_fn
def _store_blocks(ptr, My, Mq, Mk, Mb, off, off_b, mask, mask_b, D: tl.constexpr):
    tl.store(ptr + off, My, mask=mask)
    tl.store(ptr + D + off, Mq, mask=mask)
    tl.store(ptr + 2 * D + off, Mk, mask=mask)
    tl.store(ptr + off_b, Mb, mask=mask_b)


@device_fn
def _softmax(a, mask):
    a = tl.where(mask, a, float("-inf"))
    e = tl.exp(a - rmax(a, axis=0))
    e = tl.where(mask, e, 0.0)
    return e / rsum(e, axis=0)


@device_fn
def _pick(v4, i: tl.constexpr):
    """Entry ``i`` of a 4-vector as a scalar."""
    return rsum(tl.where(tl.arange(0, 4) == i, v4, 0.0), axis=0)


@device_fn
def _load_step(v_ptr, d_ptr, idx, m, c4, D: tl.constexpr):
    """Saved vectors of one step: ``q, k`` [BD], ``b`` [4], and ``d`` split by block."""
    q = tl.load(v_ptr + idx, mask=m, other=0.0)
    k = tl.load(v_ptr + D + idx, mask=m, other=0.0)
    b = tl.load(v_ptr + 2 * D + c4)
    d_y = tl.load(d_ptr + idx, mask=m, other=0.0)
    d_q = tl.load(d_ptr + D + idx, mask=m, other=0.0)
    d_k = tl.load(d_ptr + 2 * D + idx, mask=m, other=0.0)
    d_b = tl.load(d_ptr + 3 * D + c4)
    return q, k, b, d_y, d_q, d_k, d_b


@triton.jit
def srwm_fwd_kernel(
    x_ptr,
    m0_ptr,
    r_ptr,
    reset_ptr,  # x [N, T, D]; M0, R [N, D, E]; reset [N, T] int8
    y_ptr,
    mt_ptr,
    v_ptr,
    d_ptr,
    ck_ptr,  # y [N, T, D]; M_T [N, D, E]; V [N, T, 2D+4]; d [N, T, E]; ckpt [N, NC, D, E]
    T,
    C,
    NC,
    D: tl.constexpr,
    BD: tl.constexpr,
    HAS_RESET: tl.constexpr,
    SAVE: tl.constexpr,
):
    E: tl.constexpr = 3 * D + 4
    VW: tl.constexpr = 2 * D + 4
    n = tl.program_id(0).to(tl.int64)
    idx = tl.arange(0, BD)
    m = idx < D
    c4 = tl.arange(0, 4)
    off, off_b, mask, mask_b = _block_layout(D, BD)
    My, Mq, Mk, Mb = _load_blocks(m0_ptr + n * D * E, off, off_b, mask, mask_b, D)
    for t in range(T):
        if HAS_RESET:
            if tl.load(reset_ptr + n * T + t) != 0:
                My, Mq, Mk, Mb = _load_blocks(r_ptr + n * D * E, off, off_b, mask, mask_b, D)
        if SAVE:
            if t % C == 0:
                _store_blocks(ck_ptr + (n * NC + t // C) * D * E, My, Mq, Mk, Mb, off, off_b, mask, mask_b, D)
        x = tl.load(x_ptr + (n * T + t) * D + idx, mask=m, other=0.0).to(tl.float32)
        y = rsum(x[:, None] * My, axis=0)
        q = _softmax(rsum(x[:, None] * Mq, axis=0), m)
        k = _softmax(rsum(x[:, None] * Mk, axis=0), m)
        b = sigmoid(rsum(x[:, None] * Mb, axis=0))
        p = q - k
        d_y = rsum(p[:, None] * My, axis=0)
        d_q = rsum(p[:, None] * Mq, axis=0)
        d_k = rsum(p[:, None] * Mk, axis=0)
        d_b = rsum(p[:, None] * Mb, axis=0)
        tl.store(y_ptr + (n * T + t) * D + idx, y.to(y_ptr.dtype.element_ty), mask=m)
        if SAVE:
            vp = v_ptr + (n * T + t) * VW
            tl.store(vp + idx, q, mask=m)
            tl.store(vp + D + idx, k, mask=m)
            tl.store(vp + 2 * D + c4, b)
            dp = d_ptr + (n * T + t) * E
            tl.store(dp + idx, d_y, mask=m)
            tl.store(dp + D + idx, d_q, mask=m)
            tl.store(dp + 2 * D + idx, d_k, mask=m)
            tl.store(dp + 3 * D + c4, d_b)
        My += k[:, None] * (d_y * _pick(b, 0))[None, :]
        Mq += k[:, None] * (d_q * _pick(b, 1))[None, :]
        Mk += k[:, None] * (d_k * _pick(b, 2))[None, :]
        Mb += k[:, None] * (d_b * _pick(b, 3))[None, :]
    _store_blocks(mt_ptr + n * D * E, My, Mq, Mk, Mb, off, off_b, mask, mask_b, D)


@triton.jit
def srwm_bwd_kernel(
    x_ptr,
    r_ptr,
    reset_ptr,
    v_ptr,
    d_ptr,
    ck_ptr,  # forward inputs and saved tensors
    gy_ptr,
    gm_ptr,
    scratch_ptr,  # gy [N, T, D]; gM [N, D, E]; scratch [N, C, D, E]
    dx_ptr,
    dm0_ptr,
    dr_ptr,  # dx [N, T, D] fp32; dM0, dR [N, D, E] fp32 (dR zero-initialised)
    T,
    C,
    NC,
    D: tl.constexpr,
    BD: tl.constexpr,
    HAS_RESET: tl.constexpr,
    HAS_GM: tl.constexpr,
):
    E: tl.constexpr = 3 * D + 4
    VW: tl.constexpr = 2 * D + 4
    n = tl.program_id(0).to(tl.int64)
    idx = tl.arange(0, BD)
    m = idx < D
    c4 = tl.arange(0, 4)
    off, off_b, mask, mask_b = _block_layout(D, BD)
    scratch = scratch_ptr + n * C * D * E
    # G = dL/dM for the weights after the current step; the final state's incoming gradient
    # enters here, once.
    if HAS_GM:
        Gy, Gq, Gk, Gb = _load_blocks(gm_ptr + n * D * E, off, off_b, mask, mask_b, D)
    else:
        Gy = tl.full([BD, BD], 0.0, tl.float32)
        Gq = tl.full([BD, BD], 0.0, tl.float32)
        Gk = tl.full([BD, BD], 0.0, tl.float32)
        Gb = tl.full([BD, 4], 0.0, tl.float32)
    for cc in range(NC):
        c = NC - 1 - cc
        t0 = c * C
        L = tl.minimum(C, T - t0)
        # Recompute the weights each step of the chunk reads, forwards from the checkpoint.
        My, Mq, Mk, Mb = _load_blocks(ck_ptr + (n * NC + c) * D * E, off, off_b, mask, mask_b, D)
        _store_blocks(scratch, My, Mq, Mk, Mb, off, off_b, mask, mask_b, D)
        for i in range(1, L):
            t = t0 + i
            q, k, b, d_y, d_q, d_k, d_b = _load_step(
                v_ptr + (n * T + t - 1) * VW, d_ptr + (n * T + t - 1) * E, idx, m, c4, D
            )
            My += k[:, None] * (d_y * _pick(b, 0))[None, :]
            Mq += k[:, None] * (d_q * _pick(b, 1))[None, :]
            Mk += k[:, None] * (d_k * _pick(b, 2))[None, :]
            Mb += k[:, None] * (d_b * _pick(b, 3))[None, :]
            if HAS_RESET:
                if tl.load(reset_ptr + n * T + t) != 0:
                    My, Mq, Mk, Mb = _load_blocks(r_ptr + n * D * E, off, off_b, mask, mask_b, D)
            _store_blocks(scratch + i * D * E, My, Mq, Mk, Mb, off, off_b, mask, mask_b, D)
        tl.debug_barrier()  # the scratch written above is read below by other threads
        for j in range(L):
            i = L - 1 - j
            t = t0 + i
            My, Mq, Mk, Mb = _load_blocks(scratch + i * D * E, off, off_b, mask, mask_b, D)
            q, k, b, d_y, d_q, d_k, d_b = _load_step(v_ptr + (n * T + t) * VW, d_ptr + (n * T + t) * E, idx, m, c4, D)
            b_y = _pick(b, 0)
            b_q = _pick(b, 1)
            b_k = _pick(b, 2)
            b_b = _pick(b, 3)
            # Through the write M += k^T u (u = r * d): du = k G, and G u^T into k.
            du_y = rsum(k[:, None] * Gy, axis=0)
            du_q = rsum(k[:, None] * Gq, axis=0)
            du_k = rsum(k[:, None] * Gk, axis=0)
            du_b = rsum(k[:, None] * Gb, axis=0)
            dk_write = (
                rsum(Gy * (d_y * b_y)[None, :], axis=1)
                + rsum(Gq * (d_q * b_q)[None, :], axis=1)
                + rsum(Gk * (d_k * b_k)[None, :], axis=1)
                + rsum(Gb * (d_b * b_b)[None, :], axis=1)
            )
            dd_y = du_y * b_y
            dd_q = du_q * b_q
            dd_k = du_k * b_k
            dd_b = du_b * b_b
            # Each rate's gradient, summed over its block.
            g_b = tl.where(
                c4 == 0,
                rsum(du_y * d_y, axis=0),
                tl.where(
                    c4 == 1,
                    rsum(du_q * d_q, axis=0),
                    tl.where(c4 == 2, rsum(du_k * d_k, axis=0), rsum(du_b * d_b, axis=0)),
                ),
            )
            # Through d = (q - k) M: M dd^T is d/dq and -d/dk.
            d_read = (
                rsum(My * dd_y[None, :], axis=1)
                + rsum(Mq * dd_q[None, :], axis=1)
                + rsum(Mk * dd_k[None, :], axis=1)
                + rsum(Mb * dd_b[None, :], axis=1)
            )
            dq = d_read
            dk = dk_write - d_read
            da_q = q * (dq - rsum(dq * q, axis=0))
            da_k = k * (dk - rsum(dk * k, axis=0))
            da_b = g_b * b * (1.0 - b)
            da_y = tl.load(gy_ptr + (n * T + t) * D + idx, mask=m, other=0.0).to(tl.float32)
            # Through a = x M.
            dx = (
                rsum(My * da_y[None, :], axis=1)
                + rsum(Mq * da_q[None, :], axis=1)
                + rsum(Mk * da_k[None, :], axis=1)
                + rsum(Mb * da_b[None, :], axis=1)
            )
            tl.store(dx_ptr + (n * T + t) * D + idx, dx, mask=m)
            x = tl.load(x_ptr + (n * T + t) * D + idx, mask=m, other=0.0).to(tl.float32)
            p = q - k
            Gy += p[:, None] * dd_y[None, :] + x[:, None] * da_y[None, :]
            Gq += p[:, None] * dd_q[None, :] + x[:, None] * da_q[None, :]
            Gk += p[:, None] * dd_k[None, :] + x[:, None] * da_k[None, :]
            Gb += p[:, None] * dd_b[None, :] + x[:, None] * da_b[None, :]
            if HAS_RESET:
                # The weights step t read were R: their gradient goes to R, none further back.
                if tl.load(reset_ptr + n * T + t) != 0:
                    Ry, Rq, Rk, Rb = _load_blocks(dr_ptr + n * D * E, off, off_b, mask, mask_b, D)
                    _store_blocks(dr_ptr + n * D * E, Ry + Gy, Rq + Gq, Rk + Gk, Rb + Gb, off, off_b, mask, mask_b, D)
                    Gy = tl.full([BD, BD], 0.0, tl.float32)
                    Gq = tl.full([BD, BD], 0.0, tl.float32)
                    Gk = tl.full([BD, BD], 0.0, tl.float32)
                    Gb = tl.full([BD, 4], 0.0, tl.float32)
        tl.debug_barrier()  # the next chunk overwrites the scratch read above
    _store_blocks(dm0_ptr + n * D * E, Gy, Gq, Gk, Gb, off, off_b, mask, mask_b, D)


# Launch code.


def default_num_warps(D: int) -> int:
    """Warps per program: enough threads to hold the backward's ``2 x 3 x D x D`` fp32 tiles.

    From ``ptxas -v`` on sm_90 (no GPU needed): with these counts neither kernel spills at
    D <= 64 (the backward uses 128-254 registers per thread); at D = 128 the backward spills
    about 4 KB per thread to local memory (cached in L1/L2).
    """
    BD = triton.next_power_of_2(D)
    return 1 if BD <= 16 else 4 if BD <= 32 else 8 if BD <= 64 else 16


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
        x,
        M0,
        R if has_reset else M0,
        reset.to(torch.int8).contiguous() if has_reset else M0,
        y,
        M_T,
        V,
        d,
        ckpts,
        T,
        C,
        NC,
        D=D,
        BD=triton.next_power_of_2(D),
        HAS_RESET=has_reset,
        SAVE=save,
        num_warps=num_warps,
        enable_fp_fusion=True,  # explicit: Triton 3.9 warns when it is left to a default
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
        x,
        R if has_reset else dM0,
        reset.to(torch.int8).contiguous() if has_reset else dM0,
        V,
        d,
        ckpts,
        gy,
        gM.contiguous() if gM is not None else dM0,
        scratch,
        dx,
        dM0,
        dR,
        T,
        min(C, T),
        NC,
        D=D,
        BD=triton.next_power_of_2(D),
        HAS_RESET=has_reset,
        HAS_GM=gM is not None,
        num_warps=num_warps,
        enable_fp_fusion=True,  # explicit: Triton 3.9 warns when it is left to a default
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


def srwm_fused_recurrent(
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
    D = x.shape[-1]
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
