"""An LSTM language model evaluated plain, with a neural cache, with MbPA, and with both.

Sprechmann et al. (ICLR 2018) adapt the output layer of an LSTM LM on the K nearest
(hidden state, next token) pairs of the recent test history and mix the adapted distribution
with the LSTM's and a neural cache's (Grave et al., ICLR 2017):

    p = (1 - λ_cache - λ_mbpa) p_LSTM + λ_cache p_cache + λ_mbpa p_MbPA

The corpus is a datasets name (``wikitext:wikitext-2-raw-v1``), a Penn Treebank folder
(``ptb.{train,valid,test}.txt``), a WikiText folder, or a plain text file (default: Tiny
Shakespeare, split 90/10). λ_cache, λ_mbpa and K are swept over the values given; the best
combination on the validation set is reported for both splits (a corpus without a test split,
like one text file, has its validation tokens halved into valid and test). Evaluation reads each
split as one stream; the cache is updated after every token, the MbPA memory after every --bptt
segment (so MbPA never sees the current segment). The validation split is scored for every K, T
and α given (for T = 1 all α cost one adaptation), the test split only at the settings chosen on
validation, as the paper does. The evaluation saves its state every --eval-save-every seconds;
--resume continues an interrupted one exactly (and training, from <out>/ckpt.pt). Without a terminal it
prints a progress line every --log-every seconds.

    python examples/mbpa_lm.py                                        # Tiny Shakespeare, chars
    python examples/mbpa_lm.py --corpus ptb --level word --emb 256 --hidden 256 --steps 2600 \
        --batch-size 20 --bptt 35 --eval-tokens 0 --k 256 512 --mbpa-lr 0.01 0.1 0.15 0.2 0.5 1 \
        --lambda-cache 0 0.05 0.1 0.15 --lambda-mbpa 0 0.05 0.1 0.15 --mem-size 5000 --cache-size 2000 \
        --dropout 0.2 --threads 1     # <--data>/ptb: the paper's PTB grid at T = 1 (docs/memory.md)
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import math
import time
from collections.abc import Sequence
from pathlib import Path

from adaptmem.utils import cli


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = cli.parser(__doc__)
    cli.add_data(p)
    cli.add_download(p, "Tiny Shakespeare, for --corpus tinyshakespeare")
    p.add_argument(
        "--corpus",
        default="tinyshakespeare",
        help="a folder under --data, a text file, a PTB/WikiText folder, or a datasets name path:config",
    )
    p.add_argument("--level", default="char", choices=["char", "word", "bpe"], help="tokenisation")
    p.add_argument("--emb", type=int, default=64, help="embedding size")
    p.add_argument("--hidden", type=int, default=256, help="LSTM size (= memory key size)")
    p.add_argument("--dropout", type=float, default=0.1, help="dropout on embeddings and LSTM outputs")
    p.add_argument("--steps", type=int, default=600, help="training steps")
    p.add_argument("--batch-size", type=int, default=32, help="parallel training streams")
    p.add_argument("--bptt", type=int, default=64, help="truncated-BPTT length (also the eval segment)")
    p.add_argument("--lr", type=float, default=3e-3, help="Adam learning rate")
    p.add_argument("--clip", type=float, default=1.0, help="gradient-norm clipping")
    cli.add_out(p, "runs/mbpa_lm", help="output folder (the checkpoint is <out>/ckpt.pt)")
    p.add_argument("--checkpoint-every", type=int, default=200, help="steps between checkpoints")
    cli.add_resume(p, "continue training from <out>/ckpt.pt, and an interrupted evaluation")
    p.add_argument("--eval-tokens", type=int, default=20_000, help="tokens of each split evaluated (0: all)")
    p.add_argument("--cache-size", type=int, default=500, help="neural cache window")
    p.add_argument("--cache-theta", type=float, default=0.3, help="cache inverse temperature θ")
    p.add_argument("--mem-size", type=int, default=5000, help="MbPA memory slots N (paper: 5000)")
    p.add_argument("--k", type=int, nargs="+", default=[256], help="MbPA neighbours K (swept; paper: 256)")
    p.add_argument("--mbpa-steps", type=int, nargs="+", default=[1], help="MbPA local steps T (swept; paper: 1)")
    p.add_argument(
        "--mbpa-lr", type=float, nargs="+", default=[0.15], help="MbPA local learning rate α (swept; paper: 0.15)"
    )
    p.add_argument("--mbpa-l2", type=float, default=0.0, help="MbPA prior weight")
    p.add_argument("--mbpa-chunk", type=int, default=64, help="queries adapted at once (bounds memory)")
    p.add_argument("--lambda-cache", type=float, nargs="+", default=[0.05, 0.1, 0.15], help="λ_cache values swept")
    p.add_argument("--lambda-mbpa", type=float, nargs="+", default=[0.05, 0.1, 0.15], help="λ_mbpa values swept")
    p.add_argument(
        "--cache-dir", default=None, help="token cache folder (default: $ADAPTMEM_CACHE/text or ~/.cache/adaptmem/text)"
    )
    p.add_argument(
        "--eval-state",
        type=Path,
        default=None,
        help="evaluation resume file (default: <out>/eval-<hash of the settings>.pt)",
    )
    p.add_argument("--eval-save-every", type=float, default=300.0, help="seconds between evaluation saves")
    p.add_argument(
        "--stop-after-segments",
        type=int,
        default=0,
        help="save and stop the evaluation after this many segments (0: run to the end)",
    )
    p.add_argument("--log-every", type=float, default=60.0, help="seconds between progress lines without a terminal")
    cli.add_seed(p)
    cli.add_threads(p)
    cli.add_aliases(p, {"--ckpt-every": "--checkpoint-every"})
    cli.add_deprecated(p, "--ckpt", "use --out FOLDER (the checkpoint is FOLDER/ckpt.pt)", type=Path, dest="ckpt_file")
    args = cli.parse(p, argv)
    args.ckpt = args.ckpt_file or Path(args.out) / "ckpt.pt"
    return args


if __name__ == "__main__":  # answer --help and bad flags before the heavy imports below
    ARGS = parse_args()

import torch
import torch.nn.functional as F
from torch import nn

from adaptmem.data.text import batchify, bptt_batches, load_corpus, num_bptt_batches
from adaptmem.memory import EpisodicMemory, MbPA, NeuralCache, mix_log_probs
from adaptmem.utils import configure_threads, load_checkpoint, progress, save_checkpoint, seed_everything
from adaptmem.utils.integrity import load_verified, save_verified

EVAL_FORMAT = "adaptmem.mbpa_lm.evaluation"  # the resume file's format name (checksummed header)


# flags that do not change the evaluation's numbers (a resumed evaluation may change them)
_NOT_IN_FINGERPRINT = {
    "resume",
    "eval_state",
    "eval_save_every",
    "stop_after_segments",
    "log_every",
    "threads",
    "cache_dir",
    "ckpt",
    "ckpt_file",
    "checkpoint_every",
    "out",
    "data",
    "download",
}


class LSTMLM(nn.Module):
    """Embedding -> LSTM -> dropout -> linear head; ``forward`` returns (hidden [B, T, H], state)."""

    def __init__(self, vocab: int, emb: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, emb)
        self.lstm = nn.LSTM(emb, hidden, batch_first=True)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(hidden, vocab)

    def forward(self, x, state=None):
        h, state = self.lstm(self.drop(self.embed(x)), state)
        return h, state


def train(model: LSTMLM, tokens: torch.Tensor, args) -> None:
    segments = list(bptt_batches(batchify(tokens, args.batch_size), args.bptt))  # views, no copies
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    step, state = 0, None
    if args.resume and args.ckpt.exists():
        extra = load_checkpoint(args.ckpt, model=model, optimizer=opt)
        step, state = extra["step"], extra["lstm_state"]
        print(f"resumed from {args.ckpt} at step {step}")
    bar = progress(total=args.steps, initial=step, desc="train")
    model.train()
    while step < args.steps:
        seg = step % len(segments)
        if seg == 0:
            state = None  # a new pass over the streams
        x, y = segments[seg]
        h, state = model(x, state)
        state = tuple(s.detach() for s in state)
        loss = F.cross_entropy(model.head(model.drop(h)).flatten(0, 1), y.flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), args.clip)
        opt.step()
        step += 1
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.3f}")
        if step % args.checkpoint_every == 0 or step == args.steps:
            save_checkpoint(args.ckpt, model=model, optimizer=opt, step=step, lstm_state=state)
    bar.close()


def steady_malloc() -> None:
    """Pin glibc's mmap threshold at its 128 KiB default.

    glibc raises the threshold each time a large block is freed, after which the evaluation's
    per-segment [T, V] temporaries come from the heap and fragment it: resident memory grew by
    ~20 MB per segment on PTB (15 GB after 600 of 2,108 validation segments) without any tensor
    being kept. A fixed threshold returns them to the system (the same as MALLOC_MMAP_THRESHOLD_).
    """
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").mallopt(-3, 128 * 1024)  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):  # not glibc: nothing to do
        pass


class Stopped(Exception):
    """The evaluation saved its state and stopped early (--stop-after-segments)."""


def grid_configs(args) -> list[tuple[int, int, float]]:
    """Every MbPA setting (K, T, α) scored on the validation split."""
    return list(itertools.product(args.k, args.mbpa_steps, args.mbpa_lr))


@torch.no_grad()
def score(model: LSTMLM, name: str, tokens: torch.Tensor, args, vocab_size: int, configs, ev: dict) -> dict:
    """Per-token target log-probabilities of the LSTM, the cache and MbPA at each (K, T, α),
    and the seconds each part took. ``ev`` is the evaluation state, saved for --resume."""
    model.eval()
    stream = batchify(tokens, 1)
    cache = NeuralCache(args.hidden, vocab_size, size=args.cache_size, theta=args.cache_theta)
    memory = EpisodicMemory(args.hidden, args.mem_size)
    # one MbPA per (K, T); for T = 1 it scores every α at once (sweep_lr), else one per α
    mbpas = {}
    for k, t in sorted({(k, t) for k, t, _ in configs}):
        lrs = [a for kk, tt, a in configs if (kk, tt) == (k, t)]
        for group in [lrs] if t == 1 else [[a] for a in lrs]:
            mbpas[(k, t, tuple(group))] = MbPA(
                model.head, memory, k=k, steps=t, lr=group[0], l2=args.mbpa_l2, chunk_size=args.mbpa_chunk
            )
    keys = ["model", "cache", *(("mbpa", *c) for c in configs)]
    out, secs, state, start = {key: [] for key in keys}, {"model": 0.0, "cache": 0.0, "write": 0.0}, None, 0
    part = ev.get("partial")
    if part is not None and part["split"] == name:  # resume this split where it stopped
        out = {key: [v] for key, v in part["out"].items()}
        secs, state, start = part["secs"], part["lstm_state"], part["segment"]
        cache.load_state_dict(part["cache"])
        memory.load_state_dict(part["memory"])
    total = num_bptt_batches(stream, args.bptt)
    last_save = time.time()
    bar = progress(total=total, initial=start, desc=f"eval {name}", unit="segment", interval=args.log_every)
    for i, (x, y) in enumerate(bptt_batches(stream, args.bptt)):
        if i < start:
            continue
        t0 = time.perf_counter()
        h, state = model(x, state)
        h, y = h[0], y[0]  # [T, H], [T]
        out["model"].append(F.log_softmax(model.head(h), -1).gather(1, y[:, None])[:, 0])
        t1 = time.perf_counter()
        lp_cache = []
        for t in range(len(y)):  # the cache sees every earlier token of the stream
            lp_cache.append(cache.log_probs(h[t : t + 1])[0, y[t]])
            cache.write(h[t : t + 1], y[t : t + 1])
        out["cache"].append(torch.stack(lp_cache))
        t2 = time.perf_counter()
        secs["model"] += t1 - t0
        secs["cache"] += t2 - t1
        for (k, steps, lrs), mbpa in mbpas.items():  # the memory holds earlier segments only
            t3 = time.perf_counter()
            lp = mbpa.sweep_lr(h, lrs) if len(lrs) > 1 else mbpa(h)[None]
            for a, lp_a in zip(lrs, lp):
                out[("mbpa", k, steps, a)].append(lp_a.gather(1, y[:, None])[:, 0])
            for a in lrs:  # a sweep costs about one adaptation: each α is charged all of it
                secs[(k, steps, a)] = secs.get((k, steps, a), 0.0) + time.perf_counter() - t3
        t4 = time.perf_counter()
        memory.write(h, y)
        secs["write"] += time.perf_counter() - t4
        bar.set_postfix(tokens=f"{sum(len(v) for v in out['model']):,}")
        bar.update(1)
        now, done = time.time(), i + 1
        args.segments_run += 1  # in this process; --stop-after-segments counts these
        stop = 0 < args.stop_after_segments <= args.segments_run
        if stop or (now - last_save >= args.eval_save_every and done < total):
            ev["partial"] = {
                "split": name,
                "segment": done,
                "out": {key: torch.cat(v) for key, v in out.items()},
                "secs": secs,
                "lstm_state": state,
                "cache": cache.state_dict(),
                "memory": memory.state_dict(),
            }
            save_verified(ev, args.eval_state, format=EVAL_FORMAT)
            last_save = now
            if stop:
                raise Stopped(f"evaluation stopped after segment {done} of {total} ({name}); --resume continues")
    bar.close()
    return {"lp": {key: torch.cat(v) for key, v in out.items()}, "secs": secs}


def perplexity(lp: dict, lam_c: float, lam_m: float, cfg: tuple | None) -> float:
    mixed = mix_log_probs(
        lp["model"],
        log_p_cache=lp["cache"],
        log_p_mbpa=lp[("mbpa", *cfg)] if cfg else None,
        lambda_cache=lam_c,
        lambda_mbpa=lam_m,
    )
    return math.exp(-mixed.mean().item())


def tokens_per_s(result: dict, lam_c: float, cfg: tuple | None) -> float:
    """Tokens/s of a variant: the LSTM's time plus the cache's and/or MbPA's (with its writes)."""
    s = result["secs"]
    sec = s["model"] + (s["cache"] if lam_c > 0 else 0.0) + (s[cfg] + s["write"] if cfg else 0.0)
    return len(result["lp"]["model"]) / sec


