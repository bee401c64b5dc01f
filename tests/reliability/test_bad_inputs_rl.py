"""Bad inputs to the RL package: V-trace, configs, environments, agents, learner, evaluation."""

from __future__ import annotations

import numpy as np
import torch

from adaptmem.rl import (
    EnvpoolProcgen,
    EpisodeTracker,
    FastWeightCore,
    FFCore,
    Gym3Procgen,
    ImpalaCNN,
    ImpalaConfig,
    ImpalaLearner,
    LSTMCore,
    MLPTorso,
    MultiTaskEnv,
    RecallEnv,
    envpool_task_id,
    evaluate,
    format_table,
    impala_loss,
    make_agent,
    make_procgen,
    normalized_score,
    procgen_unavailable,
    vtrace,
)
from tests.reliability.probes import Probe, params

B, T = 3, 4
Z = torch.zeros(B, T)


def vtrace_probes():
    args = dict(log_rhos=Z, discounts=torch.full((B, T), 0.9), rewards=Z, values=Z, bootstrap_value=torch.zeros(B))
    probes = [
        Probe(f"vtrace {n}={k}", (lambda n=n, v=v: vtrace(**{**args, n: v})), n)
        for n in args
        if n != "log_rhos"
        for k, v in {
            "shape": torch.zeros(B, T + 1) if n != "bootstrap_value" else torch.zeros(B + 1),
            "int": args[n].long(),
        }.items()
    ]
    probes += [
        Probe(f"vtrace log_rhos={k}", (lambda v=v: vtrace(**{**args, "log_rhos": v})), "log_rhos")
        for k, v in {"rank 1": Z[0], "int": Z.long(), "list": [[0.0]]}.items()
    ]
    probes += [
        Probe(f"vtrace {c}={v!r}", (lambda c=c, v=v: vtrace(**args, **{c: v})), c)
        for c in ("clip_rho", "clip_pg_rho", "clip_c")
        for v in (-1.0, float("nan"))
    ]
    return probes


def config_probes():
    return [
        Probe(f"ImpalaConfig({a}={v!r})", (lambda a=a, v=v: ImpalaConfig(**{a: v})), a)
        for a, v in [
            ("unroll_length", 0),
            ("batch_size", 0),
            ("discount", 1.5),
            ("discount", -0.1),
            ("entropy_cost", -1.0),
            ("optimizer", "sgd"),
            ("learning_rate", 0.0),
            ("total_frames", 0),
            ("grad_clip", -1.0),
            ("reward_clip", 0.0),
            ("adam_betas", (1.5, 0.9)),
            ("adam_betas", (0.9,)),
            ("rmsprop_eps", -1.0),
            ("baseline_cost", float("nan")),
            ("rmsprop_alpha", 2.0),
        ]
    ]


