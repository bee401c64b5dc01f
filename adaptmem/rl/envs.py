"""Vectorised environments with one step convention, multi-task pools and a tiny recall task.

Every environment here follows gym3's convention, whatever the backend underneath:

- ``reset()`` starts a fresh episode in every row and returns the first frames.
- ``step(actions)`` returns a :class:`StepResult`. Where ``done[i]`` is set, the action ended
  row ``i``'s episode: ``reward[i]`` is that action's (last) reward and ``obs[i]`` is already the
  first frame of the next episode. No step is ever spent on a reset, so every frame counts.
- ``episode_return[i]`` / ``episode_length[i]`` carry the finished episode's raw (unclipped)
  return and length where ``done[i]``, and NaN / 0 elsewhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np


class StepResult(NamedTuple):
    """What :meth:`VecEnv.step` returns; all arrays have the number of rows ``N`` first."""

    obs: np.ndarray  # [N, *obs_shape]; where done, the first frame of the next episode
    reward: np.ndarray  # [N] float32: reward for the action just taken
    done: np.ndarray  # [N] bool: that action ended the episode
    episode_return: np.ndarray  # [N] float64: the finished episode's return where done, else NaN
    episode_length: np.ndarray  # [N] int64: its length where done, else 0


class VecEnv:
    """Base class of the vectorised environments (see the module docstring for the convention).

    Subclasses set ``num_envs``, ``num_actions``, ``obs_shape``, ``obs_dtype`` and implement
    :meth:`reset` and :meth:`step`. Environments whose whole state can be captured also
    implement :meth:`state_dict` / :meth:`load_state_dict` (used for exact resume).
    """

    num_envs: int
    num_actions: int
    obs_shape: tuple[int, ...]
    obs_dtype: np.dtype

    def reset(self) -> np.ndarray:
        raise NotImplementedError

    def step(self, actions: np.ndarray) -> StepResult:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def state_dict(self) -> dict[str, Any] | None:
        """The full environment state, or ``None`` when it cannot be captured (C++ simulators)."""
        return None

    def load_state_dict(self, state: dict[str, Any]) -> None:
        raise NotImplementedError(f"{type(self).__name__} cannot restore its state")

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _require(fn: str, state: Any, keys: Sequence[str]) -> None:
    missing = [k for k in keys if not isinstance(state, dict) or k not in state]
    if missing:
        raise ValueError(f"{fn}: state lacks {missing} (from state_dict())")


def check_actions(fn: str, actions: Any, num_envs: int, num_actions: int) -> np.ndarray:
    """Actions must be integers ``[num_envs]`` in ``[0, num_actions)``; returns them as int64."""
    a = np.asarray(actions)
    if a.shape != (num_envs,) or not np.issubdtype(a.dtype, np.integer):
        raise ValueError(
            f"{fn}: actions must be an integer array of shape ({num_envs},), got shape {a.shape} dtype {a.dtype}"
        )
    if a.size and (a.min() < 0 or a.max() >= num_actions):
        raise ValueError(f"{fn}: actions must lie in [0, {num_actions}), got values in [{a.min()}, {a.max()}]")
    return a.astype(np.int64, copy=False)


class EpisodeTracker:
    """Running return and length per row; turns (reward, done) into finished-episode stats."""

    def __init__(self, num_envs: int) -> None:
        if isinstance(num_envs, bool) or not isinstance(num_envs, int) or num_envs <= 0:
            raise ValueError(f"EpisodeTracker: num_envs must be a positive int, got {num_envs!r}")
        self.returns = np.zeros(num_envs, np.float64)
        self.lengths = np.zeros(num_envs, np.int64)

    def reset(self) -> None:
        self.returns[:] = 0.0
        self.lengths[:] = 0

    def update(self, reward: np.ndarray, done: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = len(self.returns)
        reward, done = np.asarray(reward), np.asarray(done)
        if reward.shape != (n,) or done.shape != (n,) or done.dtype != bool:
            raise ValueError(
                f"EpisodeTracker.update: reward must be [{n}] and done bool [{n}], got shapes "
                f"{reward.shape} and {done.shape} (dtype {done.dtype})"
            )
        self.returns += reward
        self.lengths += 1
        ep_return = np.where(done, self.returns, np.nan)
        ep_length = np.where(done, self.lengths, 0)
        self.returns[done] = 0.0
        self.lengths[done] = 0
        return ep_return, ep_length

    def state_dict(self) -> dict[str, np.ndarray]:
        return {"returns": self.returns.copy(), "lengths": self.lengths.copy()}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        _require("EpisodeTracker.load_state_dict", state, ("returns", "lengths"))
        self.returns[:] = state["returns"]
        self.lengths[:] = state["lengths"]


class MultiTaskEnv(VecEnv):
    """Several vectorised pools (one per task/game) stepped together as one batch of rows.

    Rows are the pools' rows concatenated in order; ``task_ids[i]`` is the index of the pool
    that row ``i`` belongs to and ``task_names`` names the pools.

    Args:
        envs: the pools; they must share the action count, observation shape and dtype.
        names: one name per pool (default ``"task0"``, ``"task1"``, ...).

    Example::

        >>> env = MultiTaskEnv([RecallEnv(4, seed=0), RecallEnv(4, num_symbols=3, seed=1)], ["a", "b"])
        >>> obs = env.reset()                        # [8, 4]
        >>> res = env.step(np.zeros(8, dtype=int))
    """

    def __init__(self, envs: Sequence[VecEnv], names: Sequence[str] | None = None) -> None:
        if not isinstance(envs, Sequence) or not all(isinstance(e, VecEnv) for e in envs):
            raise TypeError(f"MultiTaskEnv: envs must be a sequence of VecEnv, got {type(envs).__name__}")
        envs = list(envs)
        if not envs:
            raise ValueError("MultiTaskEnv: envs must contain at least one environment")
        names = list(names) if names is not None else [f"task{i}" for i in range(len(envs))]
        if len(names) != len(envs):
            raise ValueError(f"MultiTaskEnv: got {len(envs)} envs but {len(names)} names")
        first = envs[0]
        for name, e in zip(names, envs):
            if (e.num_actions, tuple(e.obs_shape), np.dtype(e.obs_dtype)) != (
                first.num_actions,
                tuple(first.obs_shape),
                np.dtype(first.obs_dtype),
            ):
                raise ValueError(
                    f"MultiTaskEnv: every env must have {first.num_actions} actions and observations "
                    f"{tuple(first.obs_shape)} {np.dtype(first.obs_dtype)}; {name!r} has {e.num_actions} actions "
                    f"and observations {tuple(e.obs_shape)} {np.dtype(e.obs_dtype)}"
                )
        self.envs, self.task_names = envs, names
        self.num_actions, self.obs_shape, self.obs_dtype = first.num_actions, tuple(first.obs_shape), first.obs_dtype
        sizes = [e.num_envs for e in envs]
        self.num_envs = sum(sizes)
        self.bounds = np.cumsum([0] + sizes)
        self.task_ids = np.repeat(np.arange(len(envs)), sizes)

    def reset(self) -> np.ndarray:
        return np.concatenate([e.reset() for e in self.envs])

    def step(self, actions: np.ndarray) -> StepResult:
        actions = check_actions("MultiTaskEnv.step", actions, self.num_envs, self.num_actions)
        parts = [e.step(actions[lo:hi]) for e, lo, hi in zip(self.envs, self.bounds[:-1], self.bounds[1:])]
        return StepResult(*(np.concatenate(field) for field in zip(*parts)))

    def close(self) -> None:
        for e in self.envs:
            e.close()

    def state_dict(self) -> dict[str, Any] | None:
        states = [e.state_dict() for e in self.envs]
        return None if any(s is None for s in states) else {"envs": states}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for e, s in zip(self.envs, state["envs"]):
            e.load_state_dict(s)


class RecallEnv(VecEnv):
    """A one-cue memory task with a known optimal return, for tests and quick demos.

    Each episode shows a random cue (one of ``num_symbols``, one-hot) on its first frame, then
    ``delay`` frames without it (last observation entry set: "recall now"). Every action on those
    frames that names the cue earns ``1 / delay``; the action on the cue frame earns nothing, and
    the episode ends after the last recall frame. The delay is drawn per episode from
    ``[min_delay, max_delay]``, so episodes of different rows fall out of step and straddle
    unroll boundaries.

    Optimal expected return: 1. Best expected return without memory: ``1 / num_symbols``.

    Args:
        num_envs: rows.
        num_symbols: cue alphabet size (= number of actions).
        min_delay, max_delay: range of the number of recall frames.
        seed: seed of the environment's own generator (its state is in :meth:`state_dict`).

    Observations: float32 ``[num_envs, num_symbols + 1]``.
    """

    def __init__(
        self, num_envs: int, num_symbols: int = 3, min_delay: int = 1, max_delay: int = 3, seed: int = 0
    ) -> None:
        for name, v, lo in (("num_envs", num_envs, 1), ("num_symbols", num_symbols, 2), ("min_delay", min_delay, 1)):
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise ValueError(f"RecallEnv: {name} must be an int >= {lo}, got {v!r}")
        if not isinstance(max_delay, int) or max_delay < min_delay:
            raise ValueError(f"RecallEnv: max_delay must be an int >= min_delay ({min_delay}), got {max_delay!r}")
        self.num_envs, self.num_actions = num_envs, num_symbols
        self.obs_shape, self.obs_dtype = (num_symbols + 1,), np.dtype(np.float32)
        self.min_delay, self.max_delay = min_delay, max_delay
        self.optimal_return, self.memoryless_return = 1.0, 1.0 / num_symbols
        self.rng = np.random.default_rng(seed)
        self.cue = np.zeros(num_envs, np.int64)
        self.delay = np.zeros(num_envs, np.int64)
        self.t = np.zeros(num_envs, np.int64)
        self.tracker = EpisodeTracker(num_envs)

    def _new_episodes(self, rows: np.ndarray) -> None:
        n = int(rows.sum()) if rows.dtype == bool else len(rows)
        self.cue[rows] = self.rng.integers(0, self.num_actions, n)
        self.delay[rows] = self.rng.integers(self.min_delay, self.max_delay + 1, n)
        self.t[rows] = 0

    def _observe(self) -> np.ndarray:
        obs = np.zeros((self.num_envs, self.num_actions + 1), np.float32)
        rows = np.arange(self.num_envs)
        at_cue = self.t == 0
        obs[rows[at_cue], self.cue[at_cue]] = 1.0
        obs[~at_cue, -1] = 1.0
        return obs

    def reset(self) -> np.ndarray:
        self._new_episodes(np.ones(self.num_envs, bool))
        self.tracker.reset()
        return self._observe()

    def step(self, actions: np.ndarray) -> StepResult:
        actions = check_actions("RecallEnv.step", actions, self.num_envs, self.num_actions)
        done = self.t == self.delay
        reward = ((self.t > 0) & (actions == self.cue)) / self.delay.astype(np.float32)
        self.t += 1
        self._new_episodes(done)
        ep_return, ep_length = self.tracker.update(reward, done)
        return StepResult(self._observe(), reward, done, ep_return, ep_length)

    def state_dict(self) -> dict[str, Any]:
        return {
            "rng": self.rng.bit_generator.state,
            "cue": self.cue.copy(),
            "delay": self.delay.copy(),
            "t": self.t.copy(),
            "tracker": self.tracker.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        _require("RecallEnv.load_state_dict", state, ("rng", "cue", "delay", "t", "tracker"))
        self.rng.bit_generator.state = state["rng"]
        self.cue[:], self.delay[:], self.t[:] = state["cue"], state["delay"], state["t"]
        self.tracker.load_state_dict(state["tracker"])
