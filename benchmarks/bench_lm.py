"""Language-model speed per layer kind: training tokens/s, generation tokens/s, and generation
time per token as the context grows (flat for fast-weight models, rising for a Transformer
that recomputes its window without a KV cache).

    python benchmarks/bench_lm.py            # the example's default sizes (4 x 128, chars)
    python benchmarks/bench_lm.py --quick    # seconds: a smoke test of this script

All models have the Transformer's parameter count (feed-forward width matched). Timings are
medians of repeated runs; the load average is printed because the numbers depend on it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Sequence

from adaptmem.utils import cli


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = cli.parser(__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny sizes and few repeats (smoke test)")
    parser.add_argument(
        "--kinds", default=None, help="comma-separated layer kinds (default: transformer and every fast-weight kind)"
    )
    cli.add_threads(parser)
    return cli.parse(parser, argv)


if __name__ == "__main__":  # answer --help and bad flags before the heavy imports below
    ARGS = parse_args()

import torch

from adaptmem.models.lm import FAST_KINDS, build_lm, match_d_ff, train_step
from adaptmem.utils import configure_threads, count_parameters

KINDS = ("transformer", *FAST_KINDS)


def timed(fn, repeats: int) -> tuple[float, float]:
    """Median wall and process-CPU seconds of ``fn()`` over ``repeats`` runs, after a warm-up.
    With one thread, CPU time is what the wall time would be on an idle core."""
    fn()
    wall, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return statistics.median(wall), statistics.median(cpu)


def make(kind: str, args, max_len: int) -> torch.nn.Module:
    sizes = dict(num_layers=args.num_layers, d_model=args.d_model, num_heads=args.num_heads, max_len=max_len)
    if kind == "transformer":
        return build_lm(kind, args.vocab, **sizes)
    target = count_parameters(build_lm("transformer", args.vocab, **sizes))
    d_ff = match_d_ff(target, lambda f: build_lm(kind, args.vocab, d_ff=f, **sizes))
    return build_lm(kind, args.vocab, d_ff=d_ff, **sizes)


def train_rate(kind: str, args) -> tuple[float, float]:
    torch.manual_seed(0)
    model = make(kind, args, args.seq_len)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x, y = torch.randint(args.vocab, (2, args.batch_size, args.seq_len))
    state = [None]

    def step():
        _, state[0] = train_step(model, x, y, state[0], opt)

    return tuple(args.batch_size * args.seq_len / t for t in timed(step, args.repeats))


@torch.no_grad()
def per_token_ms(model: torch.nn.Module, context: int, n: int, repeats: int) -> tuple[float, float]:
    """Wall and CPU ms per generated token after ``context`` tokens (one token per call)."""
    model.eval()
    _, state = model(torch.randint(model.vocab_size, (1, context)))
    tok = torch.zeros(1, 1, dtype=torch.int64)

    def run():
        s = state
        for _ in range(n):
            _, s = model(tok, s)

    return tuple(1000 * t / n for t in timed(run, repeats))


def main(argv: Sequence[str] | argparse.Namespace | None = None) -> None:
    args = argv if isinstance(argv, argparse.Namespace) else parse_args(argv)
    if args.quick:
        args.num_layers, args.d_model, args.num_heads, args.batch_size, args.seq_len = 1, 32, 2, 4, 16
        args.repeats, args.contexts, args.gen_tokens = 1, (16, 64, 128), 8
    else:
        args.num_layers, args.d_model, args.num_heads, args.batch_size, args.seq_len = 4, 128, 8, 16, 64
        args.repeats, args.contexts, args.gen_tokens = 5, (64, 256, 1024, 2048), 32
    args.vocab = 65
    threads = configure_threads(args.threads).intra_op
    kinds = args.kinds.split(",") if args.kinds else list(KINDS)
    cli.check_choice("--kinds", kinds, KINDS)
    print(
        f"threads {threads}, load average {os.getloadavg()[0]:.2f}, model {args.num_layers} x {args.d_model}, "
        f"train batch {args.batch_size} x {args.seq_len}, vocab {args.vocab}\n"
    )

    rows = []
    for kind in kinds:
        rate = train_rate(kind, args)
        model = make(kind, args, max(args.contexts) + 2 * args.gen_tokens)
        ms = [per_token_ms(model, c, args.gen_tokens, args.repeats) for c in args.contexts]
        rows.append((kind, count_parameters(make(kind, args, args.seq_len)), rate, ms))
        print(f"  measured {kind} (load {os.getloadavg()[0]:.2f})", flush=True)
    base = next((r for r in rows if r[0] == "transformer"), rows[0])

    print(
        f"\nThroughput (wall: as measured; cpu: per second of process CPU time). Generation after a "
        f"context of {args.contexts[0]}; ratios are to {base[0]}.\n"
    )
    print(
        "| kind | parameters | train tok/s wall | train tok/s cpu | ratio | generate tok/s wall | "
        "generate tok/s cpu | ratio |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for kind, n, (tw, tc), ms in rows:
        gw, gc = 1000 / ms[0][0], 1000 / ms[0][1]
        print(
            f"| {kind} | {n:,} | {tw:,.0f} | {tc:,.0f} | {tc / base[2][1]:.2f} | {gw:,.0f} | {gc:,.0f} | "
            f"{gc * base[3][0][1] / 1000:.2f} |"
        )

    head = " | ".join(f"ctx {c}" for c in args.contexts)
    print("\nGeneration, CPU ms per token after a context of N tokens (ratio to the shortest context):\n")
    print(f"| kind | {head} |\n|---|" + "---|" * len(args.contexts))
    for kind, _, _, ms in rows:
        print(f"| {kind} | " + " | ".join(f"{m[1]:.2f} ({m[1] / ms[0][1]:.1f}x)" for m in ms) + " |")
    print(f"\nload average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main(ARGS)
