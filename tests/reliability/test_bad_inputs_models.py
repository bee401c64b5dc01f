"""Bad inputs to the language models, their training helpers and the few-shot learners."""

from __future__ import annotations

import torch

from adaptmem.models import (
    Conv4,
    FastWeightLM,
    ResNet12,
    TokenStreams,
    TransformerLM,
    accuracy_by_shot,
    build_fewshot_learner,
    build_lm,
    episode_loss,
    evaluate,
    evaluate_episodes,
    generate,
    lm_loss,
    match_d_ff,
    occurrence_index,
    train_step,
)
from tests.reliability.probes import Probe, params

LONG = torch.long
LM_ARGS = {"vocab_size": 10, "d_model": 16, "num_heads": 2, "num_layers": 1}


def lm_probes():
    probes = [
        Probe(f"FastWeightLM({a}={v!r})", (lambda a=a, v=v: FastWeightLM(**{**LM_ARGS, a: v})), a)
        for a, v in [
            ("vocab_size", 0),
            ("kind", "x"),
            ("num_layers", 0),
            ("d_model", 0),
            ("dropout", 2.0),
            ("tie_weights", "y"),
            ("d_ff", 0),
        ]
    ]
    probes += [
        Probe(f"TransformerLM({a}={v!r})", (lambda a=a, v=v: TransformerLM(**{**LM_ARGS, a: v})), a)
        for a, v in [
            ("vocab_size", 0),
            ("num_heads", 3),
            ("max_len", 0),
            ("dropout", -1.0),
            ("d_ff", 0),
            ("tie_weights", 1),
        ]
    ]
    probes.append(Probe("build_lm kind=x", lambda: build_lm("x", 10), "kind"))
    torch.manual_seed(0)
    models = {"FastWeightLM": FastWeightLM(**LM_ARGS), "TransformerLM": TransformerLM(**LM_ARGS, max_len=8)}
    idx = torch.zeros(2, 5, dtype=LONG)
    for n, m in models.items():
        bad = {
            "float": idx.float(),
            "out of range": idx + 10,
            "negative": idx - 1,
            "rank 1": idx[0],
            "rank 3": idx[..., None],
            "meta": idx.to("meta"),
            "T=0": idx[:, :0],
            "list": [[1, 2]],
        }
        probes += [Probe(f"{n} idx={k}", (lambda m=m, v=v: m(v)), "idx") for k, v in bad.items()]
        probes += [
            Probe(f"{n} reset=float", (lambda m=m: m(idx, None, torch.zeros(2, 5))), "reset"),
            Probe(f"{n} state=list of ints", (lambda m=m: m(idx, [1, 2])), "state"),
            Probe(f"{n}.init_state(-1)", (lambda m=m: m.init_state(-1)), "batch_size"),
        ]
    lm = models["FastWeightLM"]
    toks = torch.randint(0, 10, (200,), generator=torch.Generator().manual_seed(0))
    ts = {"tokens": toks, "batch_size": 2, "seq_len": 8}
    probes += [
        Probe(f"TokenStreams({a}={n})", (lambda a=a, v=v: TokenStreams(**{**ts, a: v})), a)
        for a, n, v in [
            ("batch_size", "0", 0),
            ("seq_len", "0", 0),
            ("reset_every", "0", 0),
            ("reset_every", "-1", -1),
            ("reset_every", "not a multiple", 12),
            ("world_size", "0", 0),
            ("tokens", "float", torch.zeros(50)),
            ("tokens", "2-D", toks.view(2, 100)),
            ("batch_size", "too many", 1000),
            ("seed", "float", 1.5),
        ]
    ]
    probes.append(Probe("TokenStreams(rank=2, world_size=2)", lambda: TokenStreams(**ts, rank=2, world_size=2), "rank"))
    streams = TokenStreams(**ts)
    probes += [Probe(f"TokenStreams.batch(step={s!r})", (lambda s=s: streams.batch(s)), "step") for s in (-1, 1.5)]
    logits = torch.zeros(2, 5, 10)
    probes += [
        Probe("lm_loss targets=shape", lambda: lm_loss(logits, torch.zeros(2, 4, dtype=LONG)), "targets"),
        Probe("lm_loss targets=float", lambda: lm_loss(logits, torch.zeros(2, 5)), "targets"),
        Probe("lm_loss targets=out of range", lambda: lm_loss(logits, torch.full((2, 5), 11)), "targets"),
        Probe("lm_loss logits=int", lambda: lm_loss(logits.long(), torch.zeros(2, 5, dtype=LONG)), "logits"),
    ]
    one = torch.tensor([1])
    probes += [
        Probe(f"generate {a}={v!r}", (lambda a=a, v=v: generate(lm, one, **{"max_new_tokens": 2, a: v})), a)
        for a, v in [("max_new_tokens", -1), ("temperature", float("nan")), ("temperature", -1.0), ("top_k", 0)]
    ]
    probes += [
        Probe(f"generate prompt={k}", (lambda v=v: generate(lm, v, 2)), "prompt|idx")
        for k, v in {
            "empty": torch.tensor([], dtype=LONG),
            "float": torch.tensor([1.0]),
            "out of range": torch.tensor([12]),
            "list": [1],
        }.items()
    ]
    ev = {"batch_size": 2, "seq_len": 4}
    probes += [
        Probe(f"evaluate {a}={v!r}", (lambda a=a, v=v: evaluate(lm, toks, **{**ev, a: v})), a)
        for a, v in [("batch_size", 0), ("seq_len", 0), ("max_tokens", 0), ("world_size", 0)]
    ]
    opt = torch.optim.SGD(lm.parameters(), lr=0.0)
    probes += [
        Probe("train_step grad_clip=-1", lambda: train_step(lm, idx, idx, None, opt, grad_clip=-1.0), "grad_clip"),
        Probe("train_step y=shape", lambda: train_step(lm, idx, idx[:, :4], None, opt), "targets"),
        Probe("train_step amp_dtype=x", lambda: train_step(lm, idx, idx, None, opt, amp_dtype="x"), "amp_dtype"),
        Probe("match_d_ff target=0", lambda: match_d_ff(0, lambda f: FastWeightLM(**LM_ARGS, d_ff=f)), "target"),
        Probe(
            "match_d_ff multiple=0",
            lambda: match_d_ff(100, lambda f: FastWeightLM(**LM_ARGS, d_ff=f), multiple=0),
            "multiple",
        ),
        Probe("match_d_ff build=None", lambda: match_d_ff(100, None), "build"),
    ]
    return probes


