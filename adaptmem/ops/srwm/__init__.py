r"""The self-referential weight matrix (SRWM; Irie, Schlag, Csordás, Schmidhuber, ICML 2022).

Per batch row and head, with row vectors and the fast weights *before* the step-t update
(read before write)::

    y_t = x_t W_y
    q_t = softmax(x_t W_q)      k_t = softmax(x_t W_k)      b_t = sigmoid(x_t w_b)  (4 rates)
    M  <- M + b_M * k_t^T (q_t M - k_t M)      for M in (W_y, W_q, W_k, w_b), rate b_M

q and k depend on the state, so there is no chunk form: every form loops over time.

- ``reference.py``: the step loop, the specification (``mode="reference"``: autograd through it).
- ``checkpointed.py``: ``mode="checkpointed"`` on ``backend="torch"``: a custom backward that
  keeps the fast weights every C steps and recomputes each chunk forwards.
- ``fused_recurrent.py``: ``mode="checkpointed"`` on ``backend="triton"``: the same strategy in
  fused Triton kernels.
- ``fused_cpu.py`` (kernels in ``fused_cpu_kernels.py``): ``mode="checkpointed"`` on
  ``backend="numba"``: the same strategy as one compiled loop over time per 8 sequences.

The packed forms work on ``x [N, T, D]`` and ``M = [W_y | W_q | W_k | w_b]`` ``[N, D, 3D + 4]``
with ``N = B * H``; :func:`srwm` packs, picks the form and unpacks. Math and backward strategy:
``docs/reference.md``.
"""

from __future__ import annotations

import importlib

import torch

from adaptmem.ops import _checks, _dispatch
from adaptmem.ops._state import SRWMWeights, compute_dtype
from adaptmem.ops.srwm.reference import _reference_impl, srwm_reference
from adaptmem.utils.checks import check_positive_int

# backend -> (module, function) of its packed form ``(x, M0, R, reset, C) -> (y, M_T)``, imported
# when first used (CPU never imports Triton; numba is imported by the kernels, on first call).
PACKED_FORMS = {
    "numba": ("fused_cpu", "srwm_fused_cpu"),
    "torch": ("checkpointed", "srwm_checkpointed"),
    "triton": ("fused_recurrent", "srwm_fused_recurrent"),
}

__all__ = ["SRWMWeights", "srwm", "srwm_reference"]


def srwm(
    x: torch.Tensor,
    W_y: torch.Tensor,
    W_q: torch.Tensor,
    W_k: torch.Tensor,
    w_b: torch.Tensor,
    *,
    reset: torch.Tensor | None = None,
    reset_to: SRWMWeights | tuple[torch.Tensor, ...] | None = None,
    mode: str = "checkpointed",
    backend: str = "auto",
    checkpoint_every: int = 32,
) -> tuple[torch.Tensor, SRWMWeights]:
    r"""Self-referential weight matrix (Irie et al., ICML 2022), per head, read before write.

    .. math::
        y_t = x_t W_y, \quad q_t = \mathrm{softmax}(x_t W_q), \quad k_t = \mathrm{softmax}(x_t W_k),
        \quad b_t = \sigma(x_t w_b) \\
        M \leftarrow M + b_M\, k_t^\top (q_t M - k_t M) \quad \text{for } M \in (W_y, W_q, W_k, w_b)

    Args:
        x: inputs ``[B, T, H, D]``.
        W_y, W_q, W_k: fast weights at the start of the sequence, ``[H, D, D]`` (shared over the
            batch) or ``[B, H, D, D]``.
        w_b: the rate weights, ``[H, D, 4]`` or ``[B, H, D, 4]``.
        reset: optional bool ``[B]`` or ``[B, T]``; where set, that row's fast weights are set
            to ``reset_to`` before the step is processed (episode boundaries).
        reset_to: the four weights to reset to (default: the starting weights).
        mode: ``"checkpointed"`` (memory-bounded custom backward) or ``"reference"`` (autograd
            through the step loop, :func:`srwm_reference`; it stores every step's weights).
        backend: where ``mode="checkpointed"`` runs (the rules: :data:`adaptmem.ops._dispatch.TABLE`):

            - ``"auto"``: ``"numba"`` on the CPU when numba is installed, ``"triton"`` on CUDA when
              Triton is installed, else ``"torch"``;
            - ``"numba"``: the fused CPU kernel (the ``numba`` extra), CPU tensors;
            - ``"torch"``: the PyTorch custom backward, any device and dtype;
            - ``"triton"``: fused kernels; CUDA tensors (or CPU ones under ``TRITON_INTERPRET=1``);
              float64 inputs and head dims above 128 fall back to ``"torch"``.

            ``mode="reference"`` always runs on ``"torch"``. ``backend="reference"`` is the old
            spelling of ``mode="reference"`` (deprecated).
        checkpoint_every: C, the backward's recomputation chunk: the forward keeps the fast
            weights every C steps, so activation memory is O(T*H*D + T/C*H*D^2).

    Returns:
        ``(y, state)``: ``y`` ``[B, T, H, D]`` in ``x``'s dtype, and the fast weights after the
        last step as :class:`SRWMWeights` of ``[B, H, D, D]`` (``w_b``: ``[B, H, D, 4]``) in
        float32 (float64 for float64 inputs). Gradients flow into ``x``, the starting weights
        and ``reset_to``.
    """
    mode, backend = _dispatch.check_mode_and_backend("srwm", mode, backend)
    check_positive_int("srwm", "checkpoint_every", checkpoint_every)
    weights = (W_y, W_q, W_k, w_b)
    B, T, H, D = _checks.check_srwm_inputs("srwm", x, weights, reset_to)
    reset = _checks.check_reset("srwm", reset, B, T, x.device)
    call = _dispatch.OpCall.of("srwm", mode, (x,), weights, key_dim=D, value_dim=D, reset=reset)
    backend = _dispatch.resolve_backend(call, backend).backend
    if mode == "reference":
        return _reference_impl(x, weights, reset, reset_to)
    module, name = PACKED_FORMS[backend]
    form = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    dtype = compute_dtype(x, *weights)
    with torch.autocast(x.device.type, enabled=False):
        M0 = _pack(weights, B, dtype)
        R = (
            _pack(reset_to, B, dtype)
            if (reset is not None and reset_to is not None)
            else (M0 if reset is not None else None)
        )
        xN = x.to(dtype).permute(0, 2, 1, 3).reshape(B * H, T, D)
        resetN = reset.repeat_interleave(H, dim=0) if reset is not None else None
        y, M_T = form(xN, M0, R, resetN, checkpoint_every)
    y = y.view(B, H, T, D).permute(0, 2, 1, 3).to(x.dtype)
    return y, SRWMWeights(*M_T.view(B, H, D, 3 * D + 4).split([D, D, D, 4], dim=-1))


def _pack(weights, B: int, dtype: torch.dtype) -> torch.Tensor:
    """``[W_y | W_q | W_k | w_b]`` as ``[B*H, D, 3D+4]``."""
    ws = [w.to(dtype) for w in weights]
    if any(w.dim() == 4 for w in ws):
        ws = [w.expand(B, *w.shape[-3:]) for w in ws]
    M = torch.cat(ws, dim=-1)
    if M.dim() == 3:
        M = M.expand(B, *M.shape)
    return M.reshape(-1, *M.shape[-2:])
