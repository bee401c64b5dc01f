"""Omniglot (Lake, Salakhutdinov, Tenenbaum, Science 2015): readers, standard splits, download.

Reads any of the public layouts, straight from Lake's zip files or unpacked:

- ``<root>/images_background.zip`` (also ``images_evaluation``, ``images_background_small1``,
  ``images_background_small2``), each holding ``<set>/<Alphabet>/characterNN/*.png``;
- ``<root>/<set>/<Alphabet>/characterNN/*.png`` (the zips unpacked);
- torchvision's ``<root>/omniglot-py/<set>/...``.

Classes are ``"Alphabet/characterNN"``; a character present in several sets (Greek and Latin
are in both minimal sets) is kept once.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from adaptmem.data.download import DataNotFoundError, download, missing_data_message
from adaptmem.data.fewshot._images import decode_image
from adaptmem.data.fewshot.episodes import ROTATIONS, ClassImages, merge_classes
from adaptmem.utils.checks import check_choice

FULL_SETS = ("images_background", "images_evaluation")
MINIMAL_SETS = ("images_background_small1", "images_background_small2")
_URL_PREFIXES = (
    "https://github.com/brendenlake/omniglot/raw/master/python/",
    "https://raw.githubusercontent.com/brendenlake/omniglot/master/python/",
)
_MD5 = {
    "images_background": "68d2efa1b9178cc56df9314c21c6e718",
    "images_evaluation": "6b91aef0f799c5bb55b94e3f2daec811",
}

# Vinyals et al. (2016) character split, 1028 / 172 / 423, as distributed with Snell et al.'s
# prototypical networks: the validation alphabets come from the background set, the test set
# is 12 evaluation alphabets plus Gurmukhi's characters 42-45; everything else is training.
VINYALS_VAL_ALPHABETS = ("Armenian", "Bengali", "Early_Aramaic", "Hebrew", "Mkhedruli_(Georgian)")
VINYALS_TEST_ALPHABETS = (
    "Kannada",
    "Keble",
    "Malayalam",
    "Manipuri",
    "Mongolian",
    "Old_Church_Slavonic_(Cyrillic)",
    "Oriya",
    "Sylheti",
    "Syriac_(Serto)",
    "Tengwar",
    "Tibetan",
    "ULOG",
)
VINYALS_TEST_EXTRA = tuple(f"Gurmukhi/character{i:02d}" for i in range(42, 46))

# Our split of the 8 alphabets in the two minimal sets: whole alphabets held out.
MINIMAL_VAL_ALPHABETS = ("Early_Aramaic",)
MINIMAL_TEST_ALPHABETS = ("Sanskrit", "Tagalog")

SCHEMES = ("vinyals", "background_evaluation", "minimal", "alphabets")


def locate_omniglot_set(root: str | os.PathLike, name: str) -> Path | None:
    """The zip file or folder holding set ``name`` under ``root`` (any public layout), or ``None``."""
    root = Path(root)
    for base in (root, root / "omniglot-py", root / "omniglot"):
        for cand in (base / f"{name}.zip", base / name):
            if cand.exists():
                return cand
    return None


def read_omniglot_set(path: str | os.PathLike, *, image_size: int = 28) -> ClassImages:
    """All characters of one set, from a Lake zip file or an unpacked folder.

    Images are resized to ``image_size`` and inverted so that strokes are bright on a zero
    background (zero padding in the convolutions then matches the background).
    """
    path = Path(path)
    files: dict[str, list[tuple[str, object]]] = {}  # class name -> [(file name, source)]
    if path.is_file():
        zf = zipfile.ZipFile(path)
        for member in zf.namelist():
            parts = member.rstrip("/").split("/")
            if member.endswith("/") or not member.lower().endswith(".png") or len(parts) < 3:
                continue
            files.setdefault(f"{parts[-3]}/{parts[-2]}", []).append((parts[-1], member))
        read = zf.read
    elif path.is_dir():
        zf = None
        for png in path.glob("*/*/*.png"):
            files.setdefault(f"{png.parent.parent.name}/{png.parent.name}", []).append((png.name, png))
        read = lambda p: p  # decode_image opens paths itself
    else:
        raise FileNotFoundError(f"read_omniglot_set: {path} is neither a zip file nor a folder")
    if not files:
        raise ValueError(f"read_omniglot_set: no <Alphabet>/<character>/*.png images found in {path}")
    names = sorted(files)
    images, labels = [], []
    for label, name in enumerate(names):
        for _, src in sorted(files[name], key=lambda f: f[0]):
            images.append(255 - decode_image(read(src), image_size, "L"))
            labels.append(label)
    if zf is not None:
        zf.close()
    return ClassImages(torch.from_numpy(np.stack(images)), torch.tensor(labels), names)


def load_omniglot(
    root: str | os.PathLike, sets: Sequence[str] = FULL_SETS, *, image_size: int = 28, download_if_missing: bool = False
) -> dict[str, ClassImages]:
    """Read the Omniglot ``sets`` found under ``root``: ``{set name: ClassImages}``.

    Args:
        root: folder with the zips, the unpacked sets or torchvision's ``omniglot-py``.
        sets: e.g. :data:`FULL_SETS` (``images_background``, ``images_evaluation``) or
            :data:`MINIMAL_SETS` (``images_background_small1``, ``..._small2``).
        image_size: side of the square images (28 in the usual protocol).
        download_if_missing: fetch a missing set's zip from Lake's repository into ``root``.
    """
    out = {}
    for name in sets:
        path = locate_omniglot_set(root, name)
        if path is None:
            if not download_if_missing:
                raise DataNotFoundError(
                    missing_data_message(
                        "load_omniglot",
                        f"Omniglot's {name}.zip (or the unpacked folder {name}/)",
                        f"{root}, {Path(root) / 'omniglot-py'} or {Path(root) / 'omniglot'}",
                    )
                )
            path = download([p + f"{name}.zip" for p in _URL_PREFIXES], Path(root) / f"{name}.zip", md5=_MD5.get(name))
        out[name] = read_omniglot_set(path, image_size=image_size)
    return out


def _alphabet(name: str) -> str:
    return name.split("/", 1)[0]


def omniglot_splits(
    sets: dict[str, ClassImages],
    scheme: str = "vinyals",
    *,
    val_alphabets: Sequence[str] | None = None,
    test_alphabets: Sequence[str] | None = None,
    rotations: Sequence[int] = ROTATIONS,
) -> dict[str, ClassImages]:
    """Split the characters of :func:`load_omniglot`'s sets into ``{"train", "val", "test"}``.

    Schemes:
        - ``"vinyals"``: Vinyals et al.'s 1028 / 172 / 423 characters (needs both full sets).
        - ``"background_evaluation"``: train on the background alphabets minus
          ``val_alphabets`` (default: Vinyals' five validation alphabets), test on the evaluation
          alphabets (Lake et al.'s split).
        - ``"minimal"``: the two minimal sets' 8 alphabets; ``val_alphabets`` (default
          ``Early_Aramaic``) and ``test_alphabets`` (default ``Sanskrit``, ``Tagalog``) held out.
        - ``"alphabets"``: any sets, with explicit ``test_alphabets`` and optional ``val_alphabets``.

    ``rotations`` (default 0/90/180/270) turn every character into one class per rotation, in
    all splits, as in the usual protocol. ``val_alphabets=()`` drops the validation split.
    """
    fn = "omniglot_splits"
    check_choice(fn, "scheme", scheme, SCHEMES)
    if not sets:
        raise ValueError(f"{fn}: sets is empty")
    everything = merge_classes(list(sets.values())).with_rotations(rotations)
    alphabets = {_alphabet(n) for n in everything.names}
    if scheme == "vinyals":
        val = set(VINYALS_VAL_ALPHABETS if val_alphabets is None else val_alphabets)
        test_names = {n for n in everything.names if _alphabet(n) in VINYALS_TEST_ALPHABETS} | set(VINYALS_TEST_EXTRA)
        in_val = lambda n: _alphabet(n) in val  # noqa: E731
        in_test = test_names.__contains__
    elif scheme == "background_evaluation":
        background = (
            merge_classes([s for k, s in sets.items() if "background" in k])
            if any("background" in k for k in sets)
            else None
        )
        if background is None or not any("evaluation" in k for k in sets):
            raise ValueError(
                f"{fn}: scheme 'background_evaluation' needs a background and an evaluation set, got {list(sets)}"
            )
        back_names = set(background.names)
        val = set(VINYALS_VAL_ALPHABETS if val_alphabets is None else val_alphabets)
        in_val = lambda n: n in back_names and _alphabet(n) in val  # noqa: E731
        in_test = lambda n: n not in back_names  # noqa: E731
    else:
        if scheme == "minimal":
            val = set(MINIMAL_VAL_ALPHABETS if val_alphabets is None else val_alphabets)
            test = set(MINIMAL_TEST_ALPHABETS if test_alphabets is None else test_alphabets)
        else:
            if not test_alphabets:
                raise ValueError(f"{fn}: scheme 'alphabets' needs test_alphabets")
            val, test = set(val_alphabets or ()), set(test_alphabets)
        unknown = (val | test) - alphabets
        if unknown:
            raise ValueError(f"{fn}: alphabets {sorted(unknown)} are not in the loaded sets {sorted(alphabets)}")
        if val & test:
            raise ValueError(f"{fn}: alphabets {sorted(val & test)} are both in val_alphabets and test_alphabets")
        in_val = lambda n: _alphabet(n) in val  # noqa: E731
        in_test = lambda n: _alphabet(n) in test  # noqa: E731
    splits = {
        "train": everything.select(lambda n: not in_val(n) and not in_test(n)),
        "val": everything.select(lambda n: in_val(n) and not in_test(n)),
        "test": everything.select(in_test),
    }
    if val_alphabets is not None and len(val_alphabets) == 0:
        del splits["val"]
    for k, s in splits.items():
        if not s.names:
            raise ValueError(f"{fn}: split {k!r} of scheme {scheme!r} is empty for the loaded sets {list(sets)}")
    return splits
