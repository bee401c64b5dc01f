"""Backend choice of :func:`delta_rule` and :func:`linear_attention`: ``auto``, ``torch``, ``fla``, ``triton``."""

from __future__ import annotations

import importlib.util

import torch

from adaptmem.ops import _fla as fla_backend
from adaptmem.utils.checks import check_choice

QKV_BACKENDS = ("auto", "torch", "fla", "triton")


def triton_available() -> bool:
    """Whether Triton is installed (found without importing it)."""
    return importlib.util.find_spec("triton") is not None


def resolve_qkv_backend(fn: str, backend: str, *, mode: str, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                        beta: torch.Tensor | None = None, initial_state=None, reset=None,
                        normalize: bool = False) -> str:
    """The backend that runs this call.

    ``"auto"``: on CUDA, flash-linear-attention when it is installed, supports the call (see
    :func:`adaptmem.ops._fla.fla_unsupported_reason`) and passed its one-time check
    against our reference; else our Triton recurrent kernel when Triton is installed; else
    (and always on CPU, and for float64) the PyTorch ``mode``. ``"fla"`` raises when fla
    cannot run the call; ``"triton"`` needs CUDA tensors (or ``TRITON_INTERPRET=1``).
    """
    check_choice(fn, "backend", backend, QKV_BACKENDS)
    op = "delta_rule" if beta is not None else "linear_attention"
    if backend == "fla":
        if not fla_backend.fla_available():
            raise ImportError(f"{fn}: backend='fla' needs flash-linear-attention: pip install 'adaptmem[fla]'")
        reason = fla_backend.fla_unsupported_reason(op, mode=mode, q=q, k=k, v=v, beta=beta,
                                                    initial_state=initial_state, reset=reset, normalize=normalize)
        if reason is not None:
            raise ValueError(f"{fn}: backend='fla' cannot run this call: {reason}; use backend='triton' or 'auto'")
        return "fla"
    if backend != "auto":
        return backend
    if q.device.type != "cuda" or any(t is not None and t.dtype == torch.float64 for t in (q, k, v, beta)):
        return "torch"
    if fla_backend.fla_available() and fla_backend.fla_unsupported_reason(
            op, mode=mode, q=q, k=k, v=v, beta=beta, initial_state=initial_state, reset=reset,
            normalize=normalize) is None:
        if fla_backend.fla_passes_check(op, mode, q.dtype, q.shape[-1], v.shape[-1], str(q.device)):
            return "fla"
    if triton_available():
        return "triton"
    return "torch"
