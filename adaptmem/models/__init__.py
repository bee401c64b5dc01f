"""Reusable model pieces shared by the examples: vision backbones and few-shot learners."""

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
]
