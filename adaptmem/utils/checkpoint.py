"""Atomic checkpoints that resume exactly.

A checkpoint is written with :func:`adaptmem.utils.atomic.atomic_write` (a temporary file in
the target's directory, fsynced, then renamed over the target), so a crash leaves either the old
or the new file, never a torn one. Together with
:func:`adaptmem.utils.seed.get_rng_state` it makes a resumed run continue bit for bit.
"""

from __future__ import annotations

import os
from typing import Any

import torch

from adaptmem.utils.atomic import atomic_write
from adaptmem.utils.seed import get_rng_state, set_rng_state


def atomic_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save(obj, path)`` through :func:`adaptmem.utils.atomic.atomic_write`."""
    atomic_write(path, lambda f: torch.save(obj, f))


def save_checkpoint(
    path: str | os.PathLike,
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any = None,
    scaler: Any = None,
    step: int = 0,
    **extra: Any,
) -> None:
    """Save model/optimizer/scheduler/scaler state, the step, all RNG states and ``extra``."""
    model = getattr(model, "module", model)  # unwrap DistributedDataParallel
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "scaler": scaler.state_dict() if scaler is not None else None,
        "step": step,
        "rng": get_rng_state(),
        "extra": extra,
    }
    atomic_save(state, path)


def load_checkpoint(
    path: str | os.PathLike,
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any = None,
    scaler: Any = None,
    restore_rng: bool = True,
    map_location: str | torch.device = "cpu",
) -> dict[str, Any]:
    """Load what :func:`save_checkpoint` wrote; returns ``{"step": ..., **extra}``."""
    state = torch.load(path, map_location=map_location, weights_only=False)
    getattr(model, "module", model).load_state_dict(state["model"])
    for obj, key in ((optimizer, "optimizer"), (scheduler, "scheduler"), (scaler, "scaler")):
        if obj is not None and state.get(key) is not None:
            obj.load_state_dict(state[key])
    if restore_rng:
        set_rng_state(state["rng"])
    return {"step": state["step"], **state["extra"]}
