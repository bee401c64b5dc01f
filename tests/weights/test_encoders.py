import pytest
import torch

from adaptmem.weights import WeightSpec, build_encoder
from adaptmem.weights.encoders import (
    ENCODERS,
    FlatMLPEncoder,
    InteractiveProbingEncoder,
    LayerStatsEncoder,
    NFEncoder,
    ProbingEncoder,
)
from adaptmem.weights.symmetries import flip_sign, permute_hidden, random_permutations, shift_biases

SPEC = WeightSpec("lstm", 6, 8, num_layers=2, output_size=6)
SMALL = {  # small versions of every encoder, so the tests take milliseconds
    "stats": {},
    "flat": {"hidden": 32},
    "transformer": {"d_model": 16, "num_layers": 1, "dim_feedforward": 32},
    "nf": {"channels": 8, "num_layers": 2, "hidden": 16},
    "probing": {"num_probes": 3, "probe_len": 5, "hidden": 16},
    "interactive": {"probe_len": 5, "hidden": 16},
    "none": {},
}


def _weights(n=4, seed=0):
    return SPEC.init_vectors(n, torch.Generator().manual_seed(seed)) * 3


def _permuted(v, seed=1):
    return permute_hidden(v, SPEC, random_permutations(SPEC, len(v), torch.Generator().manual_seed(seed)))


@pytest.mark.parametrize("name", list(ENCODERS))
def test_every_encoder_outputs_unit_norm_codes_and_trains(name):
    torch.manual_seed(0)
    enc = build_encoder(name, SPEC, **SMALL[name])
    v = _weights()
    z = enc(v)
    assert z.shape == (4, 16)
    torch.testing.assert_close(z.norm(dim=1), torch.ones(4))
    (z[:, 0]).sum().backward()
    assert all(p.grad is not None for p in enc.parameters() if p.requires_grad)
    assert sum(p.grad.abs().sum() for p in enc.parameters()) > 0


def test_null_baseline_gives_every_network_the_same_code():
    z = build_encoder("none", SPEC)(_weights())
    assert torch.equal(z, z[:1].expand(4, -1))


@pytest.mark.parametrize("name", ["probing", "interactive", "nf", "stats"])
def test_invariant_encoders_ignore_hidden_unit_permutations(name):
    torch.manual_seed(0)
    enc = build_encoder(name, SPEC, **SMALL[name])
    v = _weights()
    torch.testing.assert_close(enc(_permuted(v)), enc(v), atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", ["flat", "transformer"])
def test_weight_order_encoders_are_not_permutation_invariant(name):
    torch.manual_seed(0)
    enc = build_encoder(name, SPEC, **SMALL[name])
    v = _weights()
    assert (enc(_permuted(v)) - enc(v)).abs().max() > 1e-3
    assert not enc.permutation_invariant


@pytest.mark.parametrize("cls", [ProbingEncoder, InteractiveProbingEncoder])
def test_probing_encoders_depend_only_on_the_function(cls):
    torch.manual_seed(0)
    enc = cls(SPEC, **{k: v for k, v in SMALL["probing"].items() if cls is ProbingEncoder or k != "num_probes"})
    v = _weights()
    g = torch.Generator().manual_seed(3)
    t = flip_sign(_permuted(v), SPEC, [torch.rand(4, 8, generator=g) < 0.5 for _ in range(2)])
    t = shift_biases(t, SPEC, torch.randn(4, 32, generator=g))
    torch.testing.assert_close(enc(t), enc(v), atol=1e-5, rtol=0)
    assert (enc(_weights(seed=5)) - enc(v)).abs().max() > 1e-3  # but differs between networks


def test_interactive_probing_backpropagates_through_the_probed_network():
    torch.manual_seed(0)
    enc = InteractiveProbingEncoder(SPEC, probe_len=4, hidden=16)
    v = _weights().requires_grad_()
    enc(v)[:, 0].sum().backward()
    assert v.grad.abs().sum() > 0  # the target network's weights receive gradients
    assert enc.ask.weight.grad.abs().sum() > 0  # and so does the probe generator, via the target's answers
    # the probe generator only influences z through the probed network: without it, no gradient
    enc.zero_grad()
    with torch.no_grad():
        enc.ask.weight.zero_()
    enc(v.detach())[:, 0].sum().backward()
    assert enc.ask.weight.grad.abs().sum() > 0


def test_paper_parameter_counts():
    fl, mnist = WeightSpec("lstm", 6, 32, 2, 6), WeightSpec("lstm", 16, 32, 2, 10)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(LayerStatsEncoder(fl, merge_biases=False)) == 11_152
    assert count(FlatMLPEncoder(fl, merge_biases=False)) == 1_797_264  # "1.80M"
    assert count(FlatMLPEncoder(mnist, merge_biases=False)) == 1_978_000  # "1.98M"
    assert 1.1e6 < count(ProbingEncoder(fl)) < 1.2e6  # "1.15M"
    assert 1.2e6 < count(NFEncoder(fl)) < 1.35e6  # "1.28M"


def test_statistics_encoder_honours_its_mlp_config():
    # the paper's code silently replaced its configured 3 x 768 MLP by 1 x 128; ours builds what it is given
    enc = LayerStatsEncoder(WeightSpec("lstm", 6, 32, 2, 6), hidden=768, num_hidden=3, merge_biases=False)
    assert sum(p.numel() for p in enc.parameters()) == 70 * 768 + 768 + 2 * (768 * 768 + 768) + 768 * 16 + 16


def test_statistics_features_are_the_documented_seven_per_tensor():
    enc = LayerStatsEncoder(SPEC, merge_biases=False)
    v = _weights(1)
    f = enc.features(v)
    assert f.shape == (1, 70)
    w = v[0, SPEC.entry("weight_hh_l0").slice]
    expected = torch.stack(
        [w.mean(), w.var(unbiased=False), w.min(), w.quantile(0.25), w.quantile(0.5), w.quantile(0.75), w.max()]
    )
    torch.testing.assert_close(f[0, 7:14], expected)


def test_encoder_input_errors_name_the_encoder_and_shape():
    enc = FlatMLPEncoder(SPEC, hidden=8)
    with pytest.raises(ValueError, match=r"FlatMLPEncoder: vectors must be \[N, P\]"):
        enc(torch.randn(3, 10))
    with pytest.raises(ValueError, match="name must be one of"):
        build_encoder("cnn", SPEC)
    with pytest.raises(ValueError, match="input_kind must be one of"):
        ProbingEncoder(SPEC, input_kind="tokens")