def env_probes():
    probes = [
        Probe(f"RecallEnv({a}={v!r})", (lambda a=a, v=v: RecallEnv(**{"num_envs": 2, a: v})), a)
        for a, v in [("num_envs", 0), ("num_symbols", 1), ("min_delay", 0), ("max_delay", 0)]
    ]
    env = RecallEnv(2)
    env.reset()
    tracker = EpisodeTracker(2)
    probes += [
        Probe("RecallEnv.step actions=float", lambda: env.step(np.zeros(2)), "actions"),
        Probe("RecallEnv.step actions=out of range", lambda: env.step(np.array([5, 0])), "actions"),
        Probe("RecallEnv.step actions=shape", lambda: env.step(np.zeros(3, dtype=int)), "actions"),
        Probe("RecallEnv.load_state_dict state={}", lambda: env.load_state_dict({}), "state"),
        Probe("MultiTaskEnv envs=[]", lambda: MultiTaskEnv([]), "envs"),
        Probe("MultiTaskEnv names=too many", lambda: MultiTaskEnv([RecallEnv(2)], ["a", "b"]), "names"),
        Probe(
            "MultiTaskEnv envs=mismatched actions",
            lambda: MultiTaskEnv([RecallEnv(2), RecallEnv(2, num_symbols=4)]),
            "actions",
        ),
        Probe("MultiTaskEnv envs=5", lambda: MultiTaskEnv(5), "envs"),
        Probe("EpisodeTracker num_envs=0", lambda: EpisodeTracker(0), "num_envs"),
        Probe("EpisodeTracker.update reward=shape", lambda: tracker.update(np.zeros(3), np.zeros(3, bool)), "reward"),
        Probe("EpisodeTracker.update done=float", lambda: tracker.update(np.zeros(2), np.zeros(2)), "done"),
        Probe("EpisodeTracker.load_state_dict state={}", lambda: tracker.load_state_dict({}), "state"),
        Probe("normalized_score game=x", lambda: normalized_score("x", 1.0), "game"),
        Probe(
            "normalized_score distribution_mode=x", lambda: normalized_score("bigfish", 1.0, "x"), "distribution_mode"
        ),
        Probe("envpool_task_id game=x", lambda: envpool_task_id("x"), "game"),
        Probe("make_procgen games=[]", lambda: make_procgen([], 2), "games"),
        Probe("make_procgen games=x", lambda: make_procgen(["x"], 2), "game"),
        Probe("make_procgen games=repeated", lambda: make_procgen(["bigfish", "bigfish"], 2), "games"),
        Probe("make_procgen num_envs_per_game=0", lambda: make_procgen(["bigfish"], 0), "num_envs_per_game"),
        Probe("make_procgen num_levels=-1", lambda: make_procgen(["bigfish"], 2, num_levels=-1), "num_levels"),
        Probe("make_procgen backend=x", lambda: make_procgen(["bigfish"], 2, backend="x"), "backend"),
        Probe(
            "make_procgen memory mode of bigfish",
            lambda: make_procgen(["bigfish"], 2, distribution_mode="memory"),
            "memory mode",
        ),
        Probe("procgen_unavailable backend=x", lambda: procgen_unavailable("x"), "backend"),
        Probe("Gym3Procgen game=x", lambda: Gym3Procgen("x", 2), "game"),
        Probe("Gym3Procgen num_envs=0", lambda: Gym3Procgen("bigfish", 0, env_fn=lambda: None), "num_envs"),
        Probe("EnvpoolProcgen game=x", lambda: EnvpoolProcgen("x", 2), "game"),
        Probe(
            "EnvpoolProcgen start_level=-1",
            lambda: EnvpoolProcgen("bigfish", 2, start_level=-1, pool=object()),
            "start_level",
        ),
        Probe("format_table rows=[]", lambda: format_table([]), "rows"),
        Probe("format_table columns=missing", lambda: format_table([{"a": 1}], ["b"]), "columns"),
    ]
    return probes


