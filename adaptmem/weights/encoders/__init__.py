"""Weight encoders: flat RNN weights ``[N, P]`` -> unit-norm codes ``z [N, z_dim]``.

| name          | class                          | permutation-invariant        |
|---------------|--------------------------------|------------------------------|
| ``stats``     | :class:`LayerStatsEncoder`     | yes                          |
| ``flat``      | :class:`FlatMLPEncoder`        | no (train with augmentation) |
| ``transformer`` | :class:`ParameterTransformerEncoder` | no (augmentation)      |
| ``nf``        | :class:`NFEncoder`             | yes (equivariant layers)     |
| ``probing``   | :class:`ProbingEncoder`        | yes, and function-invariant  |
| ``interactive`` | :class:`InteractiveProbingEncoder` | yes, and function-invariant |
| ``none``      | :class:`NullEncoder` (baseline: one z for all) | trivially   |
"""

from __future__ import annotations

from typing import Any

from adaptmem.weights.encoders.base import NullEncoder, WeightEncoder, weight_tensors
from adaptmem.weights.encoders.flat import FlatMLPEncoder
from adaptmem.weights.encoders.nf import NFEncoder
from adaptmem.weights.encoders.probing import InteractiveProbingEncoder, ProbingEncoder, ResidualLSTMReader
from adaptmem.weights.encoders.stats import LayerStatsEncoder
from adaptmem.weights.encoders.transformer import ParameterTransformerEncoder
from adaptmem.weights.spec import WeightSpec

ENCODERS: dict[str, type[WeightEncoder]] = {
    "stats": LayerStatsEncoder,
    "flat": FlatMLPEncoder,
    "transformer": ParameterTransformerEncoder,
    "nf": NFEncoder,
    "probing": ProbingEncoder,
    "interactive": InteractiveProbingEncoder,
    "none": NullEncoder,
}


def build_encoder(name: str, spec: WeightSpec, z_dim: int = 16, **kwargs: Any) -> WeightEncoder:
    """``ENCODERS[name](spec, z_dim, **kwargs)`` with a clear error for unknown names."""
    if name not in ENCODERS:
        raise ValueError(f"build_encoder: name must be one of {list(ENCODERS)}, got {name!r}")
    return ENCODERS[name](spec, z_dim, **kwargs)


__all__ = [
    "ENCODERS",
    "FlatMLPEncoder",
    "InteractiveProbingEncoder",
    "LayerStatsEncoder",
    "NFEncoder",
    "NullEncoder",
    "ParameterTransformerEncoder",
    "ProbingEncoder",
    "ResidualLSTMReader",
    "WeightEncoder",
    "build_encoder",
    "weight_tensors",
]
