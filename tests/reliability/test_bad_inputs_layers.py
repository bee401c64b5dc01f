"""Bad inputs to every public layer, stack and state helper."""

from __future__ import annotations

import pytest
import torch

from adaptmem.layers import (
    LSTM,
    SRWM,
    DeltaNet,
    FastWeightBlock,
    FastWeightStack,
    FeedForward,
    LinearAttention,
    RecurrentDeltaNet,
    elu_sum_norm,
    index_state,
    layer_kind,
    make_layer,
    map_state,
    mask_state,
    register_layer,
    repeat_rows,
)
from tests.reliability.probes import Probe, params

D_MODEL, HEADS = 16, 2
FAST = {"SRWM": SRWM, "DeltaNet": DeltaNet, "LinearAttention": LinearAttention, "RecurrentDeltaNet": RecurrentDeltaNet}


def ctor(cls, **kw):
    args = {"d_model": D_MODEL, "num_heads": HEADS, **kw}
    return lambda: cls(**args)


def constructor_probes():
    probes = []
    common = [
        ("d_model", 0),
        ("d_model", -1),
        ("d_model", 16.0),
        ("d_model", True),
        ("num_heads", 0),
        ("num_heads", 3),
        ("head_dim", 0),
        ("head_dim", 2.5),
        ("dropout", -0.1),
        ("dropout", 1.5),
        ("dropout", float("nan")),
        ("dropout", "a"),
    ]
    for n, cls in FAST.items():
        probes += [Probe(f"{n}({a}={v!r})", ctor(cls, **{a: v}), a) for a, v in common]
    probes += [
        Probe(f"SRWM({a}={v!r})", ctor(SRWM, **{a: v}), a)
        for a, v in [
            ("beta_init", float("nan")),
            ("beta_init", float("inf")),
            ("beta_init", "a"),
            ("input_softmax", "yes"),
            ("norm_skip", 2),
            ("pre_norm", None),
            ("backend", "x"),
            ("checkpoint_every", 0),
            ("checkpoint_every", 2.5),
        ]
    ]
    for n in ("DeltaNet", "LinearAttention"):
        probes += [
            Probe(f"{n}({a}={v!r})", ctor(FAST[n], **{a: v}), a)
            for a, v in [("mode", "x"), ("chunk_size", 0), ("chunk_size", -3), ("chunk_size", 1.5)]
        ]
    probes += [
        Probe(
            f"RecurrentDeltaNet(checkpoint_every={v!r})",
            ctor(RecurrentDeltaNet, checkpoint_every=v),
            "checkpoint_every",
        )
        for v in (0, "a")
    ]
    probes += [
        Probe(f"LSTM({a}={v!r})", (lambda a=a, v=v: LSTM(**{"d_model": D_MODEL, a: v})), a)
        for a, v in [("hidden_size", 0), ("hidden_size", -1), ("dropout", 2.0), ("d_model", 0)]
    ]
    stack = {"kind": "srwm", "num_layers": 2, "d_model": D_MODEL, "num_heads": HEADS}
    probes += [
        Probe(f"FastWeightStack({a}={v!r})", (lambda a=a, v=v: FastWeightStack(**{**stack, a: v})), a)
        for a, v in [
            ("d_ff", 0),
            ("d_ff", -4),
            ("d_ff", 2.5),
            ("num_layers", 0),
            ("kind", "nope"),
            ("final_norm", "yes"),
            ("dropout", -1.0),
            ("hidden_size", 0),
        ]
    ]
    block = {"kind": "deltanet", "d_model": D_MODEL, "num_heads": HEADS}
    probes += [
        Probe(f"FastWeightBlock({a}={v!r})", (lambda a=a, v=v: FastWeightBlock(**{**block, a: v})), a)
        for a, v in [("d_ff", 0), ("d_ff", -4), ("kind", "nope")]
    ]
    probes += [
        Probe(f"FeedForward({a}={v!r})", (lambda a=a, v=v: FeedForward(**{"d_model": 4, "d_ff": 8, a: v})), a)
        for a, v in [("d_ff", 0), ("d_model", 0), ("dropout", float("nan"))]
    ]
    return probes


def layers():
    torch.manual_seed(0)
    out = {n: cls(D_MODEL, HEADS) for n, cls in FAST.items()}
    out["LSTM"] = LSTM(D_MODEL)
    out["FastWeightStack"] = FastWeightStack("srwm", 2, D_MODEL, HEADS)
    out["FastWeightBlock"] = FastWeightBlock("deltanet", D_MODEL, HEADS)
    return out


LAYERS = layers()
X = torch.randn(2, 7, D_MODEL)


