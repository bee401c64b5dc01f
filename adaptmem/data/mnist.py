"""MNIST in the original IDX format (``*-idx3-ubyte`` / ``*-idx1-ubyte``, gzipped or not)."""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import torch

from adaptmem.data.download import DataNotFoundError, download, missing_data_message
from adaptmem.utils.atomic import atomic_write
from adaptmem.utils.integrity import CorruptFileError

_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)
_MD5 = {  # of the original gzipped files (the digests torchvision and others publish for these mirrors)
    "train-images-idx3-ubyte": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte": "ec29112dd5afa0611ce80d1b7f02629c",
}
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one IDX file (``.gz`` or plain) into a NumPy array."""
    path = Path(path)
    if path.is_dir():
        raise CorruptFileError(path, "is a directory, not an IDX file")
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (gzip.BadGzipFile, EOFError, zlib.error) as e:
        raise CorruptFileError(path, f"is not a readable gzip file ({e})") from e
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise CorruptFileError(path, f"is not an IDX file (bad magic number {data[:4]!r})")
    ndim = data[3]
    if len(data) < 4 + 4 * ndim:
        raise CorruptFileError(path, f"is truncated inside its header ({len(data)} bytes)")
    dims = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    dtype = np.dtype(_IDX_DTYPES[data[2]])
    arr = np.frombuffer(data, dtype=dtype, offset=4 + 4 * ndim)
    if arr.size != int(np.prod(dims)):
        raise CorruptFileError(path, f"holds {arr.size} values, its header says {dims} (truncated or padded)")
    return arr.reshape(dims).astype(dtype.newbyteorder("="))


def _find(data_dir: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz", stem.replace("-idx", ".idx"), stem.replace("-idx", ".idx") + ".gz"):
        if (data_dir / name).exists():
            return data_dir / name
    return None


def load_mnist(
    data_dir: str | os.PathLike, split: str = "train", *, download_if_missing: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Images ``uint8 [N, 28, 28]`` and labels ``int64 [N]`` of one MNIST split.

    Args:
        data_dir: folder with the IDX files (e.g. ``t10k-images-idx3-ubyte.gz``).
        split: ``"train"`` (60,000 digits) or ``"test"`` (10,000).
        download_if_missing: fetch the split's two files into ``data_dir`` when absent.
    """
    if split not in _FILES:
        raise ValueError(f"load_mnist: split must be 'train' or 'test', got {split!r}")
    data_dir = Path(data_dir)
    paths = []
    for stem in _FILES[split]:
        p = _find(data_dir, stem)
        if p is None:
            if not download_if_missing:
                raise DataNotFoundError(missing_data_message("load_mnist", f"MNIST's {stem}[.gz]", data_dir))
            p = download([m + stem + ".gz" for m in _MIRRORS], data_dir / (stem + ".gz"), md5=_MD5[stem])
        paths.append(p)
    images, labels = read_idx(paths[0]), read_idx(paths[1])
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise ValueError(f"load_mnist: {paths[0]} / {paths[1]} have shapes {images.shape} / {labels.shape}")
    return torch.from_numpy(images.copy()), torch.from_numpy(labels.astype(np.int64))


def write_idx(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write a ``uint8`` array as an IDX file (gzipped when ``path`` ends in ``.gz``); for tests."""
    array = np.asarray(array)
    if array.dtype != np.uint8 and not (
        np.issubdtype(array.dtype, np.integer) and array.size and 0 <= array.min() and array.max() <= 255
    ):
        raise TypeError(f"write_idx: array must be uint8 (or integers in [0, 255]), got dtype {array.dtype}")
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.tobytes()
    if str(path).endswith(".gz"):
        atomic_write(path, lambda f: f.write(gzip.compress(payload)))
    else:
        atomic_write(path, lambda f: f.write(payload))
