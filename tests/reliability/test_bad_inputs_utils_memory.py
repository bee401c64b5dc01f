"""Bad inputs to the utilities and to the episodic memory (file formats: test_file_integrity.py)."""

from __future__ import annotations

import argparse

import pytest
import torch

from adaptmem.memory import EpisodicMemory, MbPA, NeuralCache, mix_log_probs
from adaptmem.utils import (
    MetricLogger,
    atomic_write,
    atomic_write_text,
    configure_threads,
    count_parameters,
    given_flags,
    load_checkpoint,
    markdown_table,
    resolve_resume_args,
    save_checkpoint,
    save_verified,
    seed_everything,
    set_rng_state,
)
from tests.reliability.probes import Probe, params

LINEAR = torch.nn.Linear(2, 2)
LONG = torch.long
OTHER_BRANCH = pytest.mark.xfail(strict=False, reason="asked for; mbpa-fast keeps MbPA(kernel_eps=0) as valid input")


def utils_probes(tmp):
    (tmp / "file").write_text("x")
    (tmp / "dir").mkdir()
    log = MetricLogger(tmp / "log", tensorboard=False)
    return [
        Probe("MetricLogger log_dir=file", lambda: MetricLogger(tmp / "file", tensorboard=False), "log_dir"),
        Probe(
            "MetricLogger resume_step=-1",
            lambda: MetricLogger(tmp / "l", tensorboard=False, resume_step=-1),
            "resume_step",
        ),
        Probe(
            "MetricLogger resume_step=1.5",
            lambda: MetricLogger(tmp / "l", tensorboard=False, resume_step=1.5),
            "resume_step",
        ),
        Probe("MetricLogger.log step=str", lambda: log.log("train", "a", loss=1.0), "step"),
        Probe("MetricLogger.log stream=../x", lambda: log.log("../x", 1, loss=1.0), "stream"),
        Probe("MetricLogger.log stream=''", lambda: log.log("", 1, loss=1.0), "stream"),
        Probe("MetricLogger.log metric=str", lambda: log.log("train", 1, loss="a"), "loss"),
        Probe("MetricLogger.log metric=2 values", lambda: log.log("train", 1, loss=torch.ones(2)), "loss"),
        Probe("atomic_write write_fn=None", lambda: atomic_write(tmp / "a", None), "write_fn"),
        Probe("atomic_write path=dir", lambda: atomic_write(tmp / "dir", lambda f: f.write(b"x")), "dir"),
        Probe("atomic_write_text text=bytes", lambda: atomic_write_text(tmp / "t", b"x"), "text"),
        Probe("count_parameters module=5", lambda: count_parameters(5), "module"),
        Probe("markdown_table ragged rows", lambda: markdown_table(["a", "b"], [[1]]), "rows"),
        Probe("markdown_table header=str", lambda: markdown_table("ab", [[1, 2]]), "header"),
        Probe("seed_everything seed=str", lambda: seed_everything("a"), "seed"),
        Probe("seed_everything seed=1.5", lambda: seed_everything(1.5), "seed"),
        Probe("set_rng_state state={}", lambda: set_rng_state({}), "state"),
        Probe("set_rng_state state=5", lambda: set_rng_state(5), "state"),
        *(
            Probe(f"configure_threads threads={n!r}", (lambda n=n: configure_threads(n, verbose=False)), "threads")
            for n in (0, -2, "a")
        ),
        Probe("save_checkpoint model=None", lambda: save_checkpoint(tmp / "c.pt", model=None), "model"),
        Probe("save_checkpoint step=-1", lambda: save_checkpoint(tmp / "c.pt", model=LINEAR, step=-1), "step"),
        Probe(
            "save_checkpoint optimizer=5", lambda: save_checkpoint(tmp / "c.pt", model=LINEAR, optimizer=5), "optimizer"
        ),
        Probe("load_checkpoint model=None", lambda: load_checkpoint(tmp / "c.pt", model=None), "model"),
        Probe("save_verified format=5", lambda: save_verified({}, tmp / "v", format=5), "format"),
        Probe("save_verified version='1'", lambda: save_verified({}, tmp / "v", format="x", version="1"), "version"),
        Probe("resolve_resume_args saved=None", lambda: resolve_resume_args(None, {}, mutable=(), fixed=()), "saved"),
        Probe("given_flags parser=None", lambda: given_flags(None, []), "parser"),
        Probe("given_flags argv unknown type", lambda: given_flags(argparse.ArgumentParser(), 5), "argv|int"),
    ]


