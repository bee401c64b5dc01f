"""Agents: state carried across unrolls, resets at episode starts, gradients through the whole
unroll for every core, and gradients into all four SRWM fast matrices."""

from __future__ import annotations

import pytest
import torch

from adaptmem.layers import SRWM, detach_state
from adaptmem.rl import (
    CORES,
    ImpalaCNN,
    ImpalaConfig,
    ImpalaLearner,
    LSTMCore,
    RecallEnv,
    impala_loss,
    make_agent,
    map_state,
)

ATOL = 1e-5
RECURRENT = ("srwm", "deltanet", "lstm")


def tiny_agent(core: str, env: RecallEnv, num_layers: int = 2):
    return make_agent(
        env.obs_shape,
        env.num_actions,
        core=core,
        feature_dim=16,
        lstm_hidden=16,
        num_layers=num_layers,
        num_heads=2,
        head_dim=8,
        d_ff=32,
    )


@pytest.mark.parametrize("core", CORES)
def test_actor_steps_match_learner_unroll_across_unrolls_and_episodes(core):
    env = RecallEnv(5, seed=1)
    agent = tiny_agent(core, env)
    learner = ImpalaLearner(agent, env, ImpalaConfig(unroll_length=7, batch_size=None))
    rollouts = [learner.collect()[0] for _ in range(3)]
    assert any(r.first[:, 1:].any() for r in rollouts)  # episodes end inside the unrolls
    for r, nxt in zip(rollouts, rollouts[1:] + [None]):
        with torch.no_grad():
            out, state = agent(r.obs[:, :-1], r.prev_reward[:, :-1], r.first[:, :-1], r.initial_state)
        torch.testing.assert_close(out.logits, r.behaviour_logits, atol=ATOL, rtol=0)
        if nxt is not None:  # the state carried into the next unroll is the one the unroll ends in
            torch.testing.assert_close(state, nxt.initial_state, atol=ATOL, rtol=0)


@pytest.mark.parametrize("core", RECURRENT)
def test_reset_makes_outputs_independent_of_the_past(core):
    env = RecallEnv(1)
    agent = tiny_agent(core, env)
    B, T, t0 = 2, 8, 3
    obs = torch.rand(B, T, 4)
    obs[1, :t0] = torch.rand(t0, 4)  # different histories before t0, same frames from t0 on
    obs[0, t0:] = obs[1, t0:]
    first = torch.zeros(B, T, dtype=torch.bool)
    first[:, t0] = True
    prev_reward = torch.rand(B, T)  # rewards differ on the first frame too: it belongs to the old episode
    prev_reward[0, t0 + 1 :] = prev_reward[1, t0 + 1 :]
    state = map_state(torch.randn_like, agent.initial_state(B))
    with torch.no_grad():
        out, _ = agent(obs, prev_reward, first, state)
    torch.testing.assert_close(out.logits[0, t0:], out.logits[1, t0:], atol=ATOL, rtol=0)
    assert (out.logits[0, :t0] - out.logits[1, :t0]).abs().max() > 1e-4


@pytest.mark.parametrize("core", RECURRENT)
def test_gradients_flow_through_the_whole_unroll_and_stop_at_resets(core):
    env = RecallEnv(1)
    agent = tiny_agent(core, env)
    B, T = 2, 9
    x = torch.randn(B, T, agent.core.input_dim, requires_grad=True)
    reset = torch.zeros(B, T, dtype=torch.bool)
    reset[1, 4] = True
    y, _ = agent.core(x, agent.initial_state(B), reset)
    y[:, -1].sum().backward()
    assert x.grad[0, 0].abs().sum() > 0  # the last output depends on the first input
    assert x.grad[1, :4].abs().sum() == 0  # ... unless the episode restarted in between
    assert x.grad[1, 4:].abs().sum() > 0


