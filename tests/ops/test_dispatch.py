"""The dispatch table of the ops, the fla gate, and that CPU imports neither Triton nor fla.

No kernel runs here: CUDA calls are described by :class:`OpCall` (device, dtype, sizes) and fla
by stubs, so the rules are tested on a CPU-only machine.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import adaptmem.ops
from adaptmem.ops import OpCall, _dispatch, _fla, delta_rule, explain_backend, linear_attention, resolve_backend
from adaptmem.ops._dispatch import TABLE
from tests.ops.triton_interpret import KERNEL_MODULES, interpreted_kernels

OPS = {
    "srwm": adaptmem.ops.srwm,
    "delta_rule": delta_rule,
    "linear_attention": linear_attention,
    "recurrent_delta_rule": adaptmem.ops.recurrent_delta_rule,
}


@pytest.fixture
def world(monkeypatch):
    """Pretend fla and Triton are (not) installed and fla's check passes (fails)."""
    state = SimpleNamespace(fla=True, triton=True, numba=True, check=True, checked=[])
    monkeypatch.setattr(_dispatch, "installed", lambda package: getattr(state, package))

    def check(*key):
        state.checked.append(key)
        return state.check

    monkeypatch.setattr(_fla, "fla_passes_check", check)
    return state


def resolve(
    backend="auto",
    mode="chunk",
    reset=False,
    normalize=False,
    linear=False,
    B=2,
    T=80,
    H=2,
    K=16,
    V=16,
    dtype=torch.bfloat16,
    device="cuda",
):
    call = OpCall(
        "linear_attention" if linear else "delta_rule",
        mode,
        device=device,
        dtypes=frozenset({dtype}),
        float64=dtype == torch.float64,
        key_dim=K,
        value_dim=V,
        steps=T,
        heads=H,
        reset=reset,
        normalize=normalize,
    )
    return resolve_backend(call, backend).backend


def test_auto_prefers_fla_then_our_triton_kernel_then_torch_on_cuda(world):
    assert resolve() == "fla"
    assert world.checked == [("delta_rule", "chunk", torch.bfloat16, 16, 16, "cuda")]
    world.check = False
    assert resolve() == "triton"
    world.fla = False
    assert resolve() == "triton"
    world.triton = False
    assert resolve() == "torch"


def test_auto_sends_what_fla_cannot_do_to_our_kernel(world):
    assert resolve(reset=True) == "triton"  # fla has no in-sequence reset
    assert resolve(dtype=torch.float32) == "triton"  # fla's chunk delta rule rejects fp32
    assert resolve(dtype=torch.float32, mode="recurrent") == "fla"  # its fused recurrent kernel takes it
    assert resolve(K=512) == "torch"  # beyond our kernel too (it used to say "triton" and then run torch)
    assert resolve(linear=True, normalize=True) == "triton"
    assert resolve(linear=True, T=1, H=4) == "triton"  # fla reads T < H as a head-first layout
    assert resolve(linear=True) == "fla"


def test_auto_is_torch_on_cpu_and_for_float64(world):
    assert resolve(device="cpu") == "torch"
    assert resolve(dtype=torch.float64) == "torch"
    assert world.checked == []


def test_explicit_fla_explains_why_it_cannot_run(world):
    with pytest.raises(ValueError, match="delta_rule: backend='fla' cannot run this call: fla has no in-sequence"):
        resolve("fla", reset=True)
    with pytest.raises(ValueError, match="fla runs only on CUDA tensors"):
        resolve("fla", device="cpu")
    world.fla = False
    with pytest.raises(
        ImportError, match=r"pip install 'fla-core\[cuda\]>=0.6.0' \(the 'fla' extra of adaptmem-torch\)"
    ):
        resolve("fla")


