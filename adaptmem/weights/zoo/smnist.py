"""Sequential MNIST with per-network rotations.

A 28x28 digit is rotated by the network's angle, cut into 7x7 tiles of 4x4 pixels read row
by row, and preceded by a zero BOS tile: a ``[50, 16]`` sequence. The network predicts the
label at every position; accuracy is read at the last one.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
import torch.nn.functional as F

TILE = 4
SEQ_LEN = 1 + (28 // TILE) ** 2  # 50
IN_FEATURES = TILE * TILE  # 16
CLASSES = 10


def rotate(images: torch.Tensor, degrees: torch.Tensor) -> torch.Tensor:
    """Rotate ``images [M, 28, 28]`` (float) counter-clockwise by ``degrees [M]`` (bilinear, zero fill)."""
    rad = degrees.to(images.dtype) * (math.pi / 180.0)
    cos, sin = torch.cos(rad), torch.sin(rad)
    zero = torch.zeros_like(cos)
    theta = torch.stack([torch.stack([cos, -sin, zero], -1), torch.stack([sin, cos, zero], -1)], -2)
    grid = F.affine_grid(theta, [images.shape[0], 1, 28, 28], align_corners=False)
    return F.grid_sample(images.unsqueeze(1), grid, mode="bilinear", padding_mode="zeros", align_corners=False).squeeze(
        1
    )


def to_tiles(images: torch.Tensor) -> torch.Tensor:
    """``[..., 28, 28] -> [..., 50, 16]``: a zero BOS tile, then 49 row-major 4x4 tiles."""
    lead = images.shape[:-2]
    g = 28 // TILE
    t = images.reshape(*lead, g, TILE, g, TILE).transpose(-3, -2).reshape(*lead, g * g, TILE * TILE)
    return torch.cat([t.new_zeros(*lead, 1, TILE * TILE), t], dim=-2)


def rotated_tiles(images_u8: torch.Tensor, degrees: torch.Tensor) -> torch.Tensor:
    """``uint8 [K, B, 28, 28]`` and per-network angles ``[K]`` -> ``float [K, B, 50, 16]`` in [0, 1]."""
    K, B = images_u8.shape[:2]
    x = images_u8.reshape(K * B, 28, 28).float().div_(255.0)
    x = rotate(x, degrees.repeat_interleave(B))
    return to_tiles(x.view(K, B, 28, 28))


@lru_cache(maxsize=2)
def mnist_pools(data_dir: str, split: str, seed: int, train_frac: float = 0.8) -> tuple[torch.Tensor, ...]:
    """``(train_images, train_labels, heldout_images, heldout_labels)``: an 80/20 split of one
    MNIST split, the same for every network of a zoo (cached per process)."""
    from adaptmem.data.mnist import load_mnist

    images, labels = load_mnist(data_dir, split)
    perm = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))
    cut = int(round(train_frac * len(images)))
    tr, ho = perm[:cut], perm[cut:]
    return images[tr], labels[tr], images[ho], labels[ho]
