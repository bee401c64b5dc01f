"""Linear attention (a sum of outer products) as a plain step loop: the specification (and ``mode="recurrent"``).

Katharopoulos et al., ICML 2020; in fast-weight form (Schlag et al., ICML 2021) with row
vectors, write then read::

    S <- S + k_t^T v_t          o_t = q_t S
    normalize=True:  z <- z + k_t,   o_t = q_t S / (q_t . z + eps)
"""

from __future__ import annotations

import torch

from adaptmem.ops import _checks
from adaptmem.ops._state import compute_dtype, to_heads
from adaptmem.utils.checks import check_float


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
    fn = "linear_attention_reference"
    check_float(fn, "eps", eps, lo=0.0)
    S0, z0 = _checks.check_linear_state(fn, initial_state, normalize)
    B, T, _, _, _ = _checks.check_qkv(fn, q, k, v, False, S0)
    return _reference_impl(q, k, v, S0, z0, normalize, _checks.check_reset(fn, reset, B, T, q.device), eps)


def _reference_impl(q, k, v, S0, z0, normalize: bool, reset, eps: float):
    """:func:`linear_attention_reference` on checked inputs (``reset`` ``[B, T]`` bool or ``None``)."""
    B, T, H, Dk = q.shape
    Dv = v.shape[-1]
    dtype = compute_dtype(q, k, v, S0)
    qh, kh, vh = to_heads(q, dtype), to_heads(k, dtype), to_heads(v, dtype)
    S = S0.to(dtype) if S0 is not None else qh.new_zeros(B, H, Dk, Dv)
    z = None
    if normalize:
        z = z0.to(dtype) if z0 is not None else qh.new_zeros(B, H, Dk)
    o, S, z = step_loop(qh, kh, vh, S, z, reset, eps)
    y = o.transpose(1, 2).to(v.dtype)
    return y, ((S, z) if normalize else S)


def step_loop(qh, kh, vh, S, z, reset, eps: float = 0.0):
    """The loop on head-first tensors: q, k ``[B, H, T, Dk]``, v ``[B, H, T, Dv]``, ``S``
    ``[B, H, Dk, Dv]``, ``z`` ``[B, H, Dk]`` (or ``None``: no normaliser), ``reset`` ``[B, T]``.

    Returns ``(o [B, H, T, Dv], S_T, z_T)``. The chunk form reruns chunks through it where it
    must match the loop's non-finite values exactly (:func:`adaptmem.ops._chunk.scan_chunks`).
    """
    outs = []
    for t in range(qh.shape[2]):
        if reset is not None:  # selected, not multiplied: a NaN before the reset stays there
            S = torch.where(reset[:, t, None, None, None], 0.0, S)
            if z is not None:
                z = torch.where(reset[:, t, None, None], 0.0, z)
        S = S + torch.einsum("bhk,bhv->bhkv", kh[:, :, t], vh[:, :, t])
        o = torch.einsum("bhk,bhkv->bhv", qh[:, :, t], S)
        if z is not None:
            z = z + kh[:, :, t]
            o = o / ((qh[:, :, t] * z).sum(-1, keepdim=True) + eps)
        outs.append(o)
    return torch.stack(outs, dim=2), S, z
