"""Continual learning on permuted MNIST: plain SGD vs EWC vs MbPA (Sprechmann et al., ICLR 2018).

A 2-hidden-layer MLP learns a sequence of tasks, each MNIST under its own fixed pixel
permutation (task 1 is unpermuted). After the last task we report the accuracy on every task's
test set and the average, for

- SGD:          sequential training, no protection against forgetting;
- EWC:          the same plus the elastic weight consolidation penalty (Kirkpatrick et al., 2017);
- MbPA:         the SGD network; every training pair (embedding, label) is written to an
                episodic memory, and each test prediction adapts the output layer on its
                K nearest memories (adaptmem.memory.MbPA);
- MbPA+replay:  (unless --no-replay) a network trained with replay of stored past examples, plus MbPA.

All methods use the same optimiser (Adam, as in the paper). Data: the MNIST IDX files in
<--data>/mnist. With the full training set, each task uses --train-per-task training digits and the
10,000 test digits; with only the test-set files (t10k-*, 1.6 MB) the 10,000 digits
are split 8,000 train / 2,000 test.

    python examples/mbpa_permuted_mnist.py                      # 5 tasks, a few minutes on 2 cores
    python examples/mbpa_permuted_mnist.py --tasks 10 --epochs 3 --no-replay
    python examples/mbpa_permuted_mnist.py --resume             # continue after the last finished task

After every task the models, memories, EWC anchors and all RNG states are saved atomically to
<--out>/ckpt.pt; --resume continues from there and gives the same numbers as an
uninterrupted run.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path

from adaptmem.utils import cli


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = cli.parser(__doc__)
    cli.add_data(p, "data folder; the MNIST IDX files are in its mnist/ sub-folder (or in it)")
    cli.add_download(p, "MNIST, 11 MB")
    p.add_argument("--tasks", type=int, default=5, help="number of permuted tasks")
    p.add_argument("--train-per-task", type=int, default=10_000, help="training digits per task (paper: 10,000)")
    p.add_argument("--test-per-task", type=int, default=2_000, help="test digits per task")
    p.add_argument("--epochs", type=int, default=1, help="passes over each task's training data")
    p.add_argument("--batch-size", type=int, default=64, help="training digits per step")
    p.add_argument("--hidden", type=int, default=128, help="width of both hidden layers")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
    p.add_argument("--ewc-lambda", type=float, default=500.0, help="EWC penalty weight")
    p.add_argument("--fisher-samples", type=int, default=500, help="digits used for each task's Fisher")
    p.add_argument("--memory-size", type=int, default=0, help="episodic memory slots (0: every training pair)")
    p.add_argument("--k", type=int, default=32, help="MbPA neighbours")
    p.add_argument("--mbpa-steps", type=int, default=5, help="MbPA local gradient steps")
    p.add_argument("--mbpa-lr", type=float, default=0.02, help="MbPA local learning rate")
    p.add_argument("--mbpa-l2", type=float, default=0.0, help="MbPA prior weight ||θx - θ||²")
    p.add_argument("--kernel-eps", type=float, default=1e-3, help="ε of the MbPA kernel 1/(ε + d²)")
    p.add_argument(
        "--replay", action=argparse.BooleanOptionalAction, default=True, help="also train and evaluate MbPA+replay"
    )
    cli.add_out(p, "runs/mbpa_permuted_mnist", help="where the checkpoint and the plot go")
    cli.add_resume(p, "continue from <out>/ckpt.pt after its last finished task")
    p.add_argument(
        "--stop-after-task",
        type=int,
        default=None,
        help="stop (checkpoint saved) after this many tasks; for running in pieces (default: off)",
    )
    cli.add_seed(p)
    cli.add_threads(p)
    cli.add_aliases(p, {"--data-dir": "--data", "--out-dir": "--out"})
    return cli.parse(p, argv)


if __name__ == "__main__":  # answer --help and bad flags before the heavy imports below
    ARGS = parse_args()

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap

from adaptmem.data.mnist import load_mnist
from adaptmem.memory import EpisodicMemory, MbPA
from adaptmem.utils import configure_threads, progress, seed_everything
from adaptmem.utils.integrity import load_verified, save_verified
from adaptmem.utils.logging import plot_curves
from adaptmem.utils.seed import get_rng_state, set_rng_state


class MLP(nn.Module):
    """784 -> hidden -> hidden (the embedding f_γ) -> 10 (the output layer g_θ adapted by MbPA)."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.embed = nn.Sequential(
            nn.Flatten(), nn.Linear(784, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU()
        )
        self.head = nn.Linear(hidden, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x))


