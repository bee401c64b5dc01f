"""Tolerances and comparison helpers shared by the op tests."""

from __future__ import annotations

import torch

FP32_RTOL = 1e-5  # fast path vs reference, fp32
FP32_RTOL_LONG = 1e-4  # sequences of 10k+ steps
BF16_RTOL = 2e-2


def rel_err(a: torch.Tensor, ref: torch.Tensor) -> float:
    """Relative RMS error RMS(a - ref) / RMS(ref)."""
    a, ref = a.double(), ref.double()
    return ((a - ref).pow(2).mean().sqrt() / ref.pow(2).mean().sqrt().clamp_min(1e-30)).item()


def assert_close(a, ref, rtol: float, what: str = "") -> None:
    err = rel_err(a, ref)
    assert err < rtol, f"{what}: relative error {err:.3g} >= {rtol:g}"


def assert_all_close(got, want, rtol: float, what: str) -> None:
    """:func:`assert_close` for each pair of two equally long sequences of tensors, shapes included."""
    for i, (a, b) in enumerate(zip(got, want, strict=True)):
        assert a.shape == b.shape, f"{what}[{i}]: shape {tuple(a.shape)} != {tuple(b.shape)}"
        assert_close(a, b, rtol, f"{what}[{i}]")


def grads(outputs, inputs, seed: int = 1):
    """Gradients of a random linear functional of all outputs (so every output matters)."""
    g = torch.Generator().manual_seed(seed)
    loss = sum((o * torch.randn(o.shape, generator=g, dtype=o.dtype)).sum() for o in outputs)
    return torch.autograd.grad(loss, inputs)
