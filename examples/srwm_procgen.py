"""Multi-task ProcGen with self-referential weight matrix agents (Irie et al., ICML 2022).

One IMPALA agent (ResNet torso -> SRWM / DeltaNet / LSTM / feed-forward core -> policy and
value) plays several ProcGen games at once, one vectorised pool per game, and learns with
V-trace. Every unroll is processed in one call with in-call episode resets, so gradients
reach all of the SRWM's fast matrices. At the end it reports returns and normalised scores on
the training levels and on unseen test levels, per game.

    python examples/srwm_procgen.py                          # small CPU default, a few minutes
    python examples/srwm_procgen.py --kind lstm --out runs/procgen_lstm
    python examples/srwm_procgen.py --config paper           # the paper's sizes (GPU, 300M frames)
    python examples/srwm_procgen.py --config memory          # memory mode: dodgeball heist maze miner
    python examples/srwm_procgen.py --resume                 # continue --out/last.pt exactly
    python examples/srwm_procgen.py --eval                   # evaluate --out/last.pt, print the table
    python examples/srwm_procgen.py --env recall             # the built-in memory task (no ProcGen)
"""

from __future__ import annotations

import argparse
import signal
import time
from collections.abc import Sequence
from pathlib import Path

from adaptmem.utils import cli
from adaptmem.utils.logging import add_wandb_argument

# adaptmem.rl's PAPER_GAMES and PAPER_MEMORY_GAMES (a test checks they agree), here so that
# parsing the flags does not import torch
PAPER_GAMES = ("bigfish", "fruitbot", "maze", "leaper", "plunder", "starpilot")
PAPER_MEMORY_GAMES = ("dodgeball", "heist", "maze", "miner")
# Flags left unset take their value from the chosen --config.
CONFIGS = {
    # ~5 CPU-minutes (a 4x cheaper torso: half-resolution frames, half the channels). One training level
    # per game, so that the agent can learn something in 300k frames: the training-level returns rise
    # (starpilot ~1 -> ~4.5, fruitbot ~-2.9 -> ~-1 in docs/rl.md); generalising to unseen levels takes
    # --num-levels 200 and millions of frames (--config paper).
    "default": dict(games=["starpilot", "fruitbot"], distribution_mode="easy", num_levels=1,
                    envs_per_game=16, total_frames=300_000, unroll_length=20, batch_size=16, optimizer="adam",
                    lr=1e-3, entropy_cost=0.005, channels=[8, 16, 16], res_blocks=1, downsample=2, num_layers=2,
                    num_heads=8, head_dim=16, d_ff=512, lstm_hidden=256, srwm_block="rl"),
    # The paper: 6 easy games, 200 levels, batch 32 x unroll 50, RMSProp 6e-4 decayed to 0 over 300M frames.
    "paper": dict(games=list(PAPER_GAMES), distribution_mode="easy", num_levels=200, envs_per_game=16,
                  total_frames=300_000_000, unroll_length=50, batch_size=32, optimizer="rmsprop", lr=6e-4,
                  entropy_cost=0.01, channels=[16, 32, 32], res_blocks=2, downsample=1, num_layers=2,
                  num_heads=8, head_dim=16, d_ff=512, lstm_hidden=256, srwm_block="rl"),
}
CONFIGS["memory"] = dict(CONFIGS["paper"], games=list(PAPER_MEMORY_GAMES), distribution_mode="memory",
                         num_levels=500, envs_per_game=24)
MODEL_KEYS = ("env", "games", "distribution_mode", "kind", "channels", "res_blocks", "downsample", "num_layers",
              "num_heads", "head_dim", "d_ff", "lstm_hidden", "srwm_block")
RENAMED = {"core": "kind", "layers": "num_layers", "heads": "num_heads"}  # argument names of older checkpoints
# --resume: what a resumed run may change (taken, and said), and what it may not (an error).
RESUME_MUTABLE = ("total_frames", "log_every", "checkpoint_every", "eval_envs_per_game", "eval_episodes",
                  "eval_max_steps", "greedy", "test_start_level")