def test_unknown_backend_is_rejected():
    q = torch.rand(1, 3, 1, 4)
    with pytest.raises(ValueError, match="delta_rule.*backend"):
        delta_rule(q, q, q, torch.rand(1, 3, 1), backend="cuda")
    with pytest.raises(ValueError, match="linear_attention.*backend"):
        linear_attention(q, q, q, backend="flash")


def test_cpu_default_results_are_unchanged_by_the_backend_argument():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.rand(2, 9, 2, 4, generator=g) for _ in range(3))
    beta = torch.rand(2, 9, 2, generator=g)
    for mode in ("chunk", "recurrent"):
        o1, S1 = delta_rule(q, k, v, beta, mode=mode)
        o2, S2 = delta_rule(q, k, v, beta, mode=mode, backend="torch")
        assert torch.equal(o1, o2) and torch.equal(S1, S2)
        o1, S1 = linear_attention(q, k, v, mode=mode, normalize=True)
        o2, S2 = linear_attention(q, k, v, mode=mode, normalize=True, backend="auto")
        assert torch.equal(o1, o2) and all(torch.equal(a, b) for a, b in zip(S1, S2))


@pytest.mark.parametrize("op", list(TABLE))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_auto_on_cpu_is_the_numba_kernel_where_there_is_one_else_torch(world, op, dtype):
    call = OpCall(op, _dispatch.MODES[op][0], dtypes=frozenset({dtype}), float64=dtype == torch.float64)
    assert resolve_backend(call).backend == ("numba" if "numba" in TABLE[op] else "torch")
    world.fla = world.triton = world.numba = False
    assert resolve_backend(call).backend == "torch"


def srwm_call(mode="checkpointed", device="cuda", dtype=torch.float32, D=16, interpret=False):
    return OpCall(
        "srwm",
        mode,
        device=device,
        dtypes=frozenset({dtype}),
        float64=dtype == torch.float64,
        key_dim=D,
        value_dim=D,
        interpret=interpret,
    )


def test_srwm_table_on_cuda(world):
    assert resolve_backend(srwm_call()).backend == "triton"
    assert resolve_backend(srwm_call(dtype=torch.bfloat16)).backend == "triton"
    assert resolve_backend(srwm_call(dtype=torch.float64)).backend == "torch"
    assert resolve_backend(srwm_call(D=129)).backend == "torch"  # four D x D tiles no longer fit
    assert resolve_backend(srwm_call(mode="reference")).backend == "torch"  # the step loop is PyTorch
    world.triton = False
    assert resolve_backend(srwm_call()).backend == "torch"


def test_explicit_triton_falls_back_to_torch_only_where_the_table_says(world):
    for call in (srwm_call(dtype=torch.float64), srwm_call(D=129)):
        choice = resolve_backend(call, "triton")
        assert choice.backend == "torch" and choice.passed_over[0][0] == "triton"
    with pytest.raises(
        ValueError, match="srwm: backend='triton' cannot run this call: the kernel implements mode='checkpointed' only"
    ):
        resolve_backend(srwm_call(mode="reference"), "triton")
    with pytest.raises(ValueError, match="Triton needs CUDA tensors"):
        resolve_backend(srwm_call(device="cpu"), "triton")
    world.triton = False
    with pytest.raises(ImportError, match=r"Triton is not installed: pip install 'triton>=3.0'"):
        resolve_backend(srwm_call(), "triton")


def test_explicit_fla_without_fla_names_the_fla_core_extra(world):
    world.fla = False
    with pytest.raises(
        ImportError,
        match=r"fla-core \(flash-linear-attention's kernels\) is not installed: "
        r"pip install 'fla-core\[cuda\]>=0.6.0'",
    ):
        resolve("fla")
    world.fla = True
    assert resolve("fla") == "fla"


def test_the_interpreter_lets_explicit_triton_run_on_cpu_but_not_auto(world):
    world.numba = False
    for op in ("srwm", "delta_rule", "linear_attention"):
        call = OpCall(op, _dispatch.MODES[op][0], device="cpu", interpret=True)
        assert resolve_backend(call, "triton").backend == "triton"
        assert resolve_backend(call).backend == "torch"


