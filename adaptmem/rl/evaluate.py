"""Evaluation: run an agent for a fixed number of episodes per row and tabulate the scores."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch

from adaptmem.rl.agent import Agent
from adaptmem.rl.envs import VecEnv
from adaptmem.utils import markdown_table


@torch.no_grad()
def evaluate(agent: Agent, env: VecEnv, episodes_per_env: int = 1, *, greedy: bool = False,
             max_steps: int = 100_000, device: torch.device | str | None = None) -> dict[int, np.ndarray]:
    """Returns of the first ``episodes_per_env`` episodes of every row, grouped by task.

    Taking the same number of episodes from every row (rather than the first ``n`` to finish)
    keeps short episodes from being over-represented.

    Args:
        agent: the agent (put in eval mode for the run and restored afterwards).
        env: a :class:`VecEnv`; its ``task_ids`` (if any) group the rows. It is reset first.
        episodes_per_env: episodes counted per row.
        greedy: act with the most likely action instead of sampling.
        max_steps: safety limit on environment steps; unfinished rows are reported as missing.

    Returns:
        ``{task_id: returns}`` with ``returns`` a float array (raw, unclipped).
    """
    if isinstance(episodes_per_env, bool) or not isinstance(episodes_per_env, int) or episodes_per_env < 1:
        raise ValueError(f"evaluate: episodes_per_env must be an int >= 1, got {episodes_per_env!r}")
    if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1:
        raise ValueError(f"evaluate: max_steps must be an int >= 1, got {max_steps!r}")
    if not isinstance(agent, Agent) or not isinstance(env, VecEnv):
        raise TypeError(f"evaluate: agent must be an Agent and env a VecEnv, got {type(agent).__name__} and "
                        f"{type(env).__name__}")
    if agent.num_actions != env.num_actions or agent.obs_shape != tuple(env.obs_shape):
        raise ValueError(f"evaluate: the agent expects {agent.obs_shape} observations and {agent.num_actions} "
                         f"actions, env has {tuple(env.obs_shape)} and {env.num_actions}")
    device = torch.device(device) if device is not None else agent.policy.weight.device
    was_training = agent.training
    agent.eval()
    N = env.num_envs
    task_ids = np.asarray(getattr(env, "task_ids", np.zeros(N, np.int64)))
    obs = torch.from_numpy(env.reset()).to(device)
    prev_reward = torch.zeros(N, device=device)
    first = torch.ones(N, dtype=torch.bool, device=device)
    state = agent.initial_state(N, device)
    returns: list[list[float]] = [[] for _ in range(N)]
    for _ in range(max_steps):
        action, _, state = agent.act(obs, prev_reward, first, state, greedy=greedy)
        res = env.step(action.cpu().numpy())
        for i in np.flatnonzero(res.done):
            if len(returns[i]) < episodes_per_env:
                returns[i].append(float(res.episode_return[i]))
        if all(len(r) >= episodes_per_env for r in returns):
            break
        obs = torch.from_numpy(res.obs).to(device)
        prev_reward = torch.from_numpy(res.reward.astype(np.float32)).to(device)
        first = torch.from_numpy(res.done).to(device)
    agent.train(was_training)
    return {int(t): np.array([r for i in np.flatnonzero(task_ids == t) for r in returns[i]])
            for t in np.unique(task_ids)}


def format_table(rows: Sequence[dict[str, object]], columns: Sequence[str] | None = None) -> str:
    """A GitHub-markdown table of ``rows`` (floats with 2 decimals, NaN as ``-``)."""
    if not rows:
        raise ValueError("format_table: rows is empty")
    columns = list(columns or rows[0].keys())
    unknown = [c for c in columns if not any(c in r for r in rows)]
    if unknown:
        raise ValueError(f"format_table: columns {unknown} are in no row (rows have {sorted(set().union(*rows))})")

    def fmt(v: object) -> str:
        if isinstance(v, float):
            return "-" if math.isnan(v) else f"{v:.2f}"
        return str(v)

    return markdown_table(columns, [[fmt(r.get(c, "")) for c in columns] for r in rows])


def score_rows(results: dict[str, dict[int, np.ndarray]], task_names: Sequence[str],
               normalize: Callable[[str, float], float] | None = None) -> list[dict[str, object]]:
    """Table rows: one per task with the mean return (and normalised score) of each split in
    ``results = {split_name: evaluate(...)}``, plus a ``mean`` row of the normalised scores."""
    rows: list[dict[str, object]] = []
    for t, name in enumerate(task_names):
        row: dict[str, object] = {"game": name}
        for split, res in results.items():
            r = res.get(t, np.array([]))
            mean = float(r.mean()) if r.size else float("nan")
            row[f"{split} return"] = mean
            if normalize is not None:
                row[f"{split} norm."] = normalize(name, mean) if r.size else float("nan")
        rows.append(row)
    if normalize is not None and len(task_names) > 1:
        mean_row: dict[str, object] = {"game": "mean"}
        for split in results:
            mean_row[f"{split} return"] = float("nan")
            mean_row[f"{split} norm."] = float(np.nanmean([r[f"{split} norm."] for r in rows]))
        rows.append(mean_row)
    return rows