def fewshot_probes():
    probes = [
        Probe(f"Conv4({a}={v!r})", (lambda a=a, v=v: Conv4(**{a: v})), a)
        for a, v in [("in_channels", 0), ("channels", 0), ("dropout", 2.0)]
    ]
    probes += [
        Probe(f"ResNet12({a}={v!r})", (lambda a=a, v=v: ResNet12(**{a: v})), a)
        for a, v in [("in_channels", 0), ("channels", (64,)), ("channels", (0, 1, 2, 3)), ("channels", "abcd")]
    ]
    args = {
        "model": "srwm",
        "num_classes": 5,
        "in_channels": 1,
        "image_size": 28,
        "d_model": 16,
        "num_heads": 2,
        "num_layers": 1,
        "conv_channels": 4,
    }
    probes += [
        Probe(f"build_fewshot_learner({a}={v!r})", (lambda a=a, v=v: build_fewshot_learner(**{**args, a: v})), a)
        for a, v in [
            ("model", "x"),
            ("num_classes", 0),
            ("num_layers", 0),
            ("backbone", "x"),
            ("image_size", 0),
            ("in_channels", 0),
            ("conv_channels", 0),
            ("vision_dropout", 2.0),
        ]
    ]
    torch.manual_seed(0)
    net = build_fewshot_learner(**args)
    sx, sy, qx = torch.zeros(2, 5, 1, 28, 28), torch.zeros(2, 5, dtype=LONG), torch.zeros(2, 1, 1, 28, 28)
    probes += [
        Probe(f"few-shot forward {k}", v, n)
        for k, v, n in [
            ("support_y out of range", lambda: net(sx, sy + 5, qx), "labels"),
            ("support_y negative", lambda: net(sx, sy - 1, qx), "labels"),
            ("support_y float", lambda: net(sx, sy.float(), qx), "labels"),
            ("support_y shape", lambda: net(sx, sy[:, :4], qx), "labels"),
            ("support_x rank", lambda: net(sx[0], sy, qx), "images"),
            ("support_x meta", lambda: net(sx.to("meta"), sy, qx), "images"),
            (
                "support_x channels",
                lambda: net(torch.zeros(2, 5, 3, 28, 28), sy, torch.zeros(2, 1, 3, 28, 28)),
                "channels",
            ),
            ("query_x size", lambda: net(sx, sy, torch.zeros(2, 1, 1, 14, 14)), "query_x"),
            ("query_x batch", lambda: net(sx, sy, torch.zeros(3, 1, 1, 28, 28)), "query_x"),
            ("delayed y shape", lambda: net.forward_delayed(sx, sy[:, :3]), "labels"),
        ]
    ]
    probes += [
        Probe("occurrence_index y=float", lambda: occurrence_index(torch.zeros(2, 3)), r"\by\b"),
        Probe("occurrence_index y=rank 1", lambda: occurrence_index(torch.zeros(3, dtype=LONG)), r"\by\b"),
        Probe(
            "accuracy_by_shot max_shot=-1",
            lambda: accuracy_by_shot(torch.zeros(2, 3, 5), torch.zeros(2, 3, dtype=LONG), -1),
            "max_shot",
        ),
        Probe(
            "accuracy_by_shot y=shape",
            lambda: accuracy_by_shot(torch.zeros(2, 3, 5), torch.zeros(2, 4, dtype=LONG), 2),
            "logits",
        ),
        Probe("episode_loss protocol=x", lambda: episode_loss(net, None, "x"), "protocol"),
        Probe("evaluate_episodes protocol=x", lambda: evaluate_episodes(net, [], "x"), "protocol"),
        Probe("evaluate_episodes loader=empty", lambda: evaluate_episodes(net, [], "sync"), "loader|episodes"),
    ]
    return probes


@params(lm_probes())
def test_bad_language_model_inputs_are_refused(probe):
    probe.check()


@params(fewshot_probes())
def test_bad_few_shot_inputs_are_refused(probe):
    probe.check()
