"""Character/word language modelling with fast-weight models (SRWM, DeltaNet, ...) and a
softmax-Transformer baseline, trained by truncated BPTT over long token streams.

    python examples/srwm_lm.py                                  # SRWM on Tiny Shakespeare (chars)
    python examples/srwm_lm.py --kind deltanet --resume         # continue an interrupted run
    python examples/srwm_lm.py --action sample --prompt "ROMEO:"
    python examples/srwm_lm.py --action compare --time-budget 10  # equal params and wall time
    python examples/srwm_lm.py --action export                  # the checkpoint as a Hugging Face model
    torchrun --nproc_per_node 2 examples/srwm_lm.py             # data parallel (gloo on CPU)

The fast-weight state is carried from segment to segment (detached at the boundary), so the
model reads each training stream from its start; evaluation carries it through whole streams.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from adaptmem.utils import cli, default_data_root
from adaptmem.utils.logging import WANDB_HELP


@dataclass
class Config:
    action: str = "train"  # train | sample | compare | export
    # data
    data: str = str(default_data_root())  # the data folder
    corpus: str = "tinyshakespeare"  # a folder under --data, a file or folder, or a datasets name
    download: bool = False  # fetch a missing tinyshakespeare into --data
    train: str | None = None
    valid: str | None = None
    test: str | None = None
    level: str = "char"
    # model
    kind: str = "srwm"
    kinds: str = "transformer,srwm,deltanet"  # compare mode
    num_layers: int = 4
    d_model: int = 128
    num_heads: int = 8
    d_ff: int | None = None
    match_params: bool = True  # size d_ff so that every kind has the Transformer's parameter count
    dropout: float = 0.0
    untied: bool = False
    max_len: int | None = None  # Transformer attention window (default: seq_len)
    reset_every: int | None = 512  # tokens; staggered state resets bound the carried context
    # optimisation
    batch_size: int = 16
    seq_len: int = 64
    max_steps: int = 2000
    time_budget: float | None = None  # minutes of training; sets max_steps from a short timing run
    clock: str = "wall"  # what time_budget counts: wall or cpu (process) time
    lr: float = 2e-3
    min_lr_ratio: float = 0.1
    warmup: int = 100
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    amp: str = "bf16"
    # evaluation, logging, checkpoints
    eval_interval: int = 250
    log_interval: int = 10
    eval_tokens: int = 32_768
    eval_batch_size: int = 16
    out: str = "runs/srwm_lm"
    resume: bool = False
    halt_after: int | None = None
    seed: int = 1337
    device: str = "auto"
    threads: int | None = None  # default: chosen from the machine (adaptmem.utils.threads)
    wandb: str | None = None  # W&B project
    export_dir: str | None = None  # export action: default <out>/<kind>/hf
    # sampling
    prompt: str = "\n"
    num_tokens: int = 500
    temperature: float = 0.8
    top_k: int | None = None

    @classmethod
    def from_saved(cls, saved: dict) -> Config:
        """The config stored in a checkpoint, also one written before the flags were renamed."""
        renamed = {"mode": "action", "out_dir": "out", "data": "corpus"}
        if "corpus" in saved:
            renamed.pop("data")
        fields = {f.name for f in dataclasses.fields(cls)}
        values = {renamed.get(k, k): v for k, v in saved.items()}
        return cls(**{k: v for k, v in values.items() if k in fields})


KIND_HELP = "transformer or a fast-weight layer kind: srwm, deltanet, linear, ... (adaptmem.models.lm.KINDS)"
HELP = {  # --help text of every flag
    "action": "train one model, sample from a trained one, compare --kinds at equal parameters and time, or export "
    "a trained one as a Hugging Face transformers model (needs the hf extra: transformers, safetensors)",
    "corpus": "corpus: a folder under --data, a text file (first 90%% train, rest valid), a PTB/WikiText "
    "folder, or a datasets name path:config",
    "download": "download a missing --corpus tinyshakespeare (1.1 MB) into --data (default: off)",
    "train": "explicit training file, PTB-style or plain text (default: none, the corpus's own split)",
    "valid": "explicit validation file (default: none)",
    "test": "explicit test file (default: none)",
    "level": "tokens: char, word or bpe",
    "kind": f"model: {KIND_HELP}",
    "kinds": "comma-separated kinds for --action compare",
    "num_layers": "blocks (sequence mixer + feed-forward)",
    "d_model": "residual width",
    "num_heads": "heads of every layer (head size d_model / num_heads)",
    "d_ff": "feed-forward width (default 4 * d_model; fast-weight models: matched, see --match-params)",
    "match_params": "fast-weight models: pick d_ff to match the Transformer's parameter count",
    "dropout": "dropout on embeddings and inside blocks",
    "untied": "separate input embedding and output layer",
    "max_len": "Transformer attention window (default seq_len)",
    "reset_every": "reset each stream's carried state every N tokens, staggered over streams (0: never)",
    "batch_size": "token streams per process",
    "seq_len": "truncated-BPTT segment length",
    "max_steps": "optimiser steps",
    "time_budget": "minutes of training per model: sets max_steps from a timing run (default: off)",
    "clock": "what --time-budget counts: wall time, or process CPU time (fair on a shared machine)",
    "lr": "peak learning rate (AdamW)",
    "min_lr_ratio": "final learning rate / peak (cosine decay)",
    "warmup": "linear warm-up steps",
    "weight_decay": "AdamW weight decay of matrices",
    "grad_clip": "gradient-norm clipping (0: off)",
    "amp": "autocast dtype on GPU: bf16, fp16 or fp32",
    "eval_interval": "steps between validation runs and checkpoints",
    "log_interval": "steps between train logs",
    "eval_tokens": "validation tokens read during training (the final score reads all)",
    "eval_batch_size": "validation streams",
    "out": "runs go to <out>/<kind>/",
    "resume": "continue from <out>/<kind>/ckpt.pt",
    "halt_after": "stop after this step, to do a run in pieces (default: off)",
    "seed": "random seed",
    "device": "auto (cuda when available), cpu or cuda:N",
    "prompt": "sample action: text to continue (default: a newline)",
    "num_tokens": "sample action: tokens to generate",
    "temperature": "sample action: softmax temperature (0: greedy)",
    "top_k": "sample action: keep the k likeliest (default: off, all tokens)",
    "wandb": WANDB_HELP,
    "export_dir": "export action: the folder to write (default <out>/<kind>/hf)",
}
# --resume: what a resumed run may change (taken, and said), and what it may not (an error).
RESUME_MUTABLE = (
    "max_steps",
    "time_budget",
    "clock",
    "eval_interval",
    "log_interval",
    "eval_tokens",
    "eval_batch_size",
)
RESUME_FIXED = (
    "corpus",
    "train",
    "valid",
    "test",
    "level",
    "num_layers",
    "d_model",
    "num_heads",
    "d_ff",
    "match_params",
    "dropout",
    "untied",
    "max_len",
    "reset_every",
    "batch_size",
    "seq_len",
    "lr",
    "min_lr_ratio",
    "warmup",
    "weight_decay",
    "grad_clip",
    "amp",
    "seed",
)
CHOICES = {
    "action": ("train", "sample", "compare", "export"),
    "level": ("char", "word", "bpe"),
    "clock": ("wall", "cpu"),
    "amp": ("bf16", "fp16", "fp32"),
}


def _names_a_corpus(data: str) -> bool:
    """Whether ``--data`` names a corpus, as it did before it meant the data folder: a file, a
    folder with the corpus files in it (not in sub-folders), or a datasets name. A folder that
    does not exist yet is a data folder (``--download`` fills it)."""
    path = Path(data).expanduser()
    if path.is_file():
        return True
    if path.is_dir():
        return not (path / Config.corpus).exists() and any(
            p.is_file() for p in (*path.glob("*.txt"), *path.glob("wiki.*"))
        )
    return ":" in data or not any(sep in data for sep in ("/", "\\", "~"))


def parse_args(argv: Sequence[str] | None = None) -> Config:
    return _finish(Config(**vars(cli.parse(build_parser(), argv))))


def build_parser() -> argparse.ArgumentParser:
    parser = cli.parser(__doc__)
    for f in dataclasses.fields(Config):
        flag = "--" + f.name.replace("_", "-")
        kind = {"int | None": int, "float | None": float, "str | None": str}.get(str(f.type), f.type)
        if f.name == "threads":
            cli.add_threads(parser)
        elif f.name == "data":
            cli.add_data(parser)
        elif kind in (bool, "bool"):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default, help=HELP[f.name])
        else:
            typ = {"int": int, "float": float, "str": str}.get(kind, kind)
            parser.add_argument(flag, type=typ, default=f.default, choices=CHOICES.get(f.name), help=HELP[f.name])
    cli.add_snake_case_aliases(parser)  # the flags' spelling before
    cli.add_aliases(parser, {"--mode": "--action", "--out_dir": "--out"})
    return parser


def _finish(cfg: Config) -> Config:
    """What parsing leaves to settle: 0 as "no resets", and --data in its old meaning (the corpus)."""
    cfg.reset_every = cfg.reset_every or None
    if cfg.corpus == Config.corpus and cfg.data != Config.data and _names_a_corpus(cfg.data):
        # --data named the corpus before: a file, a corpus folder or a datasets name
        print(f"srwm_lm.py: --data is the data folder now; reading {cfg.data} as --corpus {cfg.data}", file=sys.stderr)
        cfg.corpus, cfg.data = cfg.data, Config.data
    return cfg


if __name__ == "__main__":  # answer --help and bad flags before the heavy imports below
    CONFIG = parse_args()

import torch

from adaptmem.data.text import KNOWN_CORPORA, Vocab, known_corpus, load_corpus
from adaptmem.models.lm import KINDS, TokenStreams, build_lm, evaluate, generate, match_d_ff, train_step
from adaptmem.utils import (
    MetricLogger,
    configure_threads,
    count_parameters,
    load_checkpoint,
    progress,
    save_checkpoint,
    seed_everything,
)
from adaptmem.utils.amp import grad_scaler
from adaptmem.utils.checkpoint import read_checkpoint, resolve_resume_args
from adaptmem.utils.distributed import all_reduce_mean, barrier, cleanup_distributed, init_distributed
from adaptmem.utils.logging import plot_curves
from adaptmem.utils.schedules import warmup_cosine


def build_kwargs(cfg: Config, kind: str, vocab_size: int) -> dict:
    """The arguments of ``build_lm(kind, vocab_size, **them)`` for this run (d_ff matched if asked)."""
    sizes = dict(
        num_layers=cfg.num_layers,
        d_model=cfg.d_model,
        num_heads=cfg.num_heads,
        dropout=cfg.dropout,
        tie_weights=not cfg.untied,
        max_len=cfg.max_len or cfg.seq_len,
    )
    d_ff = cfg.d_ff
    if kind != "transformer" and cfg.match_params:
        target = count_parameters(build_lm("transformer", vocab_size, d_ff=cfg.d_ff, **sizes))
        d_ff = match_d_ff(target, lambda f: build_lm(kind, vocab_size, d_ff=f, **sizes))
    return dict(d_ff=d_ff, **sizes)


def build(cfg: Config, kind: str, vocab_size: int) -> torch.nn.Module:
    return build_lm(kind, vocab_size, **build_kwargs(cfg, kind, vocab_size))


def seconds_per_step(cfg: Config, kind: str, corpus, streams, dist, device, clock) -> float:
    """Time 10 real training steps of a throw-away copy (after 2 warm-up steps), averaged over ranks."""
    probe = build(cfg, kind, len(corpus.vocab)).to(device)
    opt = torch.optim.AdamW(probe.parameters(), lr=0.0)
    state, t0 = None, 0.0
    for i in range(12):
        x, y, reset = streams.batch(i)
        t0 = clock() if i == 2 else t0
        _, state = train_step(probe, x.to(device), y.to(device), state, opt, reset=reset)
    return all_reduce_mean(torch.tensor([(clock() - t0) / 10]), dist).item()


def resume_config(cfg: Config, extra: dict, given: dict[str, str], where: str) -> tuple[Config, list[str]]:
    """This run's settings on resume: the checkpoint's, with the changes --resume allows."""
    saved = {**dataclasses.asdict(Config.from_saved(extra["config"])), "max_steps": extra["max_steps"]}
    new, notes = resolve_resume_args(
        saved, dataclasses.asdict(cfg), mutable=RESUME_MUTABLE, fixed=RESUME_FIXED, explicit=given, where=where
    )
    return Config(**new), notes


def train(cfg: Config, kind: str, corpus, dist, device: torch.device, given: dict[str, str] | None = None) -> dict:
    """Train one ``kind``; ``given``: the flags set on the command line (what a resume may change)."""
    run_dir = Path(cfg.out) / kind
    ckpt = run_dir / "ckpt.pt"
    resumed = cfg.resume and ckpt.exists()
    if resumed:  # settings first: a changed architecture flag fails here, before anything is built
        saved = read_checkpoint(ckpt)["extra"]
        cfg, notes = resume_config(cfg, saved, given or {}, f"--resume from {ckpt}")
    seed_everything(cfg.seed + dist.rank)
    model = build(cfg, kind, len(corpus.vocab)).to(device)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr,
        betas=(0.9, 0.99),
    )
    scaler = grad_scaler(device, cfg.amp)
    net = model
    if dist.enabled:
        ids = [dist.local_rank] if device.type == "cuda" else None
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)
    streams = TokenStreams(
        corpus.train,
        cfg.batch_size,
        cfg.seq_len,
        reset_every=cfg.reset_every,
        seed=cfg.seed,
        rank=dist.rank,
        world_size=dist.world_size,
    )
    clock = time.process_time if cfg.clock == "cpu" else time.perf_counter
    max_steps, step, elapsed, wall, state = cfg.max_steps, 0, 0.0, 0.0, None
    if resumed:
        extra = load_checkpoint(ckpt, model=model, optimizer=optimizer, scaler=scaler, map_location=device)
        step, elapsed, wall = extra["step"], extra["elapsed"], extra["wall"]
        new_budget = cfg.time_budget is not None and cfg.time_budget != saved["config"].get("time_budget")
        if new_budget and cfg.max_steps == saved["max_steps"]:  # the steps a new budget buys, timed as at the start
            max_steps = max(
                cfg.warmup + 1,
                int(cfg.time_budget * 60 / seconds_per_step(cfg, kind, corpus, streams, dist, device, clock)),
            )
            notes.append(f"--max-steps: {saved['max_steps']} -> {max_steps} (from the new --time-budget)")
        state = extra["state"][dist.rank] if extra["state"] is not None else None
        if dist.is_main:
            print(f"{kind}: resumed at step {step} of {max_steps}" + "".join(f"\n  {n}" for n in notes))
    elif cfg.time_budget is not None:
        max_steps = max(
            cfg.warmup + 1,
            int(cfg.time_budget * 60 / seconds_per_step(cfg, kind, corpus, streams, dist, device, clock)),
        )
    schedule = warmup_cosine(cfg.warmup, max_steps, cfg.min_lr_ratio)
    log = MetricLogger(
        run_dir,
        resume_step=step,
        enabled=dist.is_main,
        wandb=cfg.wandb,
        wandb_config=dataclasses.asdict(cfg),
        wandb_name=kind,
    )
    last = min(max_steps, cfg.halt_after or max_steps)

    def validate(max_tokens: int | None = None) -> float:  # the periodic slice, or (None) the whole split
        return evaluate(
            net,
            corpus.valid,
            batch_size=cfg.eval_batch_size,
            seq_len=cfg.seq_len,
            reset_every=cfg.reset_every,
            max_tokens=max_tokens,
            rank=dist.rank,
            world_size=dist.world_size,
        )

    bar = progress(range(step, last), total=last - step, desc=kind, disable=None if dist.is_main else True)
    done = step
    for step in bar:
        x, y, reset = streams.batch(step)  # reset: rows that start afresh (all, at an epoch's start)
        for g in optimizer.param_groups:
            g["lr"] = cfg.lr * schedule(step)
        t0, w0 = clock(), time.perf_counter()
        loss, state = train_step(
            net,
            x.to(device),
            y.to(device),
            state,
            optimizer,
            reset=reset,
            grad_clip=cfg.grad_clip,
            scaler=scaler,
            amp_dtype=cfg.amp,
        )
        elapsed, wall = elapsed + clock() - t0, wall + time.perf_counter() - w0
        done = step + 1
        if done % cfg.log_interval == 0:
            log.log("train", done, loss=loss, lr=cfg.lr * schedule(step), time=elapsed, wall=wall)
            bar.set_postfix(loss=f"{loss:.3f}")
        if done % cfg.eval_interval == 0 or done == last:
            val = validate(max_tokens=cfg.eval_tokens)
            log.log("valid", done, loss=val, time=elapsed, wall=wall)
            states = [None] * dist.world_size
            if dist.enabled:  # every rank's carried state goes into the checkpoint
                torch.distributed.all_gather_object(states, state)
            else:
                states = [state]
            if dist.is_main:
                print(f"{kind} step {done}: train {loss:.4f}  valid {val:.4f}  ({elapsed:.0f} s)")
                save_checkpoint(
                    ckpt,
                    model=model,
                    optimizer=optimizer,
                    scaler=scaler,
                    step=done,
                    elapsed=elapsed,
                    wall=wall,
                    max_steps=max_steps,
                    state=states,
                    config=dataclasses.asdict(cfg),
                    vocab=corpus.vocab.to_json(),
                    kind=kind,
                )
            barrier(dist)
    result = {
        "kind": kind,
        "params": count_parameters(model),
        "steps": done,
        "train_min": elapsed / 60,
        "wall_min": wall / 60,
        "tokens": done * cfg.batch_size * cfg.seq_len * dist.world_size,
    }
    if done == max_steps:  # finished: score the whole validation set
        result["valid"] = validate()
    if dist.is_main:
        curves = {s: ([r["step"] for r in log.read(s)], [r["loss"] for r in log.read(s)]) for s in ("train", "valid")}
        plot_curves(curves, run_dir / "curves.png", ylabel="loss (nats/token)", title=f"{kind} on {corpus.name}")
        result["curve"] = [(r["time"], r["loss"]) for r in log.read("valid")]
        result["best"] = min((loss for _, loss in result["curve"]), default=float("nan"))
    log.close()
    return result


def load_model(cfg: Config, device: torch.device) -> tuple[torch.nn.Module, Vocab, dict]:
    """The trained model of ``--kind``, its vocabulary and its ``build_lm`` arguments."""
    path = Path(cfg.out) / cfg.kind / "ckpt.pt"
    if not path.exists():
        raise SystemExit(
            f"{cfg.action}: no checkpoint at {path}; train first (--action train --kind {cfg.kind} --out {cfg.out})"
        )
    saved = read_checkpoint(path)["extra"]
    vocab = Vocab.from_json(saved["vocab"])
    kwargs = build_kwargs(Config.from_saved(saved["config"]), cfg.kind, len(vocab))
    model = build_lm(cfg.kind, len(vocab), **kwargs).to(device)
    load_checkpoint(path, model=model, restore_rng=False, map_location=device)
    return model, vocab, kwargs


def export(cfg: Config, device: torch.device) -> Path:
    """Write the trained model as a Hugging Face model folder (config.json, model.safetensors),
    with the vocabulary as adaptmem_vocab.json (``Vocab.from_json`` reads it back)."""
    try:
        from adaptmem.hf import AdaptMemConfig, AdaptMemForCausalLM
    except ImportError as err:
        raise SystemExit(
            f"export: needs transformers and safetensors: pip install 'transformers>=5.0' safetensors ({err})"
        ) from None
    model, vocab, kwargs = load_model(cfg, torch.device("cpu"))
    hf_model = AdaptMemForCausalLM.from_lm(model, AdaptMemConfig.from_build_kwargs(cfg.kind, len(vocab), **kwargs))
    out = Path(cfg.export_dir or Path(cfg.out) / cfg.kind / "hf")
    hf_model.save_pretrained(out)
    (out / "adaptmem_vocab.json").write_text(vocab.to_json())
    print(
        f"export: {cfg.kind} model ({count_parameters(model):,} parameters) -> {out}; load it with "
        f"`import adaptmem.hf; transformers.AutoModelForCausalLM.from_pretrained({str(out)!r})`"
    )
    return out


def sample(cfg: Config, device: torch.device) -> None:
    model, vocab, _ = load_model(cfg, device)
    g = torch.Generator().manual_seed(cfg.seed)
    prompt = torch.tensor(vocab.encode(cfg.prompt), dtype=torch.int64, device=device)
    t0 = time.perf_counter()
    out = generate(model, prompt, cfg.num_tokens, temperature=cfg.temperature, top_k=cfg.top_k, generator=g)
    rate = cfg.num_tokens / (time.perf_counter() - t0)
    print(cfg.prompt + vocab.decode(out))
    print(f"\n[{cfg.kind}: {cfg.num_tokens} tokens at {rate:.0f} tokens/s, one token per step]")


def main(cfg: Config | Sequence[str] | None = None) -> None:
    given = cli.given_flags(build_parser(), None if isinstance(cfg, Config) else cfg)  # for --resume
    cfg = cfg if isinstance(cfg, Config) else parse_args(cfg)
    kinds = cfg.kinds.split(",") if cfg.action == "compare" else [cfg.kind]
    cli.check_choice("--kinds" if cfg.action == "compare" else "--kind", kinds, KINDS)
    configure_threads(cfg.threads)
    device = cli.resolve_device(cfg.device)
    dist = init_distributed(device.type)
    if dist.enabled and device.type == "cuda":
        device = torch.device("cuda", dist.local_rank)
    if cfg.action == "sample":
        return sample(cfg, device)
    if cfg.action == "export":
        export(cfg, device)
        return
    if cfg.download and cfg.corpus in KNOWN_CORPORA and dist.is_main:  # one process fetches, the others wait
        known_corpus(cfg.corpus, cfg.data, download_if_missing=True)
    barrier(dist)
    corpus = load_corpus(
        cli.corpus_source(cfg.corpus, cfg.data),
        level=cfg.level,
        train=cfg.train,
        valid=cfg.valid,
        test=cfg.test,
        data_root=cfg.data,
    )
    if dist.is_main:
        print(corpus)
    results = [train(cfg, kind, corpus, dist, device, given) for kind in kinds]
    if dist.is_main:
        rows = [
            f"| model | parameters | steps | tokens | train min ({cfg.clock}) | wall min | "
            f"final valid loss (nats/token) | best valid loss (first {cfg.eval_tokens:,} tokens) |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in results:
            val = f"{r['valid']:.4f}" if "valid" in r else "(unfinished)"
            rows.append(
                f"| {r['kind']} | {r['params']:,} | {r['steps']:,} | {r['tokens']:,} | {r['train_min']:.1f} | "
                f"{r['wall_min']:.1f} | {val} | {r['best']:.4f} |"
            )
        print("\n".join(rows))
        (Path(cfg.out) / f"{cfg.action}.md").write_text("\n".join(rows) + "\n")
        (Path(cfg.out) / f"{cfg.action}.json").write_text(json.dumps(results, indent=1))
        if len(results) > 1:
            plot_curves(
                {r["kind"]: tuple(zip(*r["curve"])) for r in results if r["curve"]},
                Path(cfg.out) / "compare.png",
                xlabel="training time (s)",
                ylabel="valid loss (nats/token)",
            )
    cleanup_distributed(dist)


if __name__ == "__main__":
    cli.run(main, CONFIG)
