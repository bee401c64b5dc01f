"""The self-referential weight matrix (SRWM) op: public entry point and backend dispatch."""

from __future__ import annotations

import torch

from adaptmem.ops._state import check_reset, compute_dtype
from adaptmem.ops._checks import SRWMWeights, check_srwm_inputs
from adaptmem.ops.srwm.reference import srwm_reference
from adaptmem.ops.srwm.checkpointed import srwm_torch
from adaptmem.utils.checks import check_choice, check_positive_int

BACKENDS = ("auto", "torch", "reference", "triton")


def resolve_srwm_backend(backend: str, device: torch.device) -> str:
    """``"auto"`` means the Triton kernel on CUDA when Triton imports, else ``"torch"``."""
    check_choice("srwm", "backend", backend, BACKENDS)
    if backend != "auto":
        return backend
    if device.type == "cuda":
        try:
            import triton  # noqa: F401

            return "triton"
        except ImportError:
            pass
    return "torch"


def srwm(
    x: torch.Tensor,
    W_y: torch.Tensor,
    W_q: torch.Tensor,
    W_k: torch.Tensor,
    w_b: torch.Tensor,
    *,
    reset: torch.Tensor | None = None,
    reset_to: SRWMWeights | tuple[torch.Tensor, ...] | None = None,
    backend: str = "auto",
    checkpoint_every: int = 32,
) -> tuple[torch.Tensor, SRWMWeights]:
    r"""Self-referential weight matrix (Irie et al., ICML 2022), per head, read before write.

    .. math::
        y_t = x_t W_y, \quad q_t = \mathrm{softmax}(x_t W_q), \quad k_t = \mathrm{softmax}(x_t W_k),
        \quad b_t = \sigma(x_t w_b) \\
        M \leftarrow M + b_M\, k_t^\top (q_t M - k_t M) \quad \text{for } M \in (W_y, W_q, W_k, w_b)

    Args:
        x: inputs ``[B, T, H, D]``.
        W_y, W_q, W_k: fast weights at the start of the sequence, ``[H, D, D]`` (shared over the
            batch) or ``[B, H, D, D]``.
        w_b: the rate weights, ``[H, D, 4]`` or ``[B, H, D, 4]``.
        reset: optional bool ``[B]`` or ``[B, T]``; where set, that row's fast weights are set
            to ``reset_to`` before the step is processed (episode boundaries).
        reset_to: the four weights to reset to (default: the starting weights).
        backend: ``"auto"`` (Triton on CUDA, else ``"torch"``), ``"torch"`` (memory-efficient
            custom backward), ``"reference"`` (autograd through the step loop) or ``"triton"``.
        checkpoint_every: C, the backward's recomputation chunk: the forward keeps the fast
            weights every C steps, so activation memory is O(T*H*D + T/C*H*D^2).

    Returns:
        ``(y, state)``: ``y`` ``[B, T, H, D]`` in ``x``'s dtype, and the fast weights after the
        last step as :class:`SRWMWeights` of ``[B, H, D, D]`` (``w_b``: ``[B, H, D, 4]``) in
        float32 (float64 for float64 inputs). Gradients flow into ``x``, the starting weights
        and ``reset_to``.
    """
    weights = (W_y, W_q, W_k, w_b)
    B, T, H, D = check_srwm_inputs("srwm", x, weights, reset_to)
    reset = check_reset("srwm", reset, B, T, x.device)
    check_positive_int("srwm", "checkpoint_every", checkpoint_every)
    backend = resolve_srwm_backend(backend, x.device)
    if backend == "reference":
        return srwm_reference(x, *weights, reset=reset, reset_to=reset_to)
    dtype = compute_dtype(x, *weights)
    with torch.autocast(x.device.type, enabled=False):
        M0 = _pack(weights, B, dtype)
        R = _pack(reset_to, B, dtype) if (reset is not None and reset_to is not None) else (
            M0 if reset is not None else None)
        xN = x.to(dtype).permute(0, 2, 1, 3).reshape(B * H, T, D)
        resetN = reset.repeat_interleave(H, dim=0) if reset is not None else None
        if backend == "triton":
            from adaptmem.ops.srwm.fused_recurrent import srwm_triton  # lazy: CPU never imports Triton

            y, M_T = srwm_triton(xN, M0, R, resetN, checkpoint_every)
        else:
            y, M_T = srwm_torch(xN, M0, R, resetN, checkpoint_every)
    y = y.view(B, H, T, D).permute(0, 2, 1, 3).to(x.dtype)
    return y, SRWMWeights(*M_T.view(B, H, D, 3 * D + 4).split([D, D, D, 4], dim=-1))


def _pack(weights, B: int, dtype: torch.dtype) -> torch.Tensor:
    """``[W_y | W_q | W_k | w_b]`` as ``[B*H, D, 3D+4]``."""
    ws = [w.to(dtype) for w in weights]
    if any(w.dim() == 4 for w in ws):
        ws = [w.expand(B, *w.shape[-3:]) for w in ws]
    M = torch.cat(ws, dim=-1)
    if M.dim() == 3:
        M = M.expand(B, *M.shape)
    return M.reshape(-1, *M.shape[-2:])
