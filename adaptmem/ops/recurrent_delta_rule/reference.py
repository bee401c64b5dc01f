"""The Recurrent Delta Net's recurrence as a plain step loop: the specification.

Irie, Schlag, Csordás, Schmidhuber, "Going Beyond Linear Transformers with Recurrent Fast
Weight Programmers", NeurIPS 2021. The slow projections of the input (``q_in = x W_q`` etc.)
are given; per head the previous output feeds back through ``tanh``::

    h   = tanh(y_{t-1})
    q_t = softmax(q_in_t + h R_q)     k_t = softmax(k_in_t + h R_k)
    v_t = v_in_t + h R_v              beta_t = sigmoid(beta_in_t + h . r_b)
    S  <- S + beta_t k_t^T (v_t - k_t S)          y_t = q_t S
"""

from __future__ import annotations

import torch

from adaptmem.ops import _checks
from adaptmem.ops._state import RecurrentDeltaState, compute_dtype


def recurrent_delta_steps(q, k, v, beta, R_q, R_k, R_v, r_b, S, y, reset):
    """Run the steps of one span. Inputs ``[B, H, L, ...]`` in the compute dtype; ``reset``
    ``[B, L]`` bool or ``None``. Returns ``(outputs [B, H, L, D], S, y)``."""
    D = q.shape[-1]
    R = torch.cat((R_q, R_k, R_v, r_b[..., None]), dim=-1)  # all four feedback maps in one matmul
    outs = []
    for t in range(q.shape[2]):
        if reset is not None:
            S = torch.where(reset[:, t, None, None, None], 0.0, S)
            y = torch.where(reset[:, t, None, None], 0.0, y)
        fb_q, fb_k, fb_v, fb_b = (torch.tanh(y).unsqueeze(-2) @ R).squeeze(-2).split([D, D, D, 1], dim=-1)
        q_t = torch.softmax(q[:, :, t] + fb_q, dim=-1)
        k_t = torch.softmax(k[:, :, t] + fb_k, dim=-1)
        v_t = v[:, :, t] + fb_v
        b_t = torch.sigmoid(beta[:, :, t, None] + fb_b)  # [B, H, 1]
        u = b_t * (v_t - (k_t.unsqueeze(-2) @ S).squeeze(-2))
        S = S + k_t.unsqueeze(-1) * u.unsqueeze(-2)
        y = (q_t.unsqueeze(-2) @ S).squeeze(-2)
        outs.append(y)
    return torch.stack(outs, dim=2), S, y


def prepare(q, k, v, beta, R_q, R_k, R_v, r_b, initial_state):
    """Inputs as ``[B, H, T, ...]`` and the recurrent weights in the compute dtype, and the start state."""
    dtype = compute_dtype(q, k, v, beta, R_q)
    B, T, H, D = q.shape
    heads = [t.to(dtype).transpose(1, 2) for t in (q, k, v, beta)]
    rec = [t.to(dtype) for t in (R_q, R_k, R_v, r_b)]
    if initial_state is None:
        S, y = heads[0].new_zeros(B, H, D, D), heads[0].new_zeros(B, H, D)
    else:
        S, y = initial_state[0].to(dtype), initial_state[1].to(dtype)
    return heads, rec, S, y


def recurrent_delta_rule_reference(q, k, v, beta, R_q, R_k, R_v, r_b, *, initial_state=None, reset=None):
    """Step-loop Recurrent Delta Net; same contract as :func:`adaptmem.ops.recurrent_delta_rule`."""
    fn = "recurrent_delta_rule_reference"
    B, T, _, _ = _checks.check_recurrent_delta_inputs(fn, q, k, v, beta, R_q, R_k, R_v, r_b, initial_state)
    reset = _checks.check_reset(fn, reset, B, T, q.device)
    return _reference_impl(q, k, v, beta, R_q, R_k, R_v, r_b, initial_state, reset)


def _reference_impl(q, k, v, beta, R_q, R_k, R_v, r_b, initial_state, reset):
    """:func:`recurrent_delta_rule_reference` on checked inputs (``reset`` ``[B, T]`` bool or ``None``).

    Returns ``(y [B, T, H, D], RecurrentDeltaState)``.
    """
    heads, rec, S, y = prepare(q, k, v, beta, R_q, R_k, R_v, r_b, initial_state)
    out, S, y = recurrent_delta_steps(*heads, *rec, S, y, reset)
    return out.transpose(1, 2).to(v.dtype), RecurrentDeltaState(S, y)
