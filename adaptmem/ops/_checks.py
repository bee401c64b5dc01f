"""Input validation and the state container shared by the SRWM implementations."""

from __future__ import annotations

from typing import NamedTuple

import torch

from adaptmem.utils.checks import check_floating, check_same_device, fmt_shape


class SRWMWeights(NamedTuple):
    """The four fast weights of an SRWM: ``W_y, W_q, W_k`` [.., H, D, D] and ``w_b`` [.., H, D, 4]."""

    W_y: torch.Tensor
    W_q: torch.Tensor
    W_k: torch.Tensor
    w_b: torch.Tensor


_NAMES = ("W_y", "W_q", "W_k", "w_b")


def check_srwm_inputs(fn: str, x, weights, reset_to=None) -> tuple[int, int, int, int]:
    """Validate ``x`` [B, T, H, D] and the weights; returns ``(B, T, H, D)``."""
    check_floating(fn, "x", x)
    if x.dim() != 4:
        raise ValueError(f"{fn}: x must be [B, T, H, D], got shape {fmt_shape(x)}")
    B, T, H, D = x.shape
    if T == 0:
        raise ValueError(f"{fn}: x must have at least one time step, got shape {fmt_shape(x)}")
    groups = [("", weights)] + ([("reset_to.", reset_to)] if reset_to is not None else [])
    for prefix, ws in groups:
        if len(ws) != 4:
            raise ValueError(f"{fn}: {prefix or 'weights'} must hold 4 tensors (W_y, W_q, W_k, w_b), got {len(ws)}")
        for name, w in zip(_NAMES, ws):
            name = prefix + name
            check_floating(fn, name, w)
            is_rate = name.endswith("w_b")
            last, sym = (4, "4") if is_rate else (D, "D")
            if w.shape[-3:] != (H, D, last) or w.dim() not in (3, 4) or (w.dim() == 4 and w.shape[0] != B):
                raise ValueError(
                    f"{fn}: {name} must be [H, D, {sym}] = ({H}, {D}, {last}) or [B, H, D, {sym}] = "
                    f"({B}, {H}, {D}, {last}) for x of shape {fmt_shape(x)}, got shape {fmt_shape(w)}"
                )
    named = {"x": x, **dict(zip(_NAMES, weights))}
    if reset_to is not None:
        named.update({"reset_to." + n: w for n, w in zip(_NAMES, reset_to)})
    check_same_device(fn, **named)
    return B, T, H, D