def agent_probes():
    base = dict(obs_shape=(4,), num_actions=3, core="srwm")
    probes = [
        Probe(f"make_agent({a}={v!r})", (lambda a=a, v=v: make_agent(**{**base, a: v})), a)
        for a, v in [
            ("core", "x"),
            ("num_actions", 0),
            ("obs_shape", (0,)),
            ("obs_shape", ()),
            ("torso", "x"),
            ("num_layers", 0),
            ("head_dim", 0),
            ("d_ff", 0),
            ("dropout", 2.0),
            ("srwm_block", "x"),
            ("lstm_hidden", 0),
            ("feature_dim", 0),
        ]
    ]
    probes += [
        Probe(f"make_agent(impala, {a}={v!r})", (lambda a=a, v=v: make_agent((3, 8, 8), 3, "ff", **{a: v})), a)
        for a, v in [
            ("channels", (0, 1, 2)),
            ("channels", ()),
            ("downsample", 0),
            ("downsample", 16),
            ("num_res_blocks", -1),
        ]
    ]
    torch.manual_seed(0)
    agent = make_agent((4,), 3, "srwm", num_heads=2, head_dim=4, d_ff=8)
    obs, pr, first = torch.zeros(B, T, 4), Z, torch.zeros(B, T, dtype=torch.bool)
    probes += [
        Probe(f"Agent {n}", fn, name)
        for n, fn, name in [
            ("obs=width", lambda: agent(torch.zeros(B, T, 5), pr, first), "obs"),
            ("obs=rank", lambda: agent(obs[0], pr, first), "obs"),
            ("obs=meta", lambda: agent(obs.to("meta"), pr, first), "obs"),
            ("obs=list", lambda: agent(obs.tolist(), pr, first), "obs"),
            ("prev_reward=shape", lambda: agent(obs, pr[:2], first), "prev_reward"),
            ("prev_reward=int", lambda: agent(obs, pr.long(), first), "prev_reward"),
            ("first=float", lambda: agent(obs, pr, first.float()), "first"),
            ("first=shape", lambda: agent(obs, pr, first[:2]), "first"),
            ("state=list of ints", lambda: agent(obs, pr, first, state=[1]), "state"),
            ("initial_state batch_size=-1", lambda: agent.initial_state(-1), "batch_size"),
            (
                "act obs=width",
                lambda: agent.act(torch.zeros(B, 5), torch.zeros(B), torch.zeros(B, dtype=torch.bool), None),
                "obs",
            ),
        ]
    ]
    probes += [
        Probe("ImpalaCNN obs_shape=(64, 64)", lambda: ImpalaCNN((64, 64)), "obs_shape"),
        Probe("ImpalaCNN channels=()", lambda: ImpalaCNN(channels=()), "channels"),
        Probe("ImpalaCNN x=shape", lambda: ImpalaCNN((3, 16, 16), (4, 4, 4), 1, 8)(torch.zeros(2, 3, 8, 8)), r"\bx\b"),
        Probe("MLPTorso obs_dim=0", lambda: MLPTorso(0), "obs_dim"),
        Probe("MLPTorso x=width", lambda: MLPTorso(4)(torch.zeros(2, 5)), r"\bx\b"),
        Probe("FFCore input_dim=0", lambda: FFCore(0), "input_dim"),
        Probe("LSTMCore input_dim=0", lambda: LSTMCore(0), "d_model|input_dim"),
        Probe("FastWeightCore kind=x", lambda: FastWeightCore("x", 8), "kind"),
        Probe("FastWeightCore input_dim=0", lambda: FastWeightCore("srwm", 0), "input_dim"),
    ]
    return probes


def learner_probes():
    cfg = ImpalaConfig(unroll_length=2, batch_size=2)
    ff = make_agent((4,), 3, "ff")
    learner = ImpalaLearner(ff, RecallEnv(2), cfg)
    return [
        Probe("ImpalaLearner agent=None", lambda: ImpalaLearner(None, RecallEnv(2), cfg), "agent"),
        Probe("ImpalaLearner env=None", lambda: ImpalaLearner(ff, None, cfg), "env"),
        Probe("ImpalaLearner config=None", lambda: ImpalaLearner(ff, RecallEnv(2), None), "config"),
        Probe("ImpalaLearner batch_size not dividing", lambda: ImpalaLearner(ff, RecallEnv(3), cfg), "batch_size"),
        Probe(
            "ImpalaLearner observations differ",
            lambda: ImpalaLearner(make_agent((5,), 3, "ff"), RecallEnv(2), cfg),
            "observations",
        ),
        Probe(
            "ImpalaLearner actions differ",
            lambda: ImpalaLearner(make_agent((4,), 5, "ff"), RecallEnv(2), cfg),
            "actions",
        ),
        Probe("ImpalaLearner.load_state_dict state={}", lambda: learner.load_state_dict({}), "state"),
        Probe("impala_loss config=None", lambda: impala_loss(None, None, None), "output"),
        Probe("evaluate episodes_per_env=0", lambda: evaluate(ff, RecallEnv(2), 0), "episodes_per_env"),
        Probe("evaluate max_steps=0", lambda: evaluate(ff, RecallEnv(2), 1, max_steps=0), "max_steps"),
        Probe(
            "evaluate env=other observations",
            lambda: evaluate(make_agent((5,), 3, "ff"), RecallEnv(2), 1),
            "observations",
        ),
    ]


@params(vtrace_probes() + config_probes() + env_probes() + agent_probes() + learner_probes())
def test_bad_rl_inputs_are_refused(probe):
    probe.check()


def test_a_missing_learner_checkpoint_names_the_path(tmp_path):
    learner = ImpalaLearner(make_agent((4,), 3, "ff"), RecallEnv(2), ImpalaConfig(unroll_length=2, batch_size=2))
    Probe(
        "ImpalaLearner.load path=missing",
        lambda: learner.load(tmp_path / "x.pt"),
        str(tmp_path / "x.pt"),
        (FileNotFoundError,),
    ).check()
