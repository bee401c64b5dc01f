"""ProcGen (Cobbe et al., 2020) through envpool or the original ``procgen`` package.

Both backends are wrapped to the convention of :mod:`adaptmem.rl.envs` (gym3's: the frame
returned with ``done`` is already the next episode's first), so an agent cannot tell them
apart. Observations are uint8 ``[N, 3, 64, 64]``; there are 15 actions.

- ``"envpool"`` (default): ``envpool.make("<Game><Mode>-v0", env_type="gymnasium")``. Envpool
  itself returns the terminal frame with ``done`` and spends the next step (ignoring its action)
  on the reset; the wrapper instead resets the finished rows at once with ``pool.reset(ids)``,
  which clears envpool's pending auto-reset.
- ``"procgen"``: ``procgen.ProcgenGym3Env`` (gym3 API, channel-last frames), used as is.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from adaptmem.rl.envs import EpisodeTracker, MultiTaskEnv, StepResult, VecEnv, check_actions
from adaptmem.utils.checks import check_choice

PROCGEN_GAMES = (
    "bigfish",
    "bossfight",
    "caveflyer",
    "chaser",
    "climber",
    "coinrun",
    "dodgeball",
    "fruitbot",
    "heist",
    "jumper",
    "leaper",
    "maze",
    "miner",
    "ninja",
    "plunder",
    "starpilot",
)
#: The SRWM paper's multi-task set (easy mode, 200 training levels).
PAPER_GAMES = ("bigfish", "fruitbot", "maze", "leaper", "plunder", "starpilot")
#: The SRWM paper's memory-mode set (500 training levels).
PAPER_MEMORY_GAMES = ("dodgeball", "heist", "maze", "miner")
#: Games that have a memory distribution mode (others abort in ProcGen).
MEMORY_MODE_GAMES = ("caveflyer", "dodgeball", "heist", "jumper", "maze", "miner")
DISTRIBUTION_MODES = ("easy", "hard", "memory", "exploration")
BACKENDS = ("envpool", "procgen")
NUM_ACTIONS = 15
OBS_SHAPE = (3, 64, 64)

#: (R_min, R_max) per game from Cobbe et al. (2020), Appendix "Normalization constants".
SCORE_RANGES: dict[str, dict[str, tuple[float, float]]] = {
    "easy": {
        "bigfish": (1.0, 40.0),
        "bossfight": (0.5, 13.0),
        "caveflyer": (3.5, 12.0),
        "chaser": (0.5, 13.0),
        "climber": (2.0, 12.6),
        "coinrun": (5.0, 10.0),
        "dodgeball": (1.5, 19.0),
        "fruitbot": (-1.5, 32.4),
        "heist": (3.5, 10.0),
        "jumper": (3.0, 10.0),
        "leaper": (3.0, 10.0),
        "maze": (5.0, 10.0),
        "miner": (1.5, 13.0),
        "ninja": (3.5, 10.0),
        "plunder": (4.5, 30.0),
        "starpilot": (2.5, 64.0),
    },
    "hard": {
        "bigfish": (0.0, 40.0),
        "bossfight": (0.5, 13.0),
        "caveflyer": (2.0, 13.4),
        "chaser": (0.5, 14.2),
        "climber": (1.0, 12.6),
        "coinrun": (5.0, 10.0),
        "dodgeball": (1.5, 19.0),
        "fruitbot": (-0.5, 27.2),
        "heist": (2.0, 10.0),
        "jumper": (1.0, 10.0),
        "leaper": (1.5, 10.0),
        "maze": (4.0, 10.0),
        "miner": (1.5, 20.0),
        "ninja": (2.0, 10.0),
        "plunder": (3.0, 30.0),
        "starpilot": (1.5, 35.0),
    },
}
# ProcGen publishes no memory-mode constants; memory mode is built on the hard-mode levels, so
# its scores are normalised with the hard-mode range (an adaptmem convention, stated in docs/rl.md).
SCORE_RANGES["memory"] = SCORE_RANGES["hard"]


def _check_pool(
    fn: str, num_envs: object, num_levels: object, start_level: object, envs_name: str = "num_envs"
) -> None:
    """The sizes of a pool (the simulators assert, or crash, on bad ones)."""
    for name, v, lo in ((envs_name, num_envs, 1), ("num_levels", num_levels, 0), ("start_level", start_level, 0)):
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            raise ValueError(f"{fn}: {name} must be an int >= {lo}, got {v!r}")


def _check_game(fn: str, game: str, distribution_mode: str) -> None:
    check_choice(fn, "game", game, PROCGEN_GAMES)
    check_choice(fn, "distribution_mode", distribution_mode, DISTRIBUTION_MODES)
    if distribution_mode == "memory" and game not in MEMORY_MODE_GAMES:
        raise ValueError(
            f"{fn}: {game!r} has no memory mode (ProcGen aborts); memory mode exists for {list(MEMORY_MODE_GAMES)}"
        )


def normalized_score(game: str, score: float, distribution_mode: str = "easy") -> float:
    """``(score - R_min) / (R_max - R_min)`` with the ProcGen paper's per-game constants.

    Memory mode uses the hard-mode constants (ProcGen defines none for it); exploration mode
    has none and raises ``ValueError``.
    """
    check_choice("normalized_score", "game", game, PROCGEN_GAMES)
    if distribution_mode not in SCORE_RANGES:
        raise ValueError(
            f"normalized_score: no normalisation constants for distribution_mode "
            f"{distribution_mode!r}; available: {list(SCORE_RANGES)}"
        )
    lo, hi = SCORE_RANGES[distribution_mode][game]
    return (score - lo) / (hi - lo)


def envpool_task_id(game: str, distribution_mode: str = "easy") -> str:
    """Envpool's name of a ProcGen task, e.g. ``("maze", "memory") -> "MazeMemory-v0"``."""
    _check_game("envpool_task_id", game, distribution_mode)
    return f"{game.capitalize()}{distribution_mode.capitalize()}-v0"


