import pytest
import torch

from adaptmem.weights import WeightSpec, functional_rnn
from adaptmem.weights.symmetries import (
    canonicalize,
    flip_sign,
    merge_biases,
    permute_hidden,
    random_permutations,
    shift_biases,
)

ATOL = 1e-5
CELLS = ["lstm", "gru", "rnn_tanh", "rnn_relu"]


def _setup(cell, n=3, layers=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    spec = WeightSpec(cell, 5, 7, num_layers=layers, output_size=4)
    v = spec.init_vectors(n, g) * 2
    x = torch.randn(n, 2, 9, 5, generator=g)
    return spec, v, x, g


@pytest.mark.parametrize("cell", CELLS)
def test_permuting_hidden_units_changes_weights_but_not_the_function(cell):
    spec, v, x, g = _setup(cell)
    vp = permute_hidden(v, spec, random_permutations(spec, len(v), g))  # a fresh permutation per network
    assert (vp - v).abs().max() > 0.1
    torch.testing.assert_close(functional_rnn(spec, vp, x), functional_rnn(spec, v, x), atol=ATOL, rtol=0)


def test_random_permutations_are_drawn_per_network_not_shared_across_the_batch():
    spec = WeightSpec("lstm", 6, 32, 2, 6)
    perms = random_permutations(spec, 16, torch.Generator().manual_seed(0))
    assert len(perms) == 2 and perms[0].shape == (16, 32)
    assert len({tuple(p.tolist()) for p in perms[0]}) == 16
    assert not torch.equal(perms[0], perms[1])


def test_permutation_of_one_layer_and_its_inverse_round_trip():
    spec, v, x, g = _setup("lstm", n=1)
    perm = torch.randperm(7, generator=g)
    vp = permute_hidden(v[0], spec, perm, layer=1)
    assert torch.equal(permute_hidden(vp, spec, perm.argsort(), layer=1), v[0])
    # unit perm[0]'s g-gate row is now row 0 of the g block; its input columns (layer 0) stay
    w = spec.entry("weight_ih_l1")
    rows = spec.gate_slice("g")
    assert torch.equal(v[0, w.slice].view(w.shape)[rows][perm[0]], vp[w.slice].view(w.shape)[rows][0])
    lin = spec.entry("linear.weight")  # the next layer's input columns follow the permutation
    assert torch.equal(v[0, lin.slice].view(lin.shape)[:, perm], vp[lin.slice].view(lin.shape))


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn_tanh"])
def test_sign_flips_of_candidate_units_leave_the_function_unchanged(cell):
    spec, v, x, g = _setup(cell)
    masks = [torch.rand(len(v), 7, generator=g) < 0.5 for _ in range(spec.num_layers)]
    vf = flip_sign(v, spec, masks)
    assert (vf - v).abs().max() > 0.1
    torch.testing.assert_close(functional_rnn(spec, vf, x), functional_rnn(spec, v, x), atol=ATOL, rtol=0)


def test_sign_flip_negates_the_hidden_state_of_the_flipped_unit():
    spec = WeightSpec("lstm", 3, 4)  # no Linear: outputs are the hidden states
    v = spec.init_vectors(1, torch.Generator().manual_seed(1))
    x = torch.randn(1, 6, 3)
    mask = torch.tensor([True, False, False, True])
    h, hf = functional_rnn(spec, v, x), functional_rnn(spec, flip_sign(v, spec, mask), x)
    torch.testing.assert_close(hf, h * torch.tensor([-1.0, 1, 1, -1]), atol=1e-6, rtol=0)


def test_relu_rnns_have_no_sign_symmetry():
    spec, v, _, _ = _setup("rnn_relu")
    with pytest.raises(ValueError, match="ReLU"):
        flip_sign(v, spec, [torch.ones(7, dtype=torch.bool), None])


@pytest.mark.parametrize("cell", CELLS)
def test_moving_and_merging_bias_mass_leaves_the_function_unchanged(cell):
    spec, v, x, g = _setup(cell)
    y = functional_rnn(spec, v, x)
    vs = shift_biases(v, spec, torch.randn(len(v), spec.gates * 7, generator=g))
    assert (vs - v).abs().max() > 0.1
    torch.testing.assert_close(functional_rnn(spec, vs, x), y, atol=ATOL, rtol=0)
    vm = merge_biases(v, spec)
    torch.testing.assert_close(functional_rnn(spec, vm, x), y, atol=ATOL, rtol=0)
    bh = vm[:, spec.entry("bias_hh_l0").slice]
    if cell == "gru":  # the n gate's b_hn sits inside r * (...) and cannot move
        assert bh[:, :14].abs().max() == 0 and bh[:, 14:].abs().max() > 0
    else:
        assert bh.abs().max() == 0


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn_tanh"])
def test_canonical_form_is_shared_by_the_whole_orbit_and_keeps_the_function(cell):
    spec, v, x, g = _setup(cell)
    t = permute_hidden(v, spec, random_permutations(spec, len(v), g))
    t = flip_sign(t, spec, [torch.rand(len(v), 7, generator=g) < 0.5 for _ in range(2)])
    t = shift_biases(t, spec, torch.randn(len(v), spec.gates * 7, generator=g))
    c = canonicalize(v, spec)
    torch.testing.assert_close(canonicalize(t, spec), c, atol=1e-6, rtol=0)
    torch.testing.assert_close(functional_rnn(spec, c, x), functional_rnn(spec, v, x), atol=ATOL, rtol=0)
    torch.testing.assert_close(canonicalize(c, spec), c, atol=1e-6, rtol=0)  # idempotent
    b = c[:, spec.entry("bias_ih_l0").slice].view(len(v), spec.gates, 7)
    cand = {"lstm": 2, "gru": 2, "rnn_tanh": 0}[cell]
    assert (b[:, cand] >= 0).all()


def test_bad_permutations_are_rejected():
    spec, v, _, _ = _setup("lstm")
    with pytest.raises(ValueError, match="not a permutation"):
        permute_hidden(v, spec, torch.zeros(7, dtype=torch.long), layer=0)
    with pytest.raises(ValueError, match="pass layer="):
        permute_hidden(v, spec, torch.arange(7))
    with pytest.raises(ValueError, match="integer"):
        permute_hidden(v, spec, torch.arange(7.0), layer=0)
    with pytest.raises(ValueError, match="one entry per layer"):
        permute_hidden(v, spec, [torch.arange(7)])


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn_tanh"])
def test_canonical_form_without_biases_uses_the_candidate_input_rows(cell):
    g = torch.Generator().manual_seed(2)
    spec = WeightSpec(cell, 5, 7, num_layers=2, output_size=4, bias=False)
    v = spec.init_vectors(3, g) * 2
    t = permute_hidden(v, spec, random_permutations(spec, 3, g))
    t = flip_sign(t, spec, [torch.rand(3, 7, generator=g) < 0.5 for _ in range(2)])
    torch.testing.assert_close(canonicalize(t, spec), canonicalize(v, spec), atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="no biases"):
        shift_biases(v, spec, torch.zeros(spec.gates * 7))
