"""Speed of the RNN weight tools: batched functional RNNs and zoo training.

1. ``functional_rnn`` over 64 networks (the formal-language LSTM, 6 -> 2 x 32 -> 6) against
   a Python loop that calls 64 ``nn.LSTM`` + ``nn.Linear`` modules (oneDNN's fused LSTM on the
   CPU, cuDNN's on CUDA), forward and forward+backward, for 1 and 8 sequences of 41 steps per
   network; both step-loop forms of ``functional_rnn`` (``batched`` torch ops, and the compiled
   ``numba`` loop on the CPU), all timed in interleaved rounds in one process. Beside them, a
   square GEMM of the same total multiply-adds and one step's recurrent product of all networks
   as one ``bmm``, timed in the same rounds: the rates they reach bound what any form can gain
   over the loop (``GEMM floor``, ``step floor``; see the note under the table).
2. Zoo training throughput: networks trained for 1,000 steps per core-minute (process CPU
   time, one thread), for work units of 1 / 16 / 64 batched networks and for the plain loop
   (one ``nn.LSTM`` with its own AdamW per network). CPU only.

    python benchmarks/bench_weights.py                    # ~2 min
    python benchmarks/bench_weights.py --quick            # smoke test, seconds
    python benchmarks/bench_weights.py --device cuda      # part 1 on a GPU vs cuDNN (wall time)
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence

from adaptmem.utils import cli


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = cli.parser(__doc__)
    p.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test that finishes in seconds")
    p.add_argument(
        "--threads", type=cli.positive_int, default=1, help="torch threads for part 1 (part 2 always uses 1)"
    )
    p.add_argument(
        "--device",
        choices=("cpu", "cuda"),
        default="cpu",
        help="where part 1 runs: cpu (process CPU time) or cuda (wall time, synchronised; "
        "the loop runs cuDNN's LSTM); part 2 runs on the CPU only when this is cpu",
    )
    return cli.parse(p, argv)


if __name__ == "__main__":  # answer --help and bad flags before the heavy imports below
    ARGS = parse_args()

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch
import torch.nn.functional as F
from _harness import time_interleaved

from adaptmem.utils import configure_threads
from adaptmem.weights import WeightSpec, functional_rnn, load_into
from adaptmem.weights.functional import numba_unavailable
from adaptmem.weights.zoo import ZooConfig
from adaptmem.weights.zoo import formal_language as fl
from adaptmem.weights.zoo.generate import _FormalLanguage, plan_runs


def lstm_flops(spec: WeightSpec, n: int, batch: int, T: int) -> int:
    """Multiply-add flops (2 per MAC) of the forward pass: per step and sequence, each layer's
    ``(in + H) x 4H`` gate product and the Linear (the gates' elementwise work left out)."""
    H, macs, inp = spec.hidden_size, 0, spec.input_size
    for _ in range(spec.num_layers):
        macs += (inp + H) * 4 * H
        inp = H
    macs += H * (spec.output_size or 0)
    return 2 * macs * n * batch * T


def bench_functional(n: int, T: int, repeats: int, device: torch.device) -> list[dict]:
    """One row per (sequences per network, pass): times in ms of the loop, each functional_rnn
    form and the same-flops GEMM, all medians of ``repeats`` interleaved rounds."""
    spec = WeightSpec("lstm", 6, 32, num_layers=2, output_size=6)
    vectors = spec.init_vectors(n, torch.Generator().manual_seed(0)).to(device)
    modules = [load_into(v, spec.build().to(device)) for v in vectors]
    cuda = device.type == "cuda"
    H = spec.hidden_size
    backends = ["batched"] + ([] if numba_unavailable(spec, vectors) else ["numba"])
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    rows = []
    for batch in (1, 8):
        x = torch.randn(n, batch, T, 6, device=device)

        def forward(backend):
            def run():
                with torch.no_grad():
                    functional_rnn(spec, vectors, x, backend=backend)
                sync()

            return run

        def backward(backend):
            def run():
                v = vectors.clone().requires_grad_()
                functional_rnn(spec, v, x, backend=backend).square().mean().backward()
                sync()

            return run

        def loop_fwd():
            with torch.no_grad():
                for m, xi in zip(modules, x):
                    m(xi)
            sync()

        def loop_bwd():
            for m, xi in zip(modules, x):
                m.zero_grad(set_to_none=True)
                m(xi)[0].square().mean().backward()
            sync()

        for mode, loop, form, passes in (("forward", loop_fwd, forward, 1), ("fwd+bwd", loop_bwd, backward, 3)):
            flops = passes * lstm_flops(spec, n, batch, T)  # the backward: twice the forward's products
            side = max(8, round((flops / 2) ** (1 / 3)))
            a = torch.randn(side, side, device=device)

            def gemm():
                a @ a
                sync()

            # one step's recurrent product h_{t-1} W_hh^T of all n networks as one bmm: the work that
            # must run step by step (once per layer and step forward, once more backward for dh)
            hb, wb = torch.randn(n, batch, H, device=device), torch.randn(n, H, 4 * H, device=device)

            def step_product():
                torch.bmm(hb, wb)
                sync()

            times = time_interleaved([loop] + [form(b) for b in backends] + [gemm, step_product], repeats)
            t = [w if cuda else c for w, c in times]  # wall on CUDA (synchronised), CPU time on the CPU
            gemm_rate, step_rate = 2 * side**3 / t[-2], 2 * n * batch * H * 4 * H / t[-1]
            sequential = (passes + 1) // 2 * 2 * spec.num_layers * n * batch * T * H * 4 * H
            rows.append(
                dict(
                    batch=batch,
                    mode=mode,
                    loop=t[0],
                    forms=dict(zip(backends, t[1:-2])),
                    flops=flops,
                    gemm_rate=gemm_rate,
                    floor=flops / gemm_rate,
                    step_rate=step_rate,
                    step_floor=sequential / step_rate + (flops - sequential) / gemm_rate,
                )
            )
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
    n, T, repeats = (8, 10, 1) if args.quick else (64, 41, 7)
    zoo_steps = 3 if args.quick else 60
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("bench_weights: --device cuda, but torch sees no CUDA device")
    device = torch.device(args.device)
    load = os.getloadavg()[0]
    print(f"# bench_weights: torch {torch.__version__}, {os.cpu_count()} cores, 1-min load average {load:.1f}")

    configure_threads(args.threads)
    unit = "wall ms, synchronised" if device.type == "cuda" else "CPU ms"
    threads = f"{torch.get_num_threads()} torch thread(s)"
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else threads
    print(
        f"\n## functional_rnn over {n} LSTMs (6 -> 2 x 32 -> 6), T={T}, {where}, median of {repeats} "
        f"interleaved rounds ({unit})"
    )
    rows = bench_functional(n, T, repeats, device)
    forms = list(rows[0]["forms"])
    loop = "loop over nn.LSTM (cuDNN)" if device.type == "cuda" else "loop over nn.LSTM"
    print(
        f"| seqs/network | pass | {loop} | "
        + " | ".join(f"{f}" for f in forms)
        + " | "
        + " | ".join(f"{f} speed-up" for f in forms)
        + " | MFLOP | best form's GFLOP/s | GEMM GFLOP/s | GEMM floor | speed-up at the GEMM floor"
        " | step bmm GFLOP/s | step floor | speed-up at the step floor |"
    )
    print("|---" * (11 + 2 * len(forms)) + "|")
    for r in rows:
        best = min(r["forms"].values())
        print(
            f"| {r['batch']} | {r['mode']} | {r['loop'] * 1e3:.2f} | "
            + " | ".join(f"{t * 1e3:.2f}" for t in r["forms"].values())
            + " | "
            + " | ".join(f"{r['loop'] / t:.2f}x" for t in r["forms"].values())
            + f" | {r['flops'] / 1e6:.0f} | {r['flops'] / best / 1e9:.1f} | {r['gemm_rate'] / 1e9:.1f} | "
            f"{r['floor'] * 1e3:.2f} | {r['loop'] / r['floor']:.1f}x | {r['step_rate'] / 1e9:.1f} | "
            f"{r['step_floor'] * 1e3:.2f} | {r['loop'] / r['step_floor']:.1f}x |"
        )
    print(
        "\nGEMM floor: all the pass's multiply-adds at the rate of one square GEMM of as many flops. Step "
        "floor: the products that must run step by step (h W_hh^T, and dh = da W_hh backward) at the rate "
        "of one step's product for all networks as one bmm, the rest at the GEMM rate; gate "
        "nonlinearities counted as free in both."
    )
    if device.type == "cuda":
        return

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
