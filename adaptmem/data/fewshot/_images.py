"""Decoding and resizing image files (Pillow is imported lazily: it is an optional extra)."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from adaptmem.utils.atomic import atomic_write
from adaptmem.utils.extras import install_hint

if TYPE_CHECKING:
    from adaptmem.data.fewshot.episodes import ClassImages

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")


def _pil():
    try:
        from PIL import Image
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(f"reading image files needs Pillow: {install_hint('fewshot', 'pillow')}") from e
    return Image


def decode_image(src: bytes | str | os.PathLike, size: int | None, mode: str) -> np.ndarray:
    """``uint8 [C, size, size]`` from encoded bytes or a path.

    ``mode`` is ``"L"`` (grayscale) or ``"RGB"``. Resizing uses Lanczos filtering, which keeps
    thin strokes (Omniglot) visible after down-sampling 105 -> 28.
    """
    Image = _pil()
    with Image.open(io.BytesIO(src) if isinstance(src, bytes) else src) as im:
        im = im.convert(mode)
        if size is not None and im.size != (size, size):
            im = im.resize((size, size), Image.LANCZOS)
        arr = np.asarray(im, dtype=np.uint8)
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


def resize_image(image: torch.Tensor, size: int) -> torch.Tensor:
    """A ``uint8 [C, H, W]`` tensor (C = 1 or 3) resized to ``[C, size, size]`` as :func:`decode_image` does."""
    Image = _pil()
    hwc = image.permute(1, 2, 0).numpy()
    im = Image.fromarray(hwc[:, :, 0] if hwc.shape[2] == 1 else hwc)
    arr = np.array(im.resize((size, size), Image.LANCZOS), dtype=np.uint8)  # a copy: PIL's arrays are read-only
    return torch.from_numpy(arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1).copy())


def encode_png(array: np.ndarray, path: str | os.PathLike | None = None) -> bytes:
    """PNG bytes of a ``uint8 [H, W]`` or ``[H, W, 3]`` array (written to ``path`` if given); for tests."""
    Image = _pil()
    buf = io.BytesIO()
    Image.fromarray(np.asarray(array, dtype=np.uint8)).save(buf, format="PNG")
    data = buf.getvalue()
    if path is not None:
        atomic_write(path, lambda f: f.write(data))
    return data


def read_image_folder(fn: str, files: list[tuple[str, Path]], image_size: int, source: Path) -> ClassImages:
    """``(class name, path)`` pairs -> ClassImages (classes sorted by name, files by name),
    every image decoded as RGB at ``image_size``; ``fn`` names the caller in errors."""
    from adaptmem.data.fewshot.episodes import ClassImages  # not at the top: episodes imports this module

    if not files:
        raise ValueError(f"{fn}: no images found in {source}")
    names = sorted({c for c, _ in files})
    index = {n: i for i, n in enumerate(names)}
    files = sorted(files, key=lambda f: (f[0], f[1].name))
    images = np.stack([decode_image(p, image_size, "RGB") for _, p in files])
    return ClassImages(torch.from_numpy(images), torch.tensor([index[c] for c, _ in files]), names)
