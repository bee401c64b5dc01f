"""Complete models built from adaptmem's layers, shared by the examples.

- :mod:`adaptmem.models.lm`: fast-weight and Transformer language models, truncated-BPTT training.
- :mod:`adaptmem.models.fewshot` and :mod:`adaptmem.models.backbones`: sequential few-shot
  learners on Conv-4 / ResNet-12 features.
"""

from adaptmem.models.backbones import Conv4, ResNet12
from adaptmem.models.fewshot import (
    MODELS,
    PROTOCOLS,
    SequentialFewShotLearner,
    accuracy_by_shot,
    build_fewshot_learner,
    episode_loss,
    evaluate_episodes,
    occurrence_index,
)
from adaptmem.models.lm import (
    FastWeightLM,
    TokenStreams,
    TransformerLM,
    build_lm,
    count_parameters,
    evaluate,
    generate,
    lm_loss,
    match_d_ff,
    train_step,
)

__all__ = [
    "MODELS",
    "PROTOCOLS",
    "Conv4",
    "ResNet12",
    "SequentialFewShotLearner",
    "accuracy_by_shot",
    "build_fewshot_learner",
    "episode_loss",
    "evaluate_episodes",
    "occurrence_index",
    "FastWeightLM",
    "TokenStreams",
    "TransformerLM",
    "build_lm",
    "count_parameters",
    "evaluate",
    "generate",
    "lm_loss",
    "match_d_ff",
    "train_step",
]