def bad_states(state):
    if isinstance(state, list):  # a stack's: one state per layer
        yield "tensor", torch.zeros(2), "state"
        yield "short", state[:-1], "state"
        yield "inner short", [s[:-1] for s in state], "state"
        yield "inner meta", [type(s)(*(t.to("meta") for t in s)) for s in state], "state"
        yield "inner B=3", [type(s)(*(torch.cat([t, t[:1]]) for t in s)) for s in state], "state"
        return
    yield "tensor", torch.zeros(2), "state"
    yield "int", 5, "state"
    yield "short", state[:-1], "state"
    yield "meta", type(state)(*(t.to("meta") for t in state)), "state"
    yield "B=3", type(state)(*(torch.cat([t, t[:1]]) for t in state)), "state"
    yield "int dtype", type(state)(*(t.long() for t in state)), "state"


def forward_probes():
    probes = []
    for n, layer in LAYERS.items():
        xs = {
            "float64": X.double(),
            "bfloat16": X.bfloat16(),
            "int": X.long(),
            "meta": X.to("meta"),
            "T=0": X[:, :0],
            "width": X[..., :-1],
            "rank 2": X[0],
            "list": X.tolist(),
            "None": None,
        }
        probes += [Probe(f"{n} x={k}", (lambda layer=layer, v=v: layer(v)), r"\bx\b") for k, v in xs.items()]
        probes += [
            Probe(f"{n} state={k}", (lambda layer=layer, v=v: layer(X, v)), name)
            for k, v, name in bad_states(layer.init_state(2))
        ]
        resets = {
            "float": torch.zeros(2, 7),
            "steps": torch.zeros(2, 8, dtype=torch.bool),
            "rank 3": torch.zeros(2, 7, 1, dtype=torch.bool),
            "meta": torch.zeros(2, dtype=torch.bool).to("meta"),
            "list": [True, False],
        }
        probes += [
            Probe(f"{n} reset={k}", (lambda layer=layer, v=v: layer(X, None, v)), "reset") for k, v in resets.items()
        ]
        probes += [
            Probe(f"{n}.init_state(batch_size={b!r})", (lambda layer=layer, b=b: layer.init_state(b)), "batch_size")
            for b in (-1, 2.5)
        ]
    return probes


def helper_probes():
    state = LAYERS["SRWM"].init_state(2)
    keep = {
        "0.5": 0.5,
        "float tensor": torch.ones(2),
        "rank 2": torch.ones(2, 1, dtype=torch.bool),
        "3 rows": torch.ones(3, dtype=torch.bool),
        "meta": torch.ones(2, dtype=torch.bool).to("meta"),
        "list": [True, False],
    }
    probes = [Probe(f"mask_state keep={k}", (lambda v=v: mask_state(state, v)), "keep") for k, v in keep.items()]
    probes += [Probe(f"repeat_rows n={v!r}", (lambda v=v: repeat_rows(state, v)), r"\bn\b") for v in (0, -1, 2.0, True)]
    probes += [
        Probe(f"index_state rows={k}", (lambda v=v: index_state(state, v)), "rows")
        for k, v in {"5": 5, "float tensor": torch.tensor([0.5])}.items()
    ]
    probes += [
        Probe("map_state fn=None", lambda: map_state(None, state), "fn"),
        Probe("make_layer kind='x'", lambda: make_layer("x", D_MODEL, HEADS), "kind"),
        Probe("make_layer kind=3", lambda: make_layer(3, D_MODEL, HEADS), "kind"),
        Probe("layer_kind kind='x'", lambda: layer_kind("x"), "kind"),
        Probe("register_layer cls=5", lambda: register_layer("x", 5), "cls"),
        Probe("register_layer name=srwm (taken)", lambda: register_layer("srwm", DeltaNet), "srwm"),
        Probe("elu_sum_norm x=int", lambda: elu_sum_norm(torch.ones(3, dtype=torch.long)), r"\bx\b"),
        Probe("elu_sum_norm x=list", lambda: elu_sum_norm([1.0]), r"\bx\b"),
    ]
    return probes


PROBES = constructor_probes() + forward_probes() + helper_probes()


@params(PROBES)
def test_bad_input_is_refused_with_a_message_naming_it(probe):
    probe.check()


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_an_empty_batch_runs_and_returns_empty_outputs_and_states(name):
    y, state = LAYERS[name](X[:0])
    assert y.shape[:2] == (0, 7)
    assert all(t.shape[0] == 0 for t in (state if isinstance(state, tuple) else [t for s in state for t in s]))


def test_the_zero_d_ff_of_a_stack_is_refused_not_replaced_by_the_default():
    with pytest.raises(ValueError, match="d_ff must be a positive int, got 0"):
        FastWeightStack("deltanet", 1, D_MODEL, HEADS, d_ff=0)
    assert FastWeightStack("deltanet", 1, D_MODEL, HEADS).blocks[0].ff.net[1].out_features == 4 * D_MODEL


def test_layers_under_autocast_accept_a_lower_precision_x():
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y, _ = LAYERS["DeltaNet"](X.bfloat16())
    assert y.shape == X.shape
