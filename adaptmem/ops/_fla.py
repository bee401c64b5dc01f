"""The flash-linear-attention ("fla") adapter: fla as the ``backend="fla"`` of the delta rule and linear attention.

fla is optional, CUDA-only and slow to import (9-17 s), so nothing here imports it before a
CUDA call asks for it. Three things keep it honest:

- the fla rules of :data:`adaptmem.ops._dispatch.TABLE` list what fla cannot do with our
  contract (in-sequence resets, float32 in its chunk kernels, float64, mixed dtypes, head dims
  above 256, our normalised linear attention), so ``backend="auto"`` sends those calls to our
  own kernels;
- the wrappers pass ``scale=1`` (fla scales queries by ``Dk**-0.5`` by default; our ops do not)
  and return our dtypes (outputs in ``v``'s dtype, state in float32);
- :func:`fla_passes_check` runs, once per (op, mode, dtype, head dims, device), a small
  forward and backward against our own reference and keeps fla out of ``"auto"`` if it
  disagrees (a reported Hopper backward miscompile, or an fla version with another layout).
"""

from __future__ import annotations

import functools
import warnings

import torch

# fla's bf16 kernels against our float32 reference on the same (rounded) inputs; fla's own
# tests accept 6e-3 (outputs) and 8e-3 (gradients) between its chunk and recurrent forms.
CHECK_TOLERANCE = 2e-2


def _fla_op(op: str, mode: str):
    """fla's function for (op, mode), called with our arguments: ``(q, k, v, beta, h0) -> (o, S_T)``."""
    if op == "delta_rule":
        if mode == "chunk":
            from fla.ops.delta_rule import chunk_delta_rule as fn
        else:
            from fla.ops.delta_rule import fused_recurrent_delta_rule as fn

        def run(q, k, v, beta, h0):
            return fn(q, k, v, beta, scale=1.0, initial_state=h0, output_final_state=True)

        return run
    from fla.ops.linear_attn import chunk_linear_attn

    def run(q, k, v, beta, h0):
        return chunk_linear_attn(q, k, v, scale=1.0, initial_state=h0, output_final_state=True, normalize=False)

    return run


def run_fla(op: str, mode: str, q, k, v, beta, initial_state) -> tuple[torch.Tensor, torch.Tensor]:
    """Call fla with our contract: outputs in ``v``'s dtype, the final state in float32."""
    h0 = initial_state.float() if initial_state is not None else None
    o, S = _fla_op(op, mode)(q, k, v, beta, h0)
    return o.to(v.dtype), S.float()


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double(), b.double()
    return ((a - b).norm() / b.norm().clamp_min(1e-30)).item()


@functools.cache
def fla_passes_check(op: str, mode: str, dtype: torch.dtype, K: int, V: int, device: str) -> bool:
    """Forward and backward of fla vs our reference on a small random problem (cached).

    ``T = 80`` crosses fla's 64-step chunk; the inputs are those the layers feed (unit-norm
    positive keys, rates in (0, 1)), with an initial state and gradients on everything. It runs
    with gradients on and autocast off whatever the caller's context (the first call may come
    from inference code), and draws from its own generator, not the global RNG.
    """
    with torch.inference_mode(False), torch.enable_grad(), torch.autocast(torch.device(device).type, enabled=False):
        return _check(op, mode, dtype, K, V, device)


def _check(op: str, mode: str, dtype: torch.dtype, K: int, V: int, device: str) -> bool:
    from adaptmem.ops.delta_rule.reference import delta_rule_reference  # not at the top: the ops import this module
    from adaptmem.ops.linear_attention.reference import linear_attention_reference

    gen = torch.Generator(device=device).manual_seed(0)
    B, T, H = 2, 80, 2

    def rand(*shape):
        return torch.rand(*shape, generator=gen, device=device)

    k = torch.nn.functional.normalize(rand(B, T, H, K), dim=-1)
    q = rand(B, T, H, K) / K**0.5
    v = rand(B, T, H, V) - 0.5
    beta = rand(B, T, H) if op == "delta_rule" else None
    h0 = (rand(B, H, K, V) - 0.5) * 0.1
    do, dS = rand(B, T, H, V) - 0.5, rand(B, H, K, V) - 0.5
    inputs = [t.to(dtype) if t is not None else None for t in (q, k, v, beta)] + [h0]

    def grads(fn, cast):
        leaves = [t.detach().to(cast).requires_grad_() if t is not None else None for t in inputs]
        o, S = fn(*leaves)
        ((o.float() * do).sum() + (S.float() * dS).sum()).backward()
        return [o.float(), S.float()] + [t.grad.float() for t in leaves if t is not None]

    if op == "delta_rule":

        def ref(q, k, v, beta, h0):
            return delta_rule_reference(q, k, v, beta, initial_state=h0)
    else:

        def ref(q, k, v, beta, h0):
            return linear_attention_reference(q, k, v, initial_state=h0)

    try:
        got = grads(lambda q, k, v, beta, h0: run_fla(op, mode, q, k, v, beta, h0), dtype)
    except Exception as err:  # an fla that fails to import or launch is simply not used
        warnings.warn(
            f"adaptmem: flash-linear-attention {op} ({mode}) failed its check and is not used: {err!r}", stacklevel=2
        )
        return False
    want = grads(ref, torch.float32)
    errors = [_rel(a, b) for a, b in zip(got, want)]
    if max(errors) > CHECK_TOLERANCE:
        names = ["o", "S_T", "dq", "dk", "dv"] + (["dbeta"] if beta is not None else []) + ["dh0"]
        worst = max(zip(errors, names))
        warnings.warn(
            f"adaptmem: flash-linear-attention {op} ({mode}, {dtype}, Dk={K}, Dv={V}) disagrees with the "
            f"reference (relative error {worst[0]:.2e} in {worst[1]}); using adaptmem's own kernel instead",
            stacklevel=2,
        )
        return False
    return True
