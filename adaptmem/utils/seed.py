"""Seeding, RNG state capture (for exact resume) and thread settings."""

from __future__ import annotations

import os
import random
from typing import Any

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and all CUDA devices)."""
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
    torch.set_num_threads(n)
    try:
        import faiss  # optional

        faiss.omp_set_num_threads(n)
    except ImportError:
        pass
    return n