class EnvpoolProcgen(VecEnv):
    """One ProcGen game through envpool, ``num_envs`` rows, gym3 step convention.

    Args:
        game: one of :data:`PROCGEN_GAMES`.
        num_envs: rows.
        num_levels, start_level: the level set ``[start_level, start_level + num_levels)``
            (``num_levels=0``: unlimited).
        distribution_mode: ``"easy"``, ``"hard"``, ``"memory"`` or ``"exploration"``.
        seed: envpool's seed (level sampling).
        num_threads: envpool worker threads (``1`` leaves the other cores to the learner).
        pool: an already built envpool-style pool (gymnasium API plus ``reset(env_ids)``),
            used instead of creating one; for tests.
    """

    def __init__(
        self,
        game: str,
        num_envs: int,
        *,
        num_levels: int = 200,
        start_level: int = 0,
        distribution_mode: str = "easy",
        seed: int = 0,
        num_threads: int = 1,
        pool: Any = None,
    ) -> None:
        _check_game("EnvpoolProcgen", game, distribution_mode)
        _check_pool("EnvpoolProcgen", num_envs, num_levels, start_level)
        self.game, self.distribution_mode = game, distribution_mode
        self.num_envs, self.num_actions = num_envs, NUM_ACTIONS
        self.obs_shape, self.obs_dtype = OBS_SHAPE, np.dtype(np.uint8)
        if pool is None:
            import envpool  # optional dependency

            pool = envpool.make(
                envpool_task_id(game, distribution_mode),
                env_type="gymnasium",
                num_envs=num_envs,
                num_levels=num_levels,
                start_level=start_level,
                seed=seed,
                num_threads=num_threads,
                channel_first=True,
            )
        self.pool = pool
        self.tracker = EpisodeTracker(num_envs)

    @staticmethod
    def _by_env_id(obs: np.ndarray, info: dict, ids: np.ndarray) -> np.ndarray:
        """Rows of ``obs`` reordered to follow ``ids`` (envpool may return them in any order)."""
        got = np.asarray(info["env_id"])
        if np.array_equal(got, ids):
            return obs
        pos = {int(e): i for i, e in enumerate(got)}
        return obs[[pos[int(e)] for e in ids]]

    def reset(self) -> np.ndarray:
        ids = np.arange(self.num_envs)
        obs, info = self.pool.reset(ids)
        self.tracker.reset()
        return self._by_env_id(obs, info, ids)

    def step(self, actions: np.ndarray) -> StepResult:
        actions = check_actions("EnvpoolProcgen.step", actions, self.num_envs, self.num_actions)
        ids = np.arange(self.num_envs)
        obs, reward, terminated, truncated, info = self.pool.step(actions.astype(np.int32), ids)
        obs = self._by_env_id(obs, info, ids).copy()
        order = np.argsort(np.asarray(info["env_id"]))
        reward = np.asarray(reward, np.float32)[order]
        done = (np.asarray(terminated) | np.asarray(truncated))[order]
        if done.any():
            finished = np.flatnonzero(done)
            first, reset_info = self.pool.reset(finished)
            obs[finished] = self._by_env_id(first, reset_info, finished)
        ep_return, ep_length = self.tracker.update(reward, done)
        return StepResult(obs, reward, done, ep_return, ep_length)

    def close(self) -> None:
        close = getattr(self.pool, "close", None)
        if close is not None:
            close()


