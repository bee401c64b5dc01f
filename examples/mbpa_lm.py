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
segment (so MbPA never sees the current segment).

    python examples/mbpa_lm.py                                        # Tiny Shakespeare, chars
    python examples/mbpa_lm.py --corpus ptb --level word --hidden 512 --steps 20000   # <--data>/ptb
"""

from __future__ import annotations

import argparse
import itertools
import math
import time
from collections.abc import Sequence
from pathlib import Path

from adaptmem.utils import cli


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = cli.parser(__doc__)
    cli.add_data(p)
    cli.add_download(p, "Tiny Shakespeare, for --corpus tinyshakespeare")
    p.add_argument("--corpus", default="tinyshakespeare",
                   help="a folder under --data, a text file, a PTB/WikiText folder, or a datasets name path:config")
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
    cli.add_resume(p, "continue training from <out>/ckpt.pt")
    p.add_argument("--eval-tokens", type=int, default=20_000, help="tokens of each split evaluated (0: all)")
    p.add_argument("--cache-size", type=int, default=500, help="neural cache window")
    p.add_argument("--cache-theta", type=float, default=0.3, help="cache inverse temperature θ")
    p.add_argument("--mem-size", type=int, default=5000, help="MbPA memory slots N (paper: 5000)")
    p.add_argument("--k", type=int, nargs="+", default=[256], help="MbPA neighbours K (swept; paper: 256)")
    p.add_argument("--mbpa-steps", type=int, default=1, help="MbPA local steps T (paper: 1)")
    p.add_argument("--mbpa-lr", type=float, default=0.15, help="MbPA local learning rate α (paper: 0.15)")
    p.add_argument("--mbpa-l2", type=float, default=0.0, help="MbPA prior weight")
    p.add_argument("--mbpa-chunk", type=int, default=64, help="queries adapted at once (bounds memory)")
    p.add_argument("--lambda-cache", type=float, nargs="+", default=[0.05, 0.1, 0.15], help="λ_cache values swept")
    p.add_argument("--lambda-mbpa", type=float, nargs="+", default=[0.05, 0.1, 0.15], help="λ_mbpa values swept")
    p.add_argument("--cache-dir", default=None, help="token cache folder (default: $ADAPTMEM_CACHE/text or "
                                                     "~/.cache/adaptmem/text)")
    cli.add_seed(p)
    cli.add_threads(p)
    cli.add_aliases(p, {"--ckpt-every": "--checkpoint-every"})
    cli.add_deprecated(p, "--ckpt", "use --out FOLDER (the checkpoint is FOLDER/ckpt.pt)", type=Path,
                       dest="ckpt_file")
    args = cli.parse(p, argv)
    args.ckpt = args.ckpt_file or Path(args.out) / "ckpt.pt"
    return args


if __name__ == "__main__":  # answer --help and bad flags before the heavy imports below
    ARGS = parse_args()

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from adaptmem.data.text import batchify, bptt_batches, load_corpus, num_bptt_batches  # noqa: E402
from adaptmem.memory import EpisodicMemory, MbPA, NeuralCache, mix_log_probs  # noqa: E402
from adaptmem.utils import configure_threads, load_checkpoint, progress, save_checkpoint, seed_everything  # noqa: E402


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


@torch.no_grad()
def score(model: LSTMLM, tokens: torch.Tensor, args, vocab_size: int) -> dict:
    """Per-token target log-probabilities of the LSTM, the cache, and MbPA for each K."""
    model.eval()
    stream = batchify(tokens, 1)
    cache = NeuralCache(args.hidden, vocab_size, size=args.cache_size, theta=args.cache_theta)
    memory = EpisodicMemory(args.hidden, args.mem_size)
    mbpas = {k: MbPA(model.head, memory, k=k, steps=args.mbpa_steps, lr=args.mbpa_lr, l2=args.mbpa_l2,
                     chunk_size=args.mbpa_chunk) for k in args.k}
    out = {"model": [], "cache": [], **{("mbpa", k): [] for k in args.k}}
    state = None
    for x, y in progress(bptt_batches(stream, args.bptt), total=num_bptt_batches(stream, args.bptt), desc="eval"):
        h, state = model(x, state)
        h, y = h[0], y[0]  # [T, H], [T]
        log_p = F.log_softmax(model.head(h), -1)
        out["model"].append(log_p.gather(1, y[:, None])[:, 0])
        lp_cache = []
        for t in range(len(y)):  # the cache sees every earlier token of the stream
            lp_cache.append(cache.log_probs(h[t : t + 1])[0, y[t]])
            cache.write(h[t : t + 1], y[t : t + 1])
        out["cache"].append(torch.stack(lp_cache))
        for k, mbpa in mbpas.items():  # the memory holds earlier segments only
            out[("mbpa", k)].append(mbpa(h).gather(1, y[:, None])[:, 0])
        memory.write(h, y)
    return {key: torch.cat(v) for key, v in out.items()}


def perplexity(lp: dict, lam_c: float, lam_m: float, k: int | None) -> float:
    mixed = mix_log_probs(lp["model"], log_p_cache=lp["cache"], log_p_mbpa=lp[("mbpa", k)] if k else None,
                          lambda_cache=lam_c, lambda_mbpa=lam_m)
    return math.exp(-mixed.mean().item())


def main(argv: Sequence[str] | argparse.Namespace | None = None) -> dict:
    args = argv if isinstance(argv, argparse.Namespace) else parse_args(argv)
    configure_threads(args.threads)
    seed_everything(args.seed)
    corpus = load_corpus(cli.corpus_source(args.corpus, args.data), level=args.level, cache_dir=args.cache_dir,
                         data_root=args.data, download_if_missing=args.download)
    print(corpus)
    model = LSTMLM(len(corpus.vocab), args.emb, args.hidden, args.dropout)
    t0 = time.time()
    train(model, corpus.train, args)
    print(f"trained {args.steps} steps in {time.time() - t0:.0f} s")

    splits = {"valid": corpus.valid, "test": corpus.test}
    if corpus.test is None:  # e.g. one text file: tune on the first half of valid, report the second
        half = len(corpus.valid) // 2
        splits = {"valid": corpus.valid[:half], "test": corpus.valid[half:]}
        print(f"no test split: using the two halves of the validation split ({half:,} tokens each)")
    scores = {}
    for name, tokens in splits.items():
        if tokens is not None:
            scores[name] = score(model, tokens[: args.eval_tokens or None], args, len(corpus.vocab))

    # choose each variant's λ (and K) on the validation split
    val = scores["valid"]
    variants = {
        "LSTM": [(0.0, 0.0, None)],
        "+ cache": [(c, 0.0, None) for c in args.lambda_cache],
        "+ MbPA": [(0.0, m, k) for m in args.lambda_mbpa for k in args.k],
        "+ cache + MbPA": [(c, m, k) for c, m, k in itertools.product(args.lambda_cache, args.lambda_mbpa, args.k)
                           if c + m <= 1],
    }
    rows = {}
    for name, grid in variants.items():
        best = min(grid, key=lambda g: perplexity(val, *g))
        rows[name] = (best, {s: perplexity(lp, *best) for s, lp in scores.items()})

    n_eval = {s: len(lp["model"]) for s, lp in scores.items()}
    print(f"\nPerplexity ({args.level} level; {', '.join(f'{s}: {n:,} tokens' for s, n in n_eval.items())}; "
          f"cache size {args.cache_size}, θ={args.cache_theta}; MbPA N={args.mem_size}, T={args.mbpa_steps}, "
          f"α={args.mbpa_lr}):\n")
    print("| variant | λ_cache | λ_mbpa | K | valid ppl | test ppl |")
    print("|---|---|---|---|---|---|")
    for name, ((c, m, k), ppl) in rows.items():
        test = f"{ppl['test']:.3f}" if "test" in ppl else "-"
        print(f"| {name} | {c:g} | {m:g} | {k or '-'} | {ppl['valid']:.3f} | {test} |")
    return {"rows": rows, "model": model}


if __name__ == "__main__":
    cli.run(main, ARGS)
