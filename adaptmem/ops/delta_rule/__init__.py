r"""The delta rule (DeltaNet; Schlag, Irie, Schmidhuber, ICML 2021): write, then read.

State ``S`` (``Dk x Dv``, row vectors), one scalar rate ``beta_t`` per head and step::

    u_t = beta_t (v_t - k_t S)      S <- S + k_t^T u_t      o_t = q_t S

- ``reference.py``: the step loop, the specification (``mode="recurrent"`` on ``"torch"``).
- ``chunk.py``: ``mode="chunk"`` on ``"torch"``: the chunkwise-parallel WY form (Yang et al.,
  NeurIPS 2024), any T, resets inside chunks.
- ``backend="triton"``: the fused recurrent kernel shared with linear attention,
  :mod:`adaptmem.ops._fused_recurrent`; ``backend="fla"``: flash-linear-attention through
  :mod:`adaptmem.ops._fla`.

Math, the WY form and its padding: ``docs/reference.md``.
"""

from __future__ import annotations

import torch

from adaptmem.ops import _checks, _dispatch
from adaptmem.ops.delta_rule.chunk import delta_rule_chunk
from adaptmem.ops.delta_rule.reference import _reference_impl, delta_rule_reference
from adaptmem.utils.checks import check_positive_int

__all__ = ["delta_rule", "delta_rule_reference"]


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
        backend: where it runs (the rules: :data:`adaptmem.ops._dispatch.TABLE`):

            - ``"auto"``: on CUDA, ``"fla"`` when installed, able to run the call and past its
              one-time check against the reference; else ``"triton"`` when installed; else
              (and always on CPU) ``"torch"``;
            - ``"torch"``: the PyTorch ``mode``, any device and dtype;
            - ``"fla"``: flash-linear-attention's ``mode`` kernel; raises for calls it cannot
              run (CPU, resets, float64, mixed dtypes, float32 with ``mode="chunk"``, head
              dims above 256);
            - ``"triton"``: our fused recurrent kernel, any ``mode``; CUDA tensors (or CPU ones
              under ``TRITON_INTERPRET=1``); float64 inputs and key dims above 256 fall back
              to ``"torch"`` with this ``mode`` and ``chunk_size``.

    Returns:
        ``(o [B, T, H, Dv], S_T [B, H, Dk, Dv])``; ``S_T`` in float32 (float64 for float64 inputs).
    """
    mode, backend = _dispatch.check_mode_and_backend("delta_rule", mode, backend)
    check_positive_int("delta_rule", "chunk_size", chunk_size)
    B, T, _, Dk, Dv = _checks.check_qkv("delta_rule", q, k, v, beta, initial_state)
    reset = _checks.check_reset("delta_rule", reset, B, T, q.device)
    call = _dispatch.OpCall.of(
        "delta_rule", mode, (q, k, v, beta), (initial_state,), key_dim=Dk, value_dim=Dv, reset=reset
    )
    backend = _dispatch.resolve_backend(call, backend).backend
    with torch.autocast(q.device.type, enabled=False):
        if backend == "fla":
            from adaptmem.ops._fla import run_fla

            return run_fla("delta_rule", mode, q, k, v, beta, initial_state)
        if backend == "triton":
            from adaptmem.ops._fused_recurrent import fused_recurrent  # lazy: CPU never imports Triton

            return fused_recurrent(q, k, v, beta, initial_state, reset)
        if mode == "recurrent":
            return _reference_impl(q, k, v, beta, initial_state, reset)
        return delta_rule_chunk(q, k, v, beta, initial_state, reset, chunk_size)
