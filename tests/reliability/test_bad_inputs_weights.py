"""Bad inputs to the weight-space tools: specs, functional RNNs, symmetries, encoders, emulator, zoo."""

from __future__ import annotations

import numpy as np
import torch

from adaptmem.weights import (
    BatchedRNN,
    DownstreamProbe,
    EmulationConfig,
    Emulator,
    WeightSpec,
    build_encoder,
    canonicalize,
    downstream_targets,
    emulation_loss,
    encode,
    flatten,
    flip_sign,
    functional_rnn,
    load_into,
    merge_biases,
    pca,
    permute_hidden,
    plot_pca,
    random_permutations,
    shift_biases,
    unflatten,
)
from adaptmem.weights.encoders import ENCODERS
from adaptmem.weights.zoo import ZooConfig, ZooDataset, generate_zoo, geometric_checkpoints, split_runs, train_unit
from tests.reliability.probes import Probe, params

SPEC = WeightSpec("lstm", 3, 4, output_size=2)
V = SPEC.init_vectors(5, torch.Generator().manual_seed(0))
X = torch.randn(5, 7, 3, generator=torch.Generator().manual_seed(1))
PERM = torch.arange(4).repeat(5, 1)
GRU = WeightSpec("gru", 3, 8)
TINY_ZOO = dict(num_runs=4, group_size=4, steps=2, checkpoints=2)


def spec_probes():
    base = {"cell": "lstm", "input_size": 3, "hidden_size": 4}
    probes = [
        Probe(f"WeightSpec({a}={v!r})", (lambda a=a, v=v: WeightSpec(**{**base, a: v})), a)
        for a, v in [
            ("cell", "transformer"),
            ("input_size", 0),
            ("hidden_size", 0),
            ("num_layers", 0),
            ("output_size", 0),
            ("output_size", True),
            ("bias", "y"),
            ("input_size", 2.5),
        ]
    ]
    probes += [
        Probe("WeightSpec.entry name=x", lambda: SPEC.entry("x"), "no tensor named 'x'"),
        Probe("WeightSpec.gate_slice gate=x", lambda: SPEC.gate_slice("x"), "gate"),
        Probe("WeightSpec.layer_input_size layer=5", lambda: SPEC.layer_input_size(5), "layer"),
        Probe("WeightSpec.init_vectors n=-1", lambda: SPEC.init_vectors(-1), r"\bn\b"),
        Probe("WeightSpec.init_vectors dtype=long", lambda: SPEC.init_vectors(2, dtype=torch.long), "dtype"),
        Probe("WeightSpec.from_dict d={}", lambda: WeightSpec.from_dict({}), r"\bd\b"),
        Probe("WeightSpec.from_dict d=5", lambda: WeightSpec.from_dict(5), r"\bd\b"),
        Probe("unflatten vectors=size", lambda: unflatten(V[:, :-1], SPEC), "vectors"),
        Probe("unflatten spec=None", lambda: unflatten(V, None), "spec"),
        Probe("flatten module=5", lambda: flatten(5), "module"),
        Probe("load_into vector=size", lambda: load_into(V[0, :-1], SPEC.build()), "vector"),
        Probe("load_into vector=rank 2", lambda: load_into(V, SPEC.build()), "vector"),
    ]
    return probes


def rnn_probes():
    probes = [
        Probe(f"functional_rnn vectors={k}", (lambda v=v: functional_rnn(SPEC, v, X)), "vectors")
        for k, v in {"size": V[:, :-1], "int": V.long(), "meta": V.to("meta"), "rank 3": V[None]}.items()
    ]
    probes += [
        Probe(f"functional_rnn inputs={k}", (lambda v=v: functional_rnn(SPEC, V, v)), "inputs")
        for k, v in {
            "width": X[..., :2],
            "rank 2": X[0],
            "int": X.long(),
            "meta": X.to("meta"),
            "batch": X[:3],
            "T=0": X[:, :0],
        }.items()
    ]
    probes += [
        Probe("functional_rnn backend=x", lambda: functional_rnn(SPEC, V, X, backend="x"), "backend"),
        Probe("functional_rnn spec=None", lambda: functional_rnn(None, V, X), "spec"),
        Probe(
            "functional_rnn state=one tensor", lambda: functional_rnn(SPEC, V, X, state=(torch.zeros(5, 3),)), "state"
        ),
        Probe("functional_rnn state=5", lambda: functional_rnn(SPEC, V, X, state=5), "state"),
        Probe(
            "functional_rnn state=meta",
            lambda: functional_rnn(SPEC, V, X, state=tuple(torch.zeros(1, 5, 1, 4).to("meta") for _ in range(2))),
            "state",
        ),
        # backend="numba" where it cannot run (the kernel needs hidden_size % 8 == 0; GRUs have none)
        Probe(
            "functional_rnn backend=numba hidden_size=4",
            lambda: functional_rnn(SPEC, V, X, backend="numba"),
            "backend='numba'.*hidden_size 4",
        ),
        Probe(
            "BatchedRNN backend=numba cell=gru",
            lambda: BatchedRNN(GRU, GRU.init_vectors(2), backend="numba"),
            "backend='numba'.*cell 'gru'",
        ),
        Probe("BatchedRNN backend=reference", lambda: BatchedRNN(SPEC, V, backend="reference"), "backend"),
        Probe("BatchedRNN vectors=size", lambda: BatchedRNN(SPEC, V[:, :-1]), "vectors"),
        Probe("BatchedRNN.step x=width", lambda: BatchedRNN(SPEC, V).step(torch.randn(5, 1, 2)), r"\bx\b"),
        Probe("BatchedRNN.initial_state batch=-1", lambda: BatchedRNN(SPEC, V).initial_state(-1, V), "batch"),
    ]
    return probes


