"""Linear attention op: public entry point."""

from __future__ import annotations

import torch

from adaptmem.ops._dispatch import resolve_qkv_backend
from adaptmem.ops._checks_qkv import check_qkv
from adaptmem.ops._state import check_reset
from adaptmem.ops.linear_attention.chunk import linear_attention_chunk
from adaptmem.ops.linear_attention.reference import linear_attention_reference, split_state
from adaptmem.utils.checks import check_choice, check_positive_int


def linear_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    initial_state: torch.Tensor | tuple[torch.Tensor, torch.Tensor] | None = None,
    normalize: bool = False,
    reset: torch.Tensor | None = None,
    mode: str = "chunk",
    chunk_size: int = 64,
    eps: float = 1e-6,
    backend: str = "auto",
):
    r"""Causal linear attention as a fast-weight memory: ``W += v k^T``, ``y = W q``.

    In row-vector form with state ``S = W^T`` (``Dk x Dv``), write then read:

    .. math::
        S_t = S_{t-1} + k_t^\top v_t, \qquad o_t = q_t S_t
        \qquad (\text{normalize: } z_t = z_{t-1} + k_t,\ o_t = q_t S_t / (q_t \cdot z_t + \epsilon))

    Args:
        q, k: ``[B, T, H, Dk]`` (already feature-mapped, e.g. ELU+1).
        v: ``[B, T, H, Dv]``.
        initial_state: ``S`` ``[B, H, Dk, Dv]``, or ``(S, z)`` with ``z`` ``[B, H, Dk]`` when
            ``normalize``; zeros when ``None``.
        normalize: divide by ``q . z`` (Katharopoulos et al.).
        reset: optional bool ``[B]`` or ``[B, T]``: zero that row's state before that step.
        mode: ``"chunk"`` (chunkwise parallel) or ``"recurrent"`` (step loop).
        chunk_size: chunk length C for the PyTorch ``mode="chunk"``.
        backend: ``"auto"`` (on CUDA: flash-linear-attention for the un-normalised, reset-free
            bfloat16/float16 case, else our Triton recurrent kernel; on CPU: ``"torch"``),
            ``"torch"``, ``"fla"`` or ``"triton"`` (our fused recurrent kernel, any ``mode``).

    Returns:
        ``(o [B, T, H, Dv], final_state)``; the state in float32 (float64 for float64 inputs).
    """
    check_choice("linear_attention", "mode", mode, ("chunk", "recurrent"))
    check_positive_int("linear_attention", "chunk_size", chunk_size)
    S0, _ = split_state("linear_attention", initial_state, normalize)
    B, T, _, _, _ = check_qkv("linear_attention", q, k, v, None, S0)
    reset = check_reset("linear_attention", reset, B, T, q.device)
    backend = resolve_qkv_backend("linear_attention", backend, mode=mode, q=q, k=k, v=v,
                                  initial_state=initial_state, reset=reset, normalize=normalize)
    with torch.autocast(q.device.type, enabled=False):
        if backend == "fla":
            from adaptmem.ops._fla import run_fla

            return run_fla("linear_attention", mode, q, k, v, None, initial_state)
        if backend == "triton":
            from adaptmem.ops._fused_recurrent import linear_attention_triton  # lazy: CPU never imports Triton

            return linear_attention_triton(q, k, v, initial_state=initial_state, normalize=normalize,
                                           reset=reset, eps=eps)
        if mode == "recurrent":
            return linear_attention_reference(q, k, v, initial_state=initial_state, normalize=normalize,
                                              reset=reset, eps=eps)
        return linear_attention_chunk(q, k, v, initial_state=initial_state, normalize=normalize,
                                      reset=reset, chunk_size=chunk_size, eps=eps)
