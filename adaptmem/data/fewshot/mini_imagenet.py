"""Mini-ImageNet (Vinyals et al., 2016; Ravi & Larochelle's 64 / 16 / 20 class split), 84x84 RGB.

The data set cannot be downloaded from an official source, so this module only reads the
common layouts (``split`` is ``"train"``, ``"val"`` or ``"test"``):

1. the pickle cache ``mini-imagenet-cache-<split>.pkl``: ``{"image_data": uint8 [N, 84, 84, 3],
   "class_dict": {wnid: [indices]}}``;
2. the category-split pickles ``miniImageNet_category_split_<split>.pickle`` (train:
   ``..._train_phase_train.pickle``): ``{"data": uint8 [N, 84, 84, 3], "labels": [N]}``,
   written by Python 2 (read with ``encoding="latin1"``);
3. an image folder ``<split>/<wnid>/*.jpg``;
4. Ravi & Larochelle's ``images/*.jpg`` with ``<split>.csv`` (``filename,label`` rows).
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import torch

from adaptmem.data.fewshot._images import IMAGE_EXTENSIONS, read_image_folder
from adaptmem.data.fewshot.episodes import ClassImages
from adaptmem.utils.checks import check_choice
from adaptmem.utils.integrity import CorruptFileError, load_data_pickle

SPLITS = ("train", "val", "test")


def _get(d: dict, key: str):
    return d[key] if key in d else d[key.encode()]  # Python 2 pickles may have bytes keys


def _from_arrays(images: np.ndarray, labels: np.ndarray, names: list[str], source: Path) -> ClassImages:
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValueError(
            f"load_mini_imagenet: {source} must hold uint8 [N, H, W, 3] images, got {images.shape} {images.dtype}"
        )
    # [N, H, W, 3] -> a [N, 3, H, W] view; episodes copy only the images they draw.
    return ClassImages(torch.from_numpy(images).permute(0, 3, 1, 2), torch.as_tensor(labels, dtype=torch.long), names)


def _structured(read):
    """``read(path)`` with a missing or malformed entry reported as a CorruptFileError naming the file."""

    def wrapped(path: Path) -> ClassImages:
        try:
            return read(path)
        except (KeyError, TypeError, AttributeError, IndexError) as e:
            raise CorruptFileError(path, f"lacks the mini-ImageNet entries ({type(e).__name__}: {e})") from e

    return wrapped


@_structured
def _read_cache_pickle(path: Path) -> ClassImages:
    d = load_data_pickle(path)
    class_dict = _get(d, "class_dict")
    names = sorted(k.decode() if isinstance(k, bytes) else k for k in class_dict)
    by_name = {(k.decode() if isinstance(k, bytes) else k): v for k, v in class_dict.items()}
    images = _get(d, "image_data")
    labels = np.full(len(images), -1, dtype=np.int64)
    for i, n in enumerate(names):
        labels[np.asarray(by_name[n], dtype=np.int64)] = i
    keep = labels >= 0
    return _from_arrays(images[keep] if not keep.all() else images, labels[keep], names, path)


@_structured
def _read_category_pickle(path: Path) -> ClassImages:
    d = load_data_pickle(path)
    raw = np.asarray(_get(d, "labels"), dtype=np.int64)
    ids, labels = np.unique(raw, return_inverse=True)
    names = [str(i) for i in ids]
    if "catname2label" in d or b"catname2label" in d:
        inv = {v: (k.decode() if isinstance(k, bytes) else k) for k, v in _get(d, "catname2label").items()}
        names = [inv.get(int(i), str(i)) for i in ids]
    return _from_arrays(_get(d, "data"), labels, names, path)


def load_mini_imagenet(root: str | os.PathLike, split: str = "train", *, image_size: int = 84) -> ClassImages:
    """One Mini-ImageNet split from any of the layouts in the module docstring (tried in order)."""
    fn = "load_mini_imagenet"
    check_choice(fn, "split", split, SPLITS)
    root = Path(root)
    cache = root / f"mini-imagenet-cache-{split}.pkl"
    if cache.is_file():
        return _read_cache_pickle(cache)
    cat = root / f"miniImageNet_category_split_{'train_phase_train' if split == 'train' else split}.pickle"
    if cat.is_file():
        return _read_category_pickle(cat)
    folder = root / split
    if folder.is_dir():
        files = [(p.parent.name, p) for p in folder.glob("*/*") if p.suffix.lower() in IMAGE_EXTENSIONS]
        return read_image_folder(fn, files, image_size, folder)
    table = root / f"{split}.csv"
    if table.is_file() and (root / "images").is_dir():
        with open(table, newline="") as f:
            rows = [r for r in csv.reader(f) if r and r[0] != "filename"]
        files = [(label, root / "images" / name) for name, label in rows]
        missing = [str(p) for _, p in files if not p.is_file()]
        if missing:
            raise FileNotFoundError(f"{fn}: {len(missing)} images listed in {table} are missing, e.g. {missing[0]}")
        return read_image_folder(fn, files, image_size, table)
    raise FileNotFoundError(
        f"{fn}: no Mini-ImageNet {split!r} split in {root}: expected {cache.name}, {cat.name}, "
        f"a folder {split}/<class>/*.jpg, or images/ with {split}.csv"
    )