def symmetry_probes():
    return [
        Probe(
            "permute_hidden perm=not a permutation",
            lambda: permute_hidden(V, SPEC, [torch.zeros(5, 4, dtype=torch.long)]),
            "perm",
        ),
        Probe("permute_hidden perm=size", lambda: permute_hidden(V, SPEC, [torch.arange(3).repeat(5, 1)]), "perm"),
        Probe("permute_hidden perm=float", lambda: permute_hidden(V, SPEC, [PERM.float()]), "perm"),
        Probe("permute_hidden layer with a list", lambda: permute_hidden(V, SPEC, [PERM], layer=3), "layer"),
        Probe("permute_hidden layer=3", lambda: permute_hidden(V, SPEC, PERM, layer=3), "layer"),
        Probe("flip_sign units=float", lambda: flip_sign(V, SPEC, [torch.ones(5, 3)]), "units"),
        Probe("random_permutations n=-1", lambda: random_permutations(SPEC, -1), r"\bn\b"),
        Probe("shift_biases delta=size", lambda: shift_biases(V, SPEC, torch.zeros(5, 3)), "delta"),
        Probe("shift_biases delta=too many", lambda: shift_biases(V, SPEC, [torch.zeros(5, 16)] * 2), "delta"),
        Probe("merge_biases vectors=size", lambda: merge_biases(V[:, :-1], SPEC), "vectors"),
        Probe("canonicalize vectors=size", lambda: canonicalize(V[:, :-1], SPEC), "vectors"),
        Probe("canonicalize spec=None", lambda: canonicalize(V, None), "spec"),
    ]


def encoder_probes():
    probes = [
        Probe(f"build_encoder({n}, z_dim=0)", (lambda n=n: build_encoder(n, SPEC, z_dim=0)), "z_dim") for n in ENCODERS
    ]
    probes += [
        Probe("build_encoder name=x", lambda: build_encoder("x", SPEC), "name|encoder"),
        Probe("build_encoder spec=None", lambda: build_encoder("flat", None), "spec"),
    ]
    torch.manual_seed(0)
    for n in ENCODERS:
        enc = build_encoder(n, SPEC, z_dim=4)
        probes += [
            Probe(f"{n} encoder vectors={k}", (lambda enc=enc, v=v: enc(v)), "vectors")
            for k, v in {"size": V[:, :-1], "int": V.long(), "rank 1": V[0], "meta": V.to("meta")}.items()
        ]
    flat = build_encoder("flat", SPEC, z_dim=4)
    probes += [
        Probe("encode data=5", lambda: encode(flat, 5), "data"),
        Probe("encode batch_size=0", lambda: encode(flat, V, batch_size=0), "batch_size"),
    ]
    return probes


