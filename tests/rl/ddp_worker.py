"""Run by tests/rl/test_distributed.py under ``torchrun --nproc_per_node 2`` (gloo, CPU).

    ddp_worker.py OUT_DIR ONE_PROCESS_CKPT [EXAMPLE_ARG ...]

Rank 0 writes ``OUT_DIR/result.json`` with what the checks measured; the test asserts on it.
Then, with arguments, it runs ``examples/srwm_procgen.py`` with them in the same process group
(one launch of torchrun for both: each costs seconds of start-up).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from adaptmem.rl import ImpalaConfig, ImpalaLearner, RecallEnv, make_agent
from adaptmem.utils.distributed import all_gather_objects, cleanup_distributed, init_distributed
from tests.examples import load_example

ROWS, UNROLL = 8, 5  # rows of one combined update; each of the 2 processes acts in half of them


def learner(num_envs: int, seed: int, dist=None, env_seed: int | None = None) -> ImpalaLearner:
    torch.manual_seed(seed)
    env = RecallEnv(num_envs, seed=seed if env_seed is None else env_seed)
    agent = make_agent(
        env.obs_shape, env.num_actions, core="srwm", feature_dim=16, num_layers=1, num_heads=2, head_dim=8, d_ff=16
    )
    config = ImpalaConfig(
        unroll_length=UNROLL, batch_size=num_envs, optimizer="adam", learning_rate=1e-2, total_frames=10 * ROWS * UNROLL
    )
    return ImpalaLearner(agent, env, config, dist=dist)


def flat_params(lrn: ImpalaLearner) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in lrn.agent.parameters()])


def main() -> None:
    out, one_process_ckpt = Path(sys.argv[1]), sys.argv[2]
    dist = init_distributed("cpu")
    rank, half = dist.rank, ROWS // dist.world_size
    result: dict[str, object] = {"world_size": dist.world_size}

    # 1. the update of 2 processes on 4 rows each = the update of 1 process on the 8 rows together
    collector = learner(ROWS, seed=0)  # the same rollouts on every rank
    rollouts = [collector.collect()[0] for _ in range(3)]
    single = learner(ROWS, seed=100)
    parallel = learner(half, seed=100 + rank, dist=dist)  # different initial weights: rank 0's must win
    result["initial_max_diff"] = float((flat_params(single) - flat_params(parallel)).abs().max())
    for rollout in rollouts:
        single.update(rollout)
        parallel.update(rollout.rows(slice(rank * half, (rank + 1) * half)))
    ref, got = flat_params(single), flat_params(parallel)
    result["update_max_rel_diff"] = float((ref - got).abs().max() / ref.abs().max())
    result["lr"] = [single.optimizer.param_groups[0]["lr"], parallel.optimizer.param_groups[0]["lr"]]
    ranks = all_gather_objects(got, dist)
    result["ranks_identical"] = bool(torch.equal(ranks[0], ranks[1]))

    # 2. train steps: global frames, episodes from both processes; exact resume at the same world size
    a = learner(half, seed=0, dist=dist, env_seed=10 + rank)
    episodes = []
    for _ in range(2):
        episodes += a.train_step()["episodes"]
    a.save(out / "two.pt")
    for _ in range(2):
        a.train_step()
    b = learner(half, seed=5, dist=dist, env_seed=99)  # whatever it was built with, the checkpoint decides
    b.load(out / "two.pt")
    for _ in range(2):
        b.train_step()
    result["frames"] = [a.frames, b.frames]
    result["episode_rows"] = sorted({e.row for e in episodes})
    result["resume_exact"] = bool(torch.equal(flat_params(a), flat_params(b)))
    result["two_process_params_sum"] = float(flat_params(b).double().sum())
    b.save(out / "two_after.pt")

    # 3. a 1-process checkpoint resumes on 2 processes (the actors restart, the learner continues)
    c = learner(half, seed=3, dist=dist, env_seed=20 + rank)
    c.load(one_process_ckpt)
    loaded = (c.frames, c.updates)
    c.train_step()
    result["from_one_process"] = [loaded, (c.frames, c.updates)]

    if dist.is_main:
        (out / "result.json").write_text(json.dumps(result))
    if len(sys.argv) > 3:
        load_example("srwm_procgen").main(sys.argv[3:])  # leaves the process group at its end
    cleanup_distributed(dist)


if __name__ == "__main__":
    main()