RESUME_FIXED = MODEL_KEYS + ("config", "env_backend", "num_levels", "start_level", "envs_per_game", "unroll_length",
                             "batch_size", "optimizer", "lr", "entropy_cost", "seed")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    args = cli.parse(build_parser(), argv)
    for key, value in CONFIGS[args.config].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.env == "recall":
        args.games = ["recall"]
    return args


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser(__doc__)
    a = p.add_argument
    a("--config", choices=sorted(CONFIGS), default="default", help="preset for every flag marked (preset)")
    cli.add_kind(p, "srwm", help="the agent's memory (core): a layer kind (srwm, deltanet, lstm, ...; "
                                 "adaptmem.rl.CORES), or ff (none)")
    a("--out", default="runs/srwm_procgen", help="folder for last.pt, CSV/TensorBoard logs, curve PNGs, results.md")
    a("--resume", action="store_true", help="continue from --out/last.pt (the learner resumes exactly; "
                                            "ProcGen episodes restart)")
    a("--eval", nargs="?", const="", default=None, metavar="CKPT",
      help="only evaluate CKPT (--out/last.pt when none is given) and print the table (default: off, train)")
    # environment
    a("--env", choices=("procgen", "recall"), default="procgen", help="ProcGen, or the built-in recall task")
    a("--env-backend", choices=("envpool", "procgen"), default="envpool", help="ProcGen implementation")
    a("--games", nargs="+", default=None, help="(preset) ProcGen games, one pool each")
    a("--distribution-mode", choices=("easy", "hard", "memory"), default=None, help="(preset) level distribution")
    a("--num-levels", type=int, default=None, help="(preset) training levels [start_level, start_level + n)")
    a("--start-level", type=int, default=0, help="first training level")
    a("--test-start-level", type=int, default=1000, help="first unseen test level (the paper: 1000, 1200, 1400)")
    a("--envs-per-game", type=int, default=None, help="(preset) rows per game pool")
    # learner
    a("--total-frames", type=int, default=None, help="(preset) environment frames over all games")
    a("--unroll-length", type=int, default=None, help="(preset) steps per unroll")
    a("--batch-size", type=int, default=None, help="(preset) rows per update; must divide all rows")
    a("--optimizer", choices=("rmsprop", "adam"), default=None, help="(preset) optimiser")
    a("--lr", type=float, default=None, help="(preset) learning rate, decayed linearly to 0")
    a("--entropy-cost", type=float, default=None, help="(preset) entropy bonus weight")
    # agent
    a("--channels", type=int, nargs=3, default=None, help="(preset) IMPALA-CNN stage channels (paper: 16 32 32)")
    a("--res-blocks", type=int, default=None, help="(preset) residual blocks per IMPALA-CNN stage (paper: 2)")
    a("--downsample", type=int, default=None, help="(preset) average-pool frames by this factor first")
    a("--num-layers", type=int, default=None, help="(preset) fast-weight layers")
    a("--num-heads", type=int, default=None, help="(preset) heads per fast-weight layer")
    a("--head-dim", type=int, default=None, help="(preset) dimension per head")
    a("--d-ff", type=int, default=None, help="(preset) feed-forward width")
    a("--lstm-hidden", type=int, default=None, help="(preset) LSTM size")
    a("--srwm-block", choices=("rl", "fewshot"), default=None,
      help="(preset) the paper's RL block (input softmax) or its few-shot block (LayerNorm skip), see docs/rl.md")
    # evaluation, logging, system
    a("--eval-envs-per-game", type=int, default=8, help="evaluation rows per game")
    a("--eval-episodes", type=int, default=1, help="evaluation episodes per row and split")
    a("--eval-max-steps", type=int, default=5000, help="evaluation step limit (unfinished rows are left out)")
    a("--greedy", action="store_true", help="evaluate with the most likely action (default: sample)")
    a("--log-every", type=int, default=None, help="frames between log rows (default total/100)")
    a("--checkpoint-every", type=float, default=600.0, help="seconds between checkpoints")
    a("--seed", type=int, default=0, help="seed of weights, actions and level sampling")
    cli.add_threads(p)
    cli.add_device(p)
    add_wandb_argument(p)
    for action in p._actions:  # the presets' values are the defaults of the (preset) flags
        if action.dest in CONFIGS["default"]:
            value = CONFIGS["default"][action.dest]
            value = " ".join(map(str, value)) if isinstance(value, list) else value
            action.help += f" (default: from --config; {value} in the default config)"
    cli.add_aliases(p, {"--core": "--kind", "--layers": "--num-layers", "--heads": "--num-heads"})
    return p


if __name__ == "__main__":  # answer --help and bad flags before the heavy imports below
    ARGS = parse_args()

import numpy as np  # noqa: E402
import torch  # noqa: E402

from adaptmem.rl import (CORES, ImpalaConfig, ImpalaLearner, MultiTaskEnv, RecallEnv, evaluate,  # noqa: E402
                         format_table, make_agent, make_procgen, normalized_score, procgen_unavailable, score_rows)
from adaptmem.utils import (MetricLogger, configure_threads, count_parameters, load_checkpoint, progress,  # noqa: E402
                            seed_everything)
