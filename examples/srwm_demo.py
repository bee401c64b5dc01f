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

import argparse
import time
from dataclasses import dataclass

import torch
from torch import nn

from adaptmem.layers import FastWeightStack, layer_kinds
from adaptmem.utils import count_parameters, progress, seed_everything, set_threads


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
    threads: int = 2


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
    set_threads(cfg.threads)
    seed_everything(cfg.seed)
    model = RecallModel(cfg)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    gen = torch.Generator().manual_seed(cfg.seed)
    start = time.time()
    bar = progress(range(cfg.steps), desc=cfg.kind, disable=False)
    for step in bar:
        keys, values, answer = make_batch(cfg, cfg.batch_size, gen)
        loss = nn.functional.cross_entropy(model(keys, values), answer)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 50 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}")
    model.eval()
    with torch.no_grad():
        keys, values, answer = make_batch(cfg, 2000, torch.Generator().manual_seed(cfg.seed + 1))
        acc = (model(keys, values).argmax(-1) == answer).float().mean().item()
    params = count_parameters(model)
    print("\n| model | params | steps | test accuracy | chance | train time |\n|---|---|---|---|---|---|")
    print(f"| {cfg.kind} | {params:,} | {cfg.steps} | {acc:.3f} | {1 / cfg.n_values:.3f} | {time.time() - start:.0f} s |")


def parse_args() -> Config:
    cfg = Config()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for name, value in vars(cfg).items():
        choices = layer_kinds() if name == "kind" else None
        ap.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=value, choices=choices,
                        help=f"(default: {value})")
    return Config(**vars(ap.parse_args()))


if __name__ == "__main__":
    main(parse_args())
