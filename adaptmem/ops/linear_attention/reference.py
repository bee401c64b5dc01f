"""Linear attention (a sum of outer products) as a plain step loop: the specification.

Katharopoulos et al., ICML 2020; in fast-weight form (Schlag et al., ICML 2021) with row
vectors, write then read::

    S <- S + k_t^T v_t          o_t = q_t S
    normalize=True:  z <- z + k_t,   o_t = q_t S / (q_t . z + eps)
"""

from __future__ import annotations

import torch

from adaptmem.ops._checks_qkv import check_qkv, to_heads
from adaptmem.ops._state import check_reset, compute_dtype


def linear_attention_reference(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    initial_state=None,
    normalize: bool = False,
    reset: torch.Tensor | None = None,
    eps: float = 1e-6,
):
    """Step-loop linear attention; same contract as :func:`adaptmem.ops.linear_attention`."""
    S0, z0 = split_state("linear_attention", initial_state, normalize)
    B, T, H, Dk, Dv = check_qkv("linear_attention", q, k, v, None, S0)
    reset = check_reset("linear_attention", reset, B, T, q.device)
    dtype = compute_dtype(q, k, v, S0)
    qh, kh, vh = to_heads(q, dtype), to_heads(k, dtype), to_heads(v, dtype)
    S = S0.to(dtype) if S0 is not None else qh.new_zeros(B, H, Dk, Dv)
    z = z0.to(dtype) if z0 is not None else qh.new_zeros(B, H, Dk)
    outs = []
    for t in range(T):
        if reset is not None:
            S = torch.where(reset[:, t, None, None, None], 0.0, S)
            z = torch.where(reset[:, t, None, None], 0.0, z)
        S = S + torch.einsum("bhk,bhv->bhkv", kh[:, :, t], vh[:, :, t])
        o = torch.einsum("bhk,bhkv->bhv", qh[:, :, t], S)
        if normalize:
            z = z + kh[:, :, t]
            o = o / ((qh[:, :, t] * z).sum(-1, keepdim=True) + eps)
        outs.append(o)
    y = torch.stack(outs, dim=1).to(v.dtype)
    return y, ((S, z) if normalize else S)


def split_state(fn: str, state, normalize: bool):
    """``state`` is ``S`` without normalisation and ``(S, z)`` with it."""
    if state is None:
        return None, None
    if normalize:
        if not (isinstance(state, (tuple, list)) and len(state) == 2):
            raise TypeError(f"{fn}: with normalize=True, initial_state must be a tuple (S, z), got {type(state).__name__}")
        S, z = state
        if not isinstance(z, torch.Tensor) or not isinstance(S, torch.Tensor) or z.shape != S.shape[:-1]:
            raise ValueError(
                f"{fn}: initial_state z must be [B, H, Dk] matching S [B, H, Dk, Dv], got "
                f"{getattr(z, 'shape', None)} and {getattr(S, 'shape', None)}"
            )
        return S, z
    if isinstance(state, (tuple, list)):
        raise TypeError(f"{fn}: with normalize=False, initial_state must be a tensor S [B, H, Dk, Dv], got a tuple")
    return state, None
