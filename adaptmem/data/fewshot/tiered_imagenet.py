"""tieredImageNet (Ren et al., ICLR 2018): 608 ImageNet classes under 34 high-level categories,
split by category (20 / 6 / 8), so the 351 / 97 / 160 train / val / test classes of different
splits share no category; 84x84 RGB.

The split is the one the released files define (the classes each file holds). Layouts read,
in this order, from ``root`` (``split`` is ``"train"``, ``"val"`` or ``"test"``):

1. Ren et al.'s release (``tiered-imagenet.tar``, see :func:`download_tiered_imagenet`):
   ``<split>_images_png.pkl``, a pickled sequence of PNG-encoded images (bytes, or uint8
   arrays of the bytes), and ``<split>_labels.pkl``, a dict with ``label_specific`` (the
   class of each image), ``label_general`` (its category) and, when present,
   ``label_specific_str`` (class names, indexed by ``label_specific``);
2. the same images decoded: ``<split>_images.npz`` (``images``: uint8 ``[N, 84, 84, 3]``) with
   ``<split>_labels.pkl`` (``label_specific``, or ``labels``);
3. an image folder ``<split>/<class>/*.jpg`` (e.g. written by a generator from ILSVRC-12).

Decoded, the train split is about 9.5 GB of uint8 images (at 84x84x3 bytes per image).
"""

from __future__ import annotations

import os
import shutil
import tarfile
from pathlib import Path

import numpy as np
import torch

from adaptmem.data.download import download
from adaptmem.data.fewshot._images import IMAGE_EXTENSIONS, decode_image, read_image_folder
from adaptmem.data.fewshot.episodes import ClassImages
from adaptmem.utils.atomic import atomic_write
from adaptmem.utils.checks import check_choice
from adaptmem.utils.integrity import CorruptFileError, load_data_pickle

SPLITS = ("train", "val", "test")
CLASSES = {"train": 351, "val": 97, "test": 160}  # the standard split's class counts
# Ren et al.'s archive on Google Drive (the link in their few-shot-ssl-public README), and its md5.
GDRIVE_ID = "1g1aIDy2Ar_MViF2gDXFYDBTR-HYecV07"
ARCHIVE = "tiered-imagenet.tar"
ARCHIVE_MD5 = "e07e811b9f29362d159a9edd0d838c62"
ARCHIVE_URLS = (f"https://drive.usercontent.google.com/download?id={GDRIVE_ID}&export=download&confirm=t",)


def _names(labels: dict, specific: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Class ids ``0 .. C-1`` (in order of the file's ids) and their names."""
    ids, index = np.unique(specific, return_inverse=True)
    strs = labels.get("label_specific_str")
    names = [str(strs[i]) for i in ids] if strs is not None and len(strs) > int(ids.max()) else [str(i) for i in ids]
    return index, names


def _read_labels(path: Path) -> tuple[dict, np.ndarray]:
    labels = load_data_pickle(path)
    if not isinstance(labels, dict):
        raise CorruptFileError(path, f"holds a {type(labels).__name__}, not the labels dict")
    labels = {(k.decode() if isinstance(k, bytes) else k): v for k, v in labels.items()}
    key = "label_specific" if "label_specific" in labels else "labels"
    if key not in labels:
        raise ValueError(
            f"load_tiered_imagenet: {path} has no 'label_specific' (or 'labels') entry, got keys {sorted(labels)}"
        )
    return labels, np.asarray(labels[key], dtype=np.int64)


def load_tiered_imagenet(root: str | os.PathLike, split: str = "train", *, image_size: int = 84) -> ClassImages:
    """One tieredImageNet split from any of the layouts in the module docstring (tried in order)."""
    fn = "load_tiered_imagenet"
    check_choice(fn, "split", split, SPLITS)
    root = Path(root)
    labels_file, png_file, npz_file = (
        root / f"{split}_labels.pkl",
        root / f"{split}_images_png.pkl",
        root / f"{split}_images.npz",
    )
    if labels_file.is_file() and (png_file.is_file() or npz_file.is_file()):
        labels, specific = _read_labels(labels_file)
        if png_file.is_file():
            encoded = load_data_pickle(png_file)
            images = np.stack(
                [
                    decode_image(
                        e if isinstance(e, bytes) else np.asarray(e, dtype=np.uint8).tobytes(), image_size, "RGB"
                    )
                    for e in encoded
                ]
            )
        else:
            with np.load(npz_file) as z:
                images = z["images"]
            if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
                raise ValueError(
                    f"{fn}: {npz_file} must hold uint8 [N, H, W, 3] images, got {images.shape} {images.dtype}"
                )
            images = images.transpose(0, 3, 1, 2)  # a [N, 3, H, W] view
        if len(images) != len(specific):
            raise ValueError(f"{fn}: {len(images)} images but {len(specific)} labels in {labels_file}")
        index, names = _names(labels, specific)
        return ClassImages(torch.from_numpy(images), torch.from_numpy(index), names)
    folder = root / split
    if folder.is_dir():
        files = [(p.parent.name, p) for p in folder.glob("*/*") if p.suffix.lower() in IMAGE_EXTENSIONS]
        return read_image_folder(fn, files, image_size, folder)
    raise FileNotFoundError(
        f"{fn}: no tieredImageNet {split!r} split in {root}: expected {labels_file.name} with {png_file.name} "
        f"(Ren et al.'s release; download_tiered_imagenet fetches it) or {npz_file.name}, "
        f"or a folder {split}/<class>/*.jpg"
    )


def download_tiered_imagenet(root: str | os.PathLike) -> Path:
    """Fetch Ren et al.'s ``tiered-imagenet.tar`` (about 13 GB; ImageNet's terms of use apply)
    into ``root`` and unpack its six pickles there; returns ``root``. Without a network, put the
    archive (or the pickles) in ``root`` by hand."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    archive = root / ARCHIVE
    if not archive.is_file():
        download(ARCHIVE_URLS, archive, md5=ARCHIVE_MD5, timeout=120.0)
    wanted = {f"{s}_{part}.pkl" for s in SPLITS for part in ("images_png", "labels")}
    with tarfile.open(archive) as tar:
        for member in tar:
            name = Path(member.name).name
            if member.isfile() and name in wanted and not (root / name).is_file():
                with tar.extractfile(member) as src:
                    atomic_write(root / name, lambda dst, src=src: shutil.copyfileobj(src, dst, 1 << 24))
    return root
