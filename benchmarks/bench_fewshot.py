"""Training throughput (images/s) of the sequential few-shot learners, SRWM vs DeltaNet vs LSTM.

Times full training steps (Conv-4 forward/backward, sequence model, Adam) of the example's
default configuration on random 28x28 images, 5-way 1-shot with 5 queries. Models are timed in
interleaved rounds and the median round is reported, so that load changes on a shared machine
hit every model alike; CPU seconds per step are printed next to wall-clock ones.

    python benchmarks/bench_fewshot.py            # the example's default sizes
    python benchmarks/bench_fewshot.py --quick    # smoke test, a few seconds
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Sequence

from adaptmem.utils import cli


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = cli.parser(__doc__)
    p.add_argument("--kinds", nargs="+", default=["srwm", "deltanet", "lstm"], help="models to time")
    p.add_argument("--batch-size", type=int, default=16, help="episodes per step")
    p.add_argument("--ways", type=int, default=5, help="N: classes per episode")
    p.add_argument("--shots", type=int, default=1, help="K: support images per class")
    p.add_argument("--queries", type=int, default=1, help="queries per class")
    p.add_argument("--conv-channels", type=int, default=32, help="Conv-4 width")
    p.add_argument("--d-model", type=int, default=128, help="sequence-model width")
    p.add_argument("--num-heads", type=int, default=8, help="heads of the fast-weight layers")
    p.add_argument("--num-layers", type=int, default=2, help="sequence-model layers")
    p.add_argument("--steps", type=int, default=10, help="timed steps per round")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds (median reported)")
    cli.add_threads(p)
    p.add_argument("--quick", action="store_true", help="tiny sizes and 2 steps x 2 rounds: a smoke test")
    cli.add_aliases(p, {"--models": "--kinds", "--heads": "--num-heads", "--layers": "--num-layers"})
    return cli.parse(p, argv)


if __name__ == "__main__":  # answer --help and bad flags before the heavy imports below
    ARGS = parse_args()

import torch

from adaptmem.data.fewshot import Episode
from adaptmem.models import build_fewshot_learner, episode_loss
from adaptmem.utils import configure_threads, count_parameters


def main(argv: Sequence[str] | argparse.Namespace | None = None) -> None:
    args = argv if isinstance(argv, argparse.Namespace) else parse_args(argv)
    if args.quick:
        args.batch_size, args.conv_channels, args.d_model, args.num_heads, args.steps, args.rounds = 2, 8, 32, 4, 2, 2
    threads = configure_threads(args.threads).intra_op
    N, K, Q, B = args.ways, args.shots, args.queries, args.batch_size
    g = torch.Generator().manual_seed(0)
    ep = Episode(
        torch.rand(B, N * K, 1, 28, 28, generator=g),
        torch.stack([torch.randperm(N, generator=g).repeat(K) for _ in range(B)]),
        torch.rand(B, N * Q, 1, 28, 28, generator=g),
        torch.stack([torch.randperm(N, generator=g).repeat(Q) for _ in range(B)]),
    )
    images = B * N * (K + Q)
    runs = {}
    for name in args.kinds:
        torch.manual_seed(0)
        net = build_fewshot_learner(
            name,
            num_classes=N,
            in_channels=1,
            image_size=28,
            conv_channels=args.conv_channels,
            d_model=args.d_model,
            num_heads=args.num_heads,
            num_layers=args.num_layers,
        )
        runs[name] = (net, torch.optim.Adam(net.parameters(), lr=1e-4), [], [])

    def step(net, opt):
        loss, _ = episode_loss(net, ep)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for net, opt, _, _ in runs.values():  # warm-up (allocator, lazy imports)
        step(net, opt)
    load = os.getloadavg()[0]
    for _ in range(args.rounds):
        for net, opt, wall, cpu in runs.values():
            t, c = time.perf_counter(), time.process_time()
            for _ in range(args.steps):
                step(net, opt)
            wall.append((time.perf_counter() - t) / args.steps)
            cpu.append((time.process_time() - c) / args.steps)
    print(
        f"{N}-way {K}-shot, {N * Q} queries, batch {B} episodes = {images} images/step; "
        f"Conv-4 {args.conv_channels} ch, "
        f"d_model {args.d_model}, {args.num_layers} layers; {threads} thread(s); load average {load:.1f} -> "
        f"{os.getloadavg()[0]:.1f}\n"
    )
    rate = {k: images / statistics.median(v[2]) for k, v in runs.items()}
    cpu_rate = {k: images / statistics.median(v[3]) for k, v in runs.items()}
    refs = [r for r in ("lstm", "deltanet") if r in runs]
    head = (
        "| model | params | images/s (wall) | images/CPU-s | " + " | ".join(f"vs {r} (wall / CPU)" for r in refs) + " |"
    )
    print(head + "\n" + "|---" * (4 + len(refs)) + "|")
    for k, (net, *_rest) in runs.items():
        ratios = " | ".join(f"{rate[k] / rate[r]:.2f}x / {cpu_rate[k] / cpu_rate[r]:.2f}x" for r in refs)
        print(f"| {k} | {count_parameters(net):,} | {rate[k]:.0f} | {cpu_rate[k]:.0f} | {ratios} |")


if __name__ == "__main__":
    main(ARGS)
