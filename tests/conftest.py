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


def _real_data_folder() -> Path | None:
    """The real data sets for the ``data`` tests: ``$ADAPTMEM_TEST_DATA``, else the development
    machines' ``shared/data`` beside this checkout or beside the main checkout of a git worktree
    (a test-suite convenience: the library itself looks only at ``$ADAPTMEM_DATA``)."""
    env = os.environ.get("ADAPTMEM_TEST_DATA")
    if env:
        return Path(env).expanduser()
    root = Path(__file__).resolve().parents[1]
    candidates = [root.parent / "shared" / "data"]
    git = root / ".git"
    if git.is_file():  # a worktree: ".git" names <main checkout>/.git/worktrees/<name>
        gitdir = Path(git.read_text().split("gitdir:", 1)[-1].strip())
        candidates.append(gitdir.parents[2].parent / "shared" / "data")
    return next((c for c in candidates if c.is_dir()), None)


SHARED_DATA = _real_data_folder()


@pytest.fixture
def shared_data() -> Path:
    """The folder with the real data sets (see :func:`_real_data_folder`); skips when absent."""
    if SHARED_DATA is None:
        pytest.skip(
            "real data sets not found: set ADAPTMEM_TEST_DATA to a folder with mnist/, omniglot/ and tinyshakespeare/"
        )
    return SHARED_DATA


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
