"""Multi-task ProcGen with self-referential weight matrix agents (Irie et al., ICML 2022).

One IMPALA agent (ResNet torso -> SRWM / DeltaNet / LSTM / feed-forward core -> policy and
value) plays several ProcGen games at once, one vectorised pool per game, and learns with
V-trace. Every unroll is processed in one call with in-call episode resets, so gradients
reach all of the SRWM's fast matrices. It writes learning curves against the random policy and,
at the end, returns and normalised scores on the training levels and on unseen test levels, per
game, with 95% bootstrap intervals. Ctrl-C stops after the current update with a checkpoint,
the curves and results.md (exit code 130); a crash leaves the curves and results.md too.

    python examples/srwm_procgen.py                          # the CPU default, ~7 minutes on 2 idle cores
    python examples/srwm_procgen.py --kind lstm --out runs/procgen_lstm
    python examples/srwm_procgen.py --compare srwm lstm      # both on the same frames, one figure
    python examples/srwm_procgen.py --eval runs/s0/last.pt runs/s1/last.pt   # seeds: IQM, intervals
    torchrun --nproc_per_node 2 examples/srwm_procgen.py     # data parallel (gloo on CPU, nccl on GPUs)
    python examples/srwm_procgen.py --config paper           # the paper's sizes (GPU, 300M frames)
    python examples/srwm_procgen.py --config memory          # memory mode: dodgeball heist maze miner
    python examples/srwm_procgen.py --resume                 # continue --out/last.pt exactly
    python examples/srwm_procgen.py --eval                   # evaluate --out/last.pt, print the table
    python examples/srwm_procgen.py --env recall             # the built-in memory task (no ProcGen)
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Collection, Sequence
from pathlib import Path

from adaptmem.utils import cli
from adaptmem.utils.logging import add_wandb_argument

# adaptmem.rl's PAPER_GAMES and PAPER_MEMORY_GAMES (a test checks they agree), here so that
# parsing the flags does not import torch
PAPER_GAMES = ("bigfish", "fruitbot", "maze", "leaper", "plunder", "starpilot")
PAPER_MEMORY_GAMES = ("dodgeball", "heist", "maze", "miner")
# The memory core is the paper's in every preset; the presets differ in the games, the torso and the schedule.
CORE = dict(num_layers=2, num_heads=8, head_dim=16, d_ff=512, lstm_hidden=256, srwm_block="rl")
# Flags left unset take their value from the chosen --config.
CONFIGS = {
    # ~6 minutes on an idle 2-core CPU (a 4x cheaper torso: half-resolution frames, half the channels).
    # One game and one level where a memorised level pays many times what a random policy gets
    # (starpilot level 0, easy: random 0.3, the agent 5-7 in 200k of its frames), so that learning is
    # unmistakable; of the other games tried, none rose clearly above random within this budget.
    # Raw rewards (no clipping: the +10 for clearing the level is what memorising it pays), Adam 5e-4.
    # Generalising to unseen levels takes --num-levels 200 and millions of frames (--config paper).
    # How this was chosen, and the 3-seed results: docs/rl.md.
    "default": dict(
        games=["starpilot"],
        distribution_mode="easy",
        num_levels=1,
        envs_per_game=32,
        total_frames=500_000,
        unroll_length=20,
        batch_size=16,
        optimizer="adam",
        lr=5e-4,
        entropy_cost=0.005,
        reward_clip=0.0,
        channels=[8, 16, 16],
        res_blocks=1,
        downsample=2,
        **CORE,
    ),
    # The paper: 6 easy games, 200 levels, batch 32 x unroll 50, RMSProp 6e-4 decayed to 0 over 300M frames.
    "paper": dict(
        games=list(PAPER_GAMES),
        distribution_mode="easy",
        num_levels=200,
        envs_per_game=16,
        total_frames=300_000_000,
        unroll_length=50,
        batch_size=32,
        optimizer="rmsprop",
        lr=6e-4,
        entropy_cost=0.01,
        reward_clip=1.0,
        channels=[16, 32, 32],
        res_blocks=2,
        downsample=1,
        **CORE,
    ),
}
CONFIGS["memory"] = dict(
    CONFIGS["paper"], games=list(PAPER_MEMORY_GAMES), distribution_mode="memory", num_levels=500, envs_per_game=24
)
MODEL_KEYS = (
    "env",
    "games",
    "distribution_mode",
    "kind",
    "channels",
    "res_blocks",
    "downsample",
    "num_layers",
    "num_heads",
    "head_dim",
    "d_ff",
    "lstm_hidden",
    "srwm_block",
)
RANDOM_EPISODES = 128  # per game: the random policy costs no network, and its line should not wobble
RENAMED = {"core": "kind", "layers": "num_layers", "heads": "num_heads"}  # argument names of older checkpoints
# --resume: what a resumed run may change (taken, and said), and what it may not (an error).
RESUME_MUTABLE = (
    "total_frames",
    "log_every",
    "checkpoint_every",
    "eval_envs_per_game",
    "eval_episodes",
    "eval_max_steps",
    "greedy",
    "test_start_level",
)
RESUME_FIXED = MODEL_KEYS + (
    "config",
    "env_backend",
    "num_levels",
    "start_level",
    "envs_per_game",
    "unroll_length",
    "batch_size",
    "optimizer",
    "lr",
    "entropy_cost",
    "reward_clip",
    "seed",
)


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
    cli.add_kind(
        p,
        "srwm",
        help="the agent's memory (core): a layer kind (srwm, deltanet, lstm, ...; adaptmem.rl.CORES), or ff (none)",
    )
    a("--out", default="runs/srwm_procgen", help="folder for last.pt, CSV/TensorBoard logs, curve PNGs, results.md")
    a(
        "--resume",
        action="store_true",
        help="continue from --out/last.pt (the learner resumes exactly; ProcGen episodes restart)",
    )
    a(
        "--eval",
        nargs="*",
        default=None,
        metavar="CKPT",
        help="only evaluate each CKPT (--out/last.pt when none is given) on the training and unseen levels, with 95%% "
        "bootstrap intervals; several (seeds): also their IQM and learning table; writes --out/eval.md "
        "(default: off, train)",
    )
    a(
        "--compare",
        nargs="*",
        default=None,
        metavar="KIND",
        help="train each KIND (srwm lstm when none is given) on the same frames, levels and seed into --out/KIND/, "
        "then draw them in one figure, --out/compare.png, and write --out/results.md (default: off, one --kind)",
    )
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
    a(
        "--reward-clip",
        type=float,
        default=None,
        help="(preset) rewards clipped to [-c, c] in the learner's targets; 0: raw rewards",
    )
    # agent
    a("--channels", type=int, nargs=3, default=None, help="(preset) IMPALA-CNN stage channels (paper: 16 32 32)")
    a("--res-blocks", type=int, default=None, help="(preset) residual blocks per IMPALA-CNN stage (paper: 2)")
    a("--downsample", type=int, default=None, help="(preset) average-pool frames by this factor first")
    a("--num-layers", type=int, default=None, help="(preset) fast-weight layers")
    a("--num-heads", type=int, default=None, help="(preset) heads per fast-weight layer")
    a("--head-dim", type=int, default=None, help="(preset) dimension per head")
    a("--d-ff", type=int, default=None, help="(preset) feed-forward width")
    a("--lstm-hidden", type=int, default=None, help="(preset) LSTM size")
    a(
        "--srwm-block",
        choices=("rl", "fewshot"),
        default=None,
        help="(preset) the paper's RL block (input softmax) or its few-shot block (LayerNorm skip), see docs/rl.md",
    )
    # evaluation, logging, system
    a("--eval-envs-per-game", type=int, default=16, help="evaluation rows per game (also for the random policy)")
    a("--eval-episodes", type=int, default=32, help="evaluation episodes per game and split")
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

import numpy as np

from adaptmem.rl import (
    CORES,
    ImpalaConfig,
    ImpalaLearner,
    MultiTaskEnv,
    RecallEnv,
    evaluate,
    format_table,
    make_agent,
    make_procgen,
    normalized_score,
    procgen_unavailable,
    random_returns,
    score_rows,
)
from adaptmem.rl.report import learning_table, plot_learning_curves
from adaptmem.utils import (
    MetricLogger,
    atomic_write_text,
    configure_threads,
    count_parameters,
    load_checkpoint,
    progress,
    seed_everything,
)
from adaptmem.utils.checkpoint import read_checkpoint, resolve_resume_args
from adaptmem.utils.distributed import (
    DistInfo,
    any_rank,
    barrier,
    cleanup_distributed,
    init_distributed,
    split_evenly,
)
from adaptmem.utils.interrupt import GracefulStop


def build_env(args: argparse.Namespace, start_level: int, seed: int, envs_per_game: int) -> MultiTaskEnv:
    if args.env == "recall":
        return MultiTaskEnv([RecallEnv(envs_per_game, seed=seed)], ["recall"])
    return make_procgen(
        args.games,
        envs_per_game,
        num_levels=args.num_levels,
        start_level=start_level,
        distribution_mode=args.distribution_mode,
        backend=args.env_backend,
        seed=seed,
    )


def build_agent(args: argparse.Namespace, env: MultiTaskEnv):
    return make_agent(
        env.obs_shape,
        env.num_actions,
        core=args.kind,
        channels=args.channels,
        num_res_blocks=args.res_blocks,
        downsample=args.downsample,
        num_layers=args.num_layers,
        num_heads=args.num_heads,
        head_dim=args.head_dim,
        d_ff=args.d_ff,
        lstm_hidden=args.lstm_hidden,
        srwm_block=args.srwm_block,
    )


def normalizer(args: argparse.Namespace):
    if args.env == "recall":
        return None  # returns are already on [0, 1]: the optimal return is 1
    return lambda game, score: normalized_score(game, score, args.distribution_mode)


def evaluate_splits(agent, args: argparse.Namespace) -> dict:
    """``{"train": ..., "test": ...}``: ``--eval-episodes`` returns per game on the training levels and on
    unseen ones."""
    per_row = -(-args.eval_episodes // args.eval_envs_per_game)  # ceil: the same number from every row
    results = {}
    for i, (split, start) in enumerate({"train": args.start_level, "test": args.test_start_level}.items()):
        env = build_env(args, start, args.seed + 7919 * (i + 1), args.eval_envs_per_game)
        results[split] = evaluate(agent, env, per_row, greedy=args.greedy, max_steps=args.eval_max_steps)
        env.close()
    return results


def random_level(args: argparse.Namespace, out: Path) -> dict[str, float]:
    """The uniformly random policy's mean return per game on the training levels (the line to beat),
    measured once per run folder (``random.json``)."""
    path = out / "random.json"
    if path.exists():
        return json.loads(path.read_text())
    env = build_env(args, args.start_level, args.seed + 31337, args.eval_envs_per_game)
    per_row = -(-RANDOM_EPISODES // args.eval_envs_per_game)
    returns = random_returns(env, per_row, seed=args.seed, max_steps=args.eval_max_steps)
    level = {g: float(returns[t].mean()) if returns[t].size else float("nan") for t, g in enumerate(env.task_names)}
    env.close()
    atomic_write_text(path, json.dumps(level))
    return level


def checkpoint_extra(path: str | Path) -> dict:
    """What the example stored beside the weights: its arguments (under today's names) and frame count."""
    extra = read_checkpoint(path)["extra"]
    extra["args"] = {RENAMED.get(k, k): v for k, v in extra["args"].items()}
    return extra


def setup(args: argparse.Namespace, dist: DistInfo) -> None:
    """Checks --kind; sets threads (the envpool pools' worker threads reserved) and the device."""
    cli.check_choice("--kind", args.kind, CORES)
    envpool_threads = len(args.games) if args.env == "procgen" and args.env_backend == "envpool" else 0
    configure_threads(args.threads, reserved=envpool_threads)
    device = cli.resolve_device(args.device)
    args.device = f"cuda:{dist.local_rank}" if device.type == "cuda" and dist.enabled else str(device)


def describe(args: argparse.Namespace) -> str:
    if args.env == "recall":
        return f"the recall task, seed {args.seed}"
    levels = f"{args.num_levels} training level(s) from {args.start_level}" if args.num_levels else "all levels"
    return f"{', '.join(args.games)} ({args.distribution_mode}, {levels}), seed {args.seed}"


def write_report(
    out: Path,
    args: argparse.Namespace,
    runs: dict[str, list],
    random: dict[str, float],
    status: str,
    evaluations: dict[str, dict] | None = None,
    figure: str = "curves.png",
) -> str:
    """The curves (``figure``) and results.md from the logged training returns (and evaluations, when there are)."""
    games = list(args.games)
    plot_learning_curves(runs, games, out / figure, random=random, title=f"{' vs '.join(runs)}: {describe(args)}")
    text = (
        f"# {' vs '.join(runs)} on {describe(args)}\n\n{status}\n\n"
        f"Training-episode return: the random policy, and the first -> last 20% of the run\n\n"
        f"{learning_table(runs, games, random)}\n"
    )
    for kind, results in (evaluations or {}).items():
        text += (
            f"\n{kind} agent, evaluation: {args.eval_episodes} episodes per game and split "
            f"({'greedy' if args.greedy else 'sampled'} actions), mean and 95% bootstrap interval\n\n"
            f"{format_table(score_rows(results, games, normalizer(args)))}\n"
        )
    atomic_write_text(out / "results.md", text)
    return text


def train(
    args: argparse.Namespace, out: Path, dist: DistInfo, stop: GracefulStop, given: Collection[str] = ()
) -> tuple[list, dict | None]:
    """Train ``args.kind`` into ``out``; returns the logged returns and the evaluation (None if stopped).

    With ``--resume``, the checkpoint's settings hold, with the changes --resume allows (``given``:
    the flags on the command line)."""
    notes: list[str] = []
    if args.resume:
        ckpt = out / "last.pt"
        new, notes = resolve_resume_args(
            checkpoint_extra(ckpt)["args"],
            vars(args),
            mutable=RESUME_MUTABLE,
            fixed=RESUME_FIXED,
            explicit=given,
            where=f"--resume from {ckpt}",
        )
        args = argparse.Namespace(**new)
    envs_per_game = split_evenly("srwm_procgen", "--envs-per-game", args.envs_per_game, dist)
    batch_size = split_evenly("srwm_procgen", "--batch-size", args.batch_size, dist)
    rank_seed = args.seed + 7919 * dist.rank  # each process acts and samples levels on its own seed
    seed_everything(rank_seed)
    env = build_env(args, args.start_level, rank_seed, envs_per_game)
    agent = build_agent(args, env)
    config = ImpalaConfig(
        unroll_length=args.unroll_length,
        batch_size=batch_size,
        optimizer=args.optimizer,
        learning_rate=args.lr,
        entropy_cost=args.entropy_cost,
        total_frames=args.total_frames,
        reward_clip=args.reward_clip or None,
    )
    learner = ImpalaLearner(agent, env, config, device=args.device, dist=dist)
    if args.resume:
        learner.load(out / "last.pt")
    main_rank = dist.is_main
    random = random_level(args, out) if main_rank else {}
    if main_rank:
        print("".join(f"--resume takes {n}\n" for n in notes), end="")
        print(
            f"{args.kind} agent, {count_parameters(agent):,} parameters; {describe(args)}; {args.envs_per_game} "
            f"envs per game in {dist.world_size} process(es); {args.total_frames:,} frames; random policy "
            + ", ".join(f"{g} {v:.2f}" for g, v in random.items())
        )
    log = MetricLogger(out, resume_step=learner.frames, wandb=args.wandb, wandb_config=vars(args), enabled=main_rank)
    log_every = args.log_every or max(1, args.total_frames // 100)
    next_log, last_save = learner.frames + log_every, time.time()
    recent: list[list[float]] = [[] for _ in env.task_names]
    bar = progress(total=args.total_frames, initial=learner.frames, desc=args.kind, unit="frame", disable=not main_rank)
    t0, cpu0, frames0 = time.time(), time.process_time(), learner.frames
    spent: list[float] = []  # the training loop's wall and CPU seconds, once it ended (the evaluation not counted)

    def report(status: str, evaluation: dict | None = None) -> None:
        if main_rank:
            wall, cpu = spent or (time.time() - t0, time.process_time() - cpu0)
            fps = (learner.frames - frames0) / wall
            status += (
                f" {learner.frames:,} of {args.total_frames:,} frames at {fps:.0f} frames/s "
                f"({wall / 60:.1f} min wall, {cpu:.1f} CPU-s in process 0 of {dist.world_size})"
            )
            write_report(
                out,
                args,
                {args.kind: log.read("returns")},
                random,
                status,
                {args.kind: evaluation} if evaluation else None,
            )

    try:
        while learner.frames < args.total_frames and not any_rank(bool(stop), dist):
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
                if not bar.interactive and main_rank:  # a log file: the numbers the bar would show
                    print(
                        f"frames {learner.frames:,}  {fps:.0f} frames/s  loss {stats['loss']:.1f}  returns "
                        + "  ".join(f"{g} {m:.2f}" for g, m in means.items()),
                        flush=True,
                    )
                recent = [[] for _ in env.task_names]
            if any_rank(time.time() - last_save > args.checkpoint_every, dist):
                learner.save(out / "last.pt", args=vars(args), frames=learner.frames)
                last_save = time.time()
    except Exception as e:  # a crash still leaves the curves and results.md up to the last logged update
        report(f"Crashed ({type(e).__name__}: {e}); the last checkpoint is the last periodic one.")
        raise
    finally:
        bar.close()
        env.close()
    spent += [time.time() - t0, time.process_time() - cpu0]
    learner.save(out / "last.pt", args=vars(args), frames=learner.frames)
    evaluation = None if stop else evaluate_splits(agent, args) if main_rank else None
    report(f"Interrupted; saved {out / 'last.pt'} (continue with --resume)." if stop else "Trained", evaluation)
    rows = log.read("returns") if main_rank else []
    log.close()
    barrier(dist)  # the other processes wait for rank 0's evaluation
    return rows, evaluation


def mean_random(levels: list[dict[str, float]]) -> dict[str, float]:
    """The random policy's return per game, averaged over the run folders that measured it."""
    games = {g for level in levels for g in level}
    return {g: float(np.mean([level[g] for level in levels if g in level])) for g in sorted(games)}


def run_eval(args: argparse.Namespace, dist: DistInfo) -> str:
    """Evaluate each --eval checkpoint; with several (seeds), also their IQM and learning table."""
    paths = args.eval or [str(Path(args.out) / "last.pt")]
    runs, curves, randoms, text = [], {}, [], ""
    for path in paths:
        saved = checkpoint_extra(path)
        for key in MODEL_KEYS + ("num_levels", "start_level", "test_start_level", "seed"):
            setattr(args, key, saved["args"][key])
        setup(args, dist)
        probe = build_env(args, args.start_level, args.seed, 1)
        agent = build_agent(args, probe).to(args.device)
        probe.close()
        load_checkpoint(path, model=agent, restore_rng=False, map_location=args.device)
        runs.append(evaluate_splits(agent, args))
        table = format_table(score_rows(runs[-1], args.games, normalizer(args)))
        text += f"{path}: {args.kind} agent, {saved['frames']:,} training frames, {describe(args)}\n{table}\n\n"
        folder = Path(path).parent
        if (folder / "returns.csv").exists() and (folder / "random.json").exists():
            curves[f"{args.kind} seed {args.seed}"] = MetricLogger(folder, tensorboard=False).read("returns")
            randoms.append(json.loads((folder / "random.json").read_text()))
    if len(paths) > 1:
        text += (
            f"All {len(paths)} checkpoints: mean over runs, IQM over games and runs, 95% stratified bootstrap "
            f"intervals\n{format_table(score_rows(runs, args.games, normalizer(args)))}\n\n"
        )
        if curves:
            text += (
                f"Training-episode return, first -> last 20% of each run\n"
                f"{learning_table(curves, args.games, mean_random(randoms))}\n"
            )
    print(text, end="")
    atomic_write_text(Path(args.out) / "eval.md", text)
    return text


def main(argv: Sequence[str] | argparse.Namespace | None = None) -> str:
    args = argv if isinstance(argv, argparse.Namespace) else parse_args(argv)
    dist = init_distributed("cuda" if args.device.startswith("cuda") else "cpu")
    if args.eval is not None:
        return run_eval(args, dist) if dist.is_main else ""
    if args.env == "procgen" and (reason := procgen_unavailable(args.env_backend)):
        raise SystemExit(
            f"srwm_procgen: {reason}. Run `bash scripts/setup.sh` (as root it installs Qt 5), "
            f"or try the built-in memory task with --env recall."
        )
    kinds = (args.compare or ["srwm", "lstm"]) if args.compare is not None else [args.kind]
    root, runs, evaluations = Path(args.out), {}, {}
    given = cli.given_flags(build_parser(), None if isinstance(argv, argparse.Namespace) else argv)
    with GracefulStop() as stop:
        for kind in kinds:  # --compare: the same frames, levels and seed for each kind, in --out/<kind>
            args.kind = kind
            setup(args, dist)
            out = root / kind if args.compare is not None else root
            runs[kind], evaluations[kind] = train(args, out, dist, stop, given)
            if stop:
                break
    text = ""
    if dist.is_main and args.compare is not None:
        random = json.loads((root / kinds[0] / "random.json").read_text())
        text = write_report(
            root,
            args,
            runs,
            random,
            f"Compared on the same {args.total_frames:,} frames.",
            {k: e for k, e in evaluations.items() if e},
            figure="compare.png",
        )
    elif dist.is_main:
        text = (root / "results.md").read_text()
    if dist.is_main:
        print(
            text + f"\nwritten to {root}/: last.pt (checkpoint), train.csv and returns.csv (logs), tb/ "
            f"(TensorBoard), random.json, curves.png, results.md" + (", compare.png" if args.compare else "")
        )
    cleanup_distributed(dist)
    if stop:
        raise SystemExit(stop.exit_code)
    return text


if __name__ == "__main__":
    main(ARGS)
