"""CIFAR-FS (Bertinetto et al., ICLR 2019) and FC100 (Oreshkin et al., NeurIPS 2018), 32x32 RGB.

Both re-split CIFAR-100's 100 classes (train and test images pooled: 600 per class):

- **CIFAR-FS**: 64 / 16 / 20 classes (lists below, from the authors' split files);
- **FC100**: by super-class, 12 / 4 / 4 super-classes = 60 / 20 / 20 classes, so that test
  classes share no super-class with training ones.

Reads the CIFAR-100 python version: ``cifar-100-python/{train,test,meta}`` pickles, either
unpacked or straight from ``cifar-100-python.tar.gz``; downloads the archive when asked.
"""

from __future__ import annotations

import os
import tarfile
import zlib
from pathlib import Path

import numpy as np
import torch

from adaptmem.data.download import DataNotFoundError, download, missing_data_message
from adaptmem.data.fewshot.episodes import ClassImages
from adaptmem.utils.checks import check_choice
from adaptmem.utils.integrity import CorruptFileError, load_data_pickle

CIFAR100_URL = "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"
CIFAR100_MD5 = "eb9058c3a382ffc7106e4002c42a8d85"

CIFAR_FS_VAL = (
    "beaver",
    "beetle",
    "butterfly",
    "camel",
    "cattle",
    "crab",
    "crocodile",
    "flatfish",
    "lamp",
    "maple_tree",
    "motorcycle",
    "otter",
    "sea",
    "shark",
    "television",
    "tractor",
)
CIFAR_FS_TEST = (
    "baby",
    "bed",
    "bicycle",
    "chimpanzee",
    "fox",
    "leopard",
    "man",
    "pickup_truck",
    "plain",
    "poppy",
    "rocket",
    "rose",
    "snail",
    "sweet_pepper",
    "table",
    "telephone",
    "wardrobe",
    "whale",
    "woman",
    "worm",
)
# CIFAR-100 super-class indices (coarse labels) of each FC100 split.
FC100_SUPERCLASSES = {
    "train": (1, 2, 3, 4, 5, 6, 9, 10, 15, 17, 18, 19),
    "val": (8, 11, 13, 16),
    "test": (0, 7, 12, 14),
}


def _unpickle(data: bytes, path: Path) -> dict:
    d = load_data_pickle(path, data, encoding="bytes")
    if not isinstance(d, dict):
        raise CorruptFileError(path, f"holds a {type(d).__name__}, not the CIFAR-100 dict")
    return {(k.decode() if isinstance(k, bytes) else k): v for k, v in d.items()}


def read_cifar100(root: str | os.PathLike, *, download_if_missing: bool = False) -> tuple[np.ndarray, dict]:
    """All 60,000 CIFAR-100 images ``uint8 [N, 32, 32, 3]`` and ``{"fine", "coarse", "fine_names"}``."""
    root = Path(root)
    folder = next((p for p in (root / "cifar-100-python", root) if (p / "meta").is_file()), None)
    archive = root / "cifar-100-python.tar.gz"
    if folder is not None:
        blobs = {n: (folder / n).read_bytes() for n in ("train", "test", "meta")}
    else:
        if not archive.is_file():
            if not download_if_missing:
                raise DataNotFoundError(
                    missing_data_message(
                        "read_cifar100", f"CIFAR-100 (cifar-100-python/{{train,test,meta}} or {archive.name})", root
                    )
                )
            download([CIFAR100_URL], archive, md5=CIFAR100_MD5)
        try:
            with tarfile.open(archive, "r:gz") as tar:
                blobs = {n: tar.extractfile(f"cifar-100-python/{n}").read() for n in ("train", "test", "meta")}
        except (tarfile.TarError, EOFError, OSError, KeyError, zlib.error) as e:
            raise CorruptFileError(archive, f"is not a readable CIFAR-100 archive ({type(e).__name__}: {e})") from e
        folder = archive
    parts = [_unpickle(blobs[n], folder / n) for n in ("train", "test")]
    meta = _unpickle(blobs["meta"], folder / "meta")
    try:
        _ = meta["fine_label_names"], [(p["data"], p["fine_labels"], p["coarse_labels"]) for p in parts]
    except KeyError as e:
        raise CorruptFileError(folder, f"lacks the CIFAR-100 entry {e}") from e
    images = np.concatenate([p["data"] for p in parts]).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    info = {
        "fine": np.concatenate([p["fine_labels"] for p in parts]).astype(np.int64),
        "coarse": np.concatenate([p["coarse_labels"] for p in parts]).astype(np.int64),
        "fine_names": [n.decode() if isinstance(n, bytes) else n for n in meta["fine_label_names"]],
    }
    return np.ascontiguousarray(images), info


def load_cifar_fewshot(
    root: str | os.PathLike, name: str = "cifar_fs", split: str = "train", *, download_if_missing: bool = False
) -> ClassImages:
    """One split of CIFAR-FS (``name="cifar_fs"``) or FC100 (``name="fc100"``) as ClassImages."""
    fn = "load_cifar_fewshot"
    check_choice(fn, "name", name, ("cifar_fs", "fc100"))
    check_choice(fn, "split", split, ("train", "val", "test"))
    images, info = read_cifar100(root, download_if_missing=download_if_missing)
    names = info["fine_names"]
    if name == "cifar_fs":
        held = {"val": set(CIFAR_FS_VAL), "test": set(CIFAR_FS_TEST)}
        wanted = held[split] if split != "train" else set(names) - held["val"] - held["test"]
        classes = [i for i, n in enumerate(names) if n in wanted]
    else:
        supers = set(FC100_SUPERCLASSES[split])
        classes = sorted({int(f) for f, c in zip(info["fine"], info["coarse"]) if int(c) in supers})
    remap = np.full(len(names), -1, dtype=np.int64)
    remap[classes] = np.arange(len(classes))
    keep = remap[info["fine"]] >= 0
    return ClassImages(
        torch.from_numpy(images[keep]).permute(0, 3, 1, 2),
        torch.from_numpy(remap[info["fine"][keep]]),
        [names[i] for i in classes],
    )
