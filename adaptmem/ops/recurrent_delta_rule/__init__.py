"""Recurrent Delta Net op: public entry point with a memory-bounded backward."""

from __future__ import annotations

import torch
from torch.utils.checkpoint import checkpoint

from adaptmem.ops._state import check_reset, compute_dtype
from adaptmem.ops.recurrent_delta_rule.reference import (
    RecurrentDeltaState,
    check_recurrent_delta_inputs,
    prepare,
    recurrent_delta_rule_reference,
    recurrent_delta_steps,
)
from adaptmem.utils.checks import check_choice, check_positive_int


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
    mode: str = "checkpoint",
    checkpoint_every: int = 64,
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
        mode: ``"checkpoint"`` (recompute each span of ``checkpoint_every`` steps in the
            backward: activation memory O(T/C*H*D^2 + C*H*D^2)) or ``"recurrent"``
            (autograd through the whole loop).

    Returns:
        ``(y [B, T, H, D], RecurrentDeltaState(S, y_T))``.
    """
    fn = "recurrent_delta_rule"
    check_choice(fn, "mode", mode, ("checkpoint", "recurrent"))
    check_positive_int(fn, "checkpoint_every", checkpoint_every)
    with torch.autocast(q.device.type, enabled=False):
        if mode == "recurrent":
            return recurrent_delta_rule_reference(q, k, v, beta, R_q, R_k, R_v, r_b,
                                                  initial_state=initial_state, reset=reset)
        B, T, H, D = check_recurrent_delta_inputs(fn, q, k, v, beta, R_q, R_k, R_v, r_b, initial_state)
        reset = check_reset(fn, reset, B, T, q.device)
        heads, rec, S, y = prepare(q, k, v, beta, R_q, R_k, R_v, r_b, initial_state, dtype=compute_dtype(q, k, v, beta, R_q))
        outs = []
        for t0 in range(0, T, checkpoint_every):
            span = [h[:, :, t0 : t0 + checkpoint_every] for h in heads]
            r = reset[:, t0 : t0 + checkpoint_every] if reset is not None else None
            if torch.is_grad_enabled():
                out, S, y = checkpoint(recurrent_delta_steps, *span, *rec, S, y, r, use_reentrant=False)
            else:
                out, S, y = recurrent_delta_steps(*span, *rec, S, y, r)
            outs.append(out)
        return torch.cat(outs, dim=2).transpose(1, 2).to(v.dtype), RecurrentDeltaState(S, y)