from adaptmem.utils.checkpoint import read_checkpoint, resolve_resume_args  # noqa: E402
from adaptmem.utils.logging import plot_curves  # noqa: E402


def learning_summary(rows: list[dict], games: list[str], fraction: float = 0.2) -> str:
    """Mean training-episode return over the first and the last ``fraction`` of the logged run, per game."""
    n = max(1, int(len(rows) * fraction))
    parts = []
    for g in games:
        first, last = ([r[g] for r in part if g in r and not np.isnan(r[g])] for part in (rows[:n], rows[-n:]))
        if first and last:
            parts.append(f"{g} {np.mean(first):.2f} -> {np.mean(last):.2f}")
    return f"training-level return, first vs last {fraction:.0%} of the run: " + ", ".join(parts)


def build_env(args: argparse.Namespace, start_level: int, seed: int, envs_per_game: int) -> MultiTaskEnv:
    if args.env == "recall":
        return MultiTaskEnv([RecallEnv(envs_per_game, seed=seed)], ["recall"])
    return make_procgen(args.games, envs_per_game, num_levels=args.num_levels, start_level=start_level,
                        distribution_mode=args.distribution_mode, backend=args.env_backend, seed=seed)


def build_agent(args: argparse.Namespace, env: MultiTaskEnv):
    return make_agent(env.obs_shape, env.num_actions, core=args.kind, channels=args.channels,
                      num_res_blocks=args.res_blocks, downsample=args.downsample, num_layers=args.num_layers,
                      num_heads=args.num_heads, head_dim=args.head_dim, d_ff=args.d_ff, lstm_hidden=args.lstm_hidden,
                      srwm_block=args.srwm_block)


def normalizer(args: argparse.Namespace):
    if args.env == "recall":
        return None  # returns are already on [0, 1]: the optimal return is 1
    return lambda game, score: normalized_score(game, score, args.distribution_mode)


def evaluate_splits(agent, args: argparse.Namespace) -> str:
    """Train-level and unseen-level scores per game, as a markdown table."""
    splits = {"train": args.start_level, "test": args.test_start_level}
    results = {}
    for i, (split, start) in enumerate(splits.items()):
        env = build_env(args, start, args.seed + 7919 * (i + 1), args.eval_envs_per_game)
        results[split] = evaluate(agent, env, args.eval_episodes, greedy=args.greedy, max_steps=args.eval_max_steps)
        names = env.task_names
        env.close()
    return format_table(score_rows(results, names, normalizer(args)))


def checkpoint_extra(path: str | Path) -> dict:
    """What the example stored beside the weights: its arguments (under today's names) and frame count."""
    extra = read_checkpoint(path)["extra"]
    extra["args"] = {RENAMED.get(k, k): v for k, v in extra["args"].items()}
    return extra


def setup(args: argparse.Namespace) -> None:
    """Checks --kind; sets threads (the envpool pools' worker threads reserved) and the device."""
    cli.check_choice("--kind", args.kind, CORES)
    envpool_threads = len(args.games) if args.env == "procgen" and args.env_backend == "envpool" else 0
    configure_threads(args.threads, reserved=envpool_threads)
    args.device = str(cli.resolve_device(args.device))


def run_eval(args: argparse.Namespace) -> str:
    path = args.eval or str(Path(args.out) / "last.pt")
    extra = checkpoint_extra(path)
    saved = extra["args"]
    for key in MODEL_KEYS + ("num_levels", "start_level", "test_start_level"):
        setattr(args, key, saved[key])
    setup(args)
    probe = build_env(args, args.start_level, args.seed, 1)
    agent = build_agent(args, probe).to(args.device)
    probe.close()
    load_checkpoint(path, model=agent, restore_rng=False, map_location=args.device)
    table = evaluate_splits(agent, args)
    print(f"{path}: {args.kind} agent, {extra['frames']:,} training frames\n{table}")
    return table