def test_recurrent_delta_rule_runs_on_torch_off_the_cpu():
    call = OpCall("recurrent_delta_rule", "checkpointed", device="cuda", dtypes=frozenset({torch.bfloat16}))
    assert resolve_backend(call).backend == "torch"
    q = torch.rand(1, 2, 1, 2)
    with pytest.raises(ValueError, match="recurrent_delta_rule: backend must be one of"):
        adaptmem.ops.recurrent_delta_rule(
            q, q, q, q[..., 0], *[torch.rand(1, 2, 2)] * 3, torch.rand(1, 2), backend="triton"
        )


def test_explain_backend_names_the_choice_and_why_the_others_were_passed_over(world):
    text = explain_backend(OpCall("delta_rule", "chunk", device="cuda", reset=True))
    assert text.splitlines() == [
        "delta_rule(mode='chunk', backend='auto') runs on 'triton'",
        "  not 'fla': fla has no in-sequence reset",
    ]


@pytest.mark.parametrize("op", list(TABLE))
def test_each_public_docstring_documents_its_backends(op):
    doc = OPS[op].__doc__
    assert all(f'"{name}"' in doc for name in ("auto", *TABLE[op]))
    assert all(f'"{mode}"' in doc for mode in _dispatch.MODES[op])


def test_the_triton_fallback_runs_the_callers_mode_and_chunk_size(world, monkeypatch):
    # float64 on backend="triton" runs on torch; it used to run mode="chunk" with chunk_size=64 whatever was asked.
    monkeypatch.setenv("TRITON_INTERPRET", "1")  # lets backend="triton" accept CPU tensors; no kernel runs
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.rand(2, 9, 2, 4, generator=g, dtype=torch.float64) for _ in range(3))
    beta = torch.rand(2, 9, 2, generator=g, dtype=torch.float64)
    for mode in ("chunk", "recurrent"):
        for op, args in ((delta_rule, (q, k, v, beta)), (linear_attention, (q, k, v))):
            got = op(*args, mode=mode, chunk_size=4, backend="triton")
            want = op(*args, mode=mode, chunk_size=4, backend="torch")
            assert all(torch.equal(a, b) for a, b in zip(got, want))


def test_importing_adaptmem_imports_neither_triton_nor_fla():
    code = (
        "import sys, adaptmem, adaptmem.ops, adaptmem.layers; "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('triton', 'fla')]; "
        "assert not bad, bad"
    )
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


def test_interpreter_helper_leaves_no_trace():
    pytest.importorskip("triton")
    names = ("adaptmem.ops.srwm.fused_recurrent", "adaptmem.ops._triton_utils")
    before_env = os.environ.get("TRITON_INTERPRET")
    before = {name: sys.modules.get(name) for name in names}  # compiled modules, or absent
    with interpreted_kernels():
        from adaptmem.ops.srwm import fused_recurrent as mod

        assert os.environ["TRITON_INTERPRET"] == "1"
        assert type(mod.srwm_fwd_kernel).__name__ == "InterpretedFunction"
    assert os.environ.get("TRITON_INTERPRET") == before_env
    assert all(sys.modules.get(name) is before[name] for name in names)


def test_the_interpreter_helper_knows_every_module_that_holds_a_kernel():
    # A module that imports Triton, or a kernel module, at its top keeps the kernels it was
    # imported with; the helper must drop it (imports inside functions look up sys.modules).
    root = Path(adaptmem.ops.__file__).parent
    kernel_import = re.compile(
        r"^(import triton|from triton|from adaptmem\.ops\.(_fused_recurrent|_triton_utils) )", re.M
    )
    holders = {
        ".".join(path.relative_to(root.parent.parent).with_suffix("").parts)
        for path in root.rglob("*.py")
        if kernel_import.search(path.read_text())
    }
    assert holders == set(KERNEL_MODULES)
