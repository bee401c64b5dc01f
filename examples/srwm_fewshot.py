"""Few-shot image classification with a self-referential weight matrix (Irie et al., ICML 2022).

A Conv-4 stem turns each image into features; features ⊕ one-hot label feed a sequence model
(SRWM, DeltaNet, linear attention or an LSTM) that learns each N-way K-shot task from the
sequence alone. The default trains SRWM on the two minimal Omniglot sets for 20 minutes (wall
time) on a laptop CPU and tests 5-way 1-shot accuracy on held-out alphabets.

    python examples/srwm_fewshot.py                                 # train + test (SRWM)
    python examples/srwm_fewshot.py --kind lstm --out runs/lstm     # the same budget, LSTM
    python examples/srwm_fewshot.py --action evaluate --out runs/fewshot --eval-shots 1 5
    torchrun --nproc_per_node 2 examples/srwm_fewshot.py            # data-parallel (gloo on CPU)
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path

from adaptmem.utils import cli
from adaptmem.utils.logging import add_wandb_argument

DATASET_NAMES = "omniglot-minimal, omniglot, omniglot-lake, mini-imagenet, cifar-fs, fc100"
KIND_NAMES = "a registered layer kind (adaptmem.models.MODELS): srwm, deltanet, linear, recurrent_deltanet, lstm, ..."


# --resume: what a resumed run may change (taken, and said), and what it may not (an error).
RESUME_MUTABLE = (
    "steps",
    "time_budget",
    "clock",
    "val_every",
    "val_episodes",
    "test_episodes",
    "eval_ways",
    "eval_shots",
    "lake_runs",
    "tensorboard",
)
RESUME_FIXED = (
    "dataset",
    "ways",
    "shots",
    "queries",
    "label_slots",
    "protocol",
    "kind",
    "backbone",
    "conv_channels",
    "d_model",
    "num_layers",
    "num_heads",
    "d_ff",
    "dropout",
    "vision_dropout",
    "lstm_hidden",
    "srwm_input_softmax",
    "srwm_norm_skip",
    "srwm_pre_norm",
    "srwm_beta_init",
    "srwm_w0_multiplier",
    "batch_size",
    "lr",
    "warmup",
    "clip",
    "amp",
    "seed",
)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    return cli.parse(build_parser(), argv)


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser(__doc__)
    a = p.add_argument
    a(
        "--action",
        choices=("train", "evaluate"),
        default="train",
        help="train (then test), or only test --out's best.pt",
    )
    a(
        "--out",
        default="runs/fewshot",
        help="folder for checkpoints, CSV/TensorBoard logs, the curve PNG and results.json",
    )
    a("--resume", action="store_true", help="continue bit-exactly from --out/last.pt")
    # data
    a("--dataset", default="omniglot-minimal", help=f"benchmark and its class split: {DATASET_NAMES}")
    cli.add_data(p, "data folder, each set in a sub-folder (omniglot/, mini-imagenet/, cifar100/)")
    cli.add_download(p, "Omniglot, CIFAR-100, CUB, tieredImageNet; Mini-ImageNet has none")
    a("--ways", type=int, default=5, help="N: classes per training episode")
    a("--shots", type=int, default=1, help="K: support images per class in training episodes")
    a("--queries", type=int, default=1, help="query images per class (synchronous protocol)")
    a("--label-slots", type=int, default=None, help="label slots of the model (default --ways); >= 20 for Lake's runs")
    a(
        "--protocol",
        choices=("sync", "delayed"),
        default="sync",
        help="sync: labelled support then unlabelled queries; delayed: each step sees the previous label",
    )
    a("--workers", type=int, default=0, help="DataLoader worker processes")
    # model
    cli.add_kind(p, "srwm", help=f"sequence model, {KIND_NAMES}")
    a("--backbone", choices=("conv4", "resnet12"), default="conv4", help="vision stem")
    a("--conv-channels", type=int, default=32, help="Conv-4 width (paper: 64 Omniglot, 32 Mini-ImageNet/FC100)")
    a("--d-model", type=int, default=128, help="sequence-model width (paper: 256)")
    a("--num-layers", type=int, default=2, help="sequence-model layers (paper: 2 on Omniglot)")
    a("--num-heads", type=int, default=8, help="heads of the fast-weight layers (paper: 16 x 16 dims)")
    a("--d-ff", type=int, default=None, help="feed-forward width (default 4 * d_model)")
    a("--dropout", type=float, default=0.0, help="sequence-model dropout")
    a("--vision-dropout", type=float, default=0.0, help="dropout inside the vision stem")
    a("--lstm-hidden", type=int, default=None, help="LSTM width (default d_model; paper: 1024)")
    a(
        "--srwm-input-softmax",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="SRWM: softmax each head's input (as the paper's RL agent)",
    )
    a(
        "--srwm-norm-skip",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="SRWM: LayerNorm on the skip path (the paper's few-shot block); --no-srwm-norm-skip: x + W_o y",
    )
    a(
        "--srwm-pre-norm",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="SRWM: read LayerNorm(x) instead of the raw residual stream (with --no-srwm-norm-skip: pre-LN block)",
    )
    a("--srwm-beta-init", type=float, default=0.0, help="SRWM: mean of the initial w_b (learning-rate logits)")
    a(
        "--srwm-w0-multiplier",
        type=float,
        default=None,
        help="SRWM: W0 = m * stored parameters (default 32/sqrt(head_dim); 1: the paper's parametrization)",
    )
    # optimisation
    a("--steps", type=int, default=100_000, help="training steps (batches of episodes); the cap under --time-budget")
    # The default run is the budget, 20 minutes on the machine at hand; --time-budget 0
    # with --steps N gives a run that stops at the same step on every machine.
    a(
        "--time-budget",
        type=float,
        default=1200.0,
        help="stop training after this many seconds of --clock time (validation included; 0: off)",
    )
    a(
        "--clock",
        choices=("cpu", "wall"),
        default="wall",
        help="budget clock: cpu = this process's CPU time (fair on a shared machine), wall = elapsed time",
    )
    a("--batch-size", type=int, default=16, help="episodes per step (per process under torchrun)")
    a("--lr", type=float, default=1e-3, help="Adam learning rate (peak rate with --warmup)")
    a(
        "--warmup",
        type=int,
        default=0,
        help="Transformer warm-up steps (noam schedule scaled to peak at --lr); 0: constant",
    )
    a("--clip", type=float, default=1.0, help="gradient-norm clipping (0: off)")
    a("--amp", choices=("fp32", "bf16", "fp16"), default="bf16", help="autocast dtype on CUDA (CPU runs fp32)")
    a("--compile", action="store_true", help="torch.compile the vision stem")
    # evaluation and logging
    a("--val-every", type=int, default=500, help="validate (and checkpoint) every this many steps")
    a("--val-episodes", type=int, default=500, help="validation episodes")
    a("--test-episodes", type=int, default=2000, help="test episodes per (ways, shots) setting")
    a("--eval-ways", type=int, nargs="+", default=None, help="test ways (default --ways); <= label slots")
    a("--eval-shots", type=int, nargs="+", default=None, help="test shots (default --shots)")
    a(
        "--tensorboard",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="TensorBoard events besides the CSV logs",
    )
    add_wandb_argument(p)
    a("--lake-runs", default=None, help="also report Lake et al.'s 20-way one-shot runs in this folder (default: off)")
    cli.add_seed(p, 0, help="seed of the weights and of the training episode stream")
    cli.add_threads(p)
    cli.add_device(p)
    cli.add_aliases(
        p,
        {
            "--mode": "--action",
            "--data-root": "--data",
            "--model": "--kind",
            "--layers": "--num-layers",
            "--heads": "--num-heads",
        },
    )
    return p


if __name__ == "__main__":  # answer --help and bad flags before the heavy imports below
    ARGS = parse_args()

import torch
from torch.nn.parallel import DistributedDataParallel as DDP

from adaptmem.data.fewshot import (
    DATASETS,
    Episode,
    EpisodeDataset,
    episode_loader,
    evaluate_lake_runs,
    load_fewshot_splits,
)
from adaptmem.models import MODELS, build_fewshot_learner, episode_loss, evaluate_episodes
from adaptmem.utils import (
    MetricLogger,
    configure_threads,
    count_parameters,
    load_checkpoint,
    progress,
    save_checkpoint,
    seed_everything,
)
from adaptmem.utils.amp import autocast, grad_scaler
from adaptmem.utils.checkpoint import read_checkpoint, resolve_resume_args
from adaptmem.utils.distributed import all_reduce_mean, barrier, cleanup_distributed, init_distributed
from adaptmem.utils.logging import plot_curves
from adaptmem.utils.schedules import lambda_scheduler, noam


def make_model(args: argparse.Namespace, image_shape: tuple[int, ...]) -> torch.nn.Module:
    return build_fewshot_learner(
        args.kind,
        num_classes=args.label_slots,
        in_channels=image_shape[0],
        image_size=image_shape[-1],
        backbone=args.backbone,
        conv_channels=args.conv_channels,
        vision_dropout=args.vision_dropout,
        d_model=args.d_model,
        num_layers=args.num_layers,
        num_heads=args.num_heads,
        d_ff=args.d_ff,
        dropout=args.dropout,
        lstm_hidden=args.lstm_hidden,
        **srwm_kwargs(args),
    )


def srwm_kwargs(args: argparse.Namespace) -> dict:
    if args.kind != "srwm":
        return {}
    return dict(
        input_softmax=args.srwm_input_softmax,
        norm_skip=args.srwm_norm_skip,
        pre_norm=args.srwm_pre_norm,
        beta_init=args.srwm_beta_init,
        w0_multiplier=args.srwm_w0_multiplier,
    )


def eval_loader(classes, args, ways: int, shots: int, episodes: int, seed: int):
    ds = EpisodeDataset(
        classes, ways, shots, args.queries, num_episodes=episodes, seed=seed, label_slots=args.label_slots
    )
    return episode_loader(ds, batch_size=min(args.batch_size, episodes), num_workers=args.workers)


def train(args, splits, model, dist, device) -> None:
    out = Path(args.out)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr, betas=(0.9, 0.995), eps=1e-9)  # the paper's code
    # noam peaks at d^-1/2 * w^-1/2; rescale its d so that the peak is --lr.
    sched = lambda_scheduler(opt, noam(1.0 / (args.lr**2 * args.warmup), args.warmup, args.lr)) if args.warmup else None
    scaler = grad_scaler(device, args.amp)
    start, best, used = 0, -1.0, 0.0
    if args.resume:
        meta = load_checkpoint(out / "last.pt", model=model, optimizer=opt, scheduler=sched, scaler=scaler)
        start, best, used = meta["step"], meta["best_val"], meta.get("clock_used", 0.0)
    clock = time.process_time if args.clock == "cpu" else time.time
    c0 = clock() - used  # clock() - c0: budget spent so far, across resumes
    log = MetricLogger(
        out / "logs",
        tensorboard=args.tensorboard,
        resume_step=start if args.resume else None,
        enabled=dist.is_main,
        wandb=args.wandb,
        wandb_config=vars(args),
    )
    net = DDP(model) if dist.enabled else model
    # Episode i of the stream depends only on (seed, i): resuming is restarting the stream at `start`.
    train_set = EpisodeDataset(
        splits["train"],
        args.ways,
        args.shots,
        args.queries,
        seed=args.seed,
        num_episodes=args.steps * args.batch_size * dist.world_size,
        label_slots=args.label_slots,
    )
    loader = episode_loader(
        train_set,
        args.batch_size,
        num_batches=args.steps,
        start=start,
        rank=dist.rank,
        world_size=dist.world_size,
        num_workers=args.workers,
    )
    val = eval_loader(splits["val"], args, args.ways, args.shots, args.val_episodes, seed=10_000 + args.seed)
    bar = progress(
        total=args.steps,
        initial=start,
        desc=args.kind,
        disable=not dist.is_main,
        time_left=(lambda: args.time_budget - (clock() - c0)) if args.time_budget > 0 else None,
    )
    t0, seen = time.time(), 0
    for step, ep in enumerate(loader, start=start + 1):
        ep = Episode(*(t.to(device, non_blocking=True) for t in ep))
        with autocast(device, args.amp):
            loss, acc = episode_loss(net, ep, args.protocol)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if args.clip > 0:
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
        scaler.step(opt)
        scaler.update()
        if sched is not None:
            sched.step()
        seen += ep.support_y.numel() + (ep.query_y.numel() if args.protocol == "sync" else 0)
        bar.update(1)
        over = torch.tensor(float(args.time_budget > 0 and clock() - c0 >= args.time_budget))
        over = bool(all_reduce_mean(over, dist) > 0)  # every rank stops at the same step
        if step % 50 == 0 or step == args.steps or over:
            stats = all_reduce_mean(torch.stack([loss.detach().float(), acc.mean()]), dist)
            rate = seen * dist.world_size / (time.time() - t0)
            log.log("train", step, loss=stats[0], acc=stats[1], lr=opt.param_groups[0]["lr"], images_per_s=rate)
            bar.set_postfix(loss=f"{stats[0]:.3f}", acc=f"{stats[1]:.3f}", img_s=f"{rate:.0f}")
        if step % args.val_every == 0 or step == args.steps or over:
            if dist.is_main:
                res = evaluate_episodes(model, val, args.protocol, device=device, amp=args.amp)
                log.log("val", step, acc=res["acc"], ci95=res["ci95"])
                bar.write(f"step {step}: val acc {100 * res['acc']:.2f} +- {100 * res['ci95']:.2f}%")
                if res["acc"] > best:
                    best = res["acc"]
                    save_checkpoint(out / "best.pt", model=model, step=step, best_val=best, args=vars(args))
                save_checkpoint(
                    out / "last.pt",
                    model=model,
                    optimizer=opt,
                    scheduler=sched,
                    scaler=scaler,
                    step=step,
                    best_val=best,
                    clock_used=clock() - c0,
                    args=vars(args),
                )
            barrier(dist)
        if over:
            bar.write(f"time budget spent after step {step} ({clock() - c0:.0f} s of {args.clock} time)")
            break
    bar.close()
    if dist.is_main:
        rows = {k: log.read(k) for k in ("train", "val")}
        plot_curves(
            {f"{k} acc": ([r["step"] for r in v], [r["acc"] for r in v]) for k, v in rows.items()},
            out / "curve.png",
            ylabel="accuracy",
            title=f"{args.kind}, {args.ways}-way {args.shots}-shot",
        )
    log.close()


def test(args, splits, model, device) -> dict:
    load_checkpoint(Path(args.out) / "best.pt", model=model, restore_rng=False)
    results = {"model": args.kind, "protocol": args.protocol, "settings": []}
    print(
        "\n| model | protocol | test set | ways | shots | accuracy % | 95% CI | episodes |"
        "\n|---|---|---|---|---|---|---|---|"
    )
    for ways in args.eval_ways or [args.ways]:
        for shots in args.eval_shots or [args.shots]:
            loader = eval_loader(splits["test"], args, ways, shots, args.test_episodes, seed=20_000 + args.seed)
            loader = progress(loader, desc=f"test {ways}-way {shots}-shot", unit="batch", leave=False)
            res = evaluate_episodes(model, loader, args.protocol, device=device, amp=args.amp)
            results["settings"].append({"ways": ways, "shots": shots, **res})
            print(
                f"| {args.kind} | {args.protocol} | {args.dataset} test | {ways} | {shots} | {100 * res['acc']:.2f} "
                f"| ± {100 * res['ci95']:.2f} | {res['episodes']} |"
            )
    if args.lake_runs:
        lake = evaluate_lake_runs(args.lake_runs, model.eval().classifier(), image_size=splits["test"].image_shape[-1])
        print(f"\nLake et al. 20-way one-shot runs:\n{lake.table()}")
        results["lake_mean_error"] = lake.mean_error
    return results


def main(argv: Sequence[str] | argparse.Namespace | None = None) -> dict | None:
    args = argv if isinstance(argv, argparse.Namespace) else parse_args(argv)
    cli.check_choice("--kind", args.kind, MODELS)
    cli.check_choice("--dataset", args.dataset, DATASETS)
    args.label_slots = args.label_slots or args.ways
    notes = []
    if args.resume and args.action == "train":  # the checkpoint's settings, with the changes --resume allows
        ckpt = Path(args.out) / "last.pt"
        given = cli.given_flags(build_parser(), None if isinstance(argv, argparse.Namespace) else argv)
        new, notes = resolve_resume_args(
            read_checkpoint(ckpt)["extra"]["args"],
            vars(args),
            mutable=RESUME_MUTABLE,
            fixed=RESUME_FIXED,
            explicit=given,
            where=f"--resume from {ckpt}",
        )
        args = argparse.Namespace(**new)
    configure_threads(args.threads)
    args.device = str(cli.resolve_device(args.device))
    dist = init_distributed(args.device)
    device = torch.device(f"cuda:{dist.local_rank}" if args.device.startswith("cuda") and dist.enabled else args.device)
    seed_everything(args.seed)  # the same initial weights on every rank
    splits = load_fewshot_splits(args.dataset, args.data, download=args.download)
    model = make_model(args, splits["train"].image_shape).to(device)
    if args.compile:
        model.backbone.compile()
    if dist.is_main:
        print(f"{args.dataset}: " + ", ".join(f"{k} {v.num_classes} classes" for k, v in splits.items()))
        print(f"{args.kind}: {count_parameters(model):,} parameters, {dist.world_size} process(es)")
        print("".join(f"--resume takes {n}\n" for n in notes), end="")
    t0, cpu0, load0 = time.time(), time.process_time(), os.getloadavg()[0]
    if args.action == "train":
        train(args, splits, model, dist, device)
    minutes, cpu_s = (time.time() - t0) / 60, time.process_time() - cpu0
    results = None
    if dist.is_main:
        results = test(args, splits, model, device)
        if args.action == "train":  # the machine's load says how far wall-clock time is inflated
            results.update(
                train_minutes=minutes,
                train_cpu_s=cpu_s,
                threads=torch.get_num_threads(),
                load_average_start=load0,
                load_average_end=os.getloadavg()[0],
            )
            print(
                f"training took {minutes:.1f} min wall, {cpu_s:.0f} CPU-s on {torch.get_num_threads()} thread(s) "
                f"(load average {load0:.1f} -> {os.getloadavg()[0]:.1f})"
            )
        (Path(args.out) / "results.json").write_text(json.dumps(results, indent=2))
    cleanup_distributed(dist)
    return results


if __name__ == "__main__":
    cli.run(main, ARGS)
