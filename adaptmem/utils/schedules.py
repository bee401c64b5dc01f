"""Learning-rate schedules as multipliers for ``torch.optim.lr_scheduler.LambdaLR``."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch


def warmup_cosine(warmup_steps: int, total_steps: int, min_ratio: float = 0.1) -> Callable[[int], float]:
    """Linear warm-up to 1, then cosine decay to ``min_ratio`` at ``total_steps``."""

    def f(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        t = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * t))

    return f


def linear_decay(total_steps: int) -> Callable[[int], float]:
    """From 1 at step 0 linearly to 0 at ``total_steps`` (IMPALA's schedule)."""
    return lambda step: max(0.0, 1.0 - step / max(1, total_steps))


def noam(d_model: int, warmup_steps: int, base_lr: float) -> Callable[[int], float]:
    """The Transformer warm-up d^-1/2 * min(s^-1/2, s * w^-3/2), as a multiplier of ``base_lr``."""

    def f(step: int) -> float:
        s = step + 1
        return d_model**-0.5 * min(s**-0.5, s * warmup_steps**-1.5) / base_lr

    return f


def lambda_scheduler(optimizer: torch.optim.Optimizer, fn: Callable[[int], float]):
    return torch.optim.lr_scheduler.LambdaLR(optimizer, fn)
