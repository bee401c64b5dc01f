"""What the fused CPU kernels (numba) share on the torch side: availability, thread split, views.

Importing this module does not import numba; the kernel modules do, on first use.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor

import torch

from adaptmem.ops._dispatch import installed

LANES = 8  # sequences per kernel lane group; must equal adaptmem.ops._numba_simd.LANES


def fused_cpu_available() -> bool:
    """Whether numba is installed, i.e. whether the fused CPU kernels can run (without importing numba)."""
    return installed("numba")


_pool: tuple[int, int, ThreadPoolExecutor] | None = None  # (pid, workers, pool): a forked child builds its own


def num_workers(groups: int, steps: int) -> int:
    """Threads for a call over ``groups`` groups of 8 sequences and ``steps`` time steps: torch's
    intra-op thread count, fewer when there are fewer groups, one for tiny calls (where handing
    work to a thread costs more than it saves)."""
    return max(1, min(torch.get_num_threads(), groups, groups * steps // 8))


def run_in_threads(kernel, groups: int, steps: int, *args) -> None:
    """Run ``kernel(g0, g1, *args)`` over ``0 <= g < groups``, split over :func:`num_workers` threads.

    The kernels release the GIL, so plain Python threads run them in parallel, and they block
    (never spin) while idle, so they do not compete with torch's OpenMP threads for the cores.
    numba's own threading layer is not used: nothing here depends on its configuration.
    """
    global _pool
    n = num_workers(groups, steps)
    if n == 1:
        kernel(0, groups, *args)
        return
    if _pool is None or _pool[0] != os.getpid() or _pool[1] < n - 1:
        if _pool is not None and _pool[0] == os.getpid():
            _pool[2].shutdown(wait=False)
        _pool = (os.getpid(), n - 1, ThreadPoolExecutor(max_workers=n - 1, thread_name_prefix="adaptmem-cpu"))
    bounds = [groups * i // n for i in range(n + 1)]
    futures = [_pool[2].submit(kernel, bounds[i], bounds[i + 1], *args) for i in range(1, n)]
    kernel(bounds[0], bounds[1], *args)  # the calling thread takes the first share
    for f in futures:
        f.result()


def numpy_rows(*tensors: torch.Tensor) -> list:
    """Each contiguous ``[N, ...]`` tensor as the ``[N, prod(...)]`` numpy view the kernels take (no copy)."""
    return [t.detach().reshape(t.shape[0], math.prod(t.shape[1:])).numpy() for t in tensors]  # N may be 0
