"""Numba building blocks of the fused CPU kernels: an 8-lane SIMD vector type and the kernel decorator.

Imported only when a fused CPU kernel runs (it imports numba); ``import adaptmem`` never loads it.

Why a vector type: numba does not tell LLVM that two array arguments never overlap, so a loop
``a[e, l] += x[d, l] * M[d, e, l]`` over the lanes ``l`` stays scalar (every store might change
the next load). :class:`Vec` is an LLVM ``<8 x float>`` / ``<8 x double>`` value: ``vload``
and ``vstore`` move one row of 8 lanes between memory and a register, and arithmetic on it is
one SIMD instruction. The kernels lay 8 independent sequences (batch x head rows) side by side
in the lanes, so every step of the recurrence is lane-parallel and needs no horizontal sums.

All arithmetic is plain IEEE (no fast-math flags): the same expression compiles to the same
instructions wherever it appears, which keeps a recomputed forward bit-identical to the first.
``vfma`` is an explicit fused multiply-add.
"""

from __future__ import annotations

import operator
import warnings

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, models, overload, register_model

LANES = 8  # sequences per SIMD vector: 8 fp32 fill one AVX register; fp64 uses two


def kernel(fn):
    """``numba.njit`` for the kernels: GIL released (callers split work over threads), no
    ZeroDivisionError checks, and compiled code cached on disk. numba caches next to the source,
    else in the user's cache directory (or ``NUMBA_CACHE_DIR``); where none is writable it
    refuses ``cache=True``, and the kernel is then compiled in every process instead."""
    global _warned_no_cache
    options = dict(nogil=True, error_model="numpy")
    try:
        return numba.njit(cache=True, **options)(fn)
    except RuntimeError as e:  # "cannot cache function ...: no locator available for file ..."
        if not _warned_no_cache:
            _warned_no_cache = True
            warnings.warn(
                f"adaptmem: {e}; the fused CPU kernels compile in every process (~10 s per dtype). "
                "Set NUMBA_CACHE_DIR to a writable directory to cache them.",
                RuntimeWarning,
                stacklevel=2,
            )
        return numba.njit(cache=False, **options)(fn)


_warned_no_cache = False


class Vec(types.Type):
    """``LANES`` values of ``dtype`` (float32 or float64) in one SIMD register."""

    def __init__(self, dtype: types.Float) -> None:
        self.dtype = dtype
        super().__init__(name=f"Vec{LANES}({dtype})")


