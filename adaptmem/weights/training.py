"""Train a weight encoder jointly with an emulator; evaluate and encode zoos."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from adaptmem.utils.checkpoint import load_checkpoint, save_checkpoint
from adaptmem.utils.checks import check_bool, check_choice, check_float, check_positive_int
from adaptmem.utils.logging import MetricLogger
from adaptmem.utils.parameters import count_parameters  # noqa: F401  (re-exported: its old home)
from adaptmem.utils.progress import progress
from adaptmem.weights.emulator import LOSSES, Emulator, emulation_loss
from adaptmem.weights.encoders.base import WeightEncoder
from adaptmem.weights.symmetries import permute_hidden, random_permutations
from adaptmem.weights.zoo.dataset import ZooDataset


@dataclass
class EmulationConfig:
    """How to train an encoder + emulator. Defaults are the paper's (100k steps; needs a GPU
    for the heavier encoders); the examples pass shorter runs.

    Args:
        steps: optimiser steps.
        batch_size: zoo entries per step (one random rollout each).
        lr, weight_decay: AdamW (constant learning rate).
        clip: gradient-norm clip, applied to the encoder and to the emulator separately.
        loss: ``"tv"`` (total variation) or ``"reverse_kl"``.
        augment: permute the hidden units of every entry at random (a fresh permutation per
            entry); ``None`` = only for encoders that are not permutation-invariant.
        eval_every: steps between validation evaluations (when a validation set is given).
        eval_rollouts: rollouts per entry used by those evaluations (``None``: all).
        save_every: steps between checkpoints (when a checkpoint path is given).
        seed: batch order and augmentation.
    """

    steps: int = 100_000
    batch_size: int = 64
    lr: float = 1e-4
    weight_decay: float = 0.01
    clip: float = 0.1
    loss: str = "tv"
    augment: bool | None = None
    eval_every: int = 1000
    eval_rollouts: int | None = 4
    save_every: int = 1000
    seed: int = 0

    def __post_init__(self) -> None:
        fn = "EmulationConfig"
        check_choice(fn, "loss", self.loss, LOSSES)
        for name in ("steps", "batch_size", "eval_every", "save_every"):
            check_positive_int(fn, name, getattr(self, name))
        if self.eval_rollouts is not None:
            check_positive_int(fn, "eval_rollouts", self.eval_rollouts)
        for name in ("lr", "weight_decay", "clip"):
            check_float(fn, name, getattr(self, name), lo=0.0, lo_open=name == "lr")
        if self.augment is not None:
            check_bool(fn, "augment", self.augment)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise TypeError(f"{fn}: seed must be an int, got {type(self.seed).__name__}")


def train_emulation(
    encoder: WeightEncoder,
    emulator: Emulator,
    train: ZooDataset,
    cfg: EmulationConfig,
    *,
    valid: ZooDataset | None = None,
    checkpoint: str | os.PathLike | None = None,
    log_dir: str | os.PathLike | None = None,
    show_progress: bool = True,
    wandb: str | None = None,
) -> list[dict[str, float]]:
    """Train ``encoder`` and ``emulator`` in place to reproduce the zoo's output distributions.

    Resumes exactly from ``checkpoint`` when it exists (weights, optimiser, batch RNG). Returns
    the history: one row per evaluation with ``step``, ``train_loss`` (mean since the last row)
    and, with ``valid``, ``valid_loss``. Those rows also go to ``log_dir`` (CSV) and, with
    ``wandb`` (a project name, needs ``log_dir``), to Weights & Biases.
    """
    if wandb is not None and log_dir is None:
        raise ValueError("train_emulation: wandb needs a log_dir (W&B's files and run id are kept there)")
    if encoder.spec != train.spec:
        raise ValueError(f"train_emulation: the encoder's spec {encoder.spec} differs from the zoo's {train.spec}")
    augment = (not encoder.permutation_invariant) if cfg.augment is None else cfg.augment
    model = nn.ModuleDict({"encoder": encoder, "emulator": emulator})
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(cfg.seed)
    start, history = 0, []
    if checkpoint is not None and Path(checkpoint).exists():
        extra = load_checkpoint(checkpoint, model=model, optimizer=opt)
        start, history = extra["step"], extra["history"]
        gen.set_state(extra["generator"])
    logger = None
    if log_dir is not None:
        logger = MetricLogger(
            log_dir,
            tensorboard=False,
            resume_step=start,
            wandb=wandb,
            wandb_config=asdict(cfg),
            wandb_name=type(encoder).__name__,
        )
    model.train()
    running, count = 0.0, 0
    bar = progress(
        range(start, cfg.steps),
        total=cfg.steps,
        initial=start,
        desc=type(encoder).__name__,
        disable=None if show_progress else True,
    )
    for step in bar:
        b = train.sample(cfg.batch_size, gen)
        w = b["weights"]
        if augment:
            w = permute_hidden(w, train.spec, random_permutations(train.spec, len(w), gen))
        loss = emulation_loss(emulator(b["inputs"], encoder(w)), b["log_probs"], cfg.loss)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(encoder.parameters(), cfg.clip)
        nn.utils.clip_grad_norm_(emulator.parameters(), cfg.clip)
        opt.step()
        running, count = running + loss.item(), count + 1
        done = step + 1
        if done % cfg.eval_every == 0 or done == cfg.steps:
            row = {"step": done, "train_loss": running / count}
            if valid is not None:
                row["valid_loss"] = evaluate_emulation(encoder, emulator, valid, cfg.loss, rollouts=cfg.eval_rollouts)
                model.train()
            history.append(row)
            running, count = 0.0, 0
            if logger is not None:
                logger.log("emulation", **row)
            bar.set_postfix({k: f"{v:.4f}" for k, v in row.items() if k != "step"})
        if checkpoint is not None and (done % cfg.save_every == 0 or done == cfg.steps):
            save_checkpoint(
                checkpoint, model=model, optimizer=opt, step=done, generator=gen.get_state(), history=history
            )
    bar.close()
    if logger is not None:
        logger.close()
    model.eval()
    return history


@torch.no_grad()
def evaluate_emulation(
    encoder: WeightEncoder,
    emulator: Emulator,
    data: ZooDataset,
    loss: str = "tv",
    *,
    rollouts: int | None = None,
    batch_size: int = 64,
) -> float:
    """Mean emulation loss over every entry of ``data`` and its first ``rollouts`` rollouts (all by default)."""
    check_choice("evaluate_emulation", "loss", loss, LOSSES)
    was = (encoder.training, emulator.training)
    encoder.eval()
    emulator.eval()
    R = data.num_rollouts if rollouts is None else min(rollouts, data.num_rollouts)
    total, n = 0.0, 0
    for s in range(0, len(data), batch_size):
        items = np.arange(s, min(s + batch_size, len(data)))
        z = None
        for r in range(R):
            b = data.batch(items, np.full(len(items), r))
            if z is None:
                z = encoder(b["weights"])
            total += emulation_loss(emulator(b["inputs"], z), b["log_probs"], loss).item() * len(items)
            n += len(items)
    encoder.train(was[0])
    emulator.train(was[1])
    return total / n


@torch.no_grad()
def encode(encoder: WeightEncoder, data: ZooDataset | torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """z for every entry of a zoo split (or for a ``[N, P]`` tensor of weights), ``[N, z_dim]``."""
    check_positive_int("encode", "batch_size", batch_size)
    if not isinstance(data, (ZooDataset, torch.Tensor)):
        raise TypeError(f"encode: data must be a ZooDataset or a [N, P] tensor, got {type(data).__name__}")
    was = encoder.training
    encoder.eval()
    weights = data.weights() if isinstance(data, ZooDataset) else data
    z = torch.cat([encoder(weights[s : s + batch_size]) for s in range(0, len(weights), batch_size)])
    encoder.train(was)
    return z
