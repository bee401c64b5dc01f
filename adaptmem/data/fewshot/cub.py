"""CUB-200-2011 (Wah et al., 2011): 11,788 photos of 200 bird species, as a few-shot benchmark
with the 100 / 50 / 50 class split of Chen et al. ("A Closer Look at Few-shot Classification",
ICLR 2019).

That split is a rule, not a list: the 200 class folders of ``CUB_200_2011/images`` sorted by
name (``001.Black_footed_Albatross`` ... ``200.Common_Yellowthroat``), class ``i`` (from 0) is
a training class when ``i % 2 == 0``, validation when ``i % 4 == 1`` and test when
``i % 4 == 3`` (as in the authors' ``filelists/CUB/write_CUB_filelist.py``). Other CUB splits
in the literature (e.g. Hilliard et al., 2018) differ and are not provided.

Images (of varying sizes, a few grayscale) are decoded as RGB and resized to ``image_size``
squares (84 by default, the Mini-ImageNet size); bounding boxes are not used.
"""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

from adaptmem.data.download import DataNotFoundError, download, missing_data_message
from adaptmem.data.fewshot._images import IMAGE_EXTENSIONS, read_image_folder
from adaptmem.data.fewshot.episodes import ClassImages
from adaptmem.utils.checks import check_choice

SPLITS = ("train", "val", "test")
CLASSES = {"train": 100, "val": 50, "test": 50}
ARCHIVE = "CUB_200_2011.tgz"
ARCHIVE_URLS = ("https://data.caltech.edu/records/65de6-vp158/files/CUB_200_2011.tgz?download=1",)
ARCHIVE_MD5 = "97eceeb196236b17998738112f37df78"


def cub_split(class_folders: list[str], split: str) -> list[str]:
    """Chen et al.'s classes of ``split`` among ``class_folders`` (the module docstring's rule)."""
    check_choice("cub_split", "split", split, SPLITS)
    keep = {"train": lambda i: i % 2 == 0, "val": lambda i: i % 4 == 1, "test": lambda i: i % 4 == 3}[split]
    return [name for i, name in enumerate(sorted(class_folders)) if keep(i)]


def _images_dir(root: Path) -> Path | None:
    return next((d for d in (root / "CUB_200_2011" / "images", root / "images") if d.is_dir()), None)


def load_cub(
    root: str | os.PathLike, split: str = "train", *, image_size: int = 84, download_if_missing: bool = False
) -> ClassImages:
    """One split of CUB-200-2011 from ``root/CUB_200_2011/images/<class>/*.jpg`` (or
    ``root/images/...``), unpacking ``root/CUB_200_2011.tgz`` first when only the archive is
    there, and downloading it when ``download_if_missing``."""
    fn = "load_cub"
    check_choice(fn, "split", split, SPLITS)
    root = Path(root)
    images = _images_dir(root)
    if images is None:
        archive = root / ARCHIVE
        if not archive.is_file():
            if not download_if_missing:
                raise DataNotFoundError(
                    missing_data_message(fn, f"CUB-200-2011 (CUB_200_2011/images/ or {archive.name})", root)
                )
            root.mkdir(parents=True, exist_ok=True)
            download(ARCHIVE_URLS, archive, md5=ARCHIVE_MD5, timeout=120.0)
        with tarfile.open(archive, "r:gz") as tar:
            tar.extractall(root, members=[m for m in tar if m.name.startswith("CUB_200_2011/images/")], filter="data")
        images = root / "CUB_200_2011" / "images"
    folders = [d.name for d in images.iterdir() if d.is_dir()]
    wanted = set(cub_split(folders, split))
    files = [
        (p.parent.name, p)
        for p in images.glob("*/*")
        if p.parent.name in wanted and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")
    ]
    return read_image_folder(fn, files, image_size, images)
