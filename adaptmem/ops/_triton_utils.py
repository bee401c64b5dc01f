"""Shared pieces of the Triton kernels, and what keeps them fast under ``TRITON_INTERPRET=1``.

Under the interpreter a kernel body runs as Python with ``triton.language`` patched, and every
call of a ``triton.jit`` function re-patches the whole language module (about a millisecond).
``tl.sum``, ``tl.max`` and ``tl.sigmoid`` are themselves jit functions, and a recurrent kernel
calls them a dozen times per time step, which made the CPU tests several times slower. So the
kernels call the names below instead: compiled, they *are* ``tl.sum``, ``tl.max``,
``tl.sigmoid`` and ``triton.jit``; interpreted, they are plain functions with the same results
(the interpreter maps a reduce with Triton's own sum/max combine functions onto ``numpy``).

For the same reason the kernels use only builtins of ``triton.language`` besides these (e.g.
``tl.full`` rather than ``tl.zeros``, a jit function): when ``triton`` was imported before
``TRITON_INTERPRET`` was set, its jit library functions stay compiled-only and cannot be called
by an interpreted kernel.
"""

from __future__ import annotations

import triton
import triton.language as tl
from triton import knobs

INTERPRET = bool(knobs.runtime.interpret)
_SUM = getattr(tl.standard, "_sum_combine", None)
_MAX = getattr(tl.standard, "_elementwise_max", None)


def device_fn(fn):
    """Decorate a helper the kernels call: ``triton.jit`` compiled, a plain function interpreted."""
    return fn if INTERPRET else triton.jit(fn)


if INTERPRET and _SUM is not None and _MAX is not None:

    def rsum(x, axis):
        return tl.reduce(x, axis, _SUM)

    def rmax(x, axis):
        return tl.reduce(x, axis, _MAX)

    def sigmoid(x):
        return 1.0 / (1.0 + tl.exp(-x))

else:
    rsum, rmax, sigmoid = tl.sum, tl.max, tl.sigmoid
