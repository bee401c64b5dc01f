"""Delta-rule op (DeltaNet): public entry point and backend dispatch."""

from __future__ import annotations

import torch

from adaptmem.ops._dispatch import resolve_qkv_backend
from adaptmem.ops._checks_qkv import check_qkv
from adaptmem.ops._state import check_reset
from adaptmem.ops.delta_rule.chunk import delta_rule_chunk
from adaptmem.ops.delta_rule.reference import delta_rule_reference
from adaptmem.utils.checks import check_choice, check_positive_int


def delta_rule(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    beta: torch.Tensor,
    *,
    initial_state: torch.Tensor | None = None,
    reset: torch.Tensor | None = None,
    mode: str = "chunk",
    chunk_size: int = 64,
    backend: str = "auto",
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""The delta rule (Schlag et al., ICML 2021): write, then read.

    .. math::
        S_t = S_{t-1} + \beta_t k_t^\top (v_t - k_t S_{t-1}), \qquad o_t = q_t S_t

    (``W_t = W_{t-1} + beta_t (v_t - W_{t-1} k_t) k_t^T, y_t = W_t q_t`` in column form.)

    Args:
        q, k: ``[B, T, H, Dk]`` (feature-mapped; keys should be normalised for stability).
        v: ``[B, T, H, Dv]``.
        beta: write strengths ``[B, T, H]`` (one per head and step).
        initial_state: ``S`` ``[B, H, Dk, Dv]``; zeros when ``None``. Receives gradients.
        reset: optional bool ``[B]`` or ``[B, T]``: zero that row's state before that step.
        mode: ``"chunk"`` (chunkwise-parallel WY form, any T) or ``"recurrent"`` (step loop);
            picks the PyTorch form, and fla's chunk or fused-recurrent kernel.
        chunk_size: chunk length C for the PyTorch ``mode="chunk"`` (capped at T).
        backend: ``"auto"`` (on CUDA: flash-linear-attention when installed and the call is
            supported, else our Triton recurrent kernel; on CPU: ``"torch"``), ``"torch"``,
            ``"fla"`` or ``"triton"`` (our fused recurrent kernel, any ``mode``). See
            :func:`adaptmem.ops._dispatch.resolve_qkv_backend`.

    Returns:
        ``(o [B, T, H, Dv], S_T [B, H, Dk, Dv])``; ``S_T`` in float32 (float64 for float64 inputs).
    """
    check_choice("delta_rule", "mode", mode, ("chunk", "recurrent"))
    check_positive_int("delta_rule", "chunk_size", chunk_size)
    B, T, _, _, _ = check_qkv("delta_rule", q, k, v, beta, initial_state)
    reset = check_reset("delta_rule", reset, B, T, q.device)
    backend = resolve_qkv_backend("delta_rule", backend, mode=mode, q=q, k=k, v=v, beta=beta,
                                  initial_state=initial_state, reset=reset)
    with torch.autocast(q.device.type, enabled=False):
        if backend == "fla":
            from adaptmem.ops._fla import run_fla

            return run_fla("delta_rule", mode, q, k, v, beta, initial_state)
        if backend == "triton":
            from adaptmem.ops._fused_recurrent import delta_rule_triton  # lazy: CPU never imports Triton

            return delta_rule_triton(q, k, v, beta, initial_state=initial_state, reset=reset)
        if mode == "recurrent":
            return delta_rule_reference(q, k, v, beta, initial_state=initial_state, reset=reset)
        return delta_rule_chunk(q, k, v, beta, initial_state=initial_state, reset=reset, chunk_size=chunk_size)
