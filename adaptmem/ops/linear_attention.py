"""Linear attention op: public entry point."""

from __future__ import annotations

import torch

from adaptmem.ops.linear_attention_chunk import linear_attention_chunk
from adaptmem.ops.linear_attention_reference import linear_attention_reference
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
        chunk_size: chunk length C for ``mode="chunk"``.

    Returns:
        ``(o [B, T, H, Dv], final_state)``; the state in float32 (float64 for float64 inputs).
    """
    check_choice("linear_attention", "mode", mode, ("chunk", "recurrent"))
    check_positive_int("linear_attention", "chunk_size", chunk_size)
    with torch.autocast(q.device.type, enabled=False):
        if mode == "recurrent":
            return linear_attention_reference(q, k, v, initial_state=initial_state, normalize=normalize,
                                              reset=reset, eps=eps)
        return linear_attention_chunk(q, k, v, initial_state=initial_state, normalize=normalize,
                                      reset=reset, chunk_size=chunk_size, eps=eps)
