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


def piecewise_linear(knots: list[tuple[int, float]]) -> Callable[[int], float]:
    """Linear interpolation through ``(step, value)`` knots, constant outside them.

    Example: ``piecewise_linear([(0, 1.0), (10_000, 0.3), (20_000, 0.03)])``.
    """
    if not knots:
        raise ValueError("piecewise_linear: knots must hold at least one (step, value) pair, got []")
    steps = [s for s, _ in knots]
    if any(b <= a for a, b in zip(steps, steps[1:])):
        raise ValueError(f"piecewise_linear: knot steps must increase strictly, got {steps}")

    def f(step: int) -> float:
        if step <= knots[0][0]:
            return float(knots[0][1])
        for (s0, v0), (s1, v1) in zip(knots, knots[1:]):
            if step <= s1:
                return float(v0 + (v1 - v0) * (step - s0) / (s1 - s0))
        return float(knots[-1][1])

    return f


def lambda_scheduler(optimizer: torch.optim.Optimizer, fn: Callable[[int], float]):
    return torch.optim.lr_scheduler.LambdaLR(optimizer, fn)
