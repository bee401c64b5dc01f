"""What every weight encoder shares: input checks, unit-norm output, weight views."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from adaptmem.utils.checks import check_floating, fmt_shape
from adaptmem.weights.spec import WeightSpec, unflatten
from adaptmem.weights.symmetries import merge_biases


class WeightEncoder(nn.Module):
    """Base class: ``vectors [N, P]`` (flat weights of ``spec``) -> ``z [N, z_dim]``, ``||z|| = 1``.

    Subclasses implement :meth:`embed` (the unnormalised code). Class attributes say what an
    encoder is invariant to, which decides whether training uses permutation augmentation.
    """

    #: z is unchanged when hidden units are permuted (by construction, not by training).
    permutation_invariant: bool = False
    #: z depends only on the network's input-output function (sign flips, bias shifts too).
    function_invariant: bool = False

    def __init__(self, spec: WeightSpec, z_dim: int = 16) -> None:
        super().__init__()
        if not isinstance(spec, WeightSpec):
            raise TypeError(f"{type(self).__name__}: spec must be a WeightSpec, got {type(spec).__name__}")
        if isinstance(z_dim, bool) or not isinstance(z_dim, int) or z_dim <= 0:
            raise ValueError(f"{type(self).__name__}: z_dim must be a positive int, got {z_dim!r}")
        self.spec = spec
        self.z_dim = z_dim

    def embed(self, vectors: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, vectors: torch.Tensor) -> torch.Tensor:
        name = type(self).__name__
        check_floating(name, "vectors", vectors)
        if vectors.dim() != 2 or vectors.shape[1] != self.spec.num_params:
            raise ValueError(
                f"{name}: vectors must be [N, P] = (*, {self.spec.num_params}), got shape {fmt_shape(vectors)}"
            )
        param = next(self.parameters(), None)
        if param is not None and vectors.device != param.device:
            raise ValueError(f"{name}: vectors are on {vectors.device} but the encoder is on {param.device}")
        if vectors.is_meta:
            raise ValueError(f"{name}: vectors is a meta tensor (no data)")
        return F.normalize(self.embed(vectors), dim=-1)

    def extra_repr(self) -> str:
        return f"cell={self.spec.cell}, P={self.spec.num_params}, z_dim={self.z_dim}"


def weight_tensors(vectors: torch.Tensor, spec: WeightSpec, merge: bool = True) -> dict[str, torch.Tensor]:
    """``{name: [N, *shape]}``; with ``merge`` the biases are canonicalised to ``b_ih + b_hh``
    and the then-empty ``bias_hh`` tensors are dropped (a GRU keeps its ``n``-gate ``b_hh``)."""
    if merge and spec.bias:
        tensors = unflatten(merge_biases(vectors, spec), spec)
        if spec.cell != "gru":
            tensors = {k: v for k, v in tensors.items() if not k.startswith("bias_hh")}
        return tensors
    return unflatten(vectors, spec)


def mlp(
    in_features: int, hidden: int, out_features: int, num_hidden: int, act: type[nn.Module] = nn.ReLU
) -> nn.Sequential:
    """``num_hidden`` hidden layers of width ``hidden`` (0: a single Linear)."""
    layers: list[nn.Module] = []
    d = in_features
    for _ in range(num_hidden):
        layers += [nn.Linear(d, hidden), act()]
        d = hidden
    layers.append(nn.Linear(d, out_features))
    return nn.Sequential(*layers)


class NullEncoder(WeightEncoder):
    """A baseline that ignores the weights: one learned z for every network.

    An emulator trained with it can only imitate the zoo's average network, so its loss is
    the yardstick for what the real encoders' codes add.
    """

    permutation_invariant = True
    function_invariant = True

    def __init__(self, spec: WeightSpec, z_dim: int = 16) -> None:
        super().__init__(spec, z_dim)
        self.z = torch.nn.Parameter(torch.randn(z_dim))

    def embed(self, vectors: torch.Tensor) -> torch.Tensor:
        return self.z.to(vectors.dtype).expand(len(vectors), -1)
