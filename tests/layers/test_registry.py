"""One registry of layer kinds: every caller that takes a kind name reads it."""

import pytest
import torch

from adaptmem.layers import (
    LAYERS,
    LSTM,
    SRWM,
    DeltaNet,
    FastWeightStack,
    LinearAttention,
    RecurrentDeltaNet,
    layer_kind,
    layer_kinds,
    make_layer,
    register_layer,
    registry,
)

BUILT_IN = {
    "srwm": SRWM,
    "deltanet": DeltaNet,
    "linear": LinearAttention,
    "recurrent_deltanet": RecurrentDeltaNet,
    "lstm": LSTM,
}


@pytest.fixture
def scratch_kind():
    """Register test kinds and remove them afterwards, so other tests see the built-in registry."""
    names = []

    def register(name, cls, **kw):
        names.append(name)
        return register_layer(name, cls, **kw)

    yield register
    for n in names:
        registry._KINDS.pop(n, None)
        registry._CLASSES.pop(n, None)


class ScaledDeltaNet(DeltaNet):
    """A new fast-weight kind for the tests."""


class WideLSTM(LSTM):
    """A new recurrent-baseline kind for the tests."""


def test_the_built_in_kinds_and_their_stacking():
    assert layer_kinds() == tuple(BUILT_IN) and dict(LAYERS) == BUILT_IN
    assert layer_kinds(blocks=True) == ("srwm", "deltanet", "linear", "recurrent_deltanet")
    assert layer_kinds(blocks=False) == ("lstm",)


@pytest.mark.parametrize("kind", list(BUILT_IN))
def test_make_layer_builds_every_kind_with_the_layer_contract(kind):
    layer = make_layer(kind, 8, 2)  # num_heads is not passed to the LSTM
    assert type(layer) is BUILT_IN[kind] and layer_kind(kind).cls is BUILT_IN[kind]
    y, state = layer(torch.randn(2, 3, 8), None, torch.tensor([True, False]))
    assert y.shape == (2, 3, layer.out_dim) and isinstance(state, layer.state_type)


def test_unknown_kinds_get_an_error_listing_the_kinds():
    with pytest.raises(
        ValueError,
        match=r"make_layer: kind must be one of \['srwm', 'deltanet', 'linear', "
        r"'recurrent_deltanet', 'lstm'\] or a layer class, got 'gru'",
    ):
        make_layer("gru", 8, 2)
    with pytest.raises(ValueError, match="FastWeightStack: kind must be one of"):
        FastWeightStack("gru", 1, 8, 2)


def test_a_layer_class_works_as_a_kind():
    assert layer_kind(SRWM).name == "srwm"  # registered: its entry
    assert layer_kind(ScaledDeltaNet).blocks  # not registered: a fast-weight kind
    assert isinstance(FastWeightStack(ScaledDeltaNet, 1, 8, 2).blocks[0].fast, ScaledDeltaNet)


def test_register_layer_checks_its_arguments_and_conflicts(scratch_kind):
    entry = scratch_kind("scaled", ScaledDeltaNet)
    assert scratch_kind("scaled", ScaledDeltaNet) == entry  # the same registration again: a no-op
    with pytest.raises(ValueError, match="register_layer: kind 'scaled' is already registered"):
        register_layer("scaled", DeltaNet)
    with pytest.raises(ValueError, match="register_layer: name must be an identifier-like str"):
        register_layer("two words", DeltaNet)
    with pytest.raises(TypeError, match="register_layer: cls must be an nn.Module subclass"):
        register_layer("thing", object)
    with pytest.raises(TypeError):
        LAYERS["x"] = DeltaNet  # a read-only view


def test_a_registered_kind_is_accepted_by_every_caller(scratch_kind):
    from adaptmem.models import build_fewshot_learner
    from adaptmem.models.lm import FastWeightLM
    from adaptmem.rl import make_agent

    scratch_kind("scaled", ScaledDeltaNet)
    scratch_kind("wide_lstm", WideLSTM, blocks=False)
    assert layer_kinds()[-2:] == ("scaled", "wide_lstm") and "scaled" in LAYERS
    for kind, cls in (("scaled", ScaledDeltaNet), ("wide_lstm", WideLSTM)):
        net = build_fewshot_learner(
            kind,
            num_classes=3,
            in_channels=1,
            image_size=16,
            conv_channels=4,
            d_model=8,
            num_layers=2,
            num_heads=2,
            d_ff=16,
            lstm_hidden=6,
        )
        assert any(type(m) is cls for m in net.modules())
        agent = make_agent((4,), 3, core=kind, feature_dim=8, lstm_hidden=6, num_heads=2, head_dim=4, d_ff=16)
        assert any(type(m) is cls for m in agent.modules())
    assert isinstance(
        FastWeightLM(11, kind="scaled", num_layers=1, d_model=8, num_heads=2).stack.blocks[0].fast, ScaledDeltaNet
    )
    with pytest.raises(ValueError, match="FastWeightLM: kind must be one of"):  # the LM takes block kinds only
        FastWeightLM(11, kind="wide_lstm", d_model=8)


def test_a_bare_kind_is_chained_at_its_hidden_size():
    stack = FastWeightStack("lstm", 3, 8, num_heads=2, hidden_size=5)
    assert [(b.d_model, b.out_dim) for b in stack.blocks] == [(8, 5), (5, 5), (5, 5)]
    y, state = stack(torch.randn(2, 4, 8))
    assert y.shape == (2, 4, 5) and len(state) == 3 and stack.out_dim == 5
