r"""Causal linear attention as a fast-weight memory (Katharopoulos et al., ICML 2020; Schlag et al., ICML 2021).

State ``S = W^T`` (``Dk x Dv``, row vectors), write then read::

    S <- S + k_t^T v_t          o_t = q_t S
    normalize=True:  z <- z + k_t,   o_t = q_t S / (q_t . z + eps)

- ``reference.py``: the step loop, the specification (``mode="recurrent"`` on ``"torch"``).
- ``chunk.py``: ``mode="chunk"`` on ``"torch"``: chunkwise parallel, resets inside chunks.
- ``fused_recurrent.py``: ``backend="triton"``: the fused recurrent kernel shared with the delta
  rule (:mod:`adaptmem.ops._fused_recurrent`), the normaliser as an extra value column.
- ``backend="fla"``: flash-linear-attention through :mod:`adaptmem.ops._fla`.

Math: ``docs/reference.md``.
"""

from __future__ import annotations

import torch

from adaptmem.ops import _checks, _dispatch
from adaptmem.ops.linear_attention.chunk import linear_attention_chunk
from adaptmem.ops.linear_attention.reference import _reference_impl, linear_attention_reference
from adaptmem.utils.checks import check_float, check_positive_int

__all__ = ["linear_attention", "linear_attention_reference"]


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
        backend: where it runs (the rules: :data:`adaptmem.ops._dispatch.TABLE`):

            - ``"auto"``: on CUDA, ``"fla"`` for the un-normalised, reset-free bfloat16/float16
              case with ``T >= H`` when installed and past its one-time check; else
              ``"triton"`` when installed; else (and always on CPU) ``"torch"``;
            - ``"torch"``: the PyTorch ``mode``, any device and dtype;
            - ``"fla"``: fla's chunk kernel; raises for the calls listed above as not its own;
            - ``"triton"``: our fused recurrent kernel, any ``mode``; CUDA tensors (or CPU ones
              under ``TRITON_INTERPRET=1``); float64 inputs and key dims above 256 fall back
              to ``"torch"`` with this ``mode`` and ``chunk_size``.

    Returns:
        ``(o [B, T, H, Dv], final_state)``; the state in float32 (float64 for float64 inputs).
    """
    mode, backend = _dispatch.check_mode_and_backend("linear_attention", mode, backend)
    check_positive_int("linear_attention", "chunk_size", chunk_size)
    check_float("linear_attention", "eps", eps, lo=0.0)
    S0, z0 = _checks.check_linear_state("linear_attention", initial_state, normalize)
    B, T, _, Dk, Dv = _checks.check_qkv("linear_attention", q, k, v, False, S0)
    reset = _checks.check_reset("linear_attention", reset, B, T, q.device)
    call = _dispatch.OpCall.of(
        "linear_attention", mode, (q, k, v), (S0, z0), key_dim=Dk, value_dim=Dv, reset=reset, normalize=normalize
    )
    backend = _dispatch.resolve_backend(call, backend).backend
    with torch.autocast(q.device.type, enabled=False):
        if backend == "fla":
            from adaptmem.ops._fla import run_fla

            return run_fla("linear_attention", mode, q, k, v, None, S0)
        if backend == "triton":
            from adaptmem.ops.linear_attention.fused_recurrent import linear_attention_fused_recurrent  # imports Triton

            return linear_attention_fused_recurrent(q, k, v, S0, z0, normalize, reset, eps)
        if mode == "recurrent":
            return _reference_impl(q, k, v, S0, z0, normalize, reset, eps)
        return linear_attention_chunk(q, k, v, S0, z0, normalize, reset, chunk_size, eps)
