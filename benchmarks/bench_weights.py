"""Speed of the RNN weight tools: batched functional RNNs and zoo training.

1. ``functional_rnn`` over 64 networks (the formal-language LSTM, 6 -> 2 x 32 -> 6) against
   a Python loop that calls 64 ``nn.LSTM`` + ``nn.Linear`` modules, forward and
   forward+backward, for 1 and 8 sequences of 41 steps per network.
2. Zoo training throughput: networks trained for 1,000 steps per core-minute (process CPU
   time, one thread), for work units of 1 / 16 / 64 batched networks and for the plain loop
   (one ``nn.LSTM`` with its own AdamW per network).

    python benchmarks/bench_weights.py            # ~3 min
    python benchmarks/bench_weights.py --quick    # smoke test, seconds
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Sequence

from adaptmem.utils import cli


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = cli.parser(__doc__)
    p.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test that finishes in seconds")
    p.add_argument("--threads", type=cli.positive_int, default=1, help="torch threads for part 1 (part 2 always uses 1)")
    return cli.parse(p, argv)


if __name__ == "__main__":  # answer --help and bad flags before the heavy imports below
    ARGS = parse_args()

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from adaptmem.utils import configure_threads  # noqa: E402
from adaptmem.weights import WeightSpec, functional_rnn, load_into  # noqa: E402
from adaptmem.weights.zoo import ZooConfig  # noqa: E402
from adaptmem.weights.zoo import formal_language as fl  # noqa: E402
from adaptmem.weights.zoo.generate import _FormalLanguage, plan_runs  # noqa: E402


def timed(fn, repeats: int) -> float:
    """Median process-CPU seconds of ``fn()`` after one warm-up call.

    CPU time rather than wall time: on a shared machine wall time mostly measures the other
    processes; with one thread the two agree on an idle machine.
    """
    fn()
    times = []
    for _ in range(repeats):
        t = time.process_time()
        fn()
        times.append(time.process_time() - t)
    return sorted(times)[len(times) // 2]


def bench_functional(n: int, T: int, repeats: int) -> list[tuple]:
    spec = WeightSpec("lstm", 6, 32, num_layers=2, output_size=6)
    vectors = spec.init_vectors(n, torch.Generator().manual_seed(0))
    modules = [load_into(v, spec.build()) for v in vectors]
    rows = []
    for batch in (1, 8):
        x = torch.randn(n, batch, T, 6)

        def batched_fwd():
            with torch.no_grad():
                functional_rnn(spec, vectors, x)

        def loop_fwd():
            with torch.no_grad():
                for m, xi in zip(modules, x):
                    m(xi)

        def batched_bwd():
            v = vectors.clone().requires_grad_()
            functional_rnn(spec, v, x).square().mean().backward()

        def loop_bwd():
            for m, xi in zip(modules, x):
                m.zero_grad(set_to_none=True)
                m(xi)[0].square().mean().backward()

        for mode, a, b in (("forward", batched_fwd, loop_fwd), ("fwd+bwd", batched_bwd, loop_bwd)):
            tb, tl = timed(a, repeats), timed(b, repeats)
            rows.append((batch, mode, tl * 1e3, tb * 1e3, tl / tb))
    return rows


def bench_zoo(group: int, steps: int) -> float:
    """Networks x 1k steps per core-minute for one batched unit (training steps only)."""
    cfg = ZooConfig(num_runs=group, group_size=group)
    plan = {k: v[:group] for k, v in plan_runs(cfg).items()}
    gen = torch.Generator().manual_seed(0)
    problem = _FormalLanguage(cfg, plan, gen, torch.Generator().manual_seed(1))
    v = cfg.spec.init_vectors(group, gen).requires_grad_()
    opt = torch.optim.Adam([v], lr=cfg.lr)

    def step():
        loss = problem.loss(v)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        with torch.no_grad():
            v.mul_(1 - cfg.lr * problem.wd)
        opt.step()

    step()
    t = time.process_time()
    for _ in range(steps):
        step()
    return group * steps / 1000 / ((time.process_time() - t) / 60)


def bench_zoo_loop(networks: int, steps: int) -> float:
    """The same training with one nn.LSTM + AdamW per network, one after the other."""
    cfg = ZooConfig()
    gen = torch.Generator().manual_seed(0)
    tasks = fl.task_table()[torch.as_tensor(plan_runs(cfg)["task_id"][:networks])]
    elapsed = 0.0
    for k in range(networks):
        model = cfg.spec.build()
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        t = time.process_time()
        for _ in range(steps):
            tok = fl.sample_strings(tasks[k : k + 1], cfg.batch_size, cfg.max_n, gen)[0]
            y, _ = model(F.one_hot(tok[:, :-1], fl.VOCAB).float())
            loss = F.cross_entropy(y.flatten(0, 1), tok[:, 1:].flatten())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        elapsed += time.process_time() - t
    return networks * steps / 1000 / (elapsed / 60)


def main(argv: Sequence[str] | argparse.Namespace | None = None) -> None:
    args = argv if isinstance(argv, argparse.Namespace) else parse_args(argv)
    n, T, repeats = (8, 10, 1) if args.quick else (64, 41, 5)
    zoo_steps = 3 if args.quick else 60
    load = os.getloadavg()[0]
    print(f"# bench_weights: torch {torch.__version__}, {os.cpu_count()} cores, 1-min load average {load:.1f}")

    configure_threads(args.threads)
    print(f"\n## functional_rnn over {n} LSTMs (6 -> 2 x 32 -> 6), T={T}, {args.threads} thread(s)")
    print("| seqs/network | pass | loop over nn.LSTM (CPU ms) | functional_rnn (CPU ms) | speed-up |\n|---|---|---|---|---|")
    for batch, mode, tl, tb, ratio in bench_functional(n, T, repeats):
        print(f"| {batch} | {mode} | {tl:.1f} | {tb:.1f} | {ratio:.2f}x |")

    configure_threads(1, verbose=False)
    print(f"\n## zoo training, formal languages, batch 32, T={fl.seq_len(ZooConfig().max_n)}, 1 thread")
    print("| training | networks x 1k steps per core-minute | vs nn.LSTM loop |\n|---|---|---|")
    base = bench_zoo_loop(2, zoo_steps)
    print(f"| nn.LSTM + AdamW, one network at a time | {base:.2f} | 1.00x |")
    for group in (1, 16) if args.quick else (1, 16, 64):
        r = bench_zoo(group, zoo_steps)
        print(f"| batched unit of {group} | {r:.2f} | {r / base:.2f}x |")
    print(f"\n(1-min load average at the end: {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main(ARGS)
