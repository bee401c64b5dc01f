"""Character/word language modelling with fast-weight models (SRWM, DeltaNet, ...) and a
softmax-Transformer baseline, trained by truncated BPTT over long token streams.

    python examples/srwm_lm.py                                # SRWM on Tiny Shakespeare (chars)
    python examples/srwm_lm.py --kind deltanet --resume       # continue an interrupted run
    python examples/srwm_lm.py --mode sample --prompt "ROMEO:"
    python examples/srwm_lm.py --mode compare --time_budget 10  # equal params and wall time
    python examples/srwm_lm.py --mode export                  # the checkpoint as a Hugging Face model
    torchrun --nproc_per_node 2 examples/srwm_lm.py           # data parallel (gloo on CPU)

The fast-weight state is carried from segment to segment (detached at the boundary), so the
model reads each training stream from its start; evaluation carries it through whole streams.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from adaptmem.data.text import Vocab, load_corpus
from adaptmem.models.lm import KINDS, TokenStreams, build_lm, evaluate, generate, match_d_ff, train_step
from adaptmem.utils import (MetricLogger, count_parameters, load_checkpoint, progress, save_checkpoint, seed_everything,
                            set_threads)
from adaptmem.utils.amp import grad_scaler
from adaptmem.utils.distributed import all_reduce_mean, barrier, cleanup_distributed, init_distributed
from adaptmem.utils.logging import WANDB_HELP, plot_curves
from adaptmem.utils.schedules import warmup_cosine


@dataclass
class Config:
    mode: str = "train"  # train | sample | compare | export
    # data
    data: str | None = None  # file, folder or datasets name; default Tiny Shakespeare
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
    out_dir: str = "runs/srwm_lm"
    resume: bool = False
    halt_after: int | None = None
    seed: int = 1337
    device: str = "auto"
    threads: int | None = 1
    wandb: str | None = None  # W&B project
    export_dir: str | None = None  # export mode: default <out_dir>/<kind>/hf
    # sampling
    prompt: str = "\n"
    num_tokens: int = 500
    temperature: float = 0.8
    top_k: int | None = None


HELP = {  # --help text of every flag
    "mode": "train one model, sample from a trained one, compare --kinds at equal parameters and time, or export "
            "a trained one as a Hugging Face transformers model (pip install 'adaptmem[hf]')",
    "data": "corpus: a text file (first 90%% train, rest valid), a PTB/WikiText folder, or a datasets name "
            "path:config; default Tiny Shakespeare under $ADAPTMEM_DATA",
    "train": "explicit training file (PTB-style or plain text)", "valid": "explicit validation file",
    "test": "explicit test file", "level": "tokens: char, word or bpe",
    "kind": f"model: one of {', '.join(KINDS)}", "kinds": "comma-separated kinds for --mode compare",
    "num_layers": "blocks (sequence mixer + feed-forward)", "d_model": "residual width",
    "num_heads": "heads of every layer (head size d_model / num_heads)",
    "d_ff": "feed-forward width (default 4 * d_model; fast-weight models: matched, see --match_params)",
    "match_params": "fast-weight models: pick d_ff to match the Transformer's parameter count",
    "dropout": "dropout on embeddings and inside blocks", "untied": "separate input embedding and output layer",
    "max_len": "Transformer attention window (default seq_len)",
    "reset_every": "reset each stream's carried state every N tokens, staggered over streams (0: never)",
    "batch_size": "token streams per process", "seq_len": "truncated-BPTT segment length",
    "max_steps": "optimiser steps", "time_budget": "minutes of training per model: sets max_steps from a timing run",
    "clock": "what --time_budget counts: wall time, or process CPU time (fair on a shared machine)",
    "lr": "peak learning rate (AdamW)", "min_lr_ratio": "final learning rate / peak (cosine decay)",
    "warmup": "linear warm-up steps", "weight_decay": "AdamW weight decay of matrices",
    "grad_clip": "gradient-norm clipping (0: off)", "amp": "autocast dtype on GPU: bf16, fp16 or fp32",
    "eval_interval": "steps between validation runs and checkpoints", "log_interval": "steps between train logs",
    "eval_tokens": "validation tokens read during training (the final score reads all)",
    "eval_batch_size": "validation streams", "out_dir": "runs go to <out_dir>/<kind>/",
    "resume": "continue from <out_dir>/<kind>/ckpt.pt", "halt_after": "stop after this step (do a run in pieces)",
    "seed": "random seed", "device": "auto, cpu or cuda[:i]",
    "threads": "intra-op CPU threads per process (small ops gain little; use torchrun for more cores)",
    "prompt": "sample mode: text to continue", "num_tokens": "sample mode: tokens to generate",
    "temperature": "sample mode: softmax temperature (0: greedy)", "top_k": "sample mode: keep the k likeliest",
    "wandb": WANDB_HELP, "export_dir": "export mode: the folder to write (default <out_dir>/<kind>/hf)",
}
CHOICES = {"mode": ("train", "sample", "compare", "export"), "kind": KINDS, "level": ("char", "word", "bpe"),
           "clock": ("wall", "cpu"), "amp": ("bf16", "fp16", "fp32")}


def parse_args() -> Config:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for f in dataclasses.fields(Config):
        kind = {"int | None": int, "float | None": float, "str | None": str}.get(str(f.type), f.type)
        if kind in (bool, "bool"):
            parser.add_argument(f"--{f.name}", action=argparse.BooleanOptionalAction, default=f.default,
                                help=HELP[f.name])
        else:
            typ = {"int": int, "float": float, "str": str}.get(kind, kind)
            parser.add_argument(f"--{f.name}", type=typ, default=f.default, choices=CHOICES.get(f.name),
                                help=HELP[f.name] + " (%(default)s)")
    cfg = Config(**vars(parser.parse_args()))
    cfg.reset_every = cfg.reset_every or None
    return cfg


def build_kwargs(cfg: Config, kind: str, vocab_size: int) -> dict:
    """The arguments of ``build_lm(kind, vocab_size, **them)`` for this run (d_ff matched if asked)."""
    sizes = dict(num_layers=cfg.num_layers, d_model=cfg.d_model, num_heads=cfg.num_heads, dropout=cfg.dropout,
                 tie_weights=not cfg.untied, max_len=cfg.max_len or cfg.seq_len)
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


def train(cfg: Config, kind: str, corpus, dist, device: torch.device) -> dict:
    run_dir = Path(cfg.out_dir) / kind
    seed_everything(cfg.seed + dist.rank)
    model = build(cfg, kind, len(corpus.vocab)).to(device)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.99))
    scaler = grad_scaler(device, cfg.amp)
    net = model
    if dist.enabled:
        ids = [dist.local_rank] if device.type == "cuda" else None
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)
    streams = TokenStreams(corpus.train, cfg.batch_size, cfg.seq_len, reset_every=cfg.reset_every, seed=cfg.seed,
                           rank=dist.rank, world_size=dist.world_size)
    clock = time.process_time if cfg.clock == "cpu" else time.perf_counter
    max_steps, step, elapsed, wall, state = cfg.max_steps, 0, 0.0, 0.0, None
    ckpt = run_dir / "ckpt.pt"
    if cfg.resume and ckpt.exists():
        extra = load_checkpoint(ckpt, model=model, optimizer=optimizer, scaler=scaler, map_location=device)
        step, elapsed, wall, max_steps = extra["step"], extra["elapsed"], extra["wall"], extra["max_steps"]
        state = extra["state"][dist.rank] if extra["state"] is not None else None
        if dist.is_main:
            print(f"{kind}: resumed at step {step} of {max_steps}")
    elif cfg.time_budget is not None:
        max_steps = max(cfg.warmup + 1, int(cfg.time_budget * 60 / seconds_per_step(cfg, kind, corpus, streams,
                                                                                    dist, device, clock)))
    schedule = warmup_cosine(cfg.warmup, max_steps, cfg.min_lr_ratio)
    log = MetricLogger(run_dir, resume_step=step, enabled=dist.is_main, wandb=cfg.wandb,
                       wandb_config=dataclasses.asdict(cfg), wandb_name=kind)
    last = min(max_steps, cfg.halt_after or max_steps)
    bar = progress(range(step, last), total=last - step, desc=kind, disable=None if dist.is_main else True)
    done = step
    for step in bar:
        x, y, reset = streams.batch(step)  # reset: rows that start afresh (all, at an epoch's start)
        for g in optimizer.param_groups:
            g["lr"] = cfg.lr * schedule(step)
        t0, w0 = clock(), time.perf_counter()
        loss, state = train_step(net, x.to(device), y.to(device), state, optimizer, reset=reset,
                                 grad_clip=cfg.grad_clip, scaler=scaler, amp_dtype=cfg.amp)
        elapsed, wall = elapsed + clock() - t0, wall + time.perf_counter() - w0
        done = step + 1
        if done % cfg.log_interval == 0:
            log.log("train", done, loss=loss, lr=cfg.lr * schedule(step), time=elapsed, wall=wall)
            bar.set_postfix(loss=f"{loss:.3f}")
        if done % cfg.eval_interval == 0 or done == last:
            val = evaluate(net, corpus.valid, batch_size=cfg.eval_batch_size, seq_len=cfg.seq_len,
                           reset_every=cfg.reset_every, max_tokens=cfg.eval_tokens, rank=dist.rank,
                           world_size=dist.world_size)
            log.log("valid", done, loss=val, time=elapsed, wall=wall)
            states = [None] * dist.world_size
            if dist.enabled:  # every rank's carried state goes into the checkpoint
                torch.distributed.all_gather_object(states, state)
            else:
                states = [state]
            if dist.is_main:
                print(f"{kind} step {done}: train {loss:.4f}  valid {val:.4f}  ({elapsed:.0f} s)")
                save_checkpoint(ckpt, model=model, optimizer=optimizer, scaler=scaler, step=done, elapsed=elapsed,
                                wall=wall, max_steps=max_steps, state=states, config=dataclasses.asdict(cfg),
                                vocab=corpus.vocab.to_json(), kind=kind)
            barrier(dist)
    result = {"kind": kind, "params": count_parameters(model), "steps": done, "train_min": elapsed / 60,
              "wall_min": wall / 60, "tokens": done * cfg.batch_size * cfg.seq_len * dist.world_size}
    if done == max_steps:  # finished: score the whole validation set
        result["valid"] = evaluate(net, corpus.valid, batch_size=cfg.eval_batch_size, seq_len=cfg.seq_len,
                                   reset_every=cfg.reset_every, rank=dist.rank, world_size=dist.world_size)
    if dist.is_main:
        curves = {s: ([r["step"] for r in log.read(s)], [r["loss"] for r in log.read(s)]) for s in ("train", "valid")}
        plot_curves(curves, run_dir / "curves.png", ylabel="loss (nats/token)", title=f"{kind} on {corpus.name}")
        result["curve"] = [(r["time"], r["loss"]) for r in log.read("valid")]
        result["best"] = min((loss for _, loss in result["curve"]), default=float("nan"))
    log.close()
    return result


def load_model(cfg: Config, device: torch.device) -> tuple[torch.nn.Module, Vocab, dict]:
    """The trained model of ``--kind``, its vocabulary and its ``build_lm`` arguments."""
    path = Path(cfg.out_dir) / cfg.kind / "ckpt.pt"
    if not path.exists():
        raise SystemExit(f"{cfg.mode}: no checkpoint at {path}; train first (--mode train --kind {cfg.kind})")
    saved = torch.load(path, map_location="cpu", weights_only=False)["extra"]
    vocab = Vocab.from_json(saved["vocab"])
    kwargs = build_kwargs(Config(**saved["config"]), cfg.kind, len(vocab))
    model = build_lm(cfg.kind, len(vocab), **kwargs).to(device)
    load_checkpoint(path, model=model, restore_rng=False, map_location=device)
    return model, vocab, kwargs


def export(cfg: Config, device: torch.device) -> Path:
    """Write the trained model as a Hugging Face model folder (config.json, model.safetensors),
    with the vocabulary as adaptmem_vocab.json (``Vocab.from_json`` reads it back)."""
    try:
        from adaptmem.hf import AdaptMemConfig, AdaptMemForCausalLM
    except ImportError as err:
        raise SystemExit(f"export: needs transformers and safetensors: pip install 'adaptmem[hf]' ({err})") from None
    model, vocab, kwargs = load_model(cfg, torch.device("cpu"))
    hf_model = AdaptMemForCausalLM.from_lm(model, AdaptMemConfig.from_build_kwargs(cfg.kind, len(vocab), **kwargs))
    out = Path(cfg.export_dir or Path(cfg.out_dir) / cfg.kind / "hf")
    hf_model.save_pretrained(out)
    (out / "adaptmem_vocab.json").write_text(vocab.to_json())
    print(f"export: {cfg.kind} model ({count_parameters(model):,} parameters) -> {out}; load it with "
          f"`import adaptmem.hf; transformers.AutoModelForCausalLM.from_pretrained({str(out)!r})`")
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


def main() -> None:
    cfg = parse_args()
    set_threads(cfg.threads)
    device = torch.device(cfg.device if cfg.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
    dist = init_distributed(device.type)
    if dist.enabled and device.type == "cuda":
        device = torch.device("cuda", dist.local_rank)
    if cfg.mode == "sample":
        return sample(cfg, device)
    if cfg.mode == "export":
        export(cfg, device)
        return
    corpus = load_corpus(cfg.data, level=cfg.level, train=cfg.train, valid=cfg.valid, test=cfg.test)
    if dist.is_main:
        print(corpus)
    kinds = cfg.kinds.split(",") if cfg.mode == "compare" else [cfg.kind]
    results = [train(cfg, kind, corpus, dist, device) for kind in kinds]
    if dist.is_main:
        rows = [f"| model | parameters | steps | tokens | train min ({cfg.clock}) | wall min | "
                f"final valid loss (nats/token) | best valid loss (first {cfg.eval_tokens:,} tokens) |",
                "|---|---|---|---|---|---|---|---|"]
        for r in results:
            val = f"{r['valid']:.4f}" if "valid" in r else "(unfinished)"
            rows.append(f"| {r['kind']} | {r['params']:,} | {r['steps']:,} | {r['tokens']:,} | {r['train_min']:.1f} | "
                        f"{r['wall_min']:.1f} | {val} | {r['best']:.4f} |")
        print("\n".join(rows))
        (Path(cfg.out_dir) / f"{cfg.mode}.md").write_text("\n".join(rows) + "\n")
        (Path(cfg.out_dir) / f"{cfg.mode}.json").write_text(json.dumps(results, indent=1))
        if len(results) > 1:
            plot_curves({r["kind"]: tuple(zip(*r["curve"])) for r in results if r["curve"]},
                        Path(cfg.out_dir) / "compare.png", xlabel="training time (s)", ylabel="valid loss (nats/token)")
    cleanup_distributed(dist)


if __name__ == "__main__":
    main()
