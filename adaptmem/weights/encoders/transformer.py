"""Parameter-transformer encoder: one token per weight row."""

from __future__ import annotations

import torch
from torch import nn

from adaptmem.weights.encoders.base import WeightEncoder, weight_tensors
from adaptmem.weights.spec import WeightSpec


class ParameterTransformerEncoder(WeightEncoder):
    """A Transformer over the rows of the weight matrices.

    Token ``r`` of recurrent layer k is the concatenation of row r of ``weight_ih``, row r of
    ``weight_hh`` and the row's bias (merged, or ``b_ih`` and ``b_hh``); token ``o`` of the
    output Linear is its row plus bias. Each tensor family has its own Linear to ``d_model``;
    a learned position embedding per token and a learned summary token are added, and
    ``z = normalise(Linear(LayerNorm(summary output)))``. Positions make the encoder
    order-aware, so it is not permutation-invariant: train it with permutation augmentation.

    Args:
        spec: the encoded networks' layout.
        z_dim: size of z.
        d_model, num_heads, num_layers, dim_feedforward, dropout: the Transformer (paper:
            128, 2, 6, 512).
        merge_biases: one merged bias per row instead of ``b_ih`` and ``b_hh``.

    Inputs: ``vectors [N, P]``. Outputs: ``z [N, z_dim]`` with unit norm.

    Example::

        >>> enc = ParameterTransformerEncoder(WeightSpec("lstm", 6, 32, 2, 6), num_layers=2)
        >>> z = enc(torch.randn(4, 13766))   # [4, 16]
    """

    def __init__(
        self,
        spec: WeightSpec,
        z_dim: int = 16,
        *,
        d_model: int = 128,
        num_heads: int = 2,
        num_layers: int = 6,
        dim_feedforward: int = 512,
        dropout: float = 0.0,
        merge_biases: bool = True,
    ) -> None:
        super().__init__(spec, z_dim)
        self.merge_biases = merge_biases
        n_bias = 0 if not spec.bias else (1 if merge_biases and spec.cell != "gru" else 2)
        self.embed_layers = nn.ModuleList(
            nn.Linear(spec.layer_input_size(k) + spec.hidden_size + n_bias, d_model) for k in range(spec.num_layers)
        )
        self.embed_out = nn.Linear(spec.hidden_size + 1, d_model) if spec.output_size else None
        n_tokens = spec.num_layers * spec.gates * spec.hidden_size + (spec.output_size or 0)
        self.summary = nn.Parameter(torch.zeros(1, 1, d_model))
        self.pos = nn.Parameter(0.02 * torch.randn(1, n_tokens + 1, d_model))
        layer = nn.TransformerEncoderLayer(
            d_model, num_heads, dim_feedforward, dropout, batch_first=True, norm_first=True
        )
        self.transformer = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, z_dim)

    def tokens(self, vectors: torch.Tensor) -> torch.Tensor:
        """``[N, num_tokens, d_model]`` row embeddings (without positions)."""
        t = weight_tensors(vectors, self.spec, self.merge_biases)
        out = []
        for k, emb in enumerate(self.embed_layers):
            parts = [t[f"weight_ih_l{k}"], t[f"weight_hh_l{k}"]]
            parts += [t[name].unsqueeze(-1) for name in (f"bias_ih_l{k}", f"bias_hh_l{k}") if name in t]
            out.append(emb(torch.cat(parts, dim=-1)))
        if self.embed_out is not None:
            out.append(self.embed_out(torch.cat([t["linear.weight"], t["linear.bias"].unsqueeze(-1)], dim=-1)))
        return torch.cat(out, dim=1)

    def embed(self, vectors: torch.Tensor) -> torch.Tensor:
        x = self.tokens(vectors)
        x = torch.cat([self.summary.expand(len(x), -1, -1), x], dim=1) + self.pos
        return self.head(self.norm(self.transformer(x)[:, 0]))