class Gym3Procgen(VecEnv):
    """One ProcGen game through the original ``procgen`` package (gym3 API), same convention.

    Args: as :class:`EnvpoolProcgen`, except
        env_fn: a zero-argument callable returning a gym3-style env (``act``, ``observe``
            returning ``(reward, {"rgb": [N, 64, 64, 3] uint8}, first)``); default builds
            ``procgen.ProcgenGym3Env``. gym3 envs cannot be reset, so :meth:`reset` builds a
            new one whenever the current one has been stepped.
    """

    def __init__(
        self,
        game: str,
        num_envs: int,
        *,
        num_levels: int = 200,
        start_level: int = 0,
        distribution_mode: str = "easy",
        seed: int = 0,
        env_fn: Callable[[], Any] | None = None,
    ) -> None:
        _check_game("Gym3Procgen", game, distribution_mode)
        _check_pool("Gym3Procgen", num_envs, num_levels, start_level)
        self.game, self.distribution_mode = game, distribution_mode
        self.num_envs, self.num_actions = num_envs, NUM_ACTIONS
        self.obs_shape, self.obs_dtype = OBS_SHAPE, np.dtype(np.uint8)
        if env_fn is None:

            def env_fn():
                from procgen import ProcgenGym3Env  # optional dependency

                return ProcgenGym3Env(
                    num=num_envs,
                    env_name=game,
                    num_levels=num_levels,
                    start_level=start_level,
                    distribution_mode=distribution_mode,
                    rand_seed=seed,
                )

        self.env_fn = env_fn
        self.env, self._stepped = None, False
        self.tracker = EpisodeTracker(num_envs)

    def _frames(self, obs: Any) -> np.ndarray:
        rgb = obs["rgb"] if isinstance(obs, dict) else obs
        return np.ascontiguousarray(np.asarray(rgb, np.uint8).transpose(0, 3, 1, 2))

    def reset(self) -> np.ndarray:
        if self.env is None or self._stepped:
            self.close()
            self.env, self._stepped = self.env_fn(), False
        self.tracker.reset()
        _, obs, _ = self.env.observe()
        return self._frames(obs)

    def step(self, actions: np.ndarray) -> StepResult:
        actions = check_actions("Gym3Procgen.step", actions, self.num_envs, self.num_actions)
        if self.env is None:
            raise RuntimeError("Gym3Procgen.step: call reset() first")
        self.env.act(actions.astype(np.int32))
        self._stepped = True
        reward, obs, first = self.env.observe()
        reward, done = np.asarray(reward, np.float32), np.asarray(first, bool)
        ep_return, ep_length = self.tracker.update(reward, done)
        return StepResult(self._frames(obs), reward, done, ep_return, ep_length)

    def close(self) -> None:
        close = getattr(self.env, "close", None)
        if close is not None:
            close()
        self.env = None


def make_procgen(
    games: Sequence[str],
    num_envs_per_game: int,
    *,
    num_levels: int = 200,
    start_level: int = 0,
    distribution_mode: str = "easy",
    backend: str = "envpool",
    seed: int = 0,
    num_threads: int = 1,
) -> MultiTaskEnv:
    """One pool per game, stepped together: a :class:`~adaptmem.rl.envs.MultiTaskEnv` whose
    ``task_names`` are the games. Arguments as :class:`EnvpoolProcgen`; ``backend`` is
    ``"envpool"`` or ``"procgen"``; game ``i`` gets seed ``seed + 1000 * i``."""
    check_choice("make_procgen", "backend", backend, BACKENDS)
    games = list(games)
    if not games or len(set(games)) != len(games):
        raise ValueError(f"make_procgen: games must be a non-empty list of distinct games, got {games}")
    for g in games:
        _check_game("make_procgen", g, distribution_mode)
    _check_pool("make_procgen", num_envs_per_game, num_levels, start_level, "num_envs_per_game")
    envs: list[VecEnv] = []
    for i, g in enumerate(games):
        kw = dict(
            num_levels=num_levels, start_level=start_level, distribution_mode=distribution_mode, seed=seed + 1000 * i
        )
        envs.append(
            EnvpoolProcgen(g, num_envs_per_game, num_threads=num_threads, **kw)
            if backend == "envpool"
            else Gym3Procgen(g, num_envs_per_game, **kw)
        )
    return MultiTaskEnv(envs, games)


@functools.cache
def procgen_unavailable(backend: str = "envpool") -> str | None:
    """``None`` when ProcGen runs through ``backend`` here, else the reason it does not
    (package missing, or envpool's ProcGen missing the system's Qt 5: ``apt-get install libqt5gui5``).
    The answer is cached for the process."""
    check_choice("procgen_unavailable", "backend", backend, BACKENDS)
    try:
        env = make_procgen(["coinrun"], 1, backend=backend)
        env.reset()
        env.close()
    except ImportError as e:
        return f"{backend} is not installed ({e})"
    except Exception as e:  # noqa: BLE001 - missing shared libraries surface as several types
        hint = " (install Qt 5: apt-get install -y libqt5gui5)" if "Qt" in str(e) else ""
        return f"ProcGen through {backend} failed: {e}{hint}"
    return None
