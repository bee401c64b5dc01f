"""GPU correctness sweep of the fused kernels against the float64 step-loop references.

    python scripts/gpu_check.py                   # on a CUDA machine; exit status 1 if any check fails
    TRITON_INTERPRET=1 python scripts/gpu_check.py --device cpu --quick   # smoke run of this script

For T in {1, 63, 64, 1000, 4096} and head_dim in {16, 32, 64}, random bfloat16 inputs: outputs,
the final state and the gradients of every input (including the starting weights and, through
a loss on it, the final state's incoming gradient) from ``backend="triton"`` (and
``backend="fla"`` when installed) against the float64 reference run on the same rounded
inputs. Pass: relative error ``|a - b| / |b| < 2e-2`` everywhere. Then T = 100k: no NaN or Inf.
"""

from __future__ import annotations

import argparse
import math
import sys

import torch
import torch.nn.functional as F

from adaptmem.ops import delta_rule, linear_attention, srwm

TOL = 2e-2


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double(), b.double()
    return ((a - b).norm() / b.norm().clamp_min(1e-300)).item()


def loss_grads(fn, inputs: list[torch.Tensor], dtype: torch.dtype, seed: int = 1):
    """Outputs of ``fn`` and the gradients of a random linear loss on all of them."""
    leaves = [t.detach().to(dtype).requires_grad_() for t in inputs]
    outs = fn(*leaves)
    g = torch.Generator(device=inputs[0].device).manual_seed(seed)
    loss = sum(
        (o.double() * torch.randn(o.shape, generator=g, device=o.device, dtype=torch.float64)).sum() for o in outs
    )
    loss.backward()
    return [o.detach() for o in outs], [t.grad for t in leaves]


def srwm_problem(B, T, H, D, device):
    g = torch.Generator(device=device).manual_seed(T * 1000 + D)
    x = torch.randn(B, T, H, D, device=device, generator=g)
    ws = [torch.randn(H, D, n, device=device, generator=g) / math.sqrt(D) for n in (D, D, D, 4)]
    return [t.to(torch.bfloat16).double() for t in (x, *ws)]  # the reference sees the rounded values


def qkv_problem(B, T, H, D, device, with_beta):
    g = torch.Generator(device=device).manual_seed(T * 1000 + D + 7)
    q = F.elu(torch.randn(B, T, H, D, device=device, generator=g)) + 1
    q = q / q.sum(-1, keepdim=True)
    k = F.normalize(torch.rand(B, T, H, D, device=device, generator=g), dim=-1)
    v = torch.randn(B, T, H, D, device=device, generator=g)
    S0 = torch.randn(B, H, D, D, device=device, generator=g) * 0.1
    ts = [q, k, v] + ([torch.rand(B, T, H, device=device, generator=g)] if with_beta else []) + [S0]
    return [t.to(torch.bfloat16).double() for t in ts]


def srwm_fn(backend, mode="checkpointed"):
    return lambda x, *ws: (lambda y, st: (y, *st))(*srwm(x, *ws, backend=backend, mode=mode))


def delta_fn(backend, mode="chunk"):
    return lambda q, k, v, b, S0: delta_rule(q, k, v, b, initial_state=S0, backend=backend, mode=mode)


def linear_fn(backend, mode="chunk"):
    return lambda q, k, v, S0: linear_attention(q, k, v, initial_state=S0, backend=backend, mode=mode)


def compare(name, fn, ref_fn, inputs, dtype) -> bool:
    out, grads = loss_grads(fn, inputs, dtype)
    ref_out, ref_grads = loss_grads(ref_fn, inputs, torch.float64)
    errs = [rel_err(a, b) for a, b in zip(out + grads, ref_out + ref_grads)]
    finite = all(torch.isfinite(t).all() for t in out + grads)
    ok = finite and max(errs) < TOL
    print(
        f"| {name} | {max(errs[: len(out)]):.1e} | {max(errs[len(out) :]):.1e} | {'ok' if ok else 'FAIL'} |", flush=True
    )
    return ok


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda", help="cuda, or cpu for a smoke run under TRITON_INTERPRET=1")
    p.add_argument("--quick", action="store_true", help="tiny sizes (a smoke run of the script)")
    p.add_argument("--long", type=int, default=100_000, help="T of the no-NaN run")
    a = p.parse_args()
    if a.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("gpu_check: no CUDA device (use --device cpu --quick with TRITON_INTERPRET=1 for a smoke run)")
    from adaptmem.ops._dispatch import installed

    Ts, Ds, B, H = ([1, 5], [4], 1, 2) if a.quick else ([1, 63, 64, 1000, 4096], [16, 32, 64], 2, 2)
    backends = ["triton"] + (["fla"] if installed("fla") and a.device == "cuda" else [])
    bf16 = torch.bfloat16
    results = []
    print("| case | max rel. err outputs | max rel. err gradients | |")
    print("|---|---|---|---|")
    for D in Ds:
        for T in Ts:
            inputs = srwm_problem(B, T, H, D, a.device)
            results.append(
                compare(f"srwm triton T={T} D={D}", srwm_fn("triton"), srwm_fn("torch", "reference"), inputs, bf16)
            )
            for backend in backends:
                for mode in ("chunk", "recurrent") if backend == "fla" else ("chunk",):
                    inputs = qkv_problem(B, T, H, D, a.device, with_beta=True)
                    results.append(
                        compare(
                            f"delta_rule {backend} {mode} T={T} D={D}",
                            delta_fn(backend, mode),
                            delta_fn("torch", "recurrent"),
                            inputs,
                            bf16,
                        )
                    )
                inputs = qkv_problem(B, T, H, D, a.device, with_beta=False)
                if backend == "triton" or T >= H:  # fla's linear attention rejects T < H
                    results.append(
                        compare(
                            f"linear_attention {backend} T={T} D={D}",
                            linear_fn(backend),
                            linear_fn("torch", "recurrent"),
                            inputs,
                            bf16,
                        )
                    )
    T_long = 50 if a.quick else a.long
    print(f"\nT = {T_long}: finite outputs and gradients")
    for name, fn, inputs in [
        ("srwm triton", srwm_fn("triton"), srwm_problem(1, T_long, 2, 16, a.device)),
        ("delta_rule triton", delta_fn("triton"), qkv_problem(1, T_long, 2, 16, a.device, with_beta=True)),
    ]:
        out, grads = loss_grads(fn, inputs, bf16)
        ok = all(torch.isfinite(t).all() for t in out + grads)
        scale = max(t.double().abs().max().item() for t in out)
        print(f"- {name}: {'ok' if ok else 'FAIL (NaN/Inf)'}; largest |output or state| {scale:.3g}")
        results.append(ok)
    print(f"\n{sum(results)}/{len(results)} checks passed")
    sys.exit(0 if all(results) else 1)


if __name__ == "__main__":
    main()
