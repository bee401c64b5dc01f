r"""The Recurrent Delta Net (Irie, Schlag, Csordás, Schmidhuber, NeurIPS 2021).

The delta rule whose queries, keys, values and rates also read the previous output through
``tanh``; per head::

    h   = tanh(y_{t-1})
    q_t = softmax(q_in_t + h R_q)     k_t = softmax(k_in_t + h R_k)
    v_t = v_in_t + h R_v              beta_t = sigmoid(beta_in_t + h . r_b)
    S  <- S + beta_t k_t^T (v_t - k_t S)          y_t = q_t S

q and k depend on the previous output, so there is no chunk form.

- ``reference.py``: the step loop, the specification (``mode="reference"``: autograd through it).
- ``checkpointed.py``: ``mode="checkpointed"`` on ``backend="torch"``: the same steps,
  recomputed span by span in the backward.
- ``fused_cpu.py`` (kernels in ``fused_cpu_kernels.py``): ``mode="checkpointed"`` on
  ``backend="numba"``: one compiled loop over time per 8 sequences, states checkpointed every C
  steps and recomputed forwards in the backward.

Math: ``docs/reference.md``.
"""

from __future__ import annotations

import torch

from adaptmem.ops import _checks, _dispatch
from adaptmem.ops._state import RecurrentDeltaState
from adaptmem.ops.recurrent_delta_rule.checkpointed import recurrent_delta_rule_checkpointed
from adaptmem.ops.recurrent_delta_rule.reference import _reference_impl, recurrent_delta_rule_reference
from adaptmem.utils.checks import check_positive_int

__all__ = ["RecurrentDeltaState", "recurrent_delta_rule", "recurrent_delta_rule_reference"]


def recurrent_delta_rule(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    beta: torch.Tensor,
    R_q: torch.Tensor,
    R_k: torch.Tensor,
    R_v: torch.Tensor,
    r_b: torch.Tensor,
    *,
    initial_state: RecurrentDeltaState | tuple[torch.Tensor, torch.Tensor] | None = None,
    reset: torch.Tensor | None = None,
    mode: str = "checkpointed",
    checkpoint_every: int = 64,
    backend: str = "auto",
) -> tuple[torch.Tensor, RecurrentDeltaState]:
    r"""Recurrent Delta Net (Irie et al., NeurIPS 2021): q, k, v, beta also read tanh(y_{t-1}).

    .. math::
        h = \tanh(y_{t-1}),\ q_t = \mathrm{softmax}(q^{in}_t + h R_q),\
        k_t = \mathrm{softmax}(k^{in}_t + h R_k),\ v_t = v^{in}_t + h R_v,\
        \beta_t = \sigma(\beta^{in}_t + h \cdot r_b) \\
        S_t = S_{t-1} + \beta_t k_t^\top (v_t - k_t S_{t-1}),\qquad y_t = q_t S_t

    Strictly sequential (q and k depend on the previous output), so there is no chunk form.

    Args:
        q, k, v: input projections before the recurrent term, ``[B, T, H, D]``.
        beta: ``[B, T, H]`` pre-sigmoid write strengths.
        R_q, R_k, R_v: recurrent weights ``[H, D, D]``; r_b: ``[H, D]``.
        initial_state: ``(S [B, H, D, D], y [B, H, D])``; zeros when ``None``.
        reset: optional bool ``[B]`` or ``[B, T]``: zero that row's S and y before that step.
        mode: ``"checkpointed"`` (recompute each span of ``checkpoint_every`` steps in the
            backward: activation memory O(T/C*H*D^2 + C*H*D^2)) or ``"reference"`` (autograd
            through the whole loop). ``"checkpoint"`` and ``"recurrent"`` are the old
            spellings (deprecated).
        backend: where ``mode="checkpointed"`` runs: ``"auto"`` (``"numba"`` on the CPU when numba
            is installed, else ``"torch"``), ``"numba"`` (the fused CPU kernel, CPU tensors,
            the ``numba`` extra) or ``"torch"`` (any device and dtype).

    Returns:
        ``(y [B, T, H, D], RecurrentDeltaState(S, y_T))``.
    """
    fn = "recurrent_delta_rule"
    mode, backend = _dispatch.check_mode_and_backend(fn, mode, backend)
    check_positive_int(fn, "checkpoint_every", checkpoint_every)
    B, T, H, D = _checks.check_recurrent_delta_inputs(fn, q, k, v, beta, R_q, R_k, R_v, r_b, initial_state)
    reset = _checks.check_reset(fn, reset, B, T, q.device)
    state = tuple(initial_state) if initial_state is not None else ()
    backend = _dispatch.resolve_backend(
        _dispatch.OpCall.of(
            fn, mode, (q, k, v, beta), (R_q, R_k, R_v, r_b, *state), key_dim=D, value_dim=D, reset=reset
        ),
        backend,
    ).backend
    with torch.autocast(q.device.type, enabled=False):
        if mode == "reference":
            return _reference_impl(q, k, v, beta, R_q, R_k, R_v, r_b, initial_state, reset)
        form = recurrent_delta_rule_checkpointed
        if backend == "numba":
            from adaptmem.ops.recurrent_delta_rule.fused_cpu import recurrent_delta_rule_fused_cpu as form
        return form(q, k, v, beta, R_q, R_k, R_v, r_b, initial_state, reset, checkpoint_every)