@register_model(Vec)
class _VecModel(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        super().__init__(dmm, fe_type, ir.VectorType(dmm.lookup(fe_type.dtype).get_value_type(), LANES))


def _llvm_vector_fn(builder, name: str, vty, nargs: int):
    """The LLVM intrinsic ``llvm.<name>`` on ``vty`` vectors (llvmlite's helpers take scalars only)."""
    bits = (
        vty.element.width
        if isinstance(vty.element, ir.IntType)
        else (32 if isinstance(vty.element, ir.FloatType) else 64)
    )
    fnty = ir.FunctionType(vty, [vty] * nargs)
    return cgutils.get_or_insert_function(builder.module, fnty, f"llvm.{name}.v{LANES}f{bits}")


def _fma(builder, a, b, c):
    return builder.call(_llvm_vector_fn(builder, "fma", a.type, 3), [a, b, c])


def _is_lane_array(a) -> bool:
    return isinstance(a, types.Array) and isinstance(a.dtype, types.Float) and a.layout == "C"


def _row_pointer(context, builder, aryty, ary, row):
    """Pointer to ``ary.ravel()[row * LANES]`` as a vector pointer."""
    arr = context.make_array(aryty)(context, builder, ary)
    offset = builder.mul(context.cast(builder, row, types.intp, types.intp), ir.Constant(ir.IntType(64), LANES))
    elem = builder.gep(arr.data, [offset])
    vty = context.get_value_type(Vec(aryty.dtype))
    return builder.bitcast(elem, vty.as_pointer())


@intrinsic
def vload(typingctx, a, row):
    """``a.ravel()[row*LANES : (row+1)*LANES]`` of a C-contiguous float array as a :class:`Vec`."""
    if not (_is_lane_array(a) and isinstance(row, types.Integer)):
        return None

    def codegen(context, builder, sig, args):
        ptr = _row_pointer(
            context, builder, sig.args[0], args[0], context.cast(builder, args[1], sig.args[1], types.intp)
        )
        return builder.load(ptr, align=sig.args[0].dtype.bitwidth // 8)

    return Vec(a.dtype)(a, row), codegen


@intrinsic
def vstore(typingctx, a, row, v):
    """Store ``v`` into row ``row`` (of ``LANES`` values) of the flattened array ``a``."""
    if not (_is_lane_array(a) and isinstance(row, types.Integer) and isinstance(v, Vec) and v.dtype == a.dtype):
        return None

    def codegen(context, builder, sig, args):
        ptr = _row_pointer(
            context, builder, sig.args[0], args[0], context.cast(builder, args[1], sig.args[1], types.intp)
        )
        builder.store(args[2], ptr, align=sig.args[0].dtype.bitwidth // 8)
        return context.get_dummy_value()

    return types.void(a, row, v), codegen


@intrinsic
def vzeros(typingctx, a):
    """A zero :class:`Vec` of the array ``a``'s dtype."""
    if not _is_lane_array(a):
        return None

    def codegen(context, builder, sig, args):
        return ir.Constant(context.get_value_type(sig.return_type), None)

    return Vec(a.dtype)(a), codegen


@intrinsic
def vfill(typingctx, a, x):
    """A :class:`Vec` of the array ``a``'s dtype with every lane ``x`` (any real scalar)."""
    if not (_is_lane_array(a) and isinstance(x, (types.Float, types.Integer))):
        return None

    def codegen(context, builder, sig, args):
        v = context.cast(builder, args[1], sig.args[1], sig.args[0].dtype)
        vty = context.get_value_type(sig.return_type)
        v = builder.insert_element(ir.Constant(vty, None), v, ir.Constant(ir.IntType(32), 0))
        return builder.shuffle_vector(v, v, ir.Constant(ir.VectorType(ir.IntType(32), LANES), [0] * LANES))

    return Vec(a.dtype)(a, x), codegen


def _binary(build):
    @intrinsic
    def op(typingctx, a, b):
        if not (isinstance(a, Vec) and a == b):
            return None

        def codegen(context, builder, sig, args):
            return build(builder, *args)

        return a(a, b), codegen

    return op


vadd = _binary(lambda b, x, y: b.fadd(x, y))
vsub = _binary(lambda b, x, y: b.fsub(x, y))
vmul = _binary(lambda b, x, y: b.fmul(x, y))
vdiv = _binary(lambda b, x, y: b.fdiv(x, y))
vmax = _binary(lambda b, x, y: b.select(b.fcmp_ordered(">", x, y), x, y))


@intrinsic
def vfma(typingctx, a, b, c):
    """``a * b + c`` with one rounding."""
    if not (isinstance(a, Vec) and a == b == c):
        return None

    def codegen(context, builder, sig, args):
        return _fma(builder, *args)

    return a(a, b, c), codegen


@intrinsic
def vwhere_nonneg(typingctx, cond, a, b):
    """Per lane: ``a`` where ``cond >= 0``, else ``b``."""
    if not (isinstance(cond, Vec) and cond == a == b):
        return None

    def codegen(context, builder, sig, args):
        zero = ir.Constant(args[0].type, None)
        return builder.select(builder.fcmp_ordered(">=", args[0], zero), args[1], args[2])

    return a(cond, a, b), codegen


# exp(z) for z <= 0: z = n ln2 + r with |r| <= ln2/2, exp(r) by its Taylor series (the first
# omitted term is below half an ulp: degree 7 for float32, 13 for float64), times 2^n built
# from the exponent bits. Below the clamp (-87 / -708) the result stays at exp(clamp), about
# the smallest normal number (1e-38 / 1e-308): negligible in the softmaxes and sigmoids it feeds.
_EXP = {
    32: dict(lo=-87.0, bias=127, mant=23, ity=ir.IntType(32), degree=7),
    64: dict(lo=-708.0, bias=1023, mant=52, ity=ir.IntType(64), degree=13),
}


@intrinsic
def vexp_neg(typingctx, z):
    """``exp(z)`` per lane for ``z <= 0`` (within 1 ulp of float64 numpy, measured; not for ``z > 0``)."""
    if not isinstance(z, Vec):
        return None

    def codegen(context, builder, sig, args):
        bits = sig.args[0].dtype.bitwidth
        p = _EXP[bits]
        vty = args[0].type
        ity = ir.VectorType(p["ity"], LANES)

        def c(x):
            return ir.Constant(vty, [float(x)] * LANES)

        x = builder.select(builder.fcmp_ordered("<", args[0], c(p["lo"])), c(p["lo"]), args[0])
        n = builder.call(_llvm_vector_fn(builder, "floor", vty, 1), [_fma(builder, x, c(np.log2(np.e)), c(0.5))])
        # ln 2 in two parts, so that n*ln2_hi is exact and r keeps full precision
        ln2_hi, ln2_lo = (
            (0.693145751953125, 1.428606765330187e-06) if bits == 32 else (0.6931471803691238, 1.9082149292705877e-10)
        )
        r = _fma(builder, n, c(-ln2_hi), x)
        r = _fma(builder, n, c(-ln2_lo), r)
        inv = [1.0]
        for k in range(1, p["degree"] + 1):
            inv.append(inv[-1] / k)
        poly = c(inv[p["degree"]])
        for k in range(p["degree"] - 1, -1, -1):
            poly = _fma(builder, poly, r, c(inv[k]))
        e = builder.add(builder.fptosi(n, ity), ir.Constant(ity, [p["bias"]] * LANES))
        scale = builder.bitcast(builder.shl(e, ir.Constant(ity, [p["mant"]] * LANES)), vty)
        return builder.fmul(poly, scale)

    return z(z), codegen


for _op, _fn in ((operator.add, vadd), (operator.sub, vsub), (operator.mul, vmul), (operator.truediv, vdiv)):

    def _make(fn):
        def impl(a, b):
            if isinstance(a, Vec) and a == b:
                return lambda a, b: fn(a, b)
            return None

        return impl

    overload(_op)(_make(_fn))

__all__ = [
    "LANES",
    "Vec",
    "kernel",
    "vadd",
    "vdiv",
    "vexp_neg",
    "vfill",
    "vfma",
    "vload",
    "vmax",
    "vmul",
    "vstore",
    "vsub",
    "vwhere_nonneg",
    "vzeros",
]
