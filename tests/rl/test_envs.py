"""Environment wrappers: one step convention for envpool and gym3 ProcGen, multi-task pools,
normalised scores, and the recall task's known returns."""

from __future__ import annotations

import numpy as np
import pytest

from adaptmem.rl import (
    EnvpoolProcgen,
    Gym3Procgen,
    MultiTaskEnv,
    RecallEnv,
    envpool_task_id,
    make_procgen,
    normalized_score,
    procgen_unavailable,
)


class Game:
    """A deterministic stand-in for a ProcGen level: row i's episodes last 2 + i steps and the
    step from t to t + 1 earns t + 1 + 10 i. Frames encode (episode, step, channel)."""

    def __init__(self, n: int) -> None:
        self.n, self.episode, self.t = n, np.zeros(n, int), np.zeros(n, int)

    def frame(self, i: int) -> np.ndarray:  # channel-first [3, 64, 64]
        value = 20 * self.episode[i] + 3 * self.t[i]
        return np.stack([np.full((64, 64), (value + c) % 256, np.uint8) for c in range(3)])

    def restart(self, i: int) -> None:
        self.episode[i] += 1
        self.t[i] = 0

    def advance(self, i: int) -> tuple[float, bool]:
        reward = float(self.t[i] + 1 + 10 * i)
        self.t[i] += 1
        return reward, bool(self.t[i] == 2 + i)


class FakeEnvpoolPool:
    """envpool's gymnasium semantics: the terminal frame comes with ``terminated`` and the next
    step is spent on the reset (its action ignored, reward 0) unless ``reset(ids)`` is called.
    Rows come back in reversed order, as envpool does not promise any order."""

    def __init__(self, n: int) -> None:
        self.game, self.pending = Game(n), np.zeros(n, bool)
        self.game.episode[:] = -1

    def reset(self, env_ids):
        for i in env_ids:
            self.game.restart(i)
            self.pending[i] = False
        ids = np.asarray(env_ids)[::-1]
        return np.stack([self.game.frame(i) for i in ids]), {"env_id": ids}

    def step(self, actions, env_ids):
        ids = np.asarray(env_ids)[::-1]
        rew, term = np.zeros(len(ids), np.float32), np.zeros(len(ids), bool)
        for j, i in enumerate(ids):
            if self.pending[i]:
                self.game.restart(i)
                self.pending[i] = False
            else:
                rew[j], term[j] = self.game.advance(i)
                self.pending[i] = term[j]
        obs = np.stack([self.game.frame(i) for i in ids])
        return obs, rew, term, np.zeros(len(ids), bool), {"env_id": ids}


class FakeGym3Env:
    """gym3 semantics: ``observe()`` returns (reward, {"rgb": channel-last frames}, first) and a
    finished episode is replaced by the next one's first frame at once."""

    def __init__(self, n: int) -> None:
        self.game = Game(n)
        self.rew, self.first = np.zeros(n, np.float32), np.ones(n, bool)

    def observe(self):
        rgb = np.stack([self.game.frame(i).transpose(1, 2, 0) for i in range(self.game.n)])
        return self.rew.copy(), {"rgb": rgb}, self.first.copy()

    def act(self, actions) -> None:
        for i in range(self.game.n):
            self.rew[i], done = self.game.advance(i)
            self.first[i] = done
            if done:
                self.game.restart(i)


