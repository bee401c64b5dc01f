"""The Recurrent Delta Net's checkpointed form (``mode="checkpointed"``): memory-bounded backward.

The reference's steps run in spans of C = ``checkpoint_every`` steps under
:func:`torch.utils.checkpoint.checkpoint`: the forward keeps only each span's incoming state,
and the backward recomputes one span at a time: activation memory O(T/C*H*D^2 + C*H*D^2)
instead of the reference's O(T*H*D^2), for the reference's own steps.
"""

from __future__ import annotations

import torch
from torch.utils.checkpoint import checkpoint

from adaptmem.ops._state import RecurrentDeltaState
from adaptmem.ops.recurrent_delta_rule.reference import prepare, recurrent_delta_steps


def recurrent_delta_rule_checkpointed(
    q, k, v, beta, R_q, R_k, R_v, r_b, initial_state, reset, checkpoint_every: int
) -> tuple[torch.Tensor, RecurrentDeltaState]:
    """:func:`adaptmem.ops.recurrent_delta_rule` on checked inputs (``reset`` ``[B, T]`` bool or ``None``)."""
    T = q.shape[1]
    heads, rec, S, y = prepare(q, k, v, beta, R_q, R_k, R_v, r_b, initial_state)
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