def memory_probes():
    mem = EpisodicMemory(4, 10, backend="torch")
    full = EpisodicMemory(4, 10, backend="torch")
    full.write(torch.randn(5, 4), torch.zeros(5, dtype=LONG))
    k1, v1 = torch.ones(2, 4), torch.zeros(2, dtype=LONG)
    ctor = [
        ("key_dim", 0),
        ("capacity", -1),
        ("value_shape", (-1,)),
        ("value_shape", "ab"),
        ("value_shape", (2.5,)),
        ("value_dtype", "long"),
        ("metric", "cos"),
        ("backend", "x"),
        ("device", "nope"),
        ("device", "meta"),
        ("nlist", 0),
        ("nprobe", 0),
        ("index", "annoy"),
        ("pq_m", 0),
        ("pq_m", 3),
        ("hnsw_m", 0),
        ("k_factor", 0),
        ("threads", 0),
    ]
    probes = [
        Probe(
            f"EpisodicMemory({a}={v!r})", (lambda a=a, v=v: EpisodicMemory(**{"key_dim": 4, "capacity": 10, a: v})), a
        )
        for a, v in ctor
    ]
    probes += [
        Probe("write keys=int", lambda: mem.write(k1.long(), v1), "keys"),
        Probe("write keys=NaN", lambda: mem.write(torch.full((2, 4), float("nan")), v1), "keys"),
        Probe("write keys=meta", lambda: mem.write(k1.to("meta"), v1), "keys"),
        Probe("write keys=width", lambda: mem.write(k1[:, :3], v1), "keys"),
        Probe("write keys=list", lambda: mem.write(k1.tolist(), v1), "keys"),
        Probe("write keys=empty", lambda: mem.write(k1[:0], v1[:0]), "keys"),
        Probe("write values=meta", lambda: mem.write(k1, v1.to("meta")), "values"),
        Probe("write values=rows", lambda: mem.write(k1, torch.zeros(3, dtype=LONG)), "values"),
        Probe("write values=float", lambda: mem.write(k1, v1.float()), "values"),
        Probe("search k=0", lambda: full.search(k1, 0), r"\bk\b"),
        Probe("search k=1.5", lambda: full.search(k1, 1.5), r"\bk\b"),
        Probe("search k>len", lambda: full.search(k1, 6), r"\bk\b"),
        Probe("search empty memory", lambda: mem.search(k1, 1), "empty"),
        Probe("search queries=NaN", lambda: full.search(torch.full((1, 4), float("nan")), 1), "queries"),
        Probe("search queries=meta", lambda: full.search(k1.to("meta"), 1), "queries"),
        Probe("search queries=int", lambda: full.search(k1.long(), 1), "queries"),
        Probe("fetch slots=int32", lambda: full.fetch(torch.zeros(1, dtype=torch.int32)), "slots"),
        Probe("fetch slots=out of range", lambda: full.fetch(torch.tensor([7])), "slots"),
        Probe("fetch slots=list", lambda: full.fetch([0]), "slots"),
        Probe("fetch slots=meta", lambda: full.fetch(torch.zeros(1, dtype=LONG).to("meta")), "slots"),
        Probe(
            "EpisodicMemory.load_state_dict state={}", lambda: EpisodicMemory(4, 10).load_state_dict({}), "state|config"
        ),
        Probe(
            "EpisodicMemory.load_state_dict total=-3",
            lambda: mem.load_state_dict({**full.state_dict(), "total": -3}),
            "total",
        ),
        Probe(
            "EpisodicMemory.load_state_dict keys=NaN",
            lambda: mem.load_state_dict({**full.state_dict(), "keys": torch.full((5, 4), float("nan"))}),
            "keys",
        ),
        Probe(
            "mix_log_probs lambda_cache=NaN",
            lambda: mix_log_probs(torch.zeros(2, 3), log_p_cache=torch.zeros(2, 3), lambda_cache=float("nan")),
            "lambda_cache",
        ),
        Probe(
            "mix_log_probs lambda_cache=1.5",
            lambda: mix_log_probs(torch.zeros(2, 3), log_p_cache=torch.zeros(2, 3), lambda_cache=1.5),
            "lambda_cache",
        ),
        Probe(
            "mix_log_probs log_p_cache=shape",
            lambda: mix_log_probs(torch.zeros(2, 3), log_p_cache=torch.zeros(2, 4), lambda_cache=0.5),
            "log_p_cache",
        ),
        Probe(
            "mix_log_probs log_p_cache=None", lambda: mix_log_probs(torch.zeros(2, 3), lambda_cache=0.5), "log_p_cache"
        ),
    ]
    head = torch.nn.Linear(4, 3)
    probes += [
        Probe(f"MbPA({a}={v!r})", (lambda a=a, v=v: MbPA(head, full, **{a: v})), a)
        for a, v in [("k", 0), ("steps", -1), ("lr", float("nan")), ("l2", -1.0), ("chunk_size", 0), ("mode", "x")]
    ]
    mbpa = MbPA(head, full, k=2)
    probes += [
        Probe(f"MbPA h={n}", (lambda h=h: mbpa(h)), r"\bh\b")
        for n, h in [("int", torch.ones(1, 4, dtype=LONG)), ("width", torch.ones(1, 5))]
    ]
    probes += [
        Probe(f"NeuralCache({a}={v!r})", (lambda a=a, v=v: NeuralCache(**{"key_dim": 4, "vocab_size": 10, a: v})), a)
        for a, v in [("key_dim", 0), ("vocab_size", 0), ("size", 0), ("lambda_", 1.5), ("num_streams", 0)]
    ]
    cache = NeuralCache(4, 10)
    probes += [
        Probe("NeuralCache.write h=width", lambda: cache.write(torch.ones(1, 5), torch.tensor([1])), r"\bh\b"),
        Probe("NeuralCache.write tokens=float", lambda: cache.write(torch.ones(1, 4), torch.tensor([1.0])), "tokens"),
        Probe("NeuralCache.log_probs h=width", lambda: cache.log_probs(torch.ones(1, 5)), r"\bh\b"),
        Probe(
            "NeuralCache.mix log_p_model=shape", lambda: cache.mix(torch.zeros(1, 9), torch.ones(1, 4)), "log_p_model"
        ),
        Probe("MbPA(head=None)", lambda: MbPA(None, EpisodicMemory(4, 10)), "head"),
        Probe("NeuralCache(theta=NaN)", lambda: NeuralCache(4, 10, theta=float("nan")), "theta"),
        Probe(
            "NeuralCache.write tokens out of range",
            lambda: NeuralCache(4, 10).write(torch.ones(1, 4), torch.tensor([10])),
            "tokens",
        ),
        Probe(
            "MbPA h=NaN",
            lambda: MbPA(torch.nn.Linear(4, 3), _filled(), k=2)(torch.full((1, 4), float("nan"))),
            r"\bh\b",
        ),
        Probe(
            "MbPA h=meta", lambda: MbPA(torch.nn.Linear(4, 3), _filled(), k=2)(torch.ones(1, 4).to("meta")), r"\bh\b"
        ),
    ]
    return probes


def _filled():
    mem = EpisodicMemory(4, 10, backend="torch")
    mem.write(torch.randn(5, 4), torch.zeros(5, dtype=LONG))
    return mem


# MbPA(kernel_eps=0) was asked to be refused; mbpa-fast keeps it as valid input (an exact copy
# of the query then takes all the weight; tests/memory/test_mbpa.py). The probe records the ask.
ELSEWHERE = [
    Probe(
        "MbPA(kernel_eps=0)", lambda: MbPA(torch.nn.Linear(4, 3), EpisodicMemory(4, 10), kernel_eps=0.0), "kernel_eps"
    ),
]


def test_bad_utility_inputs_are_refused_with_a_message_naming_them(tmp):
    for probe in utils_probes(tmp):
        probe.check()


@params(memory_probes())
def test_bad_memory_inputs_are_refused_with_a_message_naming_them(probe):
    probe.check()


@OTHER_BRANCH
@params(ELSEWHERE)
def test_entry_checks_done_on_other_branches(probe):
    probe.check()