def main(argv: Sequence[str] | argparse.Namespace | None = None) -> str:
    args = argv if isinstance(argv, argparse.Namespace) else parse_args(argv)
    if args.eval is not None:
        return run_eval(args)
    notes = []
    if args.resume:  # the checkpoint's settings, with the changes --resume allows (before anything is built)
        ckpt = Path(args.out) / "last.pt"
        given = cli.given_flags(build_parser(), None if isinstance(argv, argparse.Namespace) else argv)
        new, notes = resolve_resume_args(checkpoint_extra(ckpt)["args"], vars(args), mutable=RESUME_MUTABLE,
                                         fixed=RESUME_FIXED, explicit=given, where=f"--resume from {ckpt}")
        args = argparse.Namespace(**new)
    if args.env == "procgen" and (reason := procgen_unavailable(args.env_backend)):
        raise SystemExit(f"srwm_procgen: {reason}. Run `bash scripts/setup.sh` (as root it installs Qt 5), "
                         f"or try the built-in memory task with --env recall.")
    setup(args)
    seed_everything(args.seed)
    out = Path(args.out)
    env = build_env(args, args.start_level, args.seed, args.envs_per_game)
    agent = build_agent(args, env)
    config = ImpalaConfig(unroll_length=args.unroll_length, batch_size=args.batch_size, optimizer=args.optimizer,
                          learning_rate=args.lr, entropy_cost=args.entropy_cost, total_frames=args.total_frames)
    learner = ImpalaLearner(agent, env, config, device=args.device)
    if args.resume:
        learner.load(out / "last.pt")
        print("".join(f"--resume takes {n}\n" for n in notes), end="")
    print(f"{args.kind} agent, {count_parameters(agent):,} parameters; games {env.task_names}; "
          f"{env.num_envs} envs; {args.total_frames:,} frames")

    log = MetricLogger(out, resume_step=learner.frames, wandb=args.wandb, wandb_config=vars(args))
    log_every = args.log_every or max(1, args.total_frames // 100)
    next_log, last_save = learner.frames + log_every, time.time()
    recent: list[list[float]] = [[] for _ in env.task_names]
    bar = progress(total=args.total_frames, initial=learner.frames, desc=args.kind, unit="frame")
    t0, frames0 = time.time(), learner.frames
    # Ctrl-C ends the run after the current train step with a checkpoint; a second one aborts at once.
    interrupted, previous_handler = [], signal.getsignal(signal.SIGINT)

    def stop(signum, frame):
        interrupted.append(signum)
        signal.signal(signal.SIGINT, previous_handler)

    signal.signal(signal.SIGINT, stop)
    while learner.frames < args.total_frames and not interrupted:
        before = learner.frames
        stats = learner.train_step()
        for ep in stats.pop("episodes"):
            recent[ep.task].append(ep.ret)
        fps = (learner.frames - frames0) / (time.time() - t0)
        bar.update(learner.frames - before)
        bar.set_postfix(fps=f"{fps:.0f}", ret=" ".join(f"{np.mean(r[-20:]):.1f}" if r else "-" for r in recent))
        if learner.frames >= next_log or learner.frames >= args.total_frames:
            next_log += log_every
            log.log("train", learner.frames, fps=fps, **stats)
            means = {g: float(np.mean(r)) if r else float("nan") for g, r in zip(env.task_names, recent)}
            log.log("returns", learner.frames, **means)
            if not bar.interactive:  # a log file: the numbers the bar would show
                print(f"frames {learner.frames:,}  {fps:.0f} frames/s  loss {stats['loss']:.1f}  returns "
                      + "  ".join(f"{g} {m:.2f}" for g, m in means.items()), flush=True)
            recent = [[] for _ in env.task_names]
        if time.time() - last_save > args.checkpoint_every:
            learner.save(out / "last.pt", args=vars(args), frames=learner.frames)
            last_save = time.time()
    bar.close()
    train_fps = (learner.frames - frames0) / (time.time() - t0)
    learner.save(out / "last.pt", args=vars(args), frames=learner.frames)
    env.close()
    signal.signal(signal.SIGINT, previous_handler)
    if interrupted:
        log.close()
        message = (f"interrupted at {learner.frames:,} frames; saved {out / 'last.pt'}. Continue with "
                   f"--resume (same --out and model flags) or evaluate it with --eval.")
        print(message)
        return message

    rows = log.read("returns")
    for g in env.task_names:
        xs, ys = [r["step"] for r in rows], [r.get(g, float("nan")) for r in rows]
        plot_curves({g: (xs, ys)}, out / f"curve_{g}.png", xlabel="frames", ylabel="mean episode return",
                    title=f"{g}: {args.kind} agent, training levels")
    log.close()
    print(learning_summary(rows, env.task_names))
    table = evaluate_splits(agent, args)
    summary = (f"{args.kind} agent, {learner.frames:,} training frames at {train_fps:.0f} frames/s; evaluation: "
               f"{args.eval_episodes} episode(s) x {args.eval_envs_per_game} rows per game and split\n{table}")
    (out / "results.md").write_text(summary + "\n")
    print(summary)
    print(f"\nwritten to {out}/: last.pt (checkpoint), train.csv and returns.csv (logs), tb/ (TensorBoard), "
          f"curve_<game>.png, results.md")
    return table


if __name__ == "__main__":
    main(ARGS)
