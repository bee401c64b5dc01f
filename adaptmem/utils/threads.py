"""How many CPU threads a job uses, chosen from the machine so that it never oversubscribes.

Why this matters: torch's OpenMP threads meet at a barrier after every parallel op. With
OpenMP's default wait policy, a thread that arrives first spins (burns its CPU) until the
others arrive; when another process holds one of the cores, the barrier waits for a thread that
is not running while its partner spins away the time slice. On the shared 2-core development
machine, 60 steps of ``examples/srwm_demo.py`` on 2 threads took 0.80 s per step that way,
against 0.05 s on 1 thread (README, "Threads").

:func:`configure_threads` therefore (1) asks OpenMP to wait passively (``OMP_WAIT_POLICY=PASSIVE``:
a waiting thread sleeps; 2 threads then took 0.057 s per step, and 0.054 s instead of 0.114 s
on 1 thread when two busy processes competed) and (2) takes, unless told otherwise, the CPUs
this process may use (affinity mask and cgroup CPU quota), minus the threads the job starts
itself (e.g. one per envpool pool), split over the processes ``torchrun`` starts on this node,
never below 1. The machine's load is printed, not used: a count that followed the momentary
load would make results (float reduction order) depend on what else ran at the start.

OpenMP reads its wait policy once, when torch loads, so the examples call
:func:`prefer_passive_waiting` (through ``adaptmem.utils.cli.parse``) before importing torch.
This module does not import torch at import time.
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

# Environment variables this module set, as {name: (the value before, ours)}, so that a later
# call does not mistake its own earlier choice for the user's.
_SET_BY_US: dict[str, tuple[str | None, str]] = {}
_PASSIVE_BEFORE_TORCH = False  # whether this module set OMP_WAIT_POLICY before torch loaded


@dataclass(frozen=True)
class ThreadConfig:
    """The thread counts :func:`configure_threads` chose, and what it chose them from."""

    intra_op: int  # torch intra-op threads (also OMP_NUM_THREADS for OpenMP libraries loaded later)
    inter_op: int  # torch inter-op threads
    cpus: int  # CPUs this process may use (affinity mask, cgroup quota)
    load: float  # the machine's 1-minute load average at the start (printed, not used)
    reserved: int  # threads the job starts itself (envpool workers, ...)
    source: str  # "--threads", "OMP_NUM_THREADS" or "machine"
    wait_policy: str  # OMP_WAIT_POLICY that torch's OpenMP runs with

    def __str__(self) -> str:
        why = {
            "--threads": "set by --threads",
            "OMP_NUM_THREADS": "set by $OMP_NUM_THREADS",
            "machine": "chosen from the machine; --threads N overrides",
        }[self.source]
        return (
            f"threads: {self.intra_op} intra-op, {self.inter_op} inter-op ({why}); {self.cpus} usable CPU(s), "
            f"{self.reserved} reserved for the job's own workers, load average {self.load:.1f}; "
            f"OpenMP wait policy {self.wait_policy}"
        )


def cgroup_cpu_limit(
    root: str | os.PathLike = "/sys/fs/cgroup", proc_cgroup: str | os.PathLike = "/proc/self/cgroup"
) -> float | None:
    """CPUs the cgroup quota allows this process (e.g. ``1.5``), or ``None`` when unlimited/unknown.

    Reads cgroup v2 ``cpu.max`` (``"<quota> <period>"`` or ``"max <period>"``) of the process's
    cgroup and each parent, else cgroup v1 ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``; the
    tightest limit wins.
    """
    root = Path(root)
    try:
        lines = Path(proc_cgroup).read_text().splitlines()
    except OSError:
        lines = []
    own = next((line.split(":", 2)[2] for line in lines if line.startswith("0::")), "/")
    folder = root / own.lstrip("/")
    limits = []
    for d in [folder, *folder.parents]:  # cgroup v2: the process's cgroup and its ancestors
        if d == root.parent:
            break
        try:
            quota, period = (d / "cpu.max").read_text().split()[:2]
        except (OSError, ValueError):
            continue
        if quota != "max" and float(period) > 0:
            limits.append(float(quota) / float(period))
    for v1 in (root / "cpu", root / "cpu,cpuacct"):  # cgroup v1
        try:
            quota, period = (int((v1 / f).read_text()) for f in ("cpu.cfs_quota_us", "cpu.cfs_period_us"))
        except (OSError, ValueError):
            continue
        if quota > 0 and period > 0:
            limits.append(quota / period)
    return min(limits) if limits else None


def usable_cpus() -> int:
    """CPUs this process may run on: its affinity mask, capped by the cgroup CPU quota (>= 1)."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        n = os.cpu_count() or 1
    limit = cgroup_cpu_limit()
    if limit is not None:  # floor: a quota of 1.5 CPUs runs 1 thread without being throttled
        n = min(n, math.floor(limit))
    return max(1, n)


