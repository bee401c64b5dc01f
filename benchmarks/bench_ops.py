"""Fast-weight ops on CPU, forward + backward: fast paths vs their step-loop references.

    python benchmarks/bench_ops.py --threads 2   # the issue's sizes, 2 threads
    python benchmarks/bench_ops.py --quick    # tiny sizes (smoke test)

Each case runs in a fresh process: time is the median of a few fwd+bwd calls, memory the
peak resident memory the call adds. Targets: SRWM custom backward >= 3x faster and <= 1/4
the peak memory of autograd through the reference loop; delta_rule chunk >= 10x faster than
the recurrent loop. recurrent_delta_rule's "fast" column is its memory-bounded checkpointed mode,
which recomputes each span in the backward: it trades time for memory.
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
    return cli.parse(ap, argv)


if __name__ == "__main__":  # answer --help and bad flags before the heavy imports below
    ARGS = parse_args()

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _harness import load_note, measure, table  # noqa: E402

import torch  # noqa: E402

from adaptmem.utils import configure_threads  # noqa: E402


def srwm_case(B, T, H, D, mode, **kw):
    from adaptmem.ops import srwm

    g = torch.Generator().manual_seed(0)
    x = torch.nn.functional.normalize(torch.randn(B, T, H, D, generator=g), dim=-1).requires_grad_()
    ws = [(torch.randn(H, D, D, generator=g) / D**0.5).requires_grad_() for _ in range(3)]
    ws.append((torch.randn(H, D, 4, generator=g) / D**0.5).requires_grad_())

    def run():
        y, state = srwm(x, *ws, mode=mode, **kw)
        (y.sum() + state.W_y.sum()).backward()

    return run


def qkv_case(B, T, H, D, op, mode):
    from adaptmem.ops import delta_rule, linear_attention, recurrent_delta_rule

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
            o, _ = recurrent_delta_rule(q, k, v, beta, *R, r_b, mode=mode)
        o.sum().backward()

    return run


def main(argv: Sequence[str] | argparse.Namespace | None = None) -> None:
    args = argv if isinstance(argv, argparse.Namespace) else parse_args(argv)
    threads = configure_threads(args.threads).intra_op  # every case's process uses this many
    s = 8 if args.quick else 1  # size divisor
    srwm_size = (8 // min(s, 4), 512 // s, 8 // min(s, 4), 16)
    delta_size = (1, 2048 // s, 4, 64 // min(s, 4))
    rdelta_size = (4 // min(s, 4), 1024 // s, 4, 64 // min(s, 4))  # large enough that the per-step state dominates memory
    cases = [
        # (name, size, baseline build, fast build, target speed-up, target memory ratio)
        ("srwm", srwm_size, functools.partial(srwm_case, *srwm_size, "reference"),
         functools.partial(srwm_case, *srwm_size, "checkpointed"), 3.0, 0.25),
        ("delta_rule", delta_size, functools.partial(qkv_case, *delta_size, "delta_rule", "recurrent"),
         functools.partial(qkv_case, *delta_size, "delta_rule", "chunk"), 10.0, None),
        ("linear_attention", delta_size, functools.partial(qkv_case, *delta_size, "linear_attention", "recurrent"),
         functools.partial(qkv_case, *delta_size, "linear_attention", "chunk"), None, None),
        ("recurrent_delta_rule", rdelta_size,
         functools.partial(qkv_case, *rdelta_size, "recurrent_delta_rule", "reference"),
         functools.partial(qkv_case, *rdelta_size, "recurrent_delta_rule", "checkpointed"), None, None),
    ]
    rows = []
    for name, size, base, fast, speed_target, mem_target in cases:
        t_base, m_base = measure(base, repeats=args.repeats, threads=threads)
        t_fast, m_fast = measure(fast, repeats=args.repeats, threads=threads)
        speed, mem = t_base / t_fast, m_fast / max(m_base, 1e-9)
        rows.append([
            name, "B={} T={} H={} D={}".format(*size),
            f"{t_base * 1e3:.0f}", f"{t_fast * 1e3:.0f}", f"{speed:.1f}x" + (f" (>= {speed_target:g}x)" if speed_target else ""),
            f"{m_base:.0f}", f"{m_fast:.0f}", f"{mem:.2f}" + (f" (<= {mem_target:g})" if mem_target else ""),
        ])
    print(f"CPU fp32, forward+backward, {threads} threads, torch {torch.__version__}; {load_note()}")
    print("baseline: srwm = autograd through the reference loop; others = the recurrent step loop")
    print(table(rows, ["op", "size", "baseline ms", "fast ms", "speed-up", "baseline MiB", "fast MiB", "memory ratio"]))


if __name__ == "__main__":
    main(ARGS)
