"""One call from a data-set name to its train / val / test class splits."""

from __future__ import annotations

import os
from pathlib import Path

from adaptmem.data.fewshot.cifar import load_cifar_fewshot
from adaptmem.data.fewshot.cub import load_cub
from adaptmem.data.fewshot.episodes import ROTATIONS, ClassImages
from adaptmem.data.fewshot.mini_imagenet import load_mini_imagenet
from adaptmem.data.fewshot.omniglot import FULL_SETS, MINIMAL_SETS, load_omniglot, locate_omniglot_set, omniglot_splits
from adaptmem.data.fewshot.tiered_imagenet import download_tiered_imagenet, load_tiered_imagenet
from adaptmem.utils.checks import check_choice
from adaptmem.utils.paths import default_data_root

DATASETS = (
    "omniglot-minimal",
    "omniglot",
    "omniglot-lake",
    "mini-imagenet",
    "tiered-imagenet",
    "cifar-fs",
    "fc100",
    "cub",
)


def _set_dir(root: Path, names: tuple[str, ...], markers: tuple[str, ...]) -> Path:
    """A data set's folder under the data root: the first existing sub-folder of ``names``; else
    ``root`` itself when it holds the set's files (glob ``markers``, the older layout); else
    ``root / names[0]``, where a download goes (every set in its own sub-folder)."""
    found = next((root / n for n in names if (root / n).is_dir()), None)
    if found is not None:
        return found
    return root if any(any(root.glob(m)) for m in markers) else root / names[0]


def load_fewshot_splits(
    name: str,
    root: str | os.PathLike | None = None,
    *,
    download: bool = False,
    rotations: bool = True,
    flips: bool = False,
) -> dict[str, ClassImages]:
    """``{"train", "val", "test"}`` class splits of a few-shot benchmark.

    - ``omniglot-minimal``: Lake's two minimal background sets (8 alphabets), whole alphabets
      held out (val: Early_Aramaic; test: Sanskrit, Tagalog).
    - ``omniglot``: Vinyals' 1028 / 172 / 423 character split of the full set.
    - ``omniglot-lake``: background alphabets for training, evaluation alphabets for testing.
    - ``mini-imagenet``: 64 / 16 / 20 classes at 84x84 (read only; no public download).
    - ``tiered-imagenet``: Ren et al.'s 351 / 97 / 160 classes at 84x84.
    - ``cifar-fs`` / ``fc100``: CIFAR-100 re-splits at 32x32.
    - ``cub``: CUB-200-2011 birds, Chen et al.'s 100 / 50 / 50 classes, resized to 84x84.

    Omniglot classes include 90/180/270-degree rotations unless ``rotations=False``;
    ``flips=True`` adds a mirrored twin of every class (of any set). ``root`` defaults to
    :func:`adaptmem.utils.default_data_root`; each set is also looked for in a sub-folder named
    after it (``omniglot/``, ``mini-imagenet/``, ``tiered-imagenet/``, ``cifar100/``, ``cub/``).
    """
    splits = _load_splits(name, root, download=download, rotations=rotations)
    return {k: v.with_flips() for k, v in splits.items()} if flips else splits


def _load_splits(
    name: str, root: str | os.PathLike | None, *, download: bool, rotations: bool
) -> dict[str, ClassImages]:
    check_choice("load_fewshot_splits", "name", name, DATASETS)
    root = Path(root) if root is not None else default_data_root()
    if name.startswith("omniglot"):
        wanted = MINIMAL_SETS if name == "omniglot-minimal" else FULL_SETS
        # Lake's zips in the data root, its omniglot/ or torchvision's omniglot-py/; downloads go to omniglot/.
        folder = root if all(locate_omniglot_set(root, s) for s in wanted) else root / "omniglot"
        sets = load_omniglot(folder, wanted, download_if_missing=download)
        scheme = {"omniglot-minimal": "minimal", "omniglot": "vinyals", "omniglot-lake": "background_evaluation"}[name]
        return omniglot_splits(sets, scheme, rotations=ROTATIONS if rotations else (0,))
    if name == "mini-imagenet":
        folder = _set_dir(
            root,
            ("mini-imagenet", "miniimagenet", "miniImageNet"),
            ("mini-imagenet-cache-*.pkl", "miniImageNet_category_split_*.pickle"),
        )
        return {s: load_mini_imagenet(folder, s) for s in ("train", "val", "test")}
    if name == "tiered-imagenet":
        folder = _set_dir(
            root,
            ("tiered-imagenet", "tieredimagenet", "tieredImageNet"),
            ("*_labels.pkl", "tiered-imagenet.tar", "*.npz"),
        )
        if download and not any(folder.glob("*_labels.pkl")) and not (folder / "train").is_dir():
            download_tiered_imagenet(folder)
        return {s: load_tiered_imagenet(folder, s) for s in ("train", "val", "test")}
    if name == "cub":
        folder = _set_dir(root, ("cub", "CUB"), ("CUB_200_2011*",))
        return {s: load_cub(folder, s, download_if_missing=download) for s in ("train", "val", "test")}
    folder = _set_dir(root, ("cifar100", "cifar-100"), ("cifar-100-python*",))
    return {
        s: load_cifar_fewshot(folder, name.replace("-", "_"), s, download_if_missing=download)
        for s in ("train", "val", "test")
    }
