"""The IMPALA learner: learning on the recall task, exact resume, schedule, minibatching, evaluation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from adaptmem.rl import ImpalaConfig, ImpalaLearner, MultiTaskEnv, RecallEnv, evaluate, make_agent


def make_learner(core: str, num_envs: int = 32, seed: int = 0, srwm_block: str = "rl", **config):
    torch.manual_seed(seed)
    env = RecallEnv(num_envs, num_symbols=3, min_delay=1, max_delay=3, seed=seed)
    agent = make_agent(
        env.obs_shape,
        env.num_actions,
        core=core,
        feature_dim=32,
        lstm_hidden=32,
        num_layers=1,
        num_heads=2,
        head_dim=16,
        d_ff=64,
        srwm_block=srwm_block,
    )
    cfg = dict(
        unroll_length=10, batch_size=None, optimizer="adam", learning_rate=3e-3, discount=0.9, total_frames=10**9
    )
    return ImpalaLearner(agent, env, ImpalaConfig(**{**cfg, **config}))


@pytest.mark.parametrize("core", ["lstm", "deltanet", "srwm"])
def test_memory_agents_learn_the_recall_task_in_seconds(core):
    # SRWM with the paper's few-shot block; its RL block (input softmax) is still at chance here
    learner = make_learner(core, srwm_block="fewshot")
    returns: list[float] = []
    for _ in range(300):
        returns += [e.ret for e in learner.train_step()["episodes"]]
        if len(returns) >= 200 and np.mean(returns[-200:]) > 0.9:
            break
    # optimal 1; the best an agent without memory can expect is 1/3
    assert np.mean(returns[-200:]) > 0.9


def test_resume_continues_bit_for_bit(tmp_path):
    straight = make_learner("srwm", num_envs=4, unroll_length=5)
    for _ in range(4):
        straight.train_step()

    first = make_learner("srwm", num_envs=4, unroll_length=5)
    for _ in range(2):
        first.train_step()
    first.save(tmp_path / "ckpt.pt", note="hello")
    torch.manual_seed(123)  # whatever happens in between must not matter
    np.random.seed(7)
    resumed = make_learner("srwm", num_envs=4, seed=5, unroll_length=5)
    assert resumed.load(tmp_path / "ckpt.pt") == {"step": 2, "note": "hello"}
    for _ in range(2):
        resumed.train_step()

    assert (resumed.frames, resumed.updates) == (straight.frames, straight.updates) == (80, 4)
    for (name, a), b in zip(straight.agent.state_dict().items(), resumed.agent.state_dict().values()):
        assert torch.equal(a, b), name
    a_opt, b_opt = straight.optimizer.state_dict()["state"], resumed.optimizer.state_dict()["state"]
    assert all(torch.equal(a_opt[k]["exp_avg_sq"], b_opt[k]["exp_avg_sq"]) for k in a_opt)


def test_learning_rate_decays_linearly_to_zero_over_total_frames():
    learner = make_learner("ff", num_envs=4, unroll_length=5, batch_size=2, total_frames=80)
    lrs = [learner.train_step()["lr"] for _ in range(4)]  # 2 updates of 2 x 5 frames per step
    assert np.all(np.diff(lrs) < 0)
    assert learner.optimizer.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)
    assert learner.updates == 8


def test_later_minibatches_of_an_unroll_are_off_policy():
    learner = make_learner("ff", num_envs=4, unroll_length=5, batch_size=2)
    rollout, _ = learner.collect()
    learner.update(rollout.rows(slice(0, 2)))
    with torch.no_grad():
        out, _ = learner.agent(*[getattr(rollout.rows(slice(2, 4)), k) for k in ("obs", "prev_reward", "first")])
    assert (out.logits[:, :5] - rollout.behaviour_logits[2:]).abs().max() > 0  # V-trace has work to do


def test_learner_validates_its_configuration():
    with pytest.raises(ValueError, match=r"batch_size \(3\) must divide the number of environment rows \(4\)"):
        make_learner("ff", num_envs=4, batch_size=3)
    with pytest.raises(ValueError, match="ImpalaConfig: optimizer must be one of"):  # checked when built
        make_learner("ff", num_envs=4, optimizer="sgd")


def test_evaluate_takes_the_same_number_of_episodes_from_every_row():
    env = MultiTaskEnv([RecallEnv(2, seed=0), RecallEnv(3, seed=1)], ["a", "b"])
    agent = make_agent(env.obs_shape, env.num_actions, core="lstm", feature_dim=8, lstm_hidden=8)
    results = evaluate(agent, env, episodes_per_env=4)
    assert sorted(results) == [0, 1]
    assert results[0].shape == (8,) and results[1].shape == (12,)
    assert np.all((results[0] >= 0) & (results[0] <= 1))
    assert agent.training  # restored


def test_resume_takes_an_lstm_actor_state_saved_before_the_core_became_a_stack():
    learner = make_learner("lstm", num_envs=4)
    learner.collect()
    saved = learner.state_dict()
    (layer_state,) = saved["actor"]["state"]
    saved["actor"]["state"] = layer_state  # the former LSTMCore carried one bare LSTMState
    resumed = make_learner("lstm", num_envs=4, seed=1)
    resumed.load_state_dict(saved)
    torch.testing.assert_close(resumed.state, learner.state, atol=0, rtol=0)
