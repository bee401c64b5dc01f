"""Downstream probes on frozen codes z, and a PCA view of them."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from adaptmem.utils.atomic import atomic_write
from adaptmem.utils.checks import check_choice, check_floating, check_positive_int, fmt_shape

KINDS = ("classification", "regression")


class DownstreamProbe(nn.Module):
    """A small MLP from z to one or more targets, fitted full-batch with Adam.

    Classification targets are integer ``[N]`` or ``[N, K]`` (K independent labels, each in
    ``0 .. num_classes - 1``); regression targets are float ``[N]`` or ``[N, K]`` (standardised
    internally). :meth:`score` gives accuracy (mean over the K labels) or R^2 (mean over K;
    NaN when a target is constant on the scored set).

    Example::

        >>> probe = DownstreamProbe.fit(z_train, y_train, "classification")
        >>> probe.score(z_test, y_test)
    """

    def __init__(self, z_dim: int, num_targets: int, kind: str, num_classes: int = 1, hidden: int = 64) -> None:
        super().__init__()
        self.kind = check_choice("DownstreamProbe", "kind", kind, KINDS)
        for name, v in (
            ("z_dim", z_dim),
            ("num_targets", num_targets),
            ("num_classes", num_classes),
            ("hidden", hidden),
        ):
            check_positive_int("DownstreamProbe", name, v)
        self.z_dim = z_dim
        self.num_targets, self.num_classes = num_targets, num_classes
        out = num_targets * (num_classes if kind == "classification" else 1)
        self.net = nn.Sequential(nn.Linear(z_dim, hidden), nn.ReLU(), nn.Linear(hidden, out))
        self.register_buffer("mean", torch.zeros(num_targets))
        self.register_buffer("std", torch.ones(num_targets))

    @classmethod
    def fit(
        cls,
        z: torch.Tensor,
        y: torch.Tensor | np.ndarray,
        kind: str,
        *,
        hidden: int = 64,
        steps: int = 500,
        lr: float = 1e-2,
        weight_decay: float = 1e-4,
        num_classes: int | None = None,
        seed: int = 0,
    ) -> DownstreamProbe:
        y = _targets(z, y, kind)
        torch.manual_seed(seed)
        classes = int(y.max()) + 1 if kind == "classification" and num_classes is None else (num_classes or 1)
        probe = cls(z.shape[1], y.shape[1], kind, classes, hidden)
        if kind == "regression":
            probe.mean.copy_(y.mean(0))
            probe.std.copy_(y.std(0).clamp_min(1e-8))
        opt = torch.optim.Adam(probe.parameters(), lr=lr, weight_decay=weight_decay)
        z = z.detach().float()
        for _ in range(steps):
            loss = probe._loss(z, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        return probe.eval()

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        check_floating("DownstreamProbe", "z", z)
        if z.dim() != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"DownstreamProbe: z must be [N, z_dim] = (*, {self.z_dim}), got shape {fmt_shape(z)}")
        out = self.net(z)
        if self.kind == "classification":
            return out.view(len(z), self.num_targets, self.num_classes)
        return out * self.std + self.mean

    def _loss(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        out = self.net(z)
        if self.kind == "classification":
            return nn.functional.cross_entropy(out.view(-1, self.num_classes), y.flatten())
        return ((out - (y - self.mean) / self.std) ** 2).mean()

    @torch.no_grad()
    def score(self, z: torch.Tensor, y: torch.Tensor | np.ndarray) -> float:
        y = _targets(z, y, self.kind)
        pred = self(z.float())
        if self.kind == "classification":
            return (pred.argmax(-1) == y).float().mean().item()
        sse = ((pred - y) ** 2).sum(0)
        sst = ((y - y.mean(0)) ** 2).sum(0)
        if (sst <= 1e-12 * len(y)).any():
            return float("nan")  # R^2 is undefined for a constant target
        return (1 - sse / sst).mean().item()


def _targets(z: torch.Tensor, y: torch.Tensor | np.ndarray, kind: str) -> torch.Tensor:
    y = torch.as_tensor(np.asarray(y))
    if y.dim() == 1:
        y = y.unsqueeze(1)
    if z.dim() != 2 or y.dim() != 2 or len(y) != len(z):
        raise ValueError(
            f"DownstreamProbe: z must be [N, z_dim] and y [N] or [N, K], got {fmt_shape(z)} and {fmt_shape(y)}"
        )
    if kind == "classification":
        if y.is_floating_point() or (y < 0).any():
            raise ValueError("DownstreamProbe: classification targets must be non-negative integers")
        return y.long()
    return y.float()


def downstream_targets(kind: str, labels: dict[str, np.ndarray]) -> dict[str, tuple[np.ndarray, str]]:
    """The prediction targets the paper probes, from :meth:`ZooDataset.labels`.

    Formal languages: ``task`` (the three offsets, 6 classes each), ``accuracy`` (grammar
    acceptance, regression) and ``checkpoint`` (training-step index, classification).
    Sequential MNIST: ``angle`` (regression on (cos, sin)), ``accuracy``,
    ``generalisation_gap`` (regression) and ``checkpoint``.
    """
    check_choice("downstream_targets", "kind", kind, ("formal_language", "smnist"))
    need = (
        ("task", "accuracy", "checkpoint")
        if kind == "formal_language"
        else ("angle", "accuracy", "generalisation_gap", "checkpoint")
    )
    missing = [n for n in need if not isinstance(labels, dict) or n not in labels]
    if missing:
        raise ValueError(f"downstream_targets: labels lacks {missing} for a {kind} zoo (from ZooDataset.labels)")
    if kind == "formal_language":
        return {
            "task": (labels["task"] + 3, "classification"),
            "accuracy": (labels["accuracy"], "regression"),
            "checkpoint": (labels["checkpoint"], "classification"),
        }
    rad = np.deg2rad(labels["angle"])
    return {
        "angle": (np.stack([np.cos(rad), np.sin(rad)], 1), "regression"),
        "accuracy": (labels["accuracy"], "regression"),
        "generalisation_gap": (labels["generalisation_gap"], "regression"),
        "checkpoint": (labels["checkpoint"], "classification"),
    }


def pca(z: torch.Tensor, k: int = 2) -> torch.Tensor:
    """Project ``z [N, d]`` on its top-``k`` principal components, ``[N, k]``."""
    check_floating("pca", "z", z)
    if z.dim() != 2 or z.shape[0] < 2:
        raise ValueError(f"pca: z must be [N, d] with N >= 2, got shape {fmt_shape(z)}")
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= min(z.shape):
        raise ValueError(f"pca: k must be an int in [1, min(N, d) = {min(z.shape)}], got {k!r}")
    if not bool(torch.isfinite(z).all()):
        raise ValueError("pca: z contains NaN or infinite entries")
    zc = z - z.mean(0)
    _, _, vh = torch.linalg.svd(zc, full_matrices=False)
    return zc @ vh[:k].T


def plot_pca(
    points: dict[str, tuple[torch.Tensor, np.ndarray]], path: str | os.PathLike, *, color_label: str = ""
) -> Path | None:
    """One PCA scatter panel per name: ``{name: (z [N, d], colour values [N])}``; ``None``
    when matplotlib is missing."""
    if not isinstance(points, dict) or not points:
        raise ValueError(f"plot_pca: points must be a non-empty dict {{name: (z, colours)}}, got {points!r:.60}")
    for name, pair in points.items():
        if not (
            isinstance(pair, tuple)
            and len(pair) == 2
            and isinstance(pair[0], torch.Tensor)
            and len(pair[1]) == len(pair[0])
        ):
            raise ValueError(
                f"plot_pca: points[{name!r}] must be (z [N, d], colour values [N]) with one colour per row"
            )
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, axes = plt.subplots(1, len(points), figsize=(4 * len(points), 3.6), squeeze=False)
    for ax, (name, (z, c)) in zip(axes[0], points.items()):
        xy = pca(z.float()).numpy()
        sc = ax.scatter(xy[:, 0], xy[:, 1], c=c, s=6, cmap="viridis")
        ax.set_title(name)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(sc, ax=axes[0].tolist(), label=color_label)
    path = Path(path)
    atomic_write(path, lambda f: fig.savefig(f, format=path.suffix[1:] or "png", dpi=110))
    plt.close(fig)
    return path
