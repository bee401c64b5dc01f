"""Fast-weight ops on CPU, forward + backward: fast paths vs their step-loop references.

    python benchmarks/bench_ops.py --threads 2   # the issue's sizes, 2 threads
    python benchmarks/bench_ops.py --threads 1 --only fused   # the fused CPU SRWM table alone
    python benchmarks/bench_ops.py --quick    # tiny sizes (smoke test)

Each case runs in a fresh process: time is the median of a few fwd+bwd calls, memory the
peak resident memory the call adds. Targets: SRWM custom backward >= 3x faster and <= 1/4
the peak memory of autograd through the reference loop; delta_rule chunk >= 10x faster than
the recurrent loop; recurrent_delta_rule's fused CPU kernel >= 3x its loop. The first table's
fast SRWM and recurrent_delta_rule rows run backend="torch"; recurrent_delta_rule's torch form
recomputes each span in the backward (torch.utils.checkpoint): it trades time for memory.

The second table puts the fused CPU SRWM kernel (``backend="numba"``) against the torch path at
the issue's size and at the example scripts' sizes, timed in interleaved rounds in one process,
with its arithmetic rate against a 1024 x 1024 fp32 GEMM at the same thread count (the
machine's attainable FMA rate). Targets: >= 4x the torch path, >= 50% of the GEMM rate.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
from collections.abc import Sequence

from adaptmem.utils import cli


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = cli.parser(__doc__)
    ap.add_argument("--quick", action="store_true", help="tiny sizes, for a smoke test")
    cli.add_threads(ap)
    ap.add_argument("--repeats", type=int, default=3, help="timed calls per case (median reported)")
    ap.add_argument("--only", choices=("all", "fused"), default="all", help="'fused': the fused CPU SRWM table alone")
    return cli.parse(ap, argv)


if __name__ == "__main__":  # answer --help and bad flags before the heavy imports below
    ARGS = parse_args()

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch
from _harness import load_note, measure, measure_interleaved, table

from adaptmem.utils import configure_threads


def warm_numba() -> None:
    """Load (or compile) the fused CPU kernels before a case's memory baseline is taken: numba
    and its LLVM add ~150 MB of resident memory once per process, not per call."""
    from adaptmem.ops import recurrent_delta_rule, srwm

    x = torch.randn(1, 2, 1, 4, requires_grad=True)
    y, _ = srwm(x, *[torch.randn(1, 4, n) for n in (4, 4, 4, 4)], backend="numba")
    y.sum().backward()
    o, _ = recurrent_delta_rule(x, x, x, x[..., 0], *[torch.randn(1, 4, 4)] * 3, torch.zeros(1, 4), backend="numba")
    o.sum().backward()


def srwm_case(B, T, H, D, mode, backend="torch", batched=False, reset_p=0.0, calls=1, **kw):
    """fwd+bwd of ``calls`` srwm calls; ``batched``: per-row start weights (a carried state);
    ``reset_p``: probability of a reset before each step of each row."""
    from adaptmem.ops import srwm

    if backend == "numba":
        warm_numba()
    g = torch.Generator().manual_seed(0)
    x = torch.nn.functional.normalize(torch.randn(B, T, H, D, generator=g), dim=-1).requires_grad_()
    lead = (B, H) if batched else (H,)
    ws = [(torch.randn(*lead, D, D, generator=g) / D**0.5).requires_grad_() for _ in range(3)]
    ws.append((torch.randn(*lead, D, 4, generator=g) / D**0.5).requires_grad_())
    reset = (torch.rand(B, T, generator=g) < reset_p) if reset_p else None

    def run():
        for _ in range(calls):
            y, state = srwm(x, *ws, mode=mode, backend=backend, reset=reset, **kw)
            (y.sum() + state.W_y.sum()).backward()

    return run


def gemm_case(n):
    a, b = torch.randn(n, n), torch.randn(n, n)

    def run():
        for _ in range(4):
            a @ b

    return run


def srwm_fused_table(quick: bool, threads: int, rounds: int) -> str:
    """The fused CPU kernel vs the torch path at the issue's and the examples' sizes."""
    D = 16
    cases = [  # (what, B, T, H, batched start weights, reset probability)
        ("issue size", 8, 512, 8, False, 0.0),
        ("few-shot support (5-way 1-shot + 1 query)", 16, 6, 8, False, 0.0),
        ("few-shot query step (16 x 5 queries, carried state)", 80, 1, 8, True, 0.0),
        ("LM segment (srwm_lm defaults, reset_every 512)", 16, 64, 8, False, 1 / 512),
        ("RL unroll", 48, 50, 8, False, 0.01),
    ]
    if quick:
        cases = [(w, max(1, B // 4), max(1, T // 8), 2, b, r) for w, B, T, H, b, r in cases]
    gemm_n = 256 if quick else 1024
    ((gemm_wall, gemm_cpu),) = measure_interleaved(
        [functools.partial(gemm_case, gemm_n)], rounds=rounds, threads=threads
    )
    gemm_rate, gemm_cpu_rate = (4 * 2 * gemm_n**3 / t / 1e9 for t in (gemm_wall, gemm_cpu))
    rows = []
    for what, B, T, H, batched, reset_p in cases:
        calls = max(1, 4096 // (B * T))  # small calls are repeated to time ~10 ms or more
        builds = [
            functools.partial(
                srwm_case, B, T, H, D, "checkpointed", backend, batched=batched, reset_p=reset_p, calls=calls
            )
            for backend in ("torch", "numba")
        ]
        (t_torch, c_torch), (t_fused, c_fused) = measure_interleaved(builds, rounds=rounds, threads=threads)
        E = 3 * D + 4
        flops = B * H * T * 20 * D * E * calls  # 20 D E flops per head and step, fwd+bwd
        gflops, gflops_cpu = flops / t_fused / 1e9, flops / c_fused / 1e9
        rows.append(
            [
                what,
                f"B={B} T={T} H={H} D={D}",
                f"{t_torch / calls * 1e3:.2f}",
                f"{t_fused / calls * 1e3:.2f}",
                f"{t_torch / t_fused:.1f}x / {c_torch / c_fused:.1f}x",
                f"{gflops:.1f} / {gflops_cpu:.1f}",
                f"{100 * gflops / gemm_rate:.0f}% / {100 * gflops_cpu / gemm_cpu_rate:.0f}%",
            ]
        )
    head = (
        f"SRWM fused CPU kernel (numba) vs the torch path, fp32 fwd+bwd, {threads} threads; fp32 GEMM "
        f"{gemm_n}^3: {gemm_rate:.1f} GFLOP/s wall, {gemm_cpu_rate:.1f} per CPU-second; {load_note()}\n"
        "targets: speed-up >= 4x, kernel rate >= 50% of the GEMM's (per CPU-second: what an idle core "
        "would give, for one thread)\n"
    )
    return head + table(
        rows,
        [
            "case",
            "size",
            "torch ms",
            "numba ms",
            "speed-up (wall / CPU)",
            "numba GFLOP/s (wall / CPU)",
            "% of GEMM (wall / CPU)",
        ],
    )


def qkv_case(B, T, H, D, op, mode, backend="torch"):
    from adaptmem.ops import delta_rule, linear_attention, recurrent_delta_rule

    if backend == "numba":
        warm_numba()
    g = torch.Generator().manual_seed(0)
    q = torch.rand(B, T, H, D, generator=g).requires_grad_()
    k = torch.nn.functional.normalize(torch.rand(B, T, H, D, generator=g), dim=-1).requires_grad_()
    v = torch.randn(B, T, H, D, generator=g).requires_grad_()
    beta = torch.rand(B, T, H, generator=g).requires_grad_()
    R = [(torch.randn(H, D, D, generator=g) / D**0.5).requires_grad_() for _ in range(3)]
    r_b = torch.zeros(H, D, requires_grad=True)

    def run():
        if op == "delta_rule":
            o, _ = delta_rule(q, k, v, beta, mode=mode)
        elif op == "linear_attention":
            o, _ = linear_attention(q, k, v, mode=mode)
        else:
            o, _ = recurrent_delta_rule(q, k, v, beta, *R, r_b, mode=mode, backend=backend)
        o.sum().backward()

    return run


def main(argv: Sequence[str] | argparse.Namespace | None = None) -> None:
    args = argv if isinstance(argv, argparse.Namespace) else parse_args(argv)
    threads = configure_threads(args.threads).intra_op  # every case's process uses this many
    if args.only == "fused":
        print(srwm_fused_table(args.quick, threads, rounds=max(5, args.repeats)))
        return
    s = 8 if args.quick else 1  # size divisor
    srwm_size = (8 // min(s, 4), 512 // s, 8 // min(s, 4), 16)
    delta_size = (1, 2048 // s, 4, 64 // min(s, 4))
    rdelta_size = (
        4 // min(s, 4),
        1024 // s,
        4,
        64 // min(s, 4),
    )  # large enough that the per-step state dominates memory
    cases = [
        # (name, size, baseline build, fast build, target speed-up, target memory ratio)
        (
            "srwm",
            srwm_size,
            functools.partial(srwm_case, *srwm_size, "reference"),
            functools.partial(srwm_case, *srwm_size, "checkpointed"),
            3.0,
            0.25,
        ),
        (
            "delta_rule",
            delta_size,
            functools.partial(qkv_case, *delta_size, "delta_rule", "recurrent"),
            functools.partial(qkv_case, *delta_size, "delta_rule", "chunk"),
            10.0,
            None,
        ),
        (
            "linear_attention",
            delta_size,
            functools.partial(qkv_case, *delta_size, "linear_attention", "recurrent"),
            functools.partial(qkv_case, *delta_size, "linear_attention", "chunk"),
            None,
            None,
        ),
        (
            "recurrent_delta_rule",
            rdelta_size,
            functools.partial(qkv_case, *rdelta_size, "recurrent_delta_rule", "reference"),
            functools.partial(qkv_case, *rdelta_size, "recurrent_delta_rule", "checkpointed"),
            None,
            None,
        ),
        (
            "recurrent_delta_rule fused CPU (numba)",
            rdelta_size,
            functools.partial(qkv_case, *rdelta_size, "recurrent_delta_rule", "reference"),
            functools.partial(qkv_case, *rdelta_size, "recurrent_delta_rule", "checkpointed", "numba"),
            3.0,
            None,
        ),
    ]
    rows = []
    for name, size, base, fast, speed_target, mem_target in cases:
        t_base, m_base = measure(base, repeats=args.repeats, threads=threads)
        t_fast, m_fast = measure(fast, repeats=args.repeats, threads=threads)
        speed, mem = t_base / t_fast, m_fast / max(m_base, 1e-9)
        rows.append(
            [
                name,
                "B={} T={} H={} D={}".format(*size),
                f"{t_base * 1e3:.0f}",
                f"{t_fast * 1e3:.0f}",
                f"{speed:.1f}x" + (f" (>= {speed_target:g}x)" if speed_target else ""),
                f"{m_base:.0f}",
                f"{m_fast:.0f}",
                f"{mem:.2f}" + (f" (<= {mem_target:g})" if mem_target else ""),
            ]
        )
    print(f"CPU fp32, forward+backward, {threads} threads, torch {torch.__version__}; {load_note()}")
    print("baseline: srwm = autograd through the reference loop; others = the recurrent step loop")
    print(table(rows, ["op", "size", "baseline ms", "fast ms", "speed-up", "baseline MiB", "fast MiB", "memory ratio"]))
    print()
    print(srwm_fused_table(args.quick, threads, rounds=max(5, args.repeats)))


if __name__ == "__main__":
    main(ARGS)
