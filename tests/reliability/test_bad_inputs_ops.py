"""Bad inputs to every public op: each gives a ValueError/TypeError naming the argument."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from adaptmem.ops import (
    delta_rule,
    delta_rule_reference,
    linear_attention,
    linear_attention_reference,
    recurrent_delta_rule,
    recurrent_delta_rule_reference,
    srwm,
    srwm_reference,
)
from tests.reliability.probes import Probe, call_with, params, tensor_variants

B, T, H, D = 2, 5, 2, 4


def _g():
    return torch.Generator().manual_seed(0)


def qkv_args():
    g = _g()
    return {
        "q": torch.rand(B, T, H, D, generator=g),
        "k": F.normalize(torch.rand(B, T, H, D, generator=g), dim=-1),
        "v": torch.randn(B, T, H, D, generator=g),
        "beta": torch.rand(B, T, H, generator=g),
    }


def srwm_args():
    g = _g()
    return {
        "x": torch.softmax(torch.randn(B, T, H, D, generator=g), -1),
        "W_y": torch.randn(H, D, D, generator=g),
        "W_q": torch.randn(H, D, D, generator=g),
        "W_k": torch.randn(H, D, D, generator=g),
        "w_b": torch.randn(H, D, 4, generator=g),
    }


def rdr_args():
    g = _g()
    args = {n: torch.randn(B, T, H, D, generator=g) for n in ("q", "k", "v")}
    args["beta"] = torch.randn(B, T, H, generator=g)
    args.update({n: torch.randn(H, D, D, generator=g) for n in ("R_q", "R_k", "R_v")})
    args["r_b"] = torch.randn(H, D, generator=g)
    return args


BOOL_BT = torch.zeros(B, T, dtype=torch.bool)
OPS = {
    "delta_rule": (delta_rule, qkv_args),
    "delta_rule_reference": (delta_rule_reference, qkv_args),
    "linear_attention": (
        lambda beta=None, **a: linear_attention(**a),
        lambda: {k: v for k, v in qkv_args().items() if k != "beta"},
    ),
    "linear_attention_reference": (
        lambda **a: linear_attention_reference(**a),
        lambda: {k: v for k, v in qkv_args().items() if k != "beta"},
    ),
    "srwm": (srwm, srwm_args),
    "srwm_reference": (srwm_reference, srwm_args),
    "recurrent_delta_rule": (recurrent_delta_rule, rdr_args),
    "recurrent_delta_rule_reference": (recurrent_delta_rule_reference, rdr_args),
}
SEQUENCE_ARGS = {"q", "k", "x"}  # [B, T, H, D] inputs whose last dim others must match
VALUE_DIM_FREE = {"delta_rule", "delta_rule_reference", "linear_attention", "linear_attention_reference"}  # Dv free


def tensor_probes():
    probes = []
    for op, (fn, make) in OPS.items():
        for name, good in make().items():
            empty = (1,) if name in SEQUENCE_ARGS else ()
            for variant, bad in tensor_variants(good, empty=empty):
                if variant == "size" and name == "v" and op in VALUE_DIM_FREE:
                    bad = torch.cat([good, good[:, :, :1]], dim=2)  # Dv may differ from Dk; H may not
                probes.append(Probe(f"{op}-{name}-{variant}", call_with(fn, make(), **{name: bad}), rf"\b{name}\b"))
    return probes


def option_probes():
    probes = []
    for op, (fn, make) in OPS.items():
        bad = {
            "reset": [
                ("float", torch.zeros(B, T)),
                ("steps", torch.zeros(B, T + 1, dtype=torch.bool)),
                ("list", [True] * B),
                ("meta", BOOL_BT.to("meta")),
            ],
            "mode": [("unknown", "fast"), ("None", None)],
            "backend": [("unknown", "cuda")],
        }
        if op in ("delta_rule", "linear_attention"):
            bad["chunk_size"] = [("0", 0), ("float", 2.5), ("bool", True)]
        if op.startswith(("srwm", "recurrent")) and not op.endswith("reference"):
            bad["checkpoint_every"] = [("0", 0), ("float", 1.5)]
        if op.startswith("linear"):
            bad["eps"] = [("nan", float("nan")), ("negative", -1.0), ("str", "a")]
            bad["normalize"] = [("str", "yes")]
        if op.endswith("reference"):
            bad.pop("mode"), bad.pop("backend")
        for name, variants in bad.items():
            for variant, value in variants:
                probes.append(Probe(f"{op}-{name}-{variant}", call_with(fn, make(), **{name: value}), rf"\b{name}\b"))
    return probes


def state_probes():
    S = torch.zeros(B, H, D, D)
    y = torch.zeros(B, H, D)
    probes = []
    for op in ("delta_rule", "delta_rule_reference", "linear_attention", "linear_attention_reference"):
        fn, make = OPS[op]
        for variant, value in [
            ("meta", S.to("meta")),
            ("int", S.long()),
            ("rank", S[0]),
            ("tuple", (S,)),
            ("list", [1]),
        ]:
            probes.append(
                Probe(f"{op}-initial_state-{variant}", call_with(fn, make(), initial_state=value), "initial_state")
            )
    for op in ("linear_attention", "linear_attention_reference"):
        fn, make = OPS[op]
        for variant, value in [
            ("S only", S),
            ("z size", (S, torch.zeros(B, H, D + 1))),
            ("z int", (S, y.long())),
            ("z meta", (S, y.to("meta"))),
            ("z list", (S, [0.0])),
        ]:
            probes.append(
                Probe(
                    f"{op}-normalized initial_state-{variant}",
                    call_with(fn, make(), initial_state=value, normalize=True),
                    "initial_state",
                )
            )
    for op in ("recurrent_delta_rule", "recurrent_delta_rule_reference"):
        fn, make = OPS[op]
        for variant, value in [
            ("y meta", (S, y.to("meta"))),
            ("S meta", (S.to("meta"), y)),
            ("one", (S,)),
            ("dict", {"S": S}),
            ("tensor", S),
            ("y int", (S, y.long())),
            ("None pair", (None, None)),
        ]:
            probes.append(
                Probe(f"{op}-initial_state-{variant}", call_with(fn, make(), initial_state=value), "initial_state")
            )
    for op in ("srwm", "srwm_reference"):
        fn, make = OPS[op]
        good = tuple(make()[n] for n in ("W_y", "W_q", "W_k", "w_b"))
        for variant, value in [
            ("short", good[:2]),
            ("shape", tuple(t[:1] for t in good)),
            ("meta", tuple(t.to("meta") for t in good)),
        ]:
            probes.append(
                Probe(
                    f"{op}-reset_to-{variant}", call_with(fn, make(), reset=BOOL_BT, reset_to=value), "reset_to|weights"
                )
            )
    return probes


PROBES = tensor_probes() + option_probes() + state_probes()


@params(PROBES)
def test_bad_input_is_refused_with_a_message_naming_it(probe):
    probe.check()


def test_empty_batches_run_and_return_empty_outputs():
    for op, (fn, make) in OPS.items():
        args = {
            k: v[:0] if v.dim() >= 3 and k not in ("R_q", "R_k", "R_v", "W_y", "W_q", "W_k", "w_b") else v
            for k, v in make().items()
        }
        out, _ = fn(**args)
        assert out.shape[0] == 0 and torch.isfinite(out).all(), op
