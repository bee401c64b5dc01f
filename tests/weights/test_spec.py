import pytest
import torch
from torch import nn

from adaptmem.weights import RNNModel, WeightSpec, flatten, load_into, unflatten

CELLS = ["lstm", "gru", "rnn_tanh", "rnn_relu"]


def test_formal_language_lstm_layout_matches_the_documented_offsets():
    spec = WeightSpec("lstm", 6, 32, num_layers=2, output_size=6)
    assert spec.num_params == 13_766
    assert WeightSpec("lstm", 16, 32, num_layers=2, output_size=10).num_params == 15_178
    got = {e.name: (e.slice.start, e.slice.stop) for e in spec.entries}
    assert got["weight_ih_l0"] == (0, 768) and got["weight_hh_l0"] == (768, 4864)
    assert got["bias_ih_l0"] == (4864, 4992) and got["bias_hh_l0"] == (4992, 5120)
    assert got["weight_ih_l1"][0] == 5120 and got["bias_hh_l1"][1] == 13_568
    assert got["linear.weight"] == (13_568, 13_760) and got["linear.bias"] == (13_760, 13_766)
    assert spec.gate_order == ("i", "f", "g", "o") and spec.gate_slice("g") == slice(64, 96)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("out", [None, 3])
def test_flatten_follows_pytorch_parameter_order_and_round_trips(cell, out):
    spec = WeightSpec(cell, 5, 7, num_layers=2, output_size=out)
    model = spec.build()
    v = flatten(model)
    assert v.shape == (spec.num_params,)
    assert torch.equal(v, torch.cat([p.detach().reshape(-1) for p in model.parameters()]))
    parts = unflatten(v, spec)
    for name, p in model.named_parameters():
        assert torch.equal(parts[name.removeprefix("rnn.")], p.detach())
    other = spec.build()
    load_into(v, other)
    assert torch.equal(flatten(other), v)
    assert WeightSpec.from_module(model) == spec and WeightSpec.from_module(model.rnn) == WeightSpec(cell, 5, 7, 2)


def test_unflatten_keeps_batch_dims_and_returns_views():
    spec = WeightSpec("gru", 3, 4, output_size=2)
    v = torch.randn(2, 5, spec.num_params)
    parts = unflatten(v, spec)
    assert parts["weight_hh_l0"].shape == (2, 5, 12, 4)
    v[1, 2, spec.entry("linear.bias").offset] = 123.0
    assert parts["linear.bias"][1, 2, 0] == 123.0


def test_from_module_accepts_any_container_with_one_rnn_and_one_linear():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.core = nn.LSTM(4, 8, batch_first=True)
            self.head = nn.Linear(8, 2)

    net = Net()
    spec = WeightSpec.from_module(net)
    assert spec == WeightSpec("lstm", 4, 8, 1, 2)
    assert torch.equal(flatten(net)[-2:], net.head.bias.detach())


def test_init_vectors_use_pytorch_default_bounds():
    spec = WeightSpec("lstm", 6, 32, 2, 6)
    v = spec.init_vectors(3, torch.Generator().manual_seed(0))
    assert v.shape == (3, spec.num_params) and v.abs().max() <= 32**-0.5
    assert v.std() > 0.1


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="cell must be one of"):
        WeightSpec("transformer", 3, 4)
    with pytest.raises(ValueError, match="hidden_size must be a positive int"):
        WeightSpec("lstm", 3, 0)
    spec = WeightSpec("lstm", 3, 4)
    with pytest.raises(ValueError, match=r"unflatten: vectors must be \[..., P\] with P=144"):
        unflatten(torch.randn(10), spec)
    with pytest.raises(TypeError, match="floating-point"):
        unflatten(torch.zeros(144, dtype=torch.int64), spec)
    with pytest.raises(ValueError, match="load_into: vector must be"):
        load_into(torch.randn(5), nn.LSTM(3, 4))
    with pytest.raises(ValueError, match="bidirectional"):
        WeightSpec.from_module(nn.LSTM(3, 4, bidirectional=True))
    with pytest.raises(TypeError, match="at most one nn.Linear"):
        WeightSpec.from_module(nn.Sequential(nn.Linear(2, 2)))
    with pytest.raises(ValueError, match="no tensor named"):
        spec.entry("linear.weight")


def test_rnn_model_forward_shapes():
    model = RNNModel(WeightSpec("lstm", 6, 32, 2, output_size=6))
    y, (h, c) = model(torch.zeros(3, 5, 6))
    assert y.shape == (3, 5, 6) and h.shape == (2, 3, 32) and "params=13766" in repr(model)