def test_all_four_srwm_fast_matrices_of_every_layer_get_gradients():
    env = RecallEnv(6, seed=2)
    agent = tiny_agent("srwm", env, num_layers=2)
    learner = ImpalaLearner(agent, env, ImpalaConfig(unroll_length=10, batch_size=None))
    learner.collect()
    rollout, _ = learner.collect()  # a carried-in state, episode ends inside the unroll
    out, _ = agent(rollout.obs, rollout.prev_reward, rollout.first, rollout.initial_state)
    loss, _ = impala_loss(out, rollout, learner.config)
    loss.backward()
    layers = [m for m in agent.modules() if isinstance(m, SRWM)]
    assert len(layers) == 2
    for i, layer in enumerate(layers):
        for name in ("W_y", "W_q", "W_k", "w_b"):
            grad = getattr(layer, name).grad
            assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0, f"layer {i} {name}"
    for name, p in agent.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_per_frame_detached_calls_would_starve_W_q_W_k_w_b():
    """The reference agent's mistake (pitfall 3), reproduced to show what the unroll call avoids."""
    layer = SRWM(16, 2, input_softmax=True, norm_skip=False)
    x = torch.randn(3, 6, 16)
    state, loss = None, 0.0
    for t in range(6):
        y, state = layer(x[:, t : t + 1], state)
        state = detach_state(state)
        loss = loss + y.pow(2).sum()
    loss.backward()
    assert layer.W_y.grad.abs().sum() > 0
    for name in ("W_q", "W_k", "w_b"):
        g = getattr(layer, name).grad
        assert g is None or g.abs().sum() == 0, name


def test_lstm_core_matches_a_per_step_masked_loop():
    core = LSTMCore(5, 7)
    B, T = 3, 10
    x, reset = torch.randn(B, T, 5), torch.rand(B, T) < 0.25
    y, (h, _) = core(x, core.init_state(B), reset)
    hs, cs, ys = torch.zeros(1, B, 7), torch.zeros(1, B, 7), []
    for t in range(T):
        keep = (~reset[:, t]).float()[None, :, None]
        out, (hs, cs) = core.lstm(x[:, t : t + 1], (hs * keep, cs * keep))
        ys.append(out)
    torch.testing.assert_close(y, torch.cat(ys, 1), atol=ATOL, rtol=0)
    torch.testing.assert_close(h, hs[0], atol=ATOL, rtol=0)


def test_impala_cnn_has_the_papers_shapes():
    torso = ImpalaCNN()
    assert torso.fc.in_features == 32 * 8 * 8 and torso.out_dim == 256
    assert torso(torch.zeros(2, 3, 64, 64, dtype=torch.uint8)).shape == (2, 256)
    small = ImpalaCNN(channels=(8, 16, 16), downsample=2)
    assert small(torch.zeros(2, 3, 64, 64, dtype=torch.uint8)).shape == (2, 256)


def test_agent_rejects_bad_inputs_with_named_arguments():
    env = RecallEnv(1)
    agent = tiny_agent("srwm", env)
    ok = dict(obs=torch.zeros(2, 3, 4), prev_reward=torch.zeros(2, 3), first=torch.zeros(2, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"Agent: obs must be \[B, T, \*obs_shape\]"):
        agent(**{**ok, "obs": torch.zeros(2, 3, 5)})
    with pytest.raises(ValueError, match="Agent: first must be bool"):
        agent(**{**ok, "first": torch.zeros(2, 3)})
    with pytest.raises(ValueError, match="make_agent: core must be one of"):
        make_agent((4,), 3, core="gru")


def test_an_lstm_agent_loads_a_checkpoint_of_the_former_lstm_core():
    env = RecallEnv(2)
    agent = tiny_agent("lstm", env)
    # LSTMCore held its nn.LSTM as "core.lstm"; the core is now a one-layer LSTM stack
    old = {k.replace("core.stack.blocks.0.lstm.", "core.lstm."): v for k, v in agent.state_dict().items()}
    assert "core.lstm.weight_ih_l0" in old and not any("stack" in k for k in old)
    torch.manual_seed(123)
    fresh = tiny_agent("lstm", env)
    fresh.load_state_dict(old)  # strict
    for (name, a), b in zip(fresh.state_dict().items(), agent.state_dict().values()):
        assert torch.equal(a, b), name
