"""RL training speed per core: frames/s of the IMPALA learner (acting + V-trace updates) for the
SRWM, DeltaNet, LSTM and feed-forward agents on the same ProcGen pools and torso.

    python benchmarks/bench_rl.py                      # the example's CPU default sizes
    python benchmarks/bench_rl.py --config paper       # the paper's agent (GPU: add --device cuda)
    python benchmarks/bench_rl.py --quick              # seconds: a smoke test of this script

The paper's P100 figures: feed-forward and LSTM 3,500 steps/s, DeltaNet 2,300, SRWM 1,700
(SRWM/LSTM = 0.49). Timings are medians of rounds that alternate between the cores, so a
changing machine load hits all of them alike; frames per CPU-second are printed as well,
since on a shared CPU they estimate the idle machine's single-thread speed better than the
wall clock. Without envpool/Qt the frames come from a random-frame stand-in (``--env random``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Sequence

from adaptmem.utils import cli

PAPER_CORES = ("srwm", "deltanet", "lstm", "ff")  # the agents the paper times (see above)
SIZES = {
    "default": dict(
        channels=(8, 16, 16), res_blocks=1, downsample=2, unroll_length=20, envs_per_game=16, batch_size=16
    ),
    "paper": dict(channels=(16, 32, 32), res_blocks=2, downsample=1, unroll_length=50, envs_per_game=16, batch_size=32),
}
GAMES = ("starpilot", "fruitbot", "bigfish")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = cli.parser(__doc__)
    p.add_argument("--config", choices=sorted(SIZES), default="default", help="torso/unroll/batch sizes")
    p.add_argument(
        "--kinds",
        nargs="+",
        default=list(PAPER_CORES),
        help="agent cores to time, of adaptmem.rl.CORES (default: the paper's comparison)",
    )
    p.add_argument("--games", type=int, default=3, help="number of ProcGen games (pools)")
    p.add_argument("--rounds", type=int, default=5, help="timed rounds per core (median reported)")
    p.add_argument("--steps", type=int, default=3, help="train steps (unroll + updates) per round")
    p.add_argument("--env", choices=("procgen", "random"), default=None, help="default: procgen when it runs here")
    cli.add_threads(p)
    cli.add_device(p, "cpu")
    p.add_argument("--quick", action="store_true", help="tiny sizes and one short round: a smoke test")
    cli.add_aliases(p, {"--cores": "--kinds"})
    return cli.parse(p, argv)


if __name__ == "__main__":  # answer --help and bad flags before the heavy imports below
    ARGS = parse_args()

import numpy as np
import torch

from adaptmem.rl import CORES, ImpalaConfig, ImpalaLearner, VecEnv, make_agent, make_procgen, procgen_unavailable
from adaptmem.rl.envs import EpisodeTracker, StepResult, check_actions
from adaptmem.utils import configure_threads, count_parameters


class RandomFrames(VecEnv):
    """Random uint8 frames, random rewards, episodes of 100 steps: ProcGen's shapes without ProcGen."""

    def __init__(self, num_envs: int, seed: int = 0) -> None:
        self.num_envs, self.num_actions, self.obs_shape, self.obs_dtype = num_envs, 15, (3, 64, 64), np.dtype(np.uint8)
        self.rng, self.t, self.tracker = np.random.default_rng(seed), np.zeros(num_envs, int), EpisodeTracker(num_envs)

    def reset(self) -> np.ndarray:
        self.t[:] = 0
        return self.rng.integers(0, 256, (self.num_envs, *self.obs_shape), dtype=np.uint8)

    def step(self, actions: np.ndarray) -> StepResult:
        check_actions("RandomFrames.step", actions, self.num_envs, self.num_actions)
        self.t += 1
        done, reward = self.t % 100 == 0, (self.rng.random(self.num_envs) < 0.05).astype(np.float32)
        obs = self.rng.integers(0, 256, (self.num_envs, *self.obs_shape), dtype=np.uint8)
        return StepResult(obs, reward, done, *self.tracker.update(reward, done))


def build(core: str, args: argparse.Namespace, sizes: dict) -> ImpalaLearner:
    torch.manual_seed(0)
    games = GAMES[: args.games]
    env = (
        make_procgen(games, sizes["envs_per_game"], seed=0)
        if args.env == "procgen"
        else RandomFrames(sizes["envs_per_game"] * len(games))
    )
    agent = make_agent(
        env.obs_shape,
        env.num_actions,
        core=core,
        channels=sizes["channels"],
        num_res_blocks=sizes["res_blocks"],
        downsample=sizes["downsample"],
    )
    config = ImpalaConfig(unroll_length=sizes["unroll_length"], batch_size=sizes["batch_size"], optimizer="rmsprop")
    return ImpalaLearner(agent, env, config, device=args.device)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def main(argv: Sequence[str] | argparse.Namespace | None = None) -> None:
    args = argv if isinstance(argv, argparse.Namespace) else parse_args(argv)
    cli.check_choice("--kinds", args.kinds, CORES)
    sizes = dict(SIZES[args.config])
    if args.quick:
        sizes.update(envs_per_game=4, batch_size=4, unroll_length=5)
        args.rounds, args.steps, args.games = 1, 1, 1
    if args.env is None:
        args.env = "procgen" if procgen_unavailable() is None else "random"
    envpool_threads = args.games if args.env == "procgen" else 0  # one worker thread per pool
    threads = configure_threads(args.threads, reserved=envpool_threads).intra_op
    args.device = str(cli.resolve_device(args.device))
    learners = {core: build(core, args, sizes) for core in args.kinds}
    for learner in learners.values():  # warm-up: allocator, envpool threads, lazy inits
        learner.train_step()
    wall: dict[str, list[float]] = {c: [] for c in learners}
    cpu: dict[str, list[float]] = {c: [] for c in learners}
    for _ in range(args.rounds):
        for core, learner in learners.items():
            frames0, t0, c0 = learner.frames, time.perf_counter(), time.process_time()
            for _ in range(args.steps):
                learner.train_step()
            sync(args.device)
            frames = learner.frames - frames0
            wall[core].append(frames / (time.perf_counter() - t0))
            cpu[core].append(frames / (time.process_time() - c0))
    load = os.getloadavg()[0]
    n_envs = next(iter(learners.values())).env.num_envs
    print(
        f"# bench_rl: config={args.config} env={args.env} rows={n_envs} unroll={sizes['unroll_length']} "
        f"batch={sizes['batch_size']} torso channels={sizes['channels']} res_blocks={sizes['res_blocks']} "
        f"downsample={sizes['downsample']} "
        f"device={args.device} threads={threads} load(1 min)={load:.1f}"
    )
    ref_wall = statistics.median(wall["lstm"]) if "lstm" in wall else None
    ref_cpu = statistics.median(cpu["lstm"]) if "lstm" in cpu else None
    print("| core | parameters | frames/s (wall) | frames/CPU-s | vs LSTM (wall) | vs LSTM (CPU) |")
    print("|---|---|---|---|---|---|")
    for core, learner in learners.items():
        w, c = statistics.median(wall[core]), statistics.median(cpu[core])
        ratios = [f"{x / ref:.2f}" if ref else "-" for x, ref in ((w, ref_wall), (c, ref_cpu))]
        print(f"| {core} | {count_parameters(learner.agent):,} | {w:,.0f} | {c:,.0f} | {' | '.join(ratios)} |")
    for learner in learners.values():
        learner.env.close()


if __name__ == "__main__":
    main(ARGS)
