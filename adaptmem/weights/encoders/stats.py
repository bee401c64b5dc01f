"""Layer-wise statistics encoder."""

from __future__ import annotations

import torch

from adaptmem.weights.encoders.base import WeightEncoder, mlp, weight_tensors
from adaptmem.weights.spec import WeightSpec

QUANTILES = (0.0, 0.25, 0.5, 0.75, 1.0)


class LayerStatsEncoder(WeightEncoder):
    """Summary statistics of every weight tensor, read by an MLP.

    For each tensor ``W`` of the network: ``mean(W)``, ``var(W)`` and the 0/25/50/75/100%
    quantiles, i.e. 7 numbers per tensor; ``z = normalise(MLP(features))``. The statistics
    ignore the order of entries, so z is invariant to hidden-unit permutations.

    Args:
        spec: the encoded networks' layout.
        z_dim: size of z.
        hidden: MLP width.
        num_hidden: MLP hidden layers (the paper's code ran 1 x 128; its config said 3 x 768).
        merge_biases: use ``b_ih + b_hh`` (8 tensors for a 2-layer LSTM + Linear) instead of
            both biases (10 tensors; the paper's 70 features and 11,152 parameters).

    Inputs: ``vectors [N, P]``. Outputs: ``z [N, z_dim]`` with unit norm.

    Example::

        >>> enc = LayerStatsEncoder(WeightSpec("lstm", 6, 32, 2, 6), merge_biases=False)
        >>> count_parameters(enc)  # adaptmem.utils
        11152
    """

    permutation_invariant = True

    def __init__(
        self, spec: WeightSpec, z_dim: int = 16, *, hidden: int = 128, num_hidden: int = 1, merge_biases: bool = True
    ) -> None:
        super().__init__(spec, z_dim)
        self.merge_biases = merge_biases
        n_tensors = len(weight_tensors(torch.zeros(1, spec.num_params), spec, merge_biases))
        self.num_features = n_tensors * (2 + len(QUANTILES))
        self.register_buffer("q", torch.tensor(QUANTILES), persistent=False)
        self.mlp = mlp(self.num_features, hidden, z_dim, num_hidden)

    def features(self, vectors: torch.Tensor) -> torch.Tensor:
        """``[N, 7 * num_tensors]`` statistics."""
        feats = []
        for t in weight_tensors(vectors, self.spec, self.merge_biases).values():
            flat = t.flatten(1)
            feats += [
                flat.mean(1, keepdim=True),
                flat.var(1, keepdim=True, unbiased=False),
                torch.quantile(flat, self.q.to(flat.dtype), dim=1).T,
            ]
        return torch.cat(feats, dim=1)

    def embed(self, vectors: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.features(vectors))