def default_threads(cpus: int, reserved: int = 0, processes: int = 1) -> int:
    """Threads per process that leave the job's own workers a CPU each: ``(cpus - reserved) // processes``, >= 1."""
    return max(1, (cpus - reserved) // max(1, processes))


def prefer_passive_waiting() -> str:
    """Set ``OMP_WAIT_POLICY=PASSIVE`` unless the user chose a policy; returns the policy torch's
    OpenMP runs with.

    Call before torch is imported: OpenMP reads the setting once, when it loads (set later, it
    still reaches child processes and OpenMP libraries loaded afterwards). On the busy 2-core
    development machine, the SRWM demo on 2 threads took 0.057 s per step with it, 0.80 s without
    (README, "Threads").
    """
    global _PASSIVE_BEFORE_TORCH
    user = _user_env("OMP_WAIT_POLICY")
    if user:
        return user
    if "OMP_WAIT_POLICY" not in os.environ:
        _PASSIVE_BEFORE_TORCH = "torch" not in sys.modules
        _set_env("OMP_WAIT_POLICY", "PASSIVE")
    return "PASSIVE" if _PASSIVE_BEFORE_TORCH else "default (torch was imported before it was set)"


def configure_threads(
    threads: int | None = None, *, reserved: int = 0, verbose: bool | None = None, file: TextIO | None = None
) -> ThreadConfig:
    """Choose and set torch's (and FAISS's) CPU thread counts; print them in one line.

    Args:
        threads: intra-op threads; ``None`` takes ``$OMP_NUM_THREADS`` when the user set it,
            else :func:`default_threads` of the usable CPUs, ``reserved`` and the processes
            ``torchrun`` starts on this node (``$LOCAL_WORLD_SIZE``).
        reserved: threads the job starts itself and keeps busy (e.g. one per envpool pool).
        verbose: print the chosen numbers (default: in the first process of a ``torchrun`` job).
        file: where to print (default ``sys.stderr``, with the progress lines: stdout keeps the results).

    Sets ``torch.set_num_threads``, ``torch.set_num_interop_threads`` (only possible before torch
    runs its first inter-op task; otherwise the current number stays and is reported),
    ``faiss.omp_set_num_threads`` when FAISS is loaded, and ``OMP_NUM_THREADS`` for OpenMP
    libraries that load later and for child processes.
    """
    fn = "configure_threads"
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ValueError(f"{fn}: threads (--threads) must be a positive integer or None, got {threads!r}")
    if isinstance(reserved, bool) or not isinstance(reserved, int) or reserved < 0:
        raise ValueError(f"{fn}: reserved must be a non-negative integer, got {reserved!r}")
    cpus = usable_cpus()
    env = _user_env("OMP_NUM_THREADS")
    if threads is not None:
        n, source = threads, "--threads"
    elif env:
        try:
            n, source = int(env.split(",")[0]), "OMP_NUM_THREADS"
        except ValueError:
            raise ValueError(f"{fn}: OMP_NUM_THREADS must be a positive integer, got {env!r}") from None
        if n < 1:
            raise ValueError(f"{fn}: OMP_NUM_THREADS must be a positive integer, got {env!r}")
    else:
        processes = int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)
        n, source = default_threads(cpus, reserved, processes), "machine"
    policy = prefer_passive_waiting()
    _set_env("OMP_NUM_THREADS", str(n))

    import torch

    torch.set_num_threads(n)
    try:
        torch.set_num_interop_threads(n)
    except RuntimeError:  # torch allows this once, before its first inter-op task
        pass
    if "faiss" in sys.modules:  # FAISS bundles its own OpenMP runtime
        sys.modules["faiss"].omp_set_num_threads(n)
    cfg = ThreadConfig(n, torch.get_num_interop_threads(), cpus, _load_average(), reserved, source, policy)
    if verbose is None:
        verbose = os.environ.get("RANK", "0") == "0"
    if verbose:
        print(cfg, file=file or sys.stderr, flush=True)
    return cfg


def _load_average() -> float:
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):  # not available on this platform
        return float("nan")


def _user_env(name: str) -> str | None:
    """``os.environ[name]`` as the user set it (not a value this module set)."""
    value = os.environ.get(name)
    if name in _SET_BY_US and value == _SET_BY_US[name][1]:
        return _SET_BY_US[name][0]
    return value


def _set_env(name: str, value: str) -> None:
    if os.environ.get(name) != value:
        _SET_BY_US[name] = (_user_env(name), value)
        os.environ[name] = value
