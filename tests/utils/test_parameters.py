import pytest
import torch
from torch import nn

from adaptmem.utils import count_parameters


def test_count_parameters_counts_tied_weights_once_and_skips_frozen_ones():
    emb, head = nn.Embedding(10, 4), nn.Linear(4, 10, bias=False)
    head.weight = emb.weight
    model = nn.ModuleDict({"emb": emb, "head": head, "norm": nn.LayerNorm(4)})
    assert count_parameters(model) == 10 * 4 + 2 * 4
    model["norm"].requires_grad_(False)
    assert count_parameters(model) == 40 and count_parameters(model, trainable_only=False) == 48
    with pytest.raises(TypeError, match="count_parameters: module must be a torch.nn.Module, got Tensor"):
        count_parameters(torch.zeros(3))
