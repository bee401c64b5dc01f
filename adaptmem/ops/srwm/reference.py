"""The self-referential weight matrix as a plain step loop: the specification.

Irie, Schlag, Csordás, Schmidhuber, "A Modern Self-Referential Weight Matrix That Learns to
Modify Itself", ICML 2022. Per batch row and head, with row vectors and the fast weights
*before* the step-t update (read before write)::

    y_t = x_t W_y
    q_t = softmax(x_t W_q)      k_t = softmax(x_t W_k)      b_t = sigmoid(x_t w_b)  (4 rates)
    M  <- M + b_M * k_t^T (q_t M - k_t M)      for M in (W_y, W_q, W_k, w_b), rate b_M

Autograd through this loop is exact but stores every step's fast weights; use
:func:`adaptmem.ops.srwm` for the memory-efficient version.
"""

from __future__ import annotations

import torch

from adaptmem.ops import _checks
from adaptmem.ops._state import SRWMWeights, compute_dtype


def srwm_reference(
    x: torch.Tensor,
    W_y: torch.Tensor,
    W_q: torch.Tensor,
    W_k: torch.Tensor,
    w_b: torch.Tensor,
    *,
    reset: torch.Tensor | None = None,
    reset_to: SRWMWeights | None = None,
) -> tuple[torch.Tensor, SRWMWeights]:
    """Step-loop SRWM; same contract as :func:`adaptmem.ops.srwm`."""
    weights = (W_y, W_q, W_k, w_b)
    B, T, _, _ = _checks.check_srwm_inputs("srwm_reference", x, weights, reset_to)
    return _reference_impl(x, weights, _checks.check_reset("srwm_reference", reset, B, T, x.device), reset_to)


def _reference_impl(x, weights, reset, reset_to) -> tuple[torch.Tensor, SRWMWeights]:
    """:func:`srwm_reference` on checked inputs (``reset`` ``[B, T]`` bool or ``None``)."""
    B, T = x.shape[:2]
    dtype = compute_dtype(x, *weights)

    def batched(ws):
        return [w.to(dtype).expand(B, *w.shape[-3:]) if w.dim() == 3 else w.to(dtype) for w in ws]

    Ms = batched(weights)
    Rs = batched(reset_to) if reset_to is not None else list(Ms)
    xs = x.to(dtype)
    ys = []
    for t in range(T):
        if reset is not None:
            r = reset[:, t, None, None, None]
            Ms = [torch.where(r, R, M) for R, M in zip(Rs, Ms)]
        W_y, W_q, W_k, w_b = Ms
        x_t = xs[:, t]  # [B, H, D]
        ys.append(torch.einsum("bhd,bhde->bhe", x_t, W_y))
        q = torch.softmax(torch.einsum("bhd,bhde->bhe", x_t, W_q), dim=-1)
        k = torch.softmax(torch.einsum("bhd,bhde->bhe", x_t, W_k), dim=-1)
        b = torch.sigmoid(torch.einsum("bhd,bhde->bhe", x_t, w_b))  # [B, H, 4]
        new = []
        for i, M in enumerate(Ms):
            diff = torch.einsum("bhd,bhde->bhe", q, M) - torch.einsum("bhd,bhde->bhe", k, M)
            new.append(M + b[..., i, None, None] * torch.einsum("bhd,bhe->bhde", k, diff))
        Ms = new
    y = torch.stack(ys, dim=1).to(x.dtype)
    return y, SRWMWeights(*Ms)
