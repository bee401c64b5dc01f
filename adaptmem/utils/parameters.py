"""Counting a model's parameters."""

from __future__ import annotations

from torch import nn


def count_parameters(module: nn.Module, trainable_only: bool = True) -> int:
    """Number of distinct parameters of ``module``: a tied weight (e.g. an embedding shared with
    the output layer) counts once. With ``trainable_only`` only those with ``requires_grad``."""
    if not isinstance(module, nn.Module):
        raise TypeError(f"count_parameters: module must be a torch.nn.Module, got {type(module).__name__}")
    # Module.parameters() already yields a shared Parameter once.
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)
