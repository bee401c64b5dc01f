"""Train a small SRWM model on in-context associative recall (a one-minute CPU demo).

Each sequence shows ``n_pairs`` random key -> value pairs, one pair per step, then one of the
keys again with an "unknown" value; the model must answer with that key's value. The pairs
change every sequence, so the only way to solve it is to store them in fast weights while
reading: exactly what SRWM and DeltaNet layers do (the few-shot setting in miniature: an
image with its label per step, then a query). Chance accuracy is 1 / n_values.

    python examples/srwm_demo.py                       # SRWM, ~1 min on 2 cores
    python examples/srwm_demo.py --kind deltanet       # any adaptmem layer kind (lstm included)
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass

from adaptmem.utils import cli


@dataclass
class Config:
    kind: str = "srwm"  # any of adaptmem.layers.layer_kinds()
    n_keys: int = 16
    n_values: int = 16
    n_pairs: int = 6
    d_model: int = 64
    num_heads: int = 4
    num_layers: int = 2
    batch_size: int = 64
    steps: int = 1000
    lr: float = 1e-3
    seed: int = 0
    threads: int | None = None  # default: chosen from the machine (adaptmem.utils.threads)


HELP = {
    "kind": "any adaptmem layer kind (adaptmem.layers.layer_kinds()): srwm, deltanet, linear, lstm, ...",
    "n_keys": "distinct keys",
    "n_values": "distinct values (chance accuracy is 1 / n_values)",
    "n_pairs": "key -> value pairs shown per sequence",
    "d_model": "model width",
    "num_heads": "heads per fast-weight layer",
    "num_layers": "layers",
    "batch_size": "sequences per step",
    "steps": "training steps",
    "lr": "Adam learning rate",
    "seed": "random seed",
}


def parse_args(argv: Sequence[str] | None = None) -> Config:
    p = cli.parser(__doc__)
    for f in dataclasses.fields(Config):
        if f.name == "threads":
            cli.add_threads(p)
        else:
            p.add_argument(f"--{f.name.replace('_', '-')}", type=type(f.default), default=f.default, help=HELP[f.name])
    return Config(**vars(cli.parse(p, argv)))


if __name__ == "__main__":  # answer --help and bad flags before the heavy imports below
    CONFIG = parse_args()

import torch
from torch import nn

from adaptmem.layers import FastWeightStack, layer_kinds
from adaptmem.utils import configure_threads, count_parameters, progress, seed_everything


def make_batch(cfg: Config, batch_size: int, gen: torch.Generator):
    """Keys and values ``[B, n_pairs + 1]`` (the last value is the "unknown" token
    ``n_values``) and the answer ``[B]``."""
    keys = torch.stack([torch.randperm(cfg.n_keys, generator=gen)[: cfg.n_pairs] for _ in range(batch_size)])
    values = torch.randint(cfg.n_values, (batch_size, cfg.n_pairs), generator=gen)
    ask = torch.randint(cfg.n_pairs, (batch_size,), generator=gen)
    keys = torch.cat((keys, keys.gather(1, ask[:, None])), dim=1)
    unknown = torch.full((batch_size, 1), cfg.n_values)
    return keys, torch.cat((values, unknown), dim=1), values.gather(1, ask[:, None])[:, 0]


class RecallModel(nn.Module):
    def __init__(self, cfg: Config) -> None:
        super().__init__()
        self.key_embed = nn.Embedding(cfg.n_keys, cfg.d_model)
        self.value_embed = nn.Embedding(cfg.n_values + 1, cfg.d_model)
        # final_norm applies to the fast-weight blocks; an LSTM stack is plain nn.LSTM layers
        self.core = FastWeightStack(cfg.kind, cfg.num_layers, cfg.d_model, cfg.num_heads, final_norm=True)
        self.head = nn.Linear(self.core.out_dim, cfg.n_values)

    def forward(self, keys: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        h, _ = self.core(self.key_embed(keys) + self.value_embed(values))
        return self.head(h[:, -1])


def main(cfg: Config) -> None:
    cli.check_choice("--kind", cfg.kind, layer_kinds())
    configure_threads(cfg.threads)
    seed_everything(cfg.seed)
    model = RecallModel(cfg)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    gen = torch.Generator().manual_seed(cfg.seed)
    start = time.time()
    bar = progress(range(cfg.steps), desc=cfg.kind)
    for step in bar:
        keys, values, answer = make_batch(cfg, cfg.batch_size, gen)
        loss = nn.functional.cross_entropy(model(keys, values), answer)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 50 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}")
    bar.close()
    train_s = time.time() - start
    model.eval()
    with torch.no_grad():
        keys, values, answer = make_batch(cfg, 2000, torch.Generator().manual_seed(cfg.seed + 1))
        acc = (model(keys, values).argmax(-1) == answer).float().mean().item()
    params = count_parameters(model)
    print("\n| model | params | steps | test accuracy | chance | train time | s/step |\n|---|---|---|---|---|---|---|")
    print(
        f"| {cfg.kind} | {params:,} | {cfg.steps} | {acc:.3f} | {1 / cfg.n_values:.3f} | {train_s:.0f} s | "
        f"{train_s / max(1, cfg.steps):.3f} |"
    )


if __name__ == "__main__":
    main(CONFIG)
