"""Decoding and resizing image files (Pillow is imported lazily: it is an optional extra)."""

from __future__ import annotations

import io
import os

import numpy as np

from adaptmem.utils.atomic import atomic_write


def _pil():
    try:
        from PIL import Image
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("reading image files needs Pillow: pip install 'adaptmem[fewshot]'") from e
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


def encode_png(array: np.ndarray, path: str | os.PathLike | None = None) -> bytes:
    """PNG bytes of a ``uint8 [H, W]`` or ``[H, W, 3]`` array (written to ``path`` if given); for tests."""
    Image = _pil()
    buf = io.BytesIO()
    Image.fromarray(np.asarray(array, dtype=np.uint8)).save(buf, format="PNG")
    data = buf.getvalue()
    if path is not None:
        atomic_write(path, lambda f: f.write(data))
    return data
