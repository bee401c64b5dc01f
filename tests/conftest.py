"""Shared fixtures: deterministic, offline, single-threaded where it matters."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# One intra-op thread per test process: the tests run many tiny ops, and OpenMP threads that
# spin-wait on shared cores made a backward 17x slower (94 s vs 5.6 s CPU) under load. Use
# `pytest -n 2` (pytest-xdist) to spread the tests over cores instead.
torch.set_num_threads(int(os.environ.get("ADAPTMEM_TEST_THREADS", "1")))
try:  # FAISS's OpenMP threads collapse the same way (about 4x).
    import faiss

    faiss.omp_set_num_threads(1)
except ImportError:
    pass

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    """``../shared/data`` with the real data sets; the test skips when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not available at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
