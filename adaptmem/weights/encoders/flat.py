"""Flattened-weights MLP encoder."""

from __future__ import annotations

import torch

from adaptmem.weights.encoders.base import WeightEncoder, mlp, weight_tensors
from adaptmem.weights.spec import WeightSpec


class FlatMLPEncoder(WeightEncoder):
    """An MLP on the raw flat weight vector.

    ``z = normalise(MLP(w))`` with ``num_hidden`` hidden layers of width ``hidden``. Not
    invariant to any weight-space symmetry: train it with permutation augmentation.

    Args:
        spec: the encoded networks' layout.
        z_dim: size of z.
        hidden, num_hidden: MLP shape (paper: 3 x 128, 1.80M / 1.98M parameters on the
            formal-language / sequential-MNIST LSTMs with ``merge_biases=False``).
        merge_biases: feed ``b_ih + b_hh`` once instead of both biases.

    Inputs: ``vectors [N, P]``. Outputs: ``z [N, z_dim]`` with unit norm.

    Example::

        >>> enc = FlatMLPEncoder(WeightSpec("lstm", 6, 32, 2, 6))
        >>> z = enc(torch.randn(4, 13766))   # [4, 16]
    """

    def __init__(
        self, spec: WeightSpec, z_dim: int = 16, *, hidden: int = 128, num_hidden: int = 3, merge_biases: bool = True
    ) -> None:
        super().__init__(spec, z_dim)
        self.merge_biases = merge_biases
        n_in = sum(t.numel() for t in weight_tensors(torch.zeros(1, spec.num_params), spec, merge_biases).values())
        self.mlp = mlp(n_in, hidden, z_dim, num_hidden)

    def embed(self, vectors: torch.Tensor) -> torch.Tensor:
        tensors = weight_tensors(vectors, self.spec, self.merge_biases)
        return self.mlp(torch.cat([t.flatten(1) for t in tensors.values()], dim=1))