def run(env, steps: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    out = [env.reset()]
    for _ in range(steps):
        out.append(env.step(rng.integers(0, env.num_actions, env.num_envs)))
    return out


def test_envpool_and_gym3_adapters_give_identical_streams():
    n = 3
    a = run(EnvpoolProcgen("bigfish", n, pool=FakeEnvpoolPool(n)), 25)
    b = run(Gym3Procgen("bigfish", n, env_fn=lambda: FakeGym3Env(n)), 25)
    np.testing.assert_array_equal(a[0], b[0])
    for x, y in zip(a[1:], b[1:]):
        for field in x._fields:
            np.testing.assert_array_equal(getattr(x, field), getattr(y, field), err_msg=field)


def test_done_step_returns_next_episodes_first_frame_and_finished_return():
    n = 3
    env = EnvpoolProcgen("bigfish", n, pool=FakeEnvpoolPool(n))
    first = run(env, 0)[0]
    res = [env.step(np.zeros(n, dtype=np.int64)) for _ in range(4)]
    # row 0: episodes of 2 steps with rewards 1, 2 -> done at steps 2 and 4
    assert [r.done[0] for r in res] == [False, True, False, True]
    assert res[1].episode_return[0] == 3.0 and res[1].episode_length[0] == 2
    assert np.isnan(res[0].episode_return[0]) and res[0].episode_length[0] == 0
    # the frame returned with done is step 0 of the next episode (20 * episode + 3 * 0)
    assert res[1].obs[0, 0, 0, 0] == 20 * 1 and res[1].obs[0, 2, 0, 0] == 20 * 1 + 2
    assert first[0, 0, 0, 0] == 0
    # row 1 (episodes of 3 steps, rewards 11, 12, 13) has no wasted reset step
    assert [r.done[1] for r in res] == [False, False, True, False]
    assert res[2].episode_return[1] == 36.0
    np.testing.assert_array_equal([r.reward[1] for r in res], [11, 12, 13, 11])


def test_gym3_adapter_reset_builds_a_fresh_env_after_stepping():
    built = []

    def env_fn():
        built.append(FakeGym3Env(2))
        return built[-1]

    env = Gym3Procgen("coinrun", 2, env_fn=env_fn)
    env.reset()
    env.reset()
    assert len(built) == 1  # not stepped yet: kept
    env.step(np.zeros(2, dtype=np.int64))
    obs = env.reset()
    assert len(built) == 2 and obs.shape == (2, 3, 64, 64)


def test_multitask_env_concatenates_pools_and_labels_rows():
    env = MultiTaskEnv([RecallEnv(2, seed=0), RecallEnv(3, seed=1)], ["a", "b"])
    assert env.num_envs == 5 and env.task_ids.tolist() == [0, 0, 1, 1, 1] and env.task_names == ["a", "b"]
    obs = env.reset()
    assert obs.shape == (5, 4)
    res = env.step(np.zeros(5, dtype=np.int64))
    assert res.obs.shape == (5, 4) and res.reward.shape == (5,) and res.done.dtype == bool


def test_multitask_env_rejects_mismatched_pools_and_bad_actions():
    with pytest.raises(ValueError, match="MultiTaskEnv: every env must have 3 actions"):
        MultiTaskEnv([RecallEnv(2, num_symbols=3), RecallEnv(2, num_symbols=4)])
    env = MultiTaskEnv([RecallEnv(2)])
    env.reset()
    with pytest.raises(ValueError, match=r"MultiTaskEnv.step: actions must be an integer array of shape \(2,\)"):
        env.step(np.zeros(3, dtype=np.int64))
    with pytest.raises(ValueError, match=r"must lie in \[0, 3\)"):
        env.step(np.array([0, 5]))


def oracle_and_constant_returns(env: RecallEnv, steps: int) -> tuple[float, float]:
    """Mean episode return of the cue-copying policy and of always answering 0."""
    results = []
    for oracle in (True, False):
        obs, seen, returns = env.reset(), np.zeros(env.num_envs, np.int64), []
        for _ in range(steps):
            cue_visible = obs[:, :-1]
            seen = np.where(cue_visible.any(1), cue_visible.argmax(1), seen)
            res = env.step(seen if oracle else np.zeros(env.num_envs, np.int64))
            obs, returns = res.obs, returns + list(res.episode_return[res.done])
        results.append(float(np.mean(returns)))
    return results[0], results[1]


def test_recall_env_optimal_return_is_one_and_memoryless_is_chance():
    env = RecallEnv(64, num_symbols=4, min_delay=1, max_delay=4, seed=3)
    optimal, constant = oracle_and_constant_returns(env, 300)
    assert optimal == pytest.approx(env.optimal_return, abs=1e-6)
    assert constant == pytest.approx(env.memoryless_return, abs=0.03)


def test_recall_env_state_dict_resumes_the_same_stream():
    a, b = RecallEnv(4, seed=5), RecallEnv(4, seed=99)
    a.reset()
    for _ in range(7):
        a.step(np.ones(4, dtype=np.int64))
    b.load_state_dict(a.state_dict())
    for _ in range(10):
        ra, rb = a.step(np.zeros(4, dtype=np.int64)), b.step(np.zeros(4, dtype=np.int64))
        for x, y in zip(ra, rb):
            np.testing.assert_array_equal(x, y)


def test_normalized_scores_use_the_procgen_paper_constants():
    assert normalized_score("starpilot", 2.5) == 0.0 and normalized_score("starpilot", 64.0) == 1.0
    assert normalized_score("fruitbot", 15.45) == pytest.approx(0.5)
    assert normalized_score("maze", 10.0, "hard") == 1.0 and normalized_score("maze", 4.0, "memory") == 0.0
    with pytest.raises(ValueError, match="no normalisation constants"):
        normalized_score("maze", 5.0, "exploration")


def test_envpool_task_ids_and_memory_mode_validation():
    assert envpool_task_id("bigfish") == "BigfishEasy-v0"
    assert envpool_task_id("maze", "memory") == "MazeMemory-v0"
    with pytest.raises(ValueError, match="'bigfish' has no memory mode"):
        envpool_task_id("bigfish", "memory")
    with pytest.raises(ValueError, match="game must be one of"):
        make_procgen(["pong"], 2)


@pytest.mark.parametrize("backend", ["envpool", "procgen"])
def test_real_procgen_pool_follows_the_convention(backend):
    reason = procgen_unavailable(backend)
    if reason:
        pytest.skip(reason)
    env = make_procgen(["bigfish", "maze"], 2, backend=backend, seed=1)
    obs = env.reset()
    assert obs.shape == (4, 3, 64, 64) and obs.dtype == np.uint8
    rng, running, finished = np.random.default_rng(0), np.zeros(4), 0
    for _ in range(300):
        res = env.step(rng.integers(0, 15, 4))
        running += res.reward
        for i in np.flatnonzero(res.done):
            assert res.episode_return[i] == pytest.approx(running[i])
            running[i], finished = 0.0, finished + 1
    env.close()
    assert finished > 0
