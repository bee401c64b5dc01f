"""Reinforcement learning with fast-weight agents: ProcGen pools, IMPALA agents, V-trace.

Nothing optional is imported here: envpool / procgen load only when a ProcGen env is built.
"""

from adaptmem.rl.agent import (
    CORES,
    Agent,
    AgentOutput,
    FastWeightCore,
    FFCore,
    ImpalaCNN,
    LSTMCore,
    LSTMState,
    MLPTorso,
    index_state,
    make_agent,
    map_state,
)
from adaptmem.rl.envs import EpisodeTracker, MultiTaskEnv, RecallEnv, StepResult, VecEnv
from adaptmem.rl.evaluate import evaluate, format_table, random_returns, score_rows
from adaptmem.rl.learner import Episode, ImpalaConfig, ImpalaLearner, Rollout, impala_loss
from adaptmem.rl.procgen import (
    MEMORY_MODE_GAMES,
    PAPER_GAMES,
    PAPER_MEMORY_GAMES,
    PROCGEN_GAMES,
    SCORE_RANGES,
    EnvpoolProcgen,
    Gym3Procgen,
    envpool_task_id,
    make_procgen,
    normalized_score,
    procgen_unavailable,
)
from adaptmem.rl.vtrace import VTraceReturns, vtrace

__all__ = [
    "CORES",
    "MEMORY_MODE_GAMES",
    "PAPER_GAMES",
    "PAPER_MEMORY_GAMES",
    "PROCGEN_GAMES",
    "SCORE_RANGES",
    "Agent",
    "AgentOutput",
    "EnvpoolProcgen",
    "Episode",
    "EpisodeTracker",
    "FFCore",
    "FastWeightCore",
    "Gym3Procgen",
    "ImpalaCNN",
    "ImpalaConfig",
    "ImpalaLearner",
    "LSTMCore",
    "LSTMState",
    "MLPTorso",
    "MultiTaskEnv",
    "RecallEnv",
    "Rollout",
    "StepResult",
    "VTraceReturns",
    "VecEnv",
    "envpool_task_id",
    "evaluate",
    "format_table",
    "random_returns",
    "impala_loss",
    "index_state",
    "make_agent",
    "make_procgen",
    "map_state",
    "normalized_score",
    "procgen_unavailable",
    "score_rows",
    "vtrace",
]
