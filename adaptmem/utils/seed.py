"""Seeding and RNG state capture (for exact resume)."""

from __future__ import annotations

import random
import warnings
from typing import Any

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and all CUDA devices)."""
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed_everything: seed must be an int, got {type(seed).__name__} {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def get_rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`get_rng_state` returned."""
    if not isinstance(state, dict) or not {"python", "numpy", "torch"} <= set(state):
        got = sorted(state) if isinstance(state, dict) else type(state).__name__
        raise ValueError(
            f"set_rng_state: state must be a dict with 'python', 'numpy' and 'torch' entries "
            f"(from get_rng_state), got {got}"
        )
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def set_threads(n: int | None = None) -> int:
    """Deprecated: use :func:`adaptmem.utils.threads.configure_threads`, which also leaves busy
    and reserved CPUs alone. Sets ``n`` threads (default: chosen as there); returns the number."""
    warnings.warn(
        "adaptmem.utils.set_threads is deprecated; use adaptmem.utils.configure_threads",
        DeprecationWarning,
        stacklevel=2,
    )
    from adaptmem.utils.threads import configure_threads

    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n <= 0):
        raise ValueError(f"set_threads: n must be a positive int or None, got {n!r}")
    return configure_threads(n, verbose=False).intra_op
