"""Evaluation: run an agent (or the random policy) for a fixed number of episodes per row and
tabulate the scores with bootstrap intervals."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch

from adaptmem.rl.agent import Agent
from adaptmem.rl.envs import VecEnv
from adaptmem.rl.stats import Interval, bootstrap_ci, iqm
from adaptmem.utils import markdown_table


def _episodes(
    env: VecEnv,
    policy: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray],
    episodes_per_env: int,
    max_steps: int,
) -> dict[int, np.ndarray]:
    """Returns of the first ``episodes_per_env`` episodes of every row under ``policy(obs,
    prev_reward, first) -> actions``, grouped by task (rows unfinished after ``max_steps`` steps
    contribute the episodes they finished)."""
    N = env.num_envs
    task_ids = np.asarray(getattr(env, "task_ids", np.zeros(N, np.int64)))
    obs, prev_reward, first = env.reset(), np.zeros(N, np.float32), np.ones(N, bool)
    returns: list[list[float]] = [[] for _ in range(N)]
    for _ in range(max_steps):
        res = env.step(policy(obs, prev_reward, first))
        for i in np.flatnonzero(res.done):
            if len(returns[i]) < episodes_per_env:
                returns[i].append(float(res.episode_return[i]))
        if all(len(r) >= episodes_per_env for r in returns):
            break
        obs, prev_reward, first = res.obs, res.reward.astype(np.float32), res.done
    return {
        int(t): np.array([r for i in np.flatnonzero(task_ids == t) for r in returns[i]]) for t in np.unique(task_ids)
    }


@torch.no_grad()
def evaluate(
    agent: Agent,
    env: VecEnv,
    episodes_per_env: int = 1,
    *,
    greedy: bool = False,
    max_steps: int = 100_000,
    device: torch.device | str | None = None,
) -> dict[int, np.ndarray]:
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
        raise TypeError(
            f"evaluate: agent must be an Agent and env a VecEnv, got {type(agent).__name__} and {type(env).__name__}"
        )
    if agent.num_actions != env.num_actions or agent.obs_shape != tuple(env.obs_shape):
        raise ValueError(
            f"evaluate: the agent expects {agent.obs_shape} observations and {agent.num_actions} "
            f"actions, env has {tuple(env.obs_shape)} and {env.num_actions}"
        )
    device = torch.device(device) if device is not None else agent.policy.weight.device
    was_training = agent.training
    agent.eval()
    state = agent.initial_state(env.num_envs, device)

    def policy(obs: np.ndarray, prev_reward: np.ndarray, first: np.ndarray) -> np.ndarray:
        nonlocal state
        action, _, state = agent.act(
            *(torch.from_numpy(x).to(device) for x in (obs, prev_reward, first)), state, greedy=greedy
        )
        return action.cpu().numpy()

    try:
        return _episodes(env, policy, episodes_per_env, max_steps)
    finally:
        agent.train(was_training)


def random_returns(
    env: VecEnv, episodes_per_env: int = 1, *, seed: int = 0, max_steps: int = 100_000
) -> dict[int, np.ndarray]:
    """What :func:`evaluate` returns for the uniformly random policy: the level an agent must beat."""
    if episodes_per_env < 1:
        raise ValueError(f"random_returns: episodes_per_env must be >= 1, got {episodes_per_env}")
    rng = np.random.default_rng(seed)
    return _episodes(env, lambda obs, *_: rng.integers(0, env.num_actions, env.num_envs), episodes_per_env, max_steps)


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


Results = Mapping[str, Mapping[int, np.ndarray]]  # {split: evaluate(...)} of one run


def _with_ci(ci: Interval) -> str:
    return f"{ci.value:.2f} [{ci.low:.2f}, {ci.high:.2f}]"


def score_rows(
    results: Results | Sequence[Results],
    task_names: Sequence[str],
    normalize: Callable[[str, float], float] | None = None,
    *,
    reps: int = 2000,
    seed: int = 0,
) -> list[dict[str, object]]:
    """Table rows of evaluation results, with 95% bootstrap intervals.

    Args:
        results: ``{split_name: evaluate(...)}`` of one run, or a list of them (seeds).
        task_names: the tasks' names, by task id.
        normalize: ``(task, return) -> normalised score`` (increasing, e.g. ProcGen's
            :func:`~adaptmem.rl.procgen.normalized_score`), or ``None``.
        reps, seed: of the bootstrap (:func:`adaptmem.rl.stats.bootstrap_ci`).

    One row per task: ``"<split> return"``, the mean over runs of each run's mean episode return,
    with its interval (episodes and runs resampled), and ``"<split> norm."``, the same normalised.
    With ``normalize`` and several tasks or runs, a last row holds the interquartile mean of the
    normalised scores over tasks and runs with its interval stratified by task, as rliable's
    (Agarwal et al., 2021). Tasks without finished episodes show ``-``.
    """
    runs = [results] if isinstance(results, Mapping) else list(results)
    splits = list(runs[0])
    rows: list[dict[str, object]] = []
    norm_scores: dict[str, list[list[np.ndarray]]] = {split: [[] for _ in runs] for split in splits}
    for t, name in enumerate(task_names):
        row: dict[str, object] = {"game": name}
        for split in splits:
            cells = [[np.asarray(run[split].get(t, []), dtype=np.float64)] for run in runs]
            if any(c[0].size == 0 for c in cells):
                row[f"{split} return"] = float("nan")
                if normalize is not None:
                    row[f"{split} norm."] = float("nan")
                continue
            ci = bootstrap_ci(cells, np.mean, reps=reps, seed=seed)
            row[f"{split} return"] = _with_ci(ci)
            if normalize is not None:
                row[f"{split} norm."] = _with_ci(ci.map(lambda v: normalize(name, v)))
                for r, c in enumerate(cells):
                    norm_scores[split][r].append(np.array([normalize(name, v) for v in c[0]]))
        rows.append(row)
    if normalize is not None and (len(task_names) > 1 or len(runs) > 1):
        label = f"IQM ({len(task_names)} game{'s' * (len(task_names) > 1)} x {len(runs)} run{'s' * (len(runs) > 1)})"
        agg: dict[str, object] = {"game": label}
        for split in splits:
            agg[f"{split} return"] = float("nan")
            complete = all(len(scores) == len(task_names) for scores in norm_scores[split])
            agg[f"{split} norm."] = (
                _with_ci(bootstrap_ci(norm_scores[split], iqm, reps=reps, seed=seed)) if complete else float("nan")
            )
        rows.append(agg)
    return rows