def evaluate(model: LSTMLM, splits: dict, args, vocab_size: int, fingerprint: dict) -> dict:
    """Score valid on the whole grid, choose each variant's setting there, score test at those."""
    ev = {"fingerprint": fingerprint, "done": {}, "partial": None}
    if args.resume and args.eval_state.exists():
        ev = load_verified(args.eval_state, format=EVAL_FORMAT)
        if ev["fingerprint"] != fingerprint:
            raise ValueError(
                f"{args.eval_state} was written with different settings; delete it or rerun "
                f"with the same ones: {ev['fingerprint']} != {fingerprint}"
            )
        print(f"resuming the evaluation from {args.eval_state}")
    variants = {
        "LSTM": [(0.0, 0.0, None)],
        "+ cache": [(c, 0.0, None) for c in args.lambda_cache],
        "+ MbPA": [(0.0, m, cfg) for m in args.lambda_mbpa for cfg in grid_configs(args)],
        "+ cache + MbPA": [
            (c, m, cfg)
            for c, m, cfg in itertools.product(args.lambda_cache, args.lambda_mbpa, grid_configs(args))
            if c + m <= 1
        ],
    }
    rows = {}
    for name, tokens in splits.items():
        if name not in ev["done"]:
            configs = (
                grid_configs(args) if name == "valid" else sorted({g[2] for g, _ in rows.values() if g[2] is not None})
            )
            ev["done"][name] = score(model, name, tokens, args, vocab_size, configs, ev)
            ev["partial"] = None
            save_verified(ev, args.eval_state, format=EVAL_FORMAT)
        if name == "valid":  # choose each variant's λ, K, T and α on the validation split
            val = ev["done"]["valid"]["lp"]
            for variant, grid in variants.items():
                rows[variant] = (min(grid, key=lambda g: perplexity(val, *g)), {})
        for best, ppl in rows.values():
            ppl[name] = (perplexity(ev["done"][name]["lp"], *best), tokens_per_s(ev["done"][name], best[0], best[2]))
    return rows


