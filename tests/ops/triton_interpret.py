"""Run adaptmem's Triton kernels on CPU tensors under ``TRITON_INTERPRET=1``, without leaking it.

Triton decides between compiling and interpreting when ``@triton.jit`` decorates a kernel, i.e.
when the kernel module is imported. :func:`interpreted_kernels` sets the variable, drops any
already-imported kernel modules so the next import decorates them for the interpreter, and on
exit removes those interpreted modules and restores the environment and the previous modules,
so no other test sees either.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

# Every module that imports Triton, directly or through another of these (they hold its kernels).
KERNEL_MODULES = (
    "adaptmem.ops._triton_utils",
    "adaptmem.ops._fused_recurrent",
    "adaptmem.ops.linear_attention.fused_recurrent",
    "adaptmem.ops.srwm.fused_recurrent",
)


def _ours(name: str) -> bool:
    return any(name == m or name.startswith(m + ".") for m in KERNEL_MODULES)


def _detach_all() -> dict:
    mods = {name: sys.modules.pop(name) for name in list(sys.modules) if _ours(name)}
    for name in mods:  # the parent package keeps an attribute per imported submodule
        parent, _, child = name.rpartition(".")
        if parent in sys.modules and getattr(sys.modules[parent], child, None) is mods[name]:
            delattr(sys.modules[parent], child)
    return mods


@contextmanager
def interpreted_kernels() -> Iterator[None]:
    pytest.importorskip("triton")
    previous_env = os.environ.get("TRITON_INTERPRET")
    previous = _detach_all()
    os.environ["TRITON_INTERPRET"] = "1"
    try:
        yield
    finally:
        _detach_all()
        for name, mod in previous.items():
            sys.modules[name] = mod
            parent, _, child = name.rpartition(".")
            if parent in sys.modules:
                setattr(sys.modules[parent], child, mod)
        if previous_env is None:
            os.environ.pop("TRITON_INTERPRET", None)
        else:
            os.environ["TRITON_INTERPRET"] = previous_env


@pytest.fixture(scope="module", autouse=True)
def run_module_under_interpreter():
    """Autouse in every test module that imports it: the module's tests run the interpreted kernels."""
    with interpreted_kernels():
        yield