CKPT_FORMAT = "adaptmem.example.mbpa_permuted_mnist"  # the checkpoint's header (adaptmem.utils.integrity)


def _run_config(args) -> dict:
    """The settings a checkpoint must share with the run that resumes it."""
    skip = {"resume", "stop_after_task", "threads", "out", "data", "download"}
    return {k: v for k, v in vars(args).items() if k not in skip}


def load_data(args) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Float images in [0, 1], flattened: train_x, train_y, test_x, test_y."""
    folder = cli.find_in(args.data, "mnist", "*-ubyte*")
    try:
        xtr, ytr = load_mnist(folder, "train", download_if_missing=args.download)
        xte, yte = load_mnist(folder, "test", download_if_missing=args.download)
    except FileNotFoundError:  # only the 10,000 test digits: split 8,000 / 2,000
        x, y = load_mnist(folder, "test")
        cut = int(0.8 * len(x))
        xtr, ytr, xte, yte = x[:cut], y[:cut], x[cut:], y[cut:]
    xtr, ytr = xtr[: args.train_per_task], ytr[: args.train_per_task]
    xte, yte = xte[: args.test_per_task], yte[: args.test_per_task]
    return xtr.flatten(1).float() / 255, ytr, xte.flatten(1).float() / 255, yte


def fisher_diagonal(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """E[(∂ log p(y|x) / ∂θ)²] with y sampled from the model, from per-example gradients."""
    params = {n: p.detach() for n, p in model.named_parameters()}

    def log_lik(p, xi, yi):
        return F.log_softmax(functional_call(model, p, (xi[None],)), -1)[0].gather(0, yi[None])[0]

    with torch.no_grad():
        y = torch.distributions.Categorical(logits=model(x)).sample()
    grads = vmap(grad(log_lik), in_dims=(None, 0, 0))(params, x, y)
    return {n: g.pow(2).mean(0) for n, g in grads.items()}


def train_task(model, x, y, args, *, anchors=(), memory=None, replay=None, desc="") -> None:
    """One task of training; ``anchors`` are EWC (fisher, params) pairs of earlier tasks."""
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    for _ in range(args.epochs):
        order = torch.randperm(len(x))
        for idx in progress(order.split(args.batch_size), desc=desc, leave=False):
            xb, yb = x[idx], y[idx]
            if replay is not None and len(replay[0]):  # an equal-size batch of stored past digits
                r = torch.randint(0, len(replay[0]), (len(idx),))
                xb, yb = torch.cat([xb, replay[0][r]]), torch.cat([yb, replay[1][r]])
            h = model.embed(xb)
            loss = F.cross_entropy(model.head(h), yb)
            for fisher, theta in anchors:
                loss = loss + args.ewc_lambda / 2 * sum(
                    (fisher[n] * (p - theta[n]).pow(2)).sum() for n, p in model.named_parameters()
                )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if memory is not None:  # the paper's writes: every training pair, as it is seen
                memory.write(h[: len(idx)].detach(), yb[: len(idx)])


@torch.no_grad()
def accuracy(model, x, y, mbpa: MbPA | None = None) -> float:
    h = model.embed(x)
    pred = mbpa(h).argmax(-1) if mbpa is not None else model.head(h).argmax(-1)
    return (pred == y).float().mean().item()


def main(argv: Sequence[str] | argparse.Namespace | None = None) -> dict[str, list[float]]:
    args = argv if isinstance(argv, argparse.Namespace) else parse_args(argv)
    configure_threads(args.threads)
    seed_everything(args.seed)
    xtr, ytr, xte, yte = load_data(args)
    g = torch.Generator().manual_seed(args.seed)
    perms = [torch.arange(784)] + [torch.randperm(784, generator=g) for _ in range(args.tasks - 1)]
    print(
        f"permuted MNIST: {args.tasks} tasks x {len(xtr):,} train / {len(xte):,} test digits, "
        f"MLP 784-{args.hidden}-{args.hidden}-10, {args.epochs} epoch(s) per task"
    )

    capacity = args.memory_size or args.tasks * args.epochs * len(xtr)
    methods = ["SGD", "EWC", "MbPA"] + (["MbPA+replay"] if args.replay else [])
    models = {m: MLP(args.hidden) for m in ("SGD", "EWC", "replay")}
    for m in models.values():  # identical initialisation for every method
        m.load_state_dict(models["SGD"].state_dict())
    memories = {m: EpisodicMemory(args.hidden, capacity) for m in ("SGD", "replay")}
    anchors: list = []
    ckpt, start = Path(args.out) / "ckpt.pt", 0
    if args.resume and ckpt.exists():
        state = load_verified(ckpt, format=CKPT_FORMAT)
        if state["args"] != _run_config(args):
            raise ValueError(f"--resume: {ckpt} was written with different settings: {state['args']}")
        for name, m in models.items():
            m.load_state_dict(state["models"][name])
        for name, mem in memories.items():
            mem.load_state_dict(state["memories"][name])
        anchors, start = state["anchors"], state["tasks_done"]
        g.set_state(state["generator"])
        set_rng_state(state["rng"])
        print(f"  resumed after task {start} from {ckpt}")
    t0 = time.time()
    for t, perm in enumerate(perms):
        if t < start:
            continue
        x = xtr[:, perm]
        train_task(models["SGD"], x, ytr, args, memory=memories["SGD"], desc=f"task {t + 1} SGD")
        train_task(models["EWC"], x, ytr, args, anchors=anchors, desc=f"task {t + 1} EWC")
        sub = torch.randperm(len(x), generator=g)[: args.fisher_samples]
        anchors.append(
            (
                fisher_diagonal(models["EWC"], x[sub]),
                {n: p.detach().clone() for n, p in models["EWC"].named_parameters()},
            )
        )
        if args.replay:
            past = (torch.cat([xtr[:, p] for p in perms[:t]]), ytr.repeat(t)) if t else (xtr[:0], ytr[:0])
            train_task(
                models["replay"], x, ytr, args, memory=memories["replay"], replay=past, desc=f"task {t + 1} replay"
            )
        save_verified(
            {
                "args": _run_config(args),
                "tasks_done": t + 1,
                "anchors": anchors,
                "models": {n: m.state_dict() for n, m in models.items()},
                "memories": {n: mem.state_dict() for n, mem in memories.items()},
                "generator": g.get_state(),
                "rng": get_rng_state(),
            },
            ckpt,
            format=CKPT_FORMAT,
        )
        print(f"  trained task {t + 1}/{args.tasks} ({time.time() - t0:.0f} s)")
        if args.stop_after_task is not None and t + 1 >= args.stop_after_task and t + 1 < args.tasks:
            print(f"stopped after task {t + 1}; continue with --resume")
            return {}

    for m in models.values():
        m.eval()
    mbpa_kw = dict(k=args.k, steps=args.mbpa_steps, lr=args.mbpa_lr, l2=args.mbpa_l2, kernel_eps=args.kernel_eps)
    evaluators = {
        "SGD": (models["SGD"], None),
        "EWC": (models["EWC"], None),
        "MbPA": (models["SGD"], MbPA(models["SGD"].head, memories["SGD"], **mbpa_kw)),
        "MbPA+replay": (models["replay"], MbPA(models["replay"].head, memories["replay"], **mbpa_kw)),
    }
    acc: dict[str, list[float]] = {m: [] for m in methods}
    with progress(total=len(methods) * len(perms), desc="evaluate", unit="task") as bar:  # MbPA adapts per digit
        for m in methods:
            for p in perms:
                acc[m].append(accuracy(evaluators[m][0], xte[:, p], yte, evaluators[m][1]))
                bar.update(1)
    elapsed = time.time() - t0

    print(f"\nAccuracy on every task after training on task {args.tasks} ({elapsed:.0f} s in all):\n")
    header = "| method | average | " + " | ".join(f"task {t + 1}" for t in range(args.tasks)) + " |"
    print(header)
    print("|" + "---|" * (args.tasks + 2))
    for m in methods:
        print(f"| {m} | {100 * sum(acc[m]) / len(acc[m]):.1f} | " + " | ".join(f"{100 * a:.1f}" for a in acc[m]) + " |")
    print(
        f"\nMbPA: K={args.k}, steps={args.mbpa_steps}, lr={args.mbpa_lr}, l2={args.mbpa_l2}, eps={args.kernel_eps}, "
        f"memory {len(memories['SGD']):,}/{capacity:,}; EWC lambda={args.ewc_lambda}"
    )
    tasks = list(range(1, args.tasks + 1))
    plot = plot_curves(
        {m: (tasks, [100 * a for a in acc[m]]) for m in methods},
        Path(args.out) / "per_task_accuracy.png",
        xlabel="task",
        ylabel="test accuracy (%) after the last task",
        title="Permuted MNIST",
    )
    if plot is not None:
        print(f"plot: {plot}")
    return acc


if __name__ == "__main__":
    cli.run(main, ARGS)
