"""The Triton kernels compile for a Hopper GPU (sm_90) down to a cubin, on a machine without one.

The interpreter tests check the math; this checks what only the compiler sees (types that
must agree across branches and loop iterations, constexpr use, register allocation by ptxas).
"""

from __future__ import annotations

import os

import pytest

triton = pytest.importorskip("triton")
compiler = pytest.importorskip("triton.compiler")
backends = pytest.importorskip("triton.backends.compiler")

pytestmark = [
    pytest.mark.slow,  # about 10 s of compilation
    pytest.mark.skipif(
        os.environ.get("TRITON_INTERPRET") == "1", reason="kernels are decorated for the interpreter in this process"
    ),
]


def _signature(kernel, constexprs, bf16_args):
    sig = {}
    for name in kernel.arg_names:
        if name in constexprs:
            sig[name] = "constexpr"
        elif name == "reset_ptr":
            sig[name] = "*i8"
        elif name.endswith("_ptr"):
            sig[name] = "*bf16" if name in bf16_args else "*fp32"
        else:
            sig[name] = "i32"
    return sig


def _compile(kernel, constexprs, bf16_args, num_warps):
    src = compiler.ASTSource(kernel, _signature(kernel, constexprs, bf16_args), constexprs=constexprs)
    compiled = triton.compile(
        src, target=backends.GPUTarget("cuda", 90, 32), options=dict(num_warps=num_warps, enable_fp_fusion=True)
    )
    assert compiled.asm["cubin"], kernel


def test_srwm_kernels_compile_for_sm90(tmp_path, monkeypatch):
    monkeypatch.setenv("TRITON_CACHE_DIR", str(tmp_path))
    from adaptmem.ops.srwm.fused_recurrent import default_num_warps, srwm_bwd_kernel, srwm_fwd_kernel

    D = 16
    common = dict(D=D, BD=16, HAS_RESET=True)
    _compile(srwm_fwd_kernel, dict(common, SAVE=True), {"x_ptr", "y_ptr"}, default_num_warps(D))
    _compile(srwm_bwd_kernel, dict(common, HAS_GM=True), {"x_ptr", "gy_ptr"}, default_num_warps(D))


def test_recurrent_kernels_compile_for_sm90(tmp_path, monkeypatch):
    monkeypatch.setenv("TRITON_CACHE_DIR", str(tmp_path))
    from adaptmem.ops._fused_recurrent import (
        recurrent_bwd_forward_kernel,
        recurrent_bwd_reverse_kernel,
        recurrent_fwd_kernel,
    )

    common = dict(K=64, V=64, BK=64, BV=32, IS_DELTA=True, HAS_RESET=True)
    inputs = {"q_ptr", "k_ptr", "v_ptr", "beta_ptr", "o_ptr", "do_ptr"}
    _compile(recurrent_fwd_kernel, dict(common, HAS_H0=True, SAVE_R=True), inputs, 2)
    _compile(recurrent_bwd_reverse_kernel, dict(common, HAS_DHT=True, STORE_DH0=True), inputs, 2)
    _compile(recurrent_bwd_forward_kernel, dict(common, HAS_H0=True), inputs, 2)
