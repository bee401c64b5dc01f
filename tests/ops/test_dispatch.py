"""The dispatch table of the ops, the fla gate, and that CPU imports neither Triton nor fla.

No kernel runs here: CUDA calls are described by :class:`OpCall` (device, dtype, sizes) and fla
by stubs, so the rules are tested on a CPU-only machine.
"""

from __future__ import annotations

import os
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch

from adaptmem.ops import OpCall, _dispatch, _fla, delta_rule, linear_attention, resolve_backend
from adaptmem.ops.delta_rule.reference import delta_rule_reference
from tests.ops.triton_interpret import interpreted_kernels


@pytest.fixture
def world(monkeypatch):
    """Pretend fla and Triton are (not) installed and fla's check passes (fails)."""
    state = SimpleNamespace(fla=True, triton=True, check=True, checked=[])
    monkeypatch.setattr(_dispatch, "installed", lambda package: getattr(state, package))

    def check(*key):
        state.checked.append(key)
        return state.check

    monkeypatch.setattr(_fla, "fla_passes_check", check)
    return state


def resolve(backend="auto", mode="chunk", reset=False, normalize=False, linear=False, B=2, T=80, H=2, K=16, V=16,
            dtype=torch.bfloat16, device="cuda"):
    call = OpCall("linear_attention" if linear else "delta_rule", mode, device=device, dtypes=frozenset({dtype}),
                  float64=dtype == torch.float64, key_dim=K, value_dim=V, steps=T, heads=H, reset=reset,
                  normalize=normalize)
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
    with pytest.raises(ImportError, match=r"pip install 'adaptmem\[fla\]'"):
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


def test_srwm_auto_uses_the_torch_backend_on_cpu():
    assert resolve_backend(OpCall("srwm", "checkpointed", device="cpu")).backend == "torch"


class _StubFla:
    """fla stand-ins with our contract: the reference itself, a wrong one, and a broken one."""

    @staticmethod
    def good(q, k, v, beta, h0):
        return delta_rule_reference(q, k, v, beta, initial_state=h0)

    @staticmethod
    def wrong_scale(q, k, v, beta, h0):  # what calling fla with its default q scale would give
        return delta_rule_reference(q * q.shape[-1] ** -0.5, k, v, beta, initial_state=h0)

    @staticmethod
    def broken(q, k, v, beta, h0):
        raise RuntimeError("0 active drivers")


@pytest.mark.parametrize("stub, passes", [("good", True), ("wrong_scale", False), ("broken", False)])
def test_fla_gate_keeps_a_disagreeing_or_failing_fla_out(monkeypatch, stub, passes):
    monkeypatch.setattr(_fla, "_fla_op", lambda op, mode: getattr(_StubFla, stub))
    _fla.fla_passes_check.cache_clear()
    try:
        if passes:
            rng = torch.get_rng_state()
            with torch.no_grad():  # the first auto call may come from inference code
                assert _fla.fla_passes_check("delta_rule", "chunk", torch.float32, 8, 8, "cpu")
            assert torch.equal(rng, torch.get_rng_state())  # the user's random stream is untouched
        else:
            with pytest.warns(UserWarning, match="flash-linear-attention delta_rule"):
                assert not _fla.fla_passes_check("delta_rule", "chunk", torch.float32, 8, 8, "cpu")
    finally:
        _fla.fla_passes_check.cache_clear()


def test_importing_adaptmem_imports_neither_triton_nor_fla():
    code = ("import sys, adaptmem, adaptmem.ops, adaptmem.layers; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('triton', 'fla')]; "
            "assert not bad, bad")
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