def emulation_probes():
    probes = [
        Probe(f"Emulator({a}=0)", (lambda a=a: Emulator(**{"in_features": 3, "out_features": 2, a: 0})), a)
        for a in ("in_features", "out_features", "z_dim", "hidden", "num_layers")
    ]
    emu = Emulator(3, 2, 4)
    probes += [
        Probe("Emulator inputs=width", lambda: emu(torch.randn(5, 7, 2), torch.randn(5, 4)), "inputs"),
        Probe("Emulator z=width", lambda: emu(torch.randn(5, 7, 3), torch.randn(5, 3)), r"\bz\b"),
        Probe("Emulator z=batch", lambda: emu(torch.randn(5, 7, 3), torch.randn(4, 4)), r"\bz\b"),
        Probe(
            "emulation_loss kind=x",
            lambda: emulation_loss(torch.zeros(2, 3, 4), torch.zeros(2, 3, 4), kind="x"),
            "kind",
        ),
        Probe(
            "emulation_loss shapes",
            lambda: emulation_loss(torch.zeros(2, 3, 4), torch.zeros(2, 3, 5)),
            "target_log_probs",
        ),
        Probe(
            "emulation_loss reduction=x",
            lambda: emulation_loss(torch.zeros(2, 3, 4), torch.zeros(2, 3, 4), reduction="x"),
            "reduction",
        ),
    ]
    probes += [
        Probe(f"EmulationConfig({a}={v!r})", (lambda a=a, v=v: EmulationConfig(**{a: v})), a)
        for a, v in [
            ("steps", 0),
            ("batch_size", 0),
            ("lr", -1.0),
            ("lr", 0.0),
            ("loss", "x"),
            ("eval_every", 0),
            ("save_every", 0),
            ("clip", -1.0),
            ("eval_rollouts", 0),
            ("augment", "y"),
            ("seed", 1.5),
        ]
    ]
    base = {"z_dim": 4, "num_targets": 1, "kind": "regression"}
    probes += [
        Probe(f"DownstreamProbe({a}={v!r})", (lambda a=a, v=v: DownstreamProbe(**{**base, a: v})), a)
        for a, v in [("z_dim", 0), ("num_targets", 0), ("kind", "x"), ("num_classes", 0), ("hidden", 0)]
    ]
    dp = DownstreamProbe(4, 1, "regression")
    probes += [
        Probe("DownstreamProbe z=width", lambda: dp(torch.randn(5, 3)), r"\bz\b"),
        Probe("downstream_targets kind=x", lambda: downstream_targets("x", {}), "kind"),
        Probe("downstream_targets labels=missing", lambda: downstream_targets("formal_language", {}), "labels"),
        Probe("pca k=0", lambda: pca(torch.randn(10, 3), 0), r"\bk\b"),
        Probe("pca k > d", lambda: pca(torch.randn(10, 3), 5), r"\bk\b"),
        Probe("pca z=rank 1", lambda: pca(torch.randn(10), 1), r"\bz\b"),
        Probe("pca z=int", lambda: pca(torch.ones(10, 3, dtype=torch.long), 1), r"\bz\b"),
        Probe("pca z=one row", lambda: pca(torch.randn(1, 3), 1), r"\bz\b"),
        Probe("pca z=NaN", lambda: pca(torch.full((10, 3), float("nan")), 1), r"\bz\b"),
        Probe(
            "plot_pca colours=rows", lambda: plot_pca({"a": (torch.randn(5, 3), np.zeros(4))}, "unused.png"), "points"
        ),
    ]
    return probes


def zoo_probes(tmp):
    probes = [
        Probe(f"ZooConfig({a}={v!r})", (lambda a=a, v=v: ZooConfig(**{a: v})), a)
        for a, v in [
            ("kind", "x"),
            ("num_runs", 0),
            ("steps", 0),
            ("checkpoints", 1),
            ("group_size", 0),
            ("batch_size", 0),
            ("lr", -1.0),
            ("hidden_size", 0),
            ("rollouts", 0),
            ("max_n", 0),
            ("save_every", 0),
            ("weight_decays", ()),
            ("weight_decays", (float("nan"),)),
            ("mnist_split", "x"),
            ("weight_decay", -1.0),
        ]
    ]
    probes += [
        Probe("geometric_checkpoints last=0", lambda: geometric_checkpoints(0), "last"),
        Probe("geometric_checkpoints last=-5", lambda: geometric_checkpoints(-5), "last"),
        Probe("geometric_checkpoints count=1", lambda: geometric_checkpoints(10, 1), "count"),
        Probe("split_runs kind=x", lambda: split_runs("x", {"angle": np.zeros(3)}), "kind"),
        Probe("split_runs run_arrays=missing", lambda: split_runs("smnist", {}), "run_arrays"),
        Probe(
            "split_runs valid_frac=0.9",
            lambda: split_runs("smnist", {"angle": np.zeros(3)}, valid_frac=0.9),
            "valid_frac",
        ),
        Probe("ZooDataset split=x", lambda: ZooDataset(tmp, "x"), "split"),
        Probe("ZooDataset root=empty", lambda: ZooDataset(tmp), "meta.json", (FileNotFoundError,)),
        Probe("train_unit unit=-1", lambda: train_unit(ZooConfig(**TINY_ZOO), -1, tmp / "z1"), "unit"),
        Probe("train_unit unit=5", lambda: train_unit(ZooConfig(**TINY_ZOO), 5, tmp / "z2"), "unit"),
        Probe("train_unit cfg=None", lambda: train_unit(None, 0, tmp / "z3"), "cfg"),
        Probe("generate_zoo cfg=None", lambda: generate_zoo(tmp / "z4", None), "cfg"),
        Probe(
            "generate_zoo workers=1.5", lambda: generate_zoo(tmp / "z5", ZooConfig(**TINY_ZOO), workers=1.5), "workers"
        ),
    ]
    return probes


@params(spec_probes() + rnn_probes() + symmetry_probes() + encoder_probes() + emulation_probes())
def test_bad_weight_space_inputs_are_refused(probe):
    probe.check()


def test_bad_zoo_inputs_are_refused(tmp_path):
    for probe in zoo_probes(tmp_path):
        probe.check()