def main(argv: Sequence[str] | argparse.Namespace | None = None) -> dict:
    args = argv if isinstance(argv, argparse.Namespace) else parse_args(argv)
    steady_malloc()
    configure_threads(args.threads)
    seed_everything(args.seed)
    corpus = load_corpus(
        cli.corpus_source(args.corpus, args.data),
        level=args.level,
        cache_dir=args.cache_dir,
        data_root=args.data,
        download_if_missing=args.download,
    )
    print(corpus)
    model = LSTMLM(len(corpus.vocab), args.emb, args.hidden, args.dropout)
    t0 = time.time()
    train(model, corpus.train, args)
    print(f"training to step {args.steps}: {time.time() - t0:.0f} s in this run")

    splits = {"valid": corpus.valid, "test": corpus.test}
    if corpus.test is None:  # e.g. one text file: tune on the first half of valid, report the second
        half = len(corpus.valid) // 2
        splits = {"valid": corpus.valid[:half], "test": corpus.valid[half:]}
        print(f"no test split: using the two halves of the validation split ({half:,} tokens each)")
    fingerprint = {key: str(v) for key, v in sorted(vars(args).items()) if key not in _NOT_IN_FINGERPRINT}
    fingerprint["corpus_tokens"] = str({s: len(t) for s, t in splits.items()})
    digest = hashlib.sha256(json.dumps(fingerprint, sort_keys=True).encode()).hexdigest()[:12]
    args.eval_state = args.eval_state or args.ckpt.with_name(f"eval-{digest}.pt")  # one file per setting
    args.segments_run = 0
    splits = {s: t[: args.eval_tokens or None] for s, t in splits.items()}
    try:
        rows = evaluate(model, splits, args, len(corpus.vocab), fingerprint)
    except Stopped as stop:
        print(stop)
        return {"rows": None, "model": model}

    n_eval = {s: len(t) for s, t in splits.items()}
    print(
        f"\nPerplexity ({args.level} level; {', '.join(f'{s}: {n:,} tokens' for s, n in n_eval.items())}; "
        f"cache size {args.cache_size}, θ={args.cache_theta}; MbPA N={args.mem_size}, l2={args.mbpa_l2}); "
        f"tokens/s on the last split, {args.threads or 'default'} thread(s):\n"
    )
    print("| variant | λ_cache | λ_mbpa | K | T | α | valid ppl | test ppl | tokens/s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, ((c, m, cfg), ppl) in rows.items():
        k, t, a = cfg or ("-", "-", "-")
        test = f"{ppl['test'][0]:.2f}" if "test" in ppl else "-"
        print(
            f"| {name} | {c:g} | {m:g} | {k} | {t} | {a} | {ppl['valid'][0]:.2f} | {test} | "
            f"{list(ppl.values())[-1][1]:,.0f} |"
        )
    return {"rows": rows, "model": model}


if __name__ == "__main__":
    cli.run(main, ARGS)
