"""Shared benchmark plumbing: run a case in a fresh process, time it, measure its peak memory."""

from __future__ import annotations

import multiprocessing as mp
import os
import resource
import statistics
import time
from collections.abc import Callable
from typing import Any

from adaptmem.utils import configure_threads, markdown_table


def _rss_kb() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _child(build: Callable[[], Callable[[], Any]], repeats: int, threads: int, q) -> None:
    configure_threads(threads, verbose=False)
    run = build()  # allocate inputs outside the measurement
    base = _rss_kb()
    run()  # warm-up (also reaches the same peak as the timed runs)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KB on Linux
    q.put((statistics.median(times), max(0, peak - base) / 1024))


def measure(build: Callable[[], Callable[[], Any]], *, repeats: int = 3, threads: int = 2) -> tuple[float, float]:
    """Median seconds per call and peak extra memory (MiB) of ``build()()`` in a fresh process.

    ``build`` must be a module-level function (it is pickled into the child).
    """
    return _in_child(_child, build, repeats, threads)


def time_interleaved(runs: list[Callable[[], Any]], rounds: int) -> list[tuple[float, float]]:
    """Median wall and process-CPU seconds of each ``run()`` in this process, after one warm-up
    call each, timed in interleaved rounds so that a changing machine load hits them alike."""
    for run in runs:  # warm-up: compilation, caches, allocator
        run()
    wall: list[list[float]] = [[] for _ in runs]
    cpu: list[list[float]] = [[] for _ in runs]
    for _ in range(rounds):
        for i, run in enumerate(runs):
            t0, c0 = time.perf_counter(), time.process_time()
            run()
            wall[i].append(time.perf_counter() - t0)
            cpu[i].append(time.process_time() - c0)
    return [(statistics.median(w), statistics.median(c)) for w, c in zip(wall, cpu)]


def _child_interleaved(builds, rounds: int, threads: int, q) -> None:
    configure_threads(threads, verbose=False)
    q.put(time_interleaved([build() for build in builds], rounds))


def measure_interleaved(
    builds: list[Callable[[], Callable[[], Any]]], *, rounds: int = 5, threads: int = 2
) -> list[tuple[float, float]]:
    """Median wall and process-CPU seconds of each ``build()()``, all in one fresh process and
    timed in interleaved rounds, so that a changing machine load hits them alike.

    Each ``build`` must be a module-level function (it is pickled into the child).
    """
    return _in_child(_child_interleaved, builds, rounds, threads)


def _in_child(target: Callable, *args: Any) -> Any:
    """``target(*args, queue)`` in a fresh (spawned) process; returns what it puts on the queue."""
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=target, args=(*args, q))
    p.start()
    result = q.get()
    p.join()
    return result


def load_note() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.1f} (1 min), {five:.1f} (5 min) on {os.cpu_count()} cores"


def table(rows: list[list[str]], header: list[str]) -> str:
    return markdown_table(header, rows)
