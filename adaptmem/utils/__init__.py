"""Plumbing shared by the library and its examples.

The torch-free helpers (``cli``, ``threads``, ``progress``, ``paths``) load with the package; the
rest loads on first use, so that ``import adaptmem.utils.cli`` stays fast enough for an
example's ``--help`` to answer before torch is imported.
"""

from __future__ import annotations

import importlib
from typing import Any

# Re-exported (__all__ below is built from _LAZY, which ruff cannot read).
from adaptmem.utils.paths import default_data_root  # noqa: F401
from adaptmem.utils.progress import Progress, progress  # noqa: F401
from adaptmem.utils.threads import ThreadConfig, configure_threads  # noqa: F401

_LAZY = {  # name -> module that defines it (these import torch, or are rarely needed)
    "atomic_write": "atomic",
    "atomic_write_text": "atomic",
    "atomic_save": "checkpoint",
    "load_checkpoint": "checkpoint",
    "save_checkpoint": "checkpoint",
    "read_checkpoint": "checkpoint",
    "resolve_resume_args": "checkpoint",
    "given_flags": "cli",
    "CorruptFileError": "integrity",
    "load_verified": "integrity",
    "save_verified": "integrity",
    "check_floating": "checks",
    "check_same_device": "checks",
    "check_shape": "checks",
    "fmt_shape": "checks",
    "MetricLogger": "logging",
    "markdown_table": "logging",
    "count_parameters": "parameters",
    "get_rng_state": "seed",
    "seed_everything": "seed",
    "set_rng_state": "seed",
    "set_threads": "seed",
}

__all__ = sorted([*_LAZY, "Progress", "ThreadConfig", "configure_threads", "default_data_root", "progress"])


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'adaptmem.utils' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"adaptmem.utils.{_LAZY[name]}"), name)
    globals()[name] = value  # later look-ups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
