"""Seeding, RNG state capture (for exact resume) and thread settings."""

from __future__ import annotations

import os
import random
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
        raise ValueError(f"set_rng_state: state must be a dict with 'python', 'numpy' and 'torch' entries "
                         f"(from get_rng_state), got {got}")
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def set_threads(n: int | None = None) -> int:
    """Use ``n`` intra-op threads (default: ``OMP_NUM_THREADS`` or all cores); returns ``n``.

    Benchmarks and tests call this so that torch, FAISS and OpenMP agree on one number:
    oversubscribed OpenMP threads on shared cores slow FAISS down about 4x.
    """
    if n is None:
        n = int(os.environ.get("OMP_NUM_THREADS", 0)) or (os.cpu_count() or 1)
    if isinstance(n, bool) or not isinstance(n, int) or n <= 0:
        raise ValueError(f"set_threads: n must be a positive int or None, got {n!r}")
    torch.set_num_threads(n)
    try:
        import faiss  # optional

        faiss.omp_set_num_threads(n)
    except ImportError:
        pass
    return n
