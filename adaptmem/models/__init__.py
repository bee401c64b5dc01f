"""Complete models built from adaptmem's layers (language models in :mod:`adaptmem.models.lm`)."""

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
